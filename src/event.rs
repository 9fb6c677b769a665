//! Kafka record → CloudEvent, in the HTTP binary content mode that Knative's KafkaSource uses.
//!
//! Attribute values go into HTTP headers. The CloudEvents HTTP binding asks for
//! percent-encoding of anything outside printable ASCII, so text of any language survives.
//! Bytes that are not UTF-8 cannot be a CloudEvents string at all; like the specification's
//! Binary type, they are sent base64-encoded, and the `sluicebase64` extension lists the
//! attributes so encoded (for example `key,kafkaheadertrace`).

use std::{
    borrow::Cow,
    fmt::Write as _,
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS};

/// CloudEvents type of a record that is not a CloudEvent already, as Knative's KafkaSource.
pub const KAFKA_EVENT_TYPE: &str = "dev.knative.kafka.event";

/// The extension that lists attributes whose values are base64 because they were not UTF-8.
pub const BASE64_EXTENSION: &str = "sluicebase64";

const CE_SPECVERSION: HeaderName = HeaderName::from_static("ce-specversion");
const CE_ID: HeaderName = HeaderName::from_static("ce-id");
const CE_SOURCE: HeaderName = HeaderName::from_static("ce-source");
const CE_TYPE: HeaderName = HeaderName::from_static("ce-type");
const CE_SUBJECT: HeaderName = HeaderName::from_static("ce-subject");
const CE_TIME: HeaderName = HeaderName::from_static("ce-time");
const CE_KEY: HeaderName = HeaderName::from_static("ce-key");
const CE_PARTITIONKEY: HeaderName = HeaderName::from_static("ce-partitionkey");
const CE_KAFKAPARTITION: HeaderName = HeaderName::from_static("ce-knativekafkapartition");
const CE_KAFKAOFFSET: HeaderName = HeaderName::from_static("ce-knativekafkaoffset");
const PREFER: HeaderName = HeaderName::from_static("prefer");

/// W3C trace context: the names of the HTTP headers, Kafka headers and CloudEvents
/// extension (the distributed-tracing extension) that carry it.
pub const TRACE_CONTEXT: [&str; 2] = ["traceparent", "tracestate"];

/// A Kafka record, owned, as consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Topic, shared by the records taken from it.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Record timestamp in milliseconds since the epoch, when the broker has one.
    pub timestamp: Option<i64>,
    /// Key; `None` for a null key.
    pub key: Option<Bytes>,
    /// Value; `None` for a tombstone.
    pub value: Option<Bytes>,
    /// Headers in order; a header may have no value.
    pub headers: Vec<(String, Option<Bytes>)>,
}

impl Record {
    /// The first header with this name, compared without case.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_deref())
    }

    /// Size in memory, roughly: what backpressure counts.
    pub fn size(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
            + 64
    }
}

/// Per-trigger settings that shape events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSettings {
    /// Trigger name, used in the default source.
    pub trigger: String,
    /// `source` override.
    pub source: Option<String>,
    /// `type` override.
    pub event_type: Option<String>,
    /// Content type when the record has no `content-type` header.
    pub content_type: String,
}

impl EventSettings {
    /// The settings of `trigger`.
    pub fn of(trigger: &crate::config::Trigger) -> Self {
        Self {
            trigger: trigger.name.clone(),
            source: trigger.source.clone(),
            event_type: trigger.event_type.clone(),
            content_type: trigger.content_type.clone(),
        }
    }
}

/// An event ready to be sent over HTTP.
#[derive(Debug, Clone)]
pub struct Event {
    /// The CloudEvent id (also used as the cause of replies).
    pub id: String,
    /// HTTP headers: `ce-*` attributes, `Content-Type` and `Prefer`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// HTTP body.
    pub body: Bytes,
}

impl Event {
    /// The W3C trace context the event carries, `traceparent` then `tracestate`, as the
    /// HTTP headers that go with it.
    pub fn trace(&self) -> impl Iterator<Item = (&str, &HeaderValue)> {
        self.headers
            .iter()
            .filter(|(name, _)| TRACE_CONTEXT.contains(&name.as_str()))
            .map(|(name, value)| (name.as_str(), value))
    }

    /// Adds an extension attribute (`ce-<name>`) with a text value.
    pub fn push_extension(&mut self, name: &str, value: &str) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(format!("ce-{name}")),
            HeaderValue::try_from(percent_encode(value.as_bytes())),
        ) {
            self.headers.push((name, value));
        }
    }
}

