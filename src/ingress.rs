//! HTTP into topics: `POST /topics/{topic}` on the public listener.
//!
//! A body is a CloudEvent (binary or structured mode), a batch of them, or a plain value
//! (`parse.rs`). Each record is produced with acks=all, and 202 is answered only once the
//! broker has stored it; a batch says per event what happened, and is never answered 2xx
//! when one of its events was not stored.

pub mod parse;

use std::collections::HashMap;

use axum::{
    Json,
    body::Body as HttpBody,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

use crate::{
    config::edge::{IngressTopic, Token},
    edge::publish::{PublishError, Publisher, Stored},
    metrics::{IngressLabels, Metrics},
};
use parse::{Body, Malformed, Outgoing};

/// Seconds a client is asked to wait before trying again after a 503.
const RETRY_AFTER: &str = "1";

/// One topic open to ingress, with its counters.
#[derive(Debug)]
struct Open {
    tokens: Vec<Token>,
    stored: Counter,
    malformed: Counter,
    unauthorized: Counter,
    too_large: Counter,
    unavailable: Counter,
}

/// The topics open to ingress and how to store into them.
#[derive(Debug)]
pub struct Ingress {
    topics: HashMap<String, Open>,
    max_body: usize,
    publisher: Publisher,
}

/// One event's outcome in a batch answer.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct EventResult {
    /// Its place in the batch, from 0.
    pub index: usize,
    /// The event's id.
    pub id: Option<String>,
    /// 202 when stored, else the status it would have had alone.
    pub status: u16,
    /// Where it was stored.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub partition: Option<i32>,
    /// Where it was stored.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub offset: Option<i64>,
    /// Why it was not.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// A 202 answer for one record.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Accepted {
    /// The topic.
    pub topic: String,
    /// Where it was stored.
    pub partition: i32,
    /// Where it was stored.
    pub offset: i64,
    /// The CloudEvent's id, when it was one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id: Option<String>,
}

fn answer(status: StatusCode, error: String) -> Response {
    (status, Json(crate::admin::ErrorAnswer { error })).into_response()
}

fn unavailable(error: String) -> Response {
    let mut response = answer(StatusCode::SERVICE_UNAVAILABLE, error);
    let _ = response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
    response
}

/// The bearer token of a request: `Authorization: Bearer T`, or `?token=T` for clients
/// that cannot set headers (browsers opening a WebSocket or an EventSource).
pub fn bearer<'a>(headers: &'a HeaderMap, query: Option<&'a str>) -> Option<&'a [u8]> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().as_bytes())
        .or(query.map(str::as_bytes))
}

/// Why a request's token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token (401).
    Missing,
    /// Not one of the tokens (403).
    Wrong,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Missing => {
                let mut response = answer(
                    StatusCode::UNAUTHORIZED,
                    "a bearer token is required".to_owned(),
                );
                let _ = response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                response
            }
            Self::Wrong => answer(
                StatusCode::FORBIDDEN,
                "the bearer token is not valid here".to_owned(),
            ),
        }
    }
}

/// Whether a request with `offered` may go on: when `tokens` is empty or one matches.
pub fn authorize(tokens: &[Token], offered: Option<&[u8]>) -> Result<(), Refusal> {
    if tokens.is_empty() {
        return Ok(());
    }
    match offered {
        None => Err(Refusal::Missing),
        Some(offered) if tokens.iter().any(|t| t.matches(offered)) => Ok(()),
        Some(_) => Err(Refusal::Wrong),
    }
}

