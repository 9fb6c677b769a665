//! Arbitrary request frames, decoded and dispatched by the broker on the memory engine.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_fuzz::Broker;

static BROKER: OnceLock<Broker> = OnceLock::new();

fuzz_target!(|body: &[u8]| {
    Broker::get(&BROKER, "memory://fuzz/").request(body);
});
