//! Arbitrary request frames, decoded and dispatched by the broker on the SQLite engine.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_fuzz::Broker;

static BROKER: OnceLock<Broker> = OnceLock::new();

fuzz_target!(|body: &[u8]| {
    let database = std::env::temp_dir().join(format!("sluice-fuzz-{}.db", std::process::id()));
    let url = format!("sqlite:///{}", database.display());
    Broker::get(&BROKER, &url).request(body);
});
