//! A request body as records: a CloudEvent in binary or structured mode, a batch of them, or
//! a plain body. CloudEvents are stored in the Kafka protocol binding's binary mode (`ce_`
//! headers, the content type in `content-type`, the key from `partitionkey`), so a trigger
//! on the topic delivers the same event.
//!
//! It depends on no other part of sluice, so that its fuzz target (`fuzz/`) builds it alone.

use base64::Engine as _;
use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderMap};
use serde_json::{Map, Value};

/// The content type of a structured event.
const STRUCTURED: &str = "application/cloudevents+json";

/// Reverses the CloudEvents HTTP binding's percent-encoding.
fn percent_decode(text: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(text).collect()
}

/// The content type of a batch of structured events.
const BATCH: &str = "application/cloudevents-batch+json";

/// Where an `Kafka-Header-<name>` header's name starts.
const KAFKA_HEADER: &str = "kafka-header-";

/// One record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The key; `None` for no key.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Bytes,
    /// Headers, in order.
    pub headers: Vec<(String, Bytes)>,
    /// The CloudEvent's id, when the record is one.
    pub id: Option<String>,
}

/// What a request body holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// One record.
    One(Outgoing),
    /// A batch of events, one record each.
    Batch(Vec<Outgoing>),
}

/// Why a body cannot be stored, for a 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// A whole-body problem.
    #[error("{0}")]
    Body(String),
    /// Problems of single events in a batch, by index; nothing of the batch is stored.
    #[error("{} of the batch's events are malformed", .0.len())]
    Events(Vec<(usize, String)>),
}

/// Reads a request with `headers` and `body`; `key` is the `?key=` query parameter.
pub fn parse(headers: &HeaderMap, key: Option<&str>, body: Bytes) -> Result<Body, Malformed> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == BATCH {
        return batch(&body);
    }
    if essence == STRUCTURED {
        let value: Value = serde_json::from_slice(&body)
            .map_err(|err| Malformed::Body(format!("the body is not JSON: {err}")))?;
        let Value::Object(event) = value else {
            return Err(Malformed::Body(
                "a structured CloudEvent is a JSON object".to_owned(),
            ));
        };
        return structured(event).map(Body::One).map_err(Malformed::Body);
    }
    if headers.contains_key("ce-specversion")
        || headers.keys().any(|name| name.as_str().starts_with("ce-"))
    {
        return binary(headers, body)
            .map(Body::One)
            .map_err(Malformed::Body);
    }
    plain(headers, key, body)
        .map(Body::One)
        .map_err(Malformed::Body)
}

/// A batch: a JSON array of structured events; any malformed event refuses the whole batch,
/// so that nothing of it is stored.
fn batch(body: &[u8]) -> Result<Body, Malformed> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| Malformed::Body(format!("the body is not JSON: {err}")))?;
    let Value::Array(events) = value else {
        return Err(Malformed::Body(
            "a batch is a JSON array of structured CloudEvents".to_owned(),
        ));
    };
    let mut records = Vec::with_capacity(events.len());
    let mut problems = Vec::new();
    for (index, event) in events.into_iter().enumerate() {
        let outcome = match event {
            Value::Object(event) => structured(event),
            _ => Err("an event of a batch is a JSON object".to_owned()),
        };
        match outcome {
            Ok(record) => records.push(record),
            Err(why) => problems.push((index, why)),
        }
    }
    if !problems.is_empty() {
        return Err(Malformed::Events(problems));
    }
    if records.is_empty() {
        return Err(Malformed::Body("the batch is empty".to_owned()));
    }
    Ok(Body::Batch(records))
}

/// A CloudEvents attribute name: `[a-z0-9]`, 1 to 20 characters.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 20
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(format!(
            "invalid attribute name {name:?}: CloudEvents attribute names are 1 to 20 lower-case letters or digits"
        ));
    }
    Ok(())
}

/// The attributes every event must have, checked once all are known.
fn check_required(get: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    match get("specversion").as_deref() {
        Some("1.0") => {}
        Some(other) => {
            return Err(format!(
                "unsupported specversion {other:?}: only \"1.0\" is accepted"
            ));
        }
        None => return Err("missing required attribute specversion".to_owned()),
    }
    for name in ["id", "source", "type"] {
        match get(name) {
            Some(value) if !value.is_empty() => {}
            Some(_) => return Err(format!("attribute {name} must not be empty")),
            None => return Err(format!("missing required attribute {name}")),
        }
    }
    Ok(())
}

