//! Ingress bodies from arbitrary bytes: a request's content type, `ce-*` and `Kafka-*`
//! headers and body, read into records. Reading one must never panic, whatever the request.

#![no_main]

#[path = "../../src/ingress/parse.rs"]
#[allow(dead_code)]
mod parse;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};

/// The content types that choose how a body is read.
const CONTENT_TYPES: [&str; 5] = [
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
    "text/plain",
    "application/json; charset=utf-8",
    "",
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The first byte picks the content type; then lines `name: value` up to an empty line
    // are headers; the rest is the body.
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    let content_type = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()];
    if !content_type.is_empty() {
        let _ = headers.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
    }
    let split = rest
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(rest.len());
    for line in rest[..split].split(|b| *b == b'\n') {
        if let Some(colon) = line.iter().position(|b| *b == b':')
            && let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&line[..colon]),
                HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
            )
        {
            let _ = headers.append(name, value);
        }
    }
    let body = Bytes::copy_from_slice(rest.get(split + 2..).unwrap_or_default());
    // A `?key=` taken from the body's first bytes, when they are text.
    let key = std::str::from_utf8(body.get(..body.len().min(8)).unwrap_or_default())
        .ok()
        .map(str::to_owned);
    let _ = parse::parse(&headers, key.as_deref(), body);
});