/// Builds the event for a record: the record itself when it already is a CloudEvent, else
/// the Knative KafkaSource mapping.
pub fn from_record(record: &Record, settings: &EventSettings) -> Event {
    if let Some(event) = structured(record).or_else(|| binary_binding(record)) {
        return event;
    }
    let mut headers = Vec::with_capacity(12 + record.headers.len());
    let mut encoded = Vec::new();
    let id = position("partition:", record.partition, "/offset:", record.offset);
    let source = match &settings.source {
        Some(source) => source.clone(),
        None => {
            let mut source = String::with_capacity(9 + settings.trigger.len() + record.topic.len());
            source.push_str("/sluice/");
            source.push_str(&settings.trigger);
            source.push('#');
            source.push_str(&record.topic);
            source
        }
    };
    headers.push((CE_SPECVERSION, HeaderValue::from_static("1.0")));
    push_owned(&mut headers, CE_ID, id.clone());
    push_owned(&mut headers, CE_SOURCE, source);
    match &settings.event_type {
        Some(event_type) => push_owned(&mut headers, CE_TYPE, event_type.clone()),
        None => headers.push((CE_TYPE, HeaderValue::from_static(KAFKA_EVENT_TYPE))),
    }
    push_owned(
        &mut headers,
        CE_SUBJECT,
        position("partition:", record.partition, "#", record.offset),
    );
    if let Some(time) = record.timestamp.and_then(rfc3339_millis) {
        push_owned(&mut headers, CE_TIME, time);
    }
    if let Some(key) = &record.key {
        let value = attribute_value(key, "key", &mut encoded);
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.push((CE_KEY, value.clone()));
            headers.push((CE_PARTITIONKEY, value));
        }
    }
    for (name, value) in &record.headers {
        let Some(value) = value else { continue };
        let attribute = format!("kafkaheader{}", header_suffix(name));
        if attribute.len() == "kafkaheader".len() {
            continue;
        }
        let value = attribute_value(value, &attribute, &mut encoded);
        push_encoded(&mut headers, &format!("ce-{attribute}"), value);
    }
    // The record's trace context reaches the function as the W3C headers themselves, as it
    // does through Knative.
    for name in TRACE_CONTEXT {
        if let Some(value) = record
            .header(name)
            .and_then(|v| HeaderValue::from_bytes(v).ok())
        {
            headers.push((HeaderName::from_static(name), value));
        }
    }
    headers.push((CE_KAFKAPARTITION, HeaderValue::from(record.partition)));
    headers.push((CE_KAFKAOFFSET, HeaderValue::from(record.offset)));
    if !encoded.is_empty() {
        push_text(
            &mut headers,
            &format!("ce-{BASE64_EXTENSION}"),
            &encoded.join(","),
        );
    }
    let content_type = record
        .header("content-type")
        .and_then(|v| HeaderValue::from_bytes(v).ok())
        .unwrap_or_else(|| {
            HeaderValue::try_from(settings.content_type.as_str())
                .unwrap_or(HeaderValue::from_static("application/octet-stream"))
        });
    headers.push((CONTENT_TYPE, content_type));
    headers.push((PREFER, HeaderValue::from_static("reply")));
    Event {
        id,
        headers,
        body: record.value.clone().unwrap_or_default(),
    }
}

/// A record whose content type is `application/cloudevents+json` is a structured-mode event:
/// it is sent as it is.
fn structured(record: &Record) -> Option<Event> {
    let content_type = record.header("content-type")?;
    if !is_structured(std::str::from_utf8(content_type).ok()?) {
        return None;
    }
    let body = record.value.clone().unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Head {
        id: String,
        #[serde(default)]
        traceparent: Option<String>,
        #[serde(default)]
        tracestate: Option<String>,
    }
    let head = serde_json::from_slice::<Head>(&body).ok();
    let mut headers = vec![
        (CONTENT_TYPE, HeaderValue::from_bytes(content_type).ok()?),
        (
            HeaderName::from_static("prefer"),
            HeaderValue::from_static("reply"),
        ),
    ];
    let id = match head {
        Some(head) => {
            // The distributed-tracing extension, as the W3C headers.
            for (name, value) in [
                ("traceparent", head.traceparent),
                ("tracestate", head.tracestate),
            ] {
                if let Some(value) = value.and_then(|v| HeaderValue::try_from(v).ok()) {
                    headers.push((HeaderName::from_static(name), value));
                }
            }
            head.id
        }
        None => format!("partition:{}/offset:{}", record.partition, record.offset),
    };
    Some(Event { id, headers, body })
}

/// Whether a content type is CloudEvents' structured JSON mode; compared in place, as it is
/// asked once per record.
pub fn is_structured(content_type: &str) -> bool {
    const STRUCTURED: &[u8] = b"application/cloudevents+json";
    content_type
        .trim_start()
        .as_bytes()
        .get(..STRUCTURED.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(STRUCTURED))
}