/// A binary-mode event: `ce-*` headers (percent-decoded), the content type, the body.
fn binary(headers: &HeaderMap, body: Bytes) -> Result<Outgoing, String> {
    let mut out = Vec::new();
    let mut attributes: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        check_name(attribute)?;
        let decoded = String::from_utf8(percent_decode(
            value
                .to_str()
                .map_err(|_| format!("attribute {attribute}: not text"))?,
        ))
        .map_err(|_| format!("attribute {attribute}: not UTF-8 once percent-decoded"))?;
        if attributes.iter().any(|(n, _)| n == attribute) {
            return Err(format!("attribute {attribute} is given twice"));
        }
        attributes.push((attribute.to_owned(), decoded));
    }
    let get = |name: &str| {
        attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    check_required(get)?;
    let mut key = None;
    let mut id = None;
    for (name, value) in &attributes {
        if name == "partitionkey" {
            key = Some(Bytes::from(value.clone()));
        }
        if name == "id" {
            id = Some(value.clone());
        }
        out.push((format!("ce_{name}"), Bytes::from(value.clone())));
    }
    if let Some(content_type) = headers.get(CONTENT_TYPE) {
        out.push((
            "content-type".to_owned(),
            Bytes::copy_from_slice(content_type.as_bytes()),
        ));
    }
    Ok(Outgoing {
        key,
        value: body,
        headers: out,
        id,
    })
}

/// Whether data with this content type is JSON, which the JSON event format carries as JSON.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// A structured-mode event (the JSON event format), turned into the binary mode.
fn structured(event: Map<String, Value>) -> Result<Outgoing, String> {
    let mut attributes: Vec<(String, String)> = Vec::new();
    let mut data = None;
    let mut data_base64 = None;
    for (name, value) in event {
        match name.as_str() {
            "data" => data = Some(value),
            "data_base64" => data_base64 = Some(value),
            _ => {
                check_name(&name)?;
                let text = match value {
                    // A null attribute is an absent one.
                    Value::Null => continue,
                    Value::String(text) => text,
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    Value::Array(_) | Value::Object(_) => {
                        return Err(format!(
                            "attribute {name} must be a string, number or boolean"
                        ));
                    }
                };
                attributes.push((name, text));
            }
        }
    }
    let get = |name: &str| {
        attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    check_required(get)?;
    let mut content_type = get("datacontenttype");
    let value = match (data, data_base64) {
        (Some(_), Some(Value::Null)) | (None, Some(Value::Null)) | (None, None) => None,
        (Some(Value::Null), None) => None,
        (Some(_), Some(_)) => return Err("set either data or data_base64, not both".to_owned()),
        (None, Some(Value::String(encoded))) => Some(Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|err| format!("data_base64 is not base64: {err}"))?,
        )),
        (None, Some(_)) => return Err("data_base64 must be a string".to_owned()),
        (Some(data), None) => {
            // The JSON format implies application/json when data is present without a type.
            let kind = content_type.get_or_insert_with(|| "application/json".to_owned());
            match data {
                Value::String(text) if !is_json(kind) => Some(Bytes::from(text)),
                other => Some(Bytes::from(
                    serde_json::to_vec(&other).map_err(|err| err.to_string())?,
                )),
            }
        }
    };
    let mut headers = Vec::with_capacity(attributes.len() + 1);
    let mut key = None;
    let mut id = None;
    for (name, value) in attributes {
        match name.as_str() {
            // The Kafka binding carries the content type in `content-type`.
            "datacontenttype" => continue,
            "partitionkey" => key = Some(Bytes::from(value.clone())),
            "id" => id = Some(value.clone()),
            _ => {}
        }
        headers.push((format!("ce_{name}"), Bytes::from(value)));
    }
    if let Some(content_type) = content_type {
        headers.push(("content-type".to_owned(), Bytes::from(content_type)));
    }
    Ok(Outgoing {
        key,
        value: value.unwrap_or_default(),
        headers,
        id,
    })
}

/// A plain body: the value; the key from `?key=` or `Kafka-Key`; headers from
/// `Kafka-Header-<name>`, and the content type as `content-type`.
fn plain(headers: &HeaderMap, key: Option<&str>, body: Bytes) -> Result<Outgoing, String> {
    let key = match key {
        Some(key) => Some(Bytes::copy_from_slice(key.as_bytes())),
        None => headers
            .get("kafka-key")
            .map(|v| Bytes::copy_from_slice(v.as_bytes())),
    };
    let mut out = Vec::new();
    for (name, value) in headers {
        if let Some(header) = name.as_str().strip_prefix(KAFKA_HEADER) {
            if header.is_empty() {
                return Err("a Kafka-Header- header needs a name after the dash".to_owned());
            }
            out.push((header.to_owned(), Bytes::copy_from_slice(value.as_bytes())));
        }
    }
    if let Some(content_type) = headers.get(CONTENT_TYPE) {
        out.push((
            "content-type".to_owned(),
            Bytes::copy_from_slice(content_type.as_bytes()),
        ));
    }
    Ok(Outgoing {
        key,
        value: body,
        headers: out,
        id: None,
    })
}

#[cfg(test)]
mod tests;
