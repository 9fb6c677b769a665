//! A batch's way to its outcomes: several events in one request, as a JSON array of
//! structured CloudEvents (`application/cloudevents-batch+json`).
//!
//! - A 2xx delivers every event in the request, but for those the function lists as failed
//!   in its answer, `{"failed": [{"id": "...", "reason": "..."}]}`. Only those are retried,
//!   and dead-lettered once out of retries. Under `partition` and `key` ordering a failed
//!   event is retried together with the events after it in its partition (or of its key),
//!   so they reach the function again in order.
//! - A retryable status retries the whole request, a final one dead-letters each of its
//!   events with the reason, and an unreachable function is waited for, as for one event.
//! - A reply topic gets one record per event of the answer: a JSON array of CloudEvents, or
//!   the `replies` member beside `failed`.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use rdkafka::message::{Header, OwnedHeaders};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Final, Pipeline};
use crate::{
    config::{Batch, Ordering},
    deliver::{Attempt, EXCERPT_LIMIT, Failure, Session, retry::retry_delay},
    event::{self, Event, Record},
};

/// The content type of a batch request.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// The records of a batch made ready to send: their events, and how many of them fit in one
/// request.
#[derive(Debug)]
pub struct Prepared {
    items: Vec<Item>,
    /// Records from this index on did not fit; they go back to their lanes unsent.
    pub fits: usize,
}

#[derive(Debug)]
struct Item {
    event: Event,
    /// The event in the JSON format; empty when it is not sent.
    json: Vec<u8>,
    /// Filtered out, or too large for any request: settled without a request.
    settled: Option<Settled>,
}

#[derive(Debug, Clone, Copy)]
enum Settled {
    Filtered,
    TooLarge,
}

/// What a function's 2xx answer to a batch says.
#[derive(Debug, Default, PartialEq)]
struct Answer {
    /// Ids the function could not process, with its reason.
    failed: Vec<(String, Option<String>)>,
    /// Events to produce to the reply topic.
    replies: Vec<Bytes>,
}

#[derive(Deserialize)]
struct ObjectAnswer<'a> {
    #[serde(default)]
    failed: Vec<FailedItem>,
    #[serde(default, borrow)]
    replies: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum FailedItem {
    Id(String),
    Object {
        id: String,
        #[serde(default)]
        reason: Option<String>,
    },
}

/// Reads a 2xx answer: a JSON array is one reply per element; an object may list `failed`
/// ids and `replies`. Anything else (an empty body, text) says every event was delivered.
fn parse_answer(body: &[u8]) -> Result<Answer, String> {
    let body = body.trim_ascii();
    match body.first() {
        Some(b'[') => {
            let replies: Vec<&RawValue> = serde_json::from_slice(body)
                .map_err(|err| format!("the answer is not a JSON array of events: {err}"))?;
            Ok(Answer {
                failed: Vec::new(),
                replies: replies
                    .into_iter()
                    .map(|r| Bytes::copy_from_slice(r.get().as_bytes()))
                    .collect(),
            })
        }
        Some(b'{') => {
            let object: ObjectAnswer<'_> = serde_json::from_slice(body).map_err(|err| {
                format!("the answer is not {{\"failed\": [...], \"replies\": [...]}}: {err}")
            })?;
            Ok(Answer {
                failed: object
                    .failed
                    .into_iter()
                    .map(|item| match item {
                        FailedItem::Id(id) => (id, None),
                        FailedItem::Object { id, reason } => (id, reason),
                    })
                    .collect(),
                replies: object
                    .replies
                    .into_iter()
                    .map(|r| Bytes::copy_from_slice(r.get().as_bytes()))
                    .collect(),
            })
        }
        _ => Ok(Answer::default()),
    }
}

