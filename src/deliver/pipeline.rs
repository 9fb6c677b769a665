//! One record's way to its final outcome: attempts with backoff, then a reply or a dead
//! letter. Nothing here gives up on a record except `dead_letter: none`; a shutdown abandons
//! the record instead, which leaves its offset uncommitted.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderMap};
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub mod batch;

use super::{
    Attempt, Destination, Failure, Invoker, Session,
    retry::{self, retry_delay},
};
use crate::{
    backoff::Backoff,
    config::{self, DeadLetter, Delivery, LogResponse, Ordering as Order},
    event::{self, Event, EventSettings, Record, TRACE_CONTEXT, percent_decode},
    filter::Filters,
    metrics::TriggerMetrics,
};

/// The most of an answer's body that `log_response: body` logs.
const LOGGED_BODY: usize = 4096;

/// How long one produce of a dead letter or reply may wait for the broker.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// At most one warning per this interval about an unreachable function.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// How a record ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    /// The function accepted it (and its reply, if any, was produced).
    Delivered,
    /// It went to the dead-letter sink, which acknowledged it.
    DeadLettered,
    /// `dead_letter: none` and it could not be delivered.
    Dropped,
    /// The trigger's filters did not let it through.
    Filtered,
}

/// Everything a trigger needs to take a record to its outcome.
pub struct Pipeline {
    /// Trigger name.
    pub trigger: String,
    /// Where events go.
    pub target: Destination,
    /// Retries, timeouts and batches.
    pub delivery: Delivery,
    /// Which records go one after another.
    pub ordering: Order,
    /// The waits between retries, from `delivery`.
    backoff: Backoff,
    /// Where undeliverable records go.
    pub dead_letter: DeadLetter,
    /// Reply topic.
    pub reply: Option<String>,
    /// What of each answer is logged.
    pub log_response: LogResponse,
    /// How records become events.
    pub settings: EventSettings,
    /// Which events are delivered.
    pub filters: Filters,
    /// HTTP client.
    pub invoker: Invoker,
    /// Producer for dead letters and replies.
    pub producer: FutureProducer,
    /// Metric handles.
    pub metrics: TriggerMetrics,
    last_unreachable_warning: AtomicU64,
    started: Instant,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("trigger", &self.trigger)
            .field("target", &self.target.to_string())
            .field("dead_letter", &self.dead_letter)
            .field("reply", &self.reply)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// The pipeline of `trigger`, delivering to `target`, with dead letters and replies
    /// produced through `producer`.
    pub fn build(
        trigger: &config::Trigger,
        target: Destination,
        producer: FutureProducer,
        metrics: TriggerMetrics,
    ) -> Self {
        Self {
            trigger: trigger.name.clone(),
            target,
            delivery: trigger.delivery.clone(),
            ordering: trigger.ordering,
            backoff: retry::policy(&trigger.delivery),
            dead_letter: trigger.dead_letter.clone(),
            reply: trigger.reply.as_ref().map(|r| r.topic.clone()),
            log_response: trigger.log_response,
            filters: trigger.filters.clone(),
            settings: EventSettings::of(trigger),
            invoker: Invoker::new(),
            producer,
            metrics,
            last_unreachable_warning: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// Takes the record to its final outcome; `None` when `cancel` fired first (the record
    /// is not final and must not be committed). `session` carries the task's connection from
    /// one record to the next.
    pub async fn run(
        &self,
        record: &Record,
        cancel: &CancellationToken,
        session: &mut Session,
    ) -> Option<Final> {
        let event = event::from_record(record, &self.settings);
        if !self.filters.matches(&event) {
            let _ = self.metrics.filtered.inc();
            return Some(Final::Filtered);
        }
        let mut retries = 0u32;
        let mut unreachable = 0u32;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let started = Instant::now();
            let attempt = self
                .target
                .attempt(
                    session,
                    &event,
                    record,
                    self.delivery.timeout,
                    self.reply.is_some() || self.log_response == LogResponse::Body,
                )
                .await;
            self.metrics.attempt(attempt.outcome());
            match attempt {
                Attempt::Delivered { reply, status } => {
                    self.metrics
                        .duration
                        .observe(started.elapsed().as_secs_f64());
                    self.log(&event, status, reply.as_ref().map(|(_, body)| body));
                    if let (Some(topic), Some((headers, body))) = (&self.reply, reply) {
                        self.produce_reply(topic, record, &event, &headers, body, cancel)
                            .await?;
                    }
                    let _ = self.metrics.delivered.inc();
                    return Some(Final::Delivered);
                }
                Attempt::Reject { failure } => {
                    return self
                        .dead_letter(record, &event, &failure, attempts, cancel)
                        .await;
                }
                Attempt::Retry {
                    failure,
                    retry_after,
                } => {
                    if retries >= self.delivery.retry {
                        return self
                            .dead_letter(record, &event, &failure, attempts, cancel)
                            .await;
                    }
                    retries += 1;
                    unreachable = 0;
                    let delay = retry_delay(&self.backoff, retries, retry_after);
                    debug!(
                        trigger = %self.trigger,
                        id = %event.id,
                        attempt = attempts,
                        error = %failure.message,
                        delay = ?delay,
                        "Delivery failed; retrying."
                    );
                    self.wait(delay, cancel).await?;
                }
                Attempt::Unreachable { failure } => {
                    // An outage, not a bad record: wait for the function without using up
                    // the record's retries, so nothing is dead-lettered for it.
                    unreachable = unreachable.saturating_add(1);
                    self.warn_unreachable(&failure);
                    let delay = retry_delay(&self.backoff, unreachable, None);
                    self.wait(delay, cancel).await?;
                }
            }
        }
    }

    async fn wait(&self, delay: Duration, cancel: &CancellationToken) -> Option<()> {
        self.metrics.retrying.inc();
        let outcome = tokio::select! {
            _ = cancel.cancelled() => None,
            _ = tokio::time::sleep(delay) => Some(()),
        };
        self.metrics.retrying.dec();
        outcome
    }

    fn warn_unreachable(&self, failure: &Failure) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_unreachable_warning.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= WARN_INTERVAL.as_millis() as u64)
            && self
                .last_unreachable_warning
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                trigger = %self.trigger,
                target = %self.target,
                error = %failure.message,
                "Function is unreachable; its events wait and are retried."
            );
        }
    }

    async fn dead_letter(
        &self,
        record: &Record,
        event: &Event,
        failure: &Failure,
        attempts: u32,
        cancel: &CancellationToken,
    ) -> Option<Final> {
        match &self.dead_letter {
            DeadLetter::None => {
                warn!(
                    trigger = %self.trigger,
                    id = %event.id,
                    attempts,
                    error = %failure.message,
                    "Event could not be delivered and is dropped (dead_letter: none)."
                );
                let _ = self.metrics.dropped.inc();
                Some(Final::Dropped)
            }
            DeadLetter::Topic(topic) => {
                let headers = self.reason_headers(record, event, failure, attempts);
                self.produce_acknowledged(
                    topic,
                    record.key.as_deref(),
                    record.value.as_deref(),
                    headers,
                    "dead letter",
                    cancel,
                )
                .await?;
                warn!(
                    trigger = %self.trigger,
                    id = %event.id,
                    topic,
                    attempts,
                    error = %failure.message,
                    "Event dead-lettered."
                );
                let _ = self.metrics.dead_lettered.inc();
                Some(Final::DeadLettered)
            }
            DeadLetter::Url(endpoint) => {
                let url = endpoint.uri();
                let mut event = event.clone();
                event.push_extension("knativeerrorcode", &failure.code);
                event.push_extension("knativeerrordest", &self.target.to_string());
                if !failure.excerpt.is_empty() {
                    event.push_extension("knativeerrordata", &BASE64.encode(&failure.excerpt));
                }
                let mut retry = 0;
                loop {
                    match self
                        .invoker
                        .attempt(url, &event, self.delivery.timeout, false)
                        .await
                    {
                        Attempt::Delivered { .. } => break,
                        Attempt::Retry { failure: f, .. }
                        | Attempt::Unreachable { failure: f }
                        | Attempt::Reject { failure: f } => {
                            retry += 1;
                            error!(trigger = %self.trigger, url = %url, error = %f.message, "Dead-letter sink refused an event; retrying.");
                            self.wait(retry_delay(&self.backoff, retry, None), cancel)
                                .await?;
                        }
                    }
                }
                warn!(trigger = %self.trigger, id = %event.id, url = %url, attempts, error = %failure.message, "Event dead-lettered.");
                let _ = self.metrics.dead_lettered.inc();
                Some(Final::DeadLettered)
            }
        }
    }

    /// The record's own headers, its trace context (when it came as a CloudEvent
    /// extension), then why it is a dead letter.
    fn reason_headers(
        &self,
        record: &Record,
        event: &Event,
        failure: &Failure,
        attempts: u32,
    ) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 11);
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
        for (name, value) in event.trace() {
            if record.header(name).is_none() {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value.as_bytes()),
                });
            }
        }
        let url = self.target.to_string();
        let attempts = attempts.to_string();
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        // In the order of `dlq::REASONS`, which reads them back.
        let values: [&[u8]; 9] = [
            failure.code.as_bytes(),
            url.as_bytes(),
            &failure.excerpt,
            failure.message.as_bytes(),
            attempts.as_bytes(),
            self.trigger.as_bytes(),
            record.topic.as_bytes(),
            partition.as_bytes(),
            offset.as_bytes(),
        ];
        for (key, value) in crate::dlq::REASONS.into_iter().zip(values) {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        headers
    }

    /// Logs a delivered event's answer as `log_response` asks.
    fn log(&self, event: &Event, status: hyper::StatusCode, body: Option<&Bytes>) {
        match self.log_response {
            LogResponse::None => {}
            LogResponse::Status => {
                info!(trigger = %self.trigger, id = %event.id, status = status.as_u16(), "Function answered.");
            }
            LogResponse::Body => {
                let body = body
                    .map(|b| &b[..b.len().min(LOGGED_BODY)])
                    .unwrap_or_default();
                let body = String::from_utf8_lossy(body);
                info!(trigger = %self.trigger, id = %event.id, status = status.as_u16(), "Function answered:\n{body}");
            }
        }
    }

    /// Produces a function's reply: a CloudEvent response stays a CloudEvent (Kafka binary
    /// binding), any other body keeps its content type. Keyed like the input.
    async fn produce_reply(
        &self,
        topic: &str,
        record: &Record,
        event: &Event,
        headers: &HeaderMap,
        body: Bytes,
        cancel: &CancellationToken,
    ) -> Option<()> {
        let mut out_headers = OwnedHeaders::new();
        for (name, value) in headers {
            let name = name.as_str();
            if let Some(attribute) = name.strip_prefix("ce-") {
                let decoded = percent_decode(value.to_str().unwrap_or_default());
                out_headers = out_headers.insert(Header {
                    key: &format!("ce_{attribute}"),
                    value: Some(&decoded),
                });
            }
        }
        if let Some(content_type) = headers.get(CONTENT_TYPE) {
            out_headers = out_headers.insert(Header {
                key: "content-type",
                value: Some(content_type.as_bytes()),
            });
        }
        out_headers = out_headers.insert(Header {
            key: "sluice-cause",
            value: Some(event.id.as_bytes()),
        });
        // The trace goes on: the function's own trace context when it answered with one,
        // else the event's.
        for name in TRACE_CONTEXT {
            let value = headers.get(name).map(|v| v.as_bytes()).or_else(|| {
                event
                    .trace()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.as_bytes())
            });
            if let Some(value) = value {
                out_headers = out_headers.insert(Header {
                    key: name,
                    value: Some(value),
                });
            }
        }
        self.produce_acknowledged(
            topic,
            record.key.as_deref(),
            Some(&body),
            out_headers,
            "reply",
            cancel,
        )
        .await?;
        let _ = self.metrics.replies.inc();
        Some(())
    }

    /// Produces one record, retrying with backoff until the broker acknowledges it; `None`
    /// when `cancel` fires first.
    async fn produce_acknowledged(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: OwnedHeaders,
        what: &str,
        cancel: &CancellationToken,
    ) -> Option<()> {
        let mut retry = 0;
        loop {
            let mut out = FutureRecord::to(topic).headers(headers.clone());
            if let Some(key) = key {
                out = out.key(key);
            }
            if let Some(value) = value {
                out = out.payload(value);
            }
            match self.producer.send(out, PRODUCE_TIMEOUT).await {
                Ok(_) => return Some(()),
                Err((err, _)) => {
                    retry += 1;
                    error!(trigger = %self.trigger, topic, what, error = %err, "Cannot produce to Kafka; retrying.");
                    self.wait(retry_delay(&self.backoff, retry, None), cancel)
                        .await?;
                }
            }
        }
    }
}
