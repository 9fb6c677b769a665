//! An event in the CloudEvents JSON format, for batches: the structured form of exactly the
//! event that goes out alone in binary mode.

use base64::Engine as _;
use hyper::header::CONTENT_TYPE;
use serde_json::value::RawValue;

use super::{BASE64, Event, TRACE_CONTEXT, is_structured, percent_decode};

/// Appends `event` as one JSON object: its `ce-` attributes as members (text, as the HTTP
/// binding carried them), the content type as `datacontenttype`, the W3C trace context as
/// the distributed-tracing extension, and the body as `data` when the content type is JSON
/// and the body is JSON, else as `data_base64`. A record that was a structured event already
/// goes as it is.
pub fn write_structured(event: &Event, out: &mut Vec<u8>) {
    let content_type = event
        .headers
        .iter()
        .find(|(name, _)| *name == CONTENT_TYPE)
        .and_then(|(_, value)| value.to_str().ok());
    if content_type.is_some_and(is_structured) {
        let body = event.body.trim_ascii();
        if body.first() == Some(&b'{') && serde_json::from_slice::<&RawValue>(body).is_ok() {
            out.extend_from_slice(body);
            return;
        }
    }
    out.push(b'{');
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, name: &str| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_string(out, name);
        out.push(b':');
    };
    // Attribute names written, so a name that came twice (`ce_x` and `CE_X` in the Kafka
    // binding) is written once; `data` and `data_base64` come only from the body.
    let mut written: Vec<&str> = Vec::with_capacity(event.headers.len());
    for (name, value) in &event.headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        if written.contains(&attribute) || attribute == "data" || attribute == "data_base64" {
            continue;
        }
        written.push(attribute);
        member(out, attribute);
        let decoded = percent_decode(value.to_str().unwrap_or_default());
        write_string(out, &String::from_utf8_lossy(&decoded));
    }
    if !written.contains(&"specversion") {
        member(out, "specversion");
        write_string(out, "1.0");
    }
    if !written.contains(&"id") {
        member(out, "id");
        write_string(out, &event.id);
    }
    for name in TRACE_CONTEXT {
        if written.contains(&name) {
            continue;
        }
        if let Some(value) = event
            .headers
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .and_then(|(_, v)| v.to_str().ok())
        {
            member(out, name);
            write_string(out, value);
        }
    }
    if let Some(content_type) = content_type
        && !written.contains(&"datacontenttype")
    {
        member(out, "datacontenttype");
        write_string(out, content_type);
    }
    if !event.body.is_empty() {
        let body = event.body.trim_ascii();
        if content_type.is_some_and(is_json) && serde_json::from_slice::<&RawValue>(body).is_ok() {
            member(out, "data");
            out.extend_from_slice(body);
        } else {
            member(out, "data_base64");
            out.push(b'"');
            let start = out.len();
            out.resize(
                start + base64::encoded_len(event.body.len(), true).unwrap_or(0),
                0,
            );
            let written = BASE64
                .encode_slice(&event.body, &mut out[start..])
                .unwrap_or(0);
            out.truncate(start + written);
            out.push(b'"');
        }
    }
    out.push(b'}');
}

/// Whether a content type is JSON: `application/json`, `text/json` or any `+json` type.
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}