impl Pipeline {
    /// Makes the batch's events, settles those filtered out or too large for any request,
    /// and finds how many fit in one request of `batch.max_bytes`.
    pub fn prepare<'r>(
        &self,
        records: impl Iterator<Item = &'r Record>,
        batch: &Batch,
    ) -> Prepared {
        let mut items = Vec::new();
        // `[` and `]`, and a comma before each event but the first.
        let mut body = 2usize;
        let mut sent = 0usize;
        let mut fits = None;
        for record in records {
            let event = event::from_record(record, &self.settings);
            if fits.is_some() {
                items.push(Item {
                    event,
                    json: Vec::new(),
                    settled: None,
                });
                continue;
            }
            if !self.filters.matches(&event) {
                items.push(Item {
                    event,
                    json: Vec::new(),
                    settled: Some(Settled::Filtered),
                });
                continue;
            }
            let mut json = Vec::with_capacity(event.body.len() + 512);
            event::write_structured(&event, &mut json);
            let grown = body + json.len() + usize::from(sent > 0);
            if json.len() + 2 > batch.max_bytes {
                items.push(Item {
                    event,
                    json: Vec::new(),
                    settled: Some(Settled::TooLarge),
                });
                continue;
            }
            if grown > batch.max_bytes {
                fits = Some(items.len());
                items.push(Item {
                    event,
                    json: Vec::new(),
                    settled: None,
                });
                continue;
            }
            body = grown;
            sent += 1;
            items.push(Item {
                event,
                json,
                settled: None,
            });
        }
        let fits = fits.unwrap_or(items.len());
        items.truncate(fits);
        Prepared { items, fits }
    }

    /// Takes the prepared batch to its outcomes, one per record that fit, in order; `None`
    /// for a record that is not final because `cancel` fired first.
    pub async fn deliver_batch(
        &self,
        prepared: Prepared,
        records: &[&Record],
        cancel: &CancellationToken,
        session: &mut Session,
    ) -> Vec<Option<Final>> {
        let items = prepared.items;
        let mut outcomes: Vec<Option<Final>> = vec![None; items.len()];
        let mut pending = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            match item.settled {
                Some(Settled::Filtered) => {
                    let _ = self.metrics.filtered.inc();
                    outcomes[index] = Some(Final::Filtered);
                }
                Some(Settled::TooLarge) => {
                    let failure = Failure::new(
                        "batch",
                        format!(
                            "the event is larger than delivery.batch.max_bytes ({} bytes)",
                            self.delivery.batch.map_or(0, |b| b.max_bytes)
                        ),
                    );
                    outcomes[index] = self
                        .dead_letter(records[index], &item.event, &failure, 0, cancel)
                        .await;
                }
                None => pending.push(index),
            }
        }
        let mut retries = 0u32;
        let mut unreachable = 0u32;
        let mut attempts = 0u32;
        // The reasons the function gave in its last answer for the events it listed.
        let mut reasons = HashMap::<String, String>::new();
        while !pending.is_empty() {
            attempts += 1;
            reasons.clear();
            let request = batch_request(&items, &pending);
            let started = std::time::Instant::now();
            let attempt = self
                .target
                .attempt_batch(session, &request, self.delivery.timeout)
                .await;
            self.metrics.attempt(attempt.outcome());
            let failure = match attempt {
                Attempt::Delivered { reply, status } => {
                    self.metrics
                        .duration
                        .observe(started.elapsed().as_secs_f64());
                    let body = reply.map(|(_, body)| body).unwrap_or_default();
                    self.log(&request, status, Some(&body));
                    match parse_answer(&body) {
                        // JSON that is not the answer's shape may list failures sluice cannot
                        // read: the whole request is retried rather than taken as delivered.
                        Err(why) => {
                            warn!(trigger = %self.trigger, error = %why, "Cannot read the function's answer to a batch; retrying the batch.");
                            Some((
                                Failure {
                                    code: status.as_u16().to_string(),
                                    message: why,
                                    excerpt: body.slice(..body.len().min(EXCERPT_LIMIT)),
                                },
                                None,
                                true,
                            ))
                        }
                        Ok(answer) => {
                            if let Some(topic) = &self.reply {
                                for (position, reply) in answer.replies.iter().enumerate() {
                                    let cause = pending.get(position).copied();
                                    if self
                                        .produce_batch_reply(
                                            topic,
                                            cause.map(|i| (records[i], &items[i].event)),
                                            reply,
                                            cancel,
                                        )
                                        .await
                                        .is_none()
                                    {
                                        return outcomes;
                                    }
                                }
                            }
                            let failed = self.failed(&answer, &items, &pending, records);
                            for &index in &pending {
                                if !failed.contains(&index) {
                                    outcomes[index] = Some(Final::Delivered);
                                    let _ = self.metrics.delivered.inc();
                                }
                            }
                            if failed.is_empty() {
                                break;
                            }
                            reasons = answer
                                .failed
                                .into_iter()
                                .filter_map(|(id, reason)| Some((id, reason?)))
                                .collect();
                            pending.retain(|index| failed.contains(index));
                            Some((
                                Failure::new(
                                    &status.as_u16().to_string(),
                                    "the function reported the event failed".to_owned(),
                                ),
                                None,
                                true,
                            ))
                        }
                    }
                }
                Attempt::Reject { failure } => Some((failure, None, false)),
                Attempt::Retry {
                    failure,
                    retry_after,
                } => Some((failure, retry_after, true)),
                Attempt::Unreachable { failure } => {
                    unreachable = unreachable.saturating_add(1);
                    self.warn_unreachable(&failure);
                    let delay = retry_delay(&self.backoff, unreachable, None);
                    if self.wait(delay, cancel).await.is_none() {
                        return outcomes;
                    }
                    None
                }
            };
            let Some((failure, retry_after, retryable)) = failure else {
                continue;
            };
            if !retryable || retries >= self.delivery.retry {
                for &index in &pending {
                    let failure = match reasons.get(&items[index].event.id) {
                        Some(reason) => Failure {
                            message: format!("{}: {reason}", failure.message),
                            ..failure.clone()
                        },
                        None => failure.clone(),
                    };
                    outcomes[index] = self
                        .dead_letter(
                            records[index],
                            &items[index].event,
                            &failure,
                            attempts,
                            cancel,
                        )
                        .await;
                    if outcomes[index].is_none() {
                        return outcomes;
                    }
                }
                break;
            }
            retries += 1;
            unreachable = 0;
            let delay = retry_delay(&self.backoff, retries, retry_after);
            debug!(
                trigger = %self.trigger,
                events = pending.len(),
                attempt = attempts,
                error = %failure.message,
                delay = ?delay,
                "Batch delivery failed; retrying."
            );
            if self.wait(delay, cancel).await.is_none() {
                return outcomes;
            }
        }
        outcomes
    }

    /// The pending events the answer lists as failed, and under `partition` and `key`
    /// ordering every later pending event of the same partition or key.
    fn failed(
        &self,
        answer: &Answer,
        items: &[Item],
        pending: &[usize],
        records: &[&Record],
    ) -> HashSet<usize> {
        let ids: HashSet<&str> = answer.failed.iter().map(|(id, _)| id.as_str()).collect();
        let mut failed = HashSet::new();
        if ids.is_empty() {
            return failed;
        }
        let lane_of = |index: usize| {
            let record = records[index];
            match self.ordering {
                Ordering::Partition => Some((&*record.topic, record.partition, None)),
                Ordering::Key => record
                    .key
                    .as_ref()
                    .map(|key| (&*record.topic, record.partition, Some(key))),
                Ordering::Unordered => None,
            }
        };
        let mut stopped = Vec::new();
        for &index in pending {
            let lane = lane_of(index);
            let listed = ids.contains(items[index].event.id.as_str());
            if listed || lane.as_ref().is_some_and(|l| stopped.contains(l)) {
                let _ = failed.insert(index);
                if let Some(lane) = lane
                    && !stopped.contains(&lane)
                {
                    stopped.push(lane);
                }
            }
        }
        failed
    }

    /// Produces one event of a batch's answer: a structured CloudEvent, keyed like the event
    /// at its position in the request.
    async fn produce_batch_reply(
        &self,
        topic: &str,
        cause: Option<(&Record, &Event)>,
        reply: &Bytes,
        cancel: &CancellationToken,
    ) -> Option<()> {
        let mut headers = OwnedHeaders::new().insert(Header {
            key: "content-type",
            value: Some("application/cloudevents+json".as_bytes()),
        });
        if let Some((_, event)) = cause {
            headers = headers.insert(Header {
                key: "sluice-cause",
                value: Some(event.id.as_bytes()),
            });
        }
        self.produce_acknowledged(
            topic,
            cause.and_then(|(record, _)| record.key.as_deref()),
            Some(reply.as_ref()),
            headers,
            "reply",
            cancel,
        )
        .await?;
        let _ = self.metrics.replies.inc();
        Some(())
    }
}

