//! CESQL expressions from arbitrary bytes: parsing and evaluating one must never panic or
//! overflow the stack, whatever the text.

#![no_main]

// The module with its own submodules, as sluice builds it.
#[path = "../../src/filter"]
#[allow(dead_code)]
mod filter {
    pub mod cesql;
}

use filter::cesql::{Event, Expression, Value};

/// A few attributes of each type, so evaluation reaches attribute access and casts.
struct Sample;

impl Event for Sample {
    fn attribute(&self, name: &str) -> Option<Value> {
        match name {
            "specversion" => Some(Value::String("1.0".into())),
            "id" => Some(Value::String("a-1".into())),
            "source" => Some(Value::String("/shop".into())),
            "type" => Some(Value::String("order.created".into())),
            "count" => Some(Value::Integer(-2_147_483_648)),
            "vip" => Some(Value::Boolean(true)),
            "number" => Some(Value::String("42".into())),
            _ => None,
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(expression) = Expression::parse(text)
    {
        let _ = expression.evaluate(&Sample);
    }
});
