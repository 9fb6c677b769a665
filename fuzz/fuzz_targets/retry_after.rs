//! `Retry-After` parsing over arbitrary text and clocks: delay-seconds or an HTTP date,
//! never a panic or an overflow, and never a delay from a date in the past.

#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use sluice::deliver::retry::parse_retry_after;

fuzz_target!(|input: (String, u32)| {
    let (value, now) = input;
    let now = UNIX_EPOCH + Duration::from_secs(u64::from(now));
    let _ = parse_retry_after(&value, now);
});