/// A record with `ce_specversion` is a binary-mode event of the Kafka protocol binding: its
/// `ce_` headers become `ce-` HTTP headers.
fn binary_binding(record: &Record) -> Option<Event> {
    record.header("ce_specversion")?;
    let mut headers = Vec::with_capacity(record.headers.len() + 2);
    let mut id = None;
    for (name, value) in &record.headers {
        let Some(value) = value else { continue };
        let lower = name.to_ascii_lowercase();
        if let Some(attribute) = lower.strip_prefix("ce_") {
            if attribute == "id" {
                id = Some(String::from_utf8_lossy(value).into_owned());
            }
            // The distributed-tracing extension also travels as the W3C header itself.
            if let Some(trace) = TRACE_CONTEXT.iter().find(|t| **t == attribute)
                && let Ok(value) = HeaderValue::from_bytes(value)
            {
                headers.push((HeaderName::from_static(trace), value));
            }
            // The Kafka binding carries UTF-8 text; the HTTP binding wants it percent-encoded.
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(format!("ce-{attribute}")),
                HeaderValue::try_from(percent_encode(value)),
            ) {
                headers.push((name, value));
            }
        } else if lower == "content-type"
            && let Ok(value) = HeaderValue::from_bytes(value)
        {
            headers.push((CONTENT_TYPE, value));
        }
    }
    headers.push((
        HeaderName::from_static("prefer"),
        HeaderValue::from_static("reply"),
    ));
    Some(Event {
        id: id
            .unwrap_or_else(|| position("partition:", record.partition, "/offset:", record.offset)),
        headers,
        body: record.value.clone().unwrap_or_default(),
    })
}

/// `[a-z0-9]` only, lower-cased: CloudEvents attribute names allow nothing else.
pub fn header_suffix(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The header value for an attribute: percent-encoded text, or base64 when not UTF-8 (and
/// the attribute's name is noted for the `sluicebase64` extension).
fn attribute_value(bytes: &[u8], attribute: &str, encoded: &mut Vec<String>) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => percent_encode(text.as_bytes()),
        Err(_) => {
            encoded.push(attribute.to_owned());
            BASE64.encode(bytes)
        }
    }
}

fn push_text(headers: &mut Vec<(HeaderName, HeaderValue)>, name: &str, value: &str) {
    push_encoded(headers, name, percent_encode(value.as_bytes()));
}

/// Adds text under a fixed name; the text is kept as it is when it needs no escapes.
fn push_owned(headers: &mut Vec<(HeaderName, HeaderValue)>, name: HeaderName, text: String) {
    let text = match Cow::from(percent_encoding::percent_encode(text.as_bytes(), ESCAPED)) {
        Cow::Borrowed(_) => text,
        Cow::Owned(encoded) => encoded,
    };
    if let Ok(value) = HeaderValue::try_from(text) {
        headers.push((name, value));
    }
}

fn push_encoded(headers: &mut Vec<(HeaderName, HeaderValue)>, name: &str, value: String) {
    // Both are built from checked characters: lower-case names and percent-encoded ASCII.
    if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
        headers.push((name, value));
    }
}

/// What the CloudEvents HTTP binding asks to percent-encode besides bytes outside ASCII:
/// controls, space, `"` and `%`.
const ESCAPED: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');

/// Percent-encodes what the CloudEvents HTTP binding requires: bytes outside printable
/// ASCII, space, `"` and `%`.
pub fn percent_encode(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, ESCAPED).to_string()
}

/// Reverses [`percent_encode`]; malformed escapes are kept as they are.
pub fn percent_decode(text: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(text).collect()
}

/// RFC 3339 in UTC with milliseconds, e.g. `2024-05-01T12:00:00.123Z`.
pub fn rfc3339_millis(millis: i64) -> Option<String> {
    // RFC 3339 has four-digit years: 9999-12-31T23:59:59.999Z is the last time it can write.
    if !(0..=253_402_300_799_999).contains(&millis) {
        return None;
    }
    let time = UNIX_EPOCH + Duration::from_millis(millis.unsigned_abs());
    let mut out = String::with_capacity(24);
    write!(out, "{}", humantime::format_rfc3339_millis(time)).ok()?;
    Some(out)
}

/// `<first><partition><second><offset>`, as in `partition:3/offset:42`.
fn position(first: &str, partition: i32, second: &str, offset: i64) -> String {
    let mut out = String::with_capacity(first.len() + second.len() + 31);
    let _ = write!(out, "{first}{partition}{second}{offset}");
    out
}

mod json;
#[cfg(test)]
mod tests;

pub use json::{is_json, write_structured};