impl Ingress {
    /// Ingress for `topics`, producing through `publisher`.
    pub fn new(
        topics: &[IngressTopic],
        max_body: usize,
        publisher: Publisher,
        metrics: &Metrics,
    ) -> Self {
        let counter = |topic: &str, outcome: &str| {
            metrics
                .ingress_events
                .get_or_create(&IngressLabels {
                    topic: topic.to_owned(),
                    outcome: outcome.to_owned(),
                })
                .clone()
        };
        let topics = topics
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    Open {
                        tokens: t.tokens.clone(),
                        stored: counter(&t.name, "stored"),
                        malformed: counter(&t.name, "malformed"),
                        unauthorized: counter(&t.name, "unauthorized"),
                        too_large: counter(&t.name, "too_large"),
                        unavailable: counter(&t.name, "unavailable"),
                    },
                )
            })
            .collect();
        Self {
            topics,
            max_body,
            publisher,
        }
    }

    /// Each open topic's figures for the status report.
    pub fn status(&self) -> Vec<crate::admin::IngressStatus> {
        let mut out: Vec<_> = self
            .topics
            .iter()
            .map(|(name, open)| crate::admin::IngressStatus {
                topic: name.clone(),
                tokens: !open.tokens.is_empty(),
                stored: open.stored.get(),
                refused: open.malformed.get() + open.unauthorized.get() + open.too_large.get(),
                unavailable: open.unavailable.get(),
            })
            .collect();
        out.sort_by(|a, b| a.topic.cmp(&b.topic));
        out
    }

    /// `POST /topics/{topic}`.
    pub async fn post(
        &self,
        topic: &str,
        key: Option<&str>,
        token: Option<&str>,
        headers: &HeaderMap,
        body: HttpBody,
        broker_unavailable: Option<String>,
    ) -> Response {
        let Some(open) = self.topics.get(topic) else {
            return answer(
                StatusCode::NOT_FOUND,
                format!("topic {topic:?} is not open to ingress"),
            );
        };
        if let Err(refusal) = authorize(&open.tokens, bearer(headers, token)) {
            let _ = open.unauthorized.inc();
            return refusal.into_response();
        }
        let body = match axum::body::to_bytes(body, self.max_body).await {
            Ok(body) => body,
            Err(_) => {
                let _ = open.too_large.inc();
                return answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {} bytes", self.max_body),
                );
            }
        };
        let parsed = match parse::parse(headers, key, body) {
            Ok(parsed) => parsed,
            Err(Malformed::Body(why)) => {
                let _ = open.malformed.inc();
                return answer(StatusCode::BAD_REQUEST, why);
            }
            Err(Malformed::Events(problems)) => {
                let _ = open.malformed.inc_by(problems.len() as u64);
                let results: Vec<EventResult> = problems
                    .into_iter()
                    .map(|(index, why)| EventResult {
                        index,
                        id: None,
                        status: 400,
                        partition: None,
                        offset: None,
                        error: Some(why),
                    })
                    .collect();
                return (
                    StatusCode::BAD_REQUEST,
                    Json(serde_json::json!({
                        "error": "the batch has malformed events; none of it was stored",
                        "results": results,
                    })),
                )
                    .into_response();
            }
        };
        if let Some(why) = broker_unavailable {
            let _ = open.unavailable.inc();
            return unavailable(format!("{why}; nothing was stored"));
        }
        match parsed {
            Body::One(record) => match self.store(open, topic, &record).await {
                Ok(stored) => (
                    StatusCode::ACCEPTED,
                    Json(Accepted {
                        topic: topic.to_owned(),
                        partition: stored.partition,
                        offset: stored.offset,
                        id: record.id,
                    }),
                )
                    .into_response(),
                Err(PublishError::TooLarge(why)) => answer(StatusCode::PAYLOAD_TOO_LARGE, why),
                Err(err @ PublishError::Unavailable(_)) => unavailable(err.to_string()),
            },
            Body::Batch(records) => self.batch(open, topic, records).await,
        }
    }

    async fn store(
        &self,
        open: &Open,
        topic: &str,
        record: &Outgoing,
    ) -> Result<Stored, PublishError> {
        let outcome = self.publisher.send(topic, record).await;
        let _ = match &outcome {
            Ok(_) => open.stored.inc(),
            Err(PublishError::TooLarge(_)) => open.too_large.inc(),
            Err(PublishError::Unavailable(_)) => open.unavailable.inc(),
        };
        outcome
    }

    /// Stores each event of a batch, all at once; 202 when every one was stored, 503 when
    /// none was, 207 with each event's outcome otherwise.
    async fn batch(&self, open: &Open, topic: &str, records: Vec<Outgoing>) -> Response {
        let sends = records.iter().map(|record| self.store(open, topic, record));
        let outcomes = futures::future::join_all(sends).await;
        let mut stored = 0;
        let results: Vec<EventResult> = outcomes
            .into_iter()
            .zip(records)
            .enumerate()
            .map(|(index, (outcome, record))| match outcome {
                Ok(at) => {
                    stored += 1;
                    EventResult {
                        index,
                        id: record.id,
                        status: 202,
                        partition: Some(at.partition),
                        offset: Some(at.offset),
                        error: None,
                    }
                }
                Err(err) => EventResult {
                    index,
                    id: record.id,
                    status: match err {
                        PublishError::TooLarge(_) => 413,
                        PublishError::Unavailable(_) => 503,
                    },
                    partition: None,
                    offset: None,
                    error: Some(err.to_string()),
                },
            })
            .collect();
        let status = if stored == results.len() {
            StatusCode::ACCEPTED
        } else if stored == 0 {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::MULTI_STATUS
        };
        let mut response = (
            status,
            Json(serde_json::json!({ "topic": topic, "results": results })),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let _ = response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
        }
        response
    }
}