/// The request for the pending events: their JSON in an array.
fn batch_request(items: &[Item], pending: &[usize]) -> Event {
    let size = pending
        .iter()
        .map(|&i| items[i].json.len() + 1)
        .sum::<usize>()
        + 2;
    let mut body = Vec::with_capacity(size);
    body.push(b'[');
    for (n, &index) in pending.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&items[index].json);
    }
    body.push(b']');
    Event {
        id: format!("batch of {}", pending.len()),
        headers: vec![(CONTENT_TYPE, HeaderValue::from_static(BATCH_CONTENT_TYPE))],
        body: Bytes::from(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read() {
        assert_eq!(parse_answer(b"").unwrap(), Answer::default());
        assert_eq!(parse_answer(b"ok").unwrap(), Answer::default());
        let answer = parse_answer(br#" {"failed": ["a", {"id": "b", "reason": "no"}]} "#).unwrap();
        assert_eq!(
            answer.failed,
            [
                ("a".to_owned(), None),
                ("b".to_owned(), Some("no".to_owned()))
            ]
        );
        let answer = parse_answer(br#"[{"id":"r1"}, {"id":"r2"}]"#).unwrap();
        assert_eq!(answer.replies, [&br#"{"id":"r1"}"#[..], br#"{"id":"r2"}"#]);
        let answer = parse_answer(br#"{"failed":[],"replies":[{"id":"r"}]}"#).unwrap();
        assert_eq!(answer.replies.len(), 1);
        assert!(parse_answer(b"[1,").is_err());
        assert!(parse_answer(br#"{"failed": 3}"#).is_err());
    }
}
