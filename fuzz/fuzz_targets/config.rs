//! The config loader over arbitrary text: every input is a config or a list of problems,
//! never a panic, whatever its YAML, keys, durations, URLs or CESQL filters.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = sluice::config::parse(&text, "fuzz.yaml");
});
