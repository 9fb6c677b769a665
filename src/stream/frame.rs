//! A record as the JSON message a stream's clients receive.

use base64::Engine as _;
use bytes::Bytes;
use rdkafka::message::{Headers, Message};
use serde_json::{Map, Value};

/// One record, as sent to every client of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The record's partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The position right after it, `P:O,...`.
    pub position: String,
    /// The JSON message, position included.
    pub json: Bytes,
}

/// A record's JSON members, but for its position: `{"type":"record", topic, partition,
/// offset, timestamp, key, headers, value}`, with bytes that are not UTF-8 in `key_base64`,
/// `value_base64` and `headers_base64` instead.
pub fn members(message: &impl Message) -> Map<String, Value> {
    let mut object = Map::with_capacity(9);
    let _ = object.insert("type".into(), Value::from("record"));
    let _ = object.insert("topic".into(), Value::from(message.topic()));
    let _ = object.insert("partition".into(), Value::from(message.partition()));
    let _ = object.insert("offset".into(), Value::from(message.offset()));
    let _ = object.insert(
        "timestamp".into(),
        message
            .timestamp()
            .to_millis()
            .map_or(Value::Null, Value::from),
    );
    crate::cli::consume::put_bytes(&mut object, "key", message.key());
    if let Some(headers) = message.headers() {
        let mut text = Map::new();
        let mut binary = Map::new();
        for header in headers.iter() {
            let value = header.value.unwrap_or_default();
            match std::str::from_utf8(value) {
                Ok(value) => {
                    let _ = text.insert(header.key.to_owned(), Value::from(value));
                }
                Err(_) => {
                    let _ = binary.insert(
                        header.key.to_owned(),
                        Value::from(base64::engine::general_purpose::STANDARD.encode(value)),
                    );
                }
            }
        }
        let _ = object.insert("headers".into(), Value::Object(text));
        if !binary.is_empty() {
            let _ = object.insert("headers_base64".into(), Value::Object(binary));
        }
    } else {
        let _ = object.insert("headers".into(), Value::Object(Map::new()));
    }
    crate::cli::consume::put_bytes(&mut object, "value", message.payload());
    object
}

/// A record's message with its position.
pub fn frame(message: &impl Message, members: &Map<String, Value>, position: String) -> Frame {
    let mut object = members.clone();
    let _ = object.insert("position".into(), Value::from(position.as_str()));
    Frame {
        partition: message.partition(),
        offset: message.offset(),
        position,
        json: Bytes::from(Value::Object(object).to_string()),
    }
}

/// A control message: `{"type": kind, ...fields}`.
pub fn control(kind: &str, fields: &[(&str, Value)]) -> Bytes {
    let mut object = Map::with_capacity(fields.len() + 1);
    let _ = object.insert("type".into(), Value::from(kind));
    for (name, value) in fields {
        let _ = object.insert((*name).to_owned(), value.clone());
    }
    Bytes::from(Value::Object(object).to_string())
}
