//! Record → CloudEvent conversion over arbitrary keys, values, header names and values,
//! offsets and timestamps, with and without the trigger's overrides: never a panic, and
//! every header the event carries is one HTTP can send.

#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice::event::{EventSettings, Record, from_record};

type Input = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
    (i32, i64, Option<i64>),
    (String, Option<String>, Option<String>, String),
);

fuzz_target!(|input: Input| {
    let (key, value, headers, (partition, offset, timestamp), settings) = input;
    let (trigger, source, event_type, content_type) = settings;
    let record = Record {
        topic: Arc::from("fuzz"),
        partition,
        offset,
        timestamp,
        key: key.map(Bytes::from),
        value: value.map(Bytes::from),
        headers: headers
            .into_iter()
            .map(|(name, value)| (name, value.map(Bytes::from)))
            .collect(),
    };
    let settings = EventSettings {
        trigger,
        source,
        event_type,
        content_type,
    };
    let event = from_record(&record, &settings);
    for (name, value) in &event.headers {
        assert!(!name.as_str().is_empty());
        let _ = value.as_bytes();
    }
    let _ = event.trace().count();
});
