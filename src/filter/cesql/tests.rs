//! Tests of the CESQL parser and evaluator.

use super::{ErrorKind, Event, Expression, Value};

mod limits;
mod props;
mod spec;
mod tck;

/// An event made of a list of attributes.
#[derive(Debug, Clone, Default)]
pub(super) struct TestEvent(pub(super) Vec<(String, Value)>);

impl TestEvent {
    /// An event with all the required and optional context attributes, and no extensions.
    pub(super) fn full() -> TestEvent {
        let s = |v: &str| Value::String(v.to_owned());
        TestEvent(vec![
            ("specversion".to_owned(), s("1.0")),
            ("id".to_owned(), s("A234-1234-1234")),
            ("source".to_owned(), s("/mycontext")),
            ("type".to_owned(), s("com.example.someevent")),
            ("subject".to_owned(), s("topic")),
            ("time".to_owned(), s("2018-04-05T17:31:00Z")),
            ("datacontenttype".to_owned(), s("text/xml")),
            ("dataschema".to_owned(), s("http://example.com/schema")),
        ])
    }

    /// Sets an attribute, replacing any earlier value.
    pub(super) fn set(&mut self, name: &str, value: Value) {
        self.0.retain(|(n, _)| n != name);
        self.0.push((name.to_owned(), value));
    }

    pub(super) fn with(mut self, name: &str, value: Value) -> TestEvent {
        self.set(name, value);
        self
    }
}

impl Event for TestEvent {
    fn attribute(&self, name: &str) -> Option<Value> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

/// Parses and evaluates `text` against `event`, returning the value and the kinds of the errors.
pub(super) fn eval_on(text: &str, event: &TestEvent) -> (Value, Vec<ErrorKind>) {
    let expression = match Expression::parse(text) {
        Ok(e) => e,
        Err(e) => panic!("{text:?} should parse, but: {e}"),
    };
    let (value, errors) = expression.evaluate(event);
    (value, errors.iter().map(|e| e.kind).collect())
}

/// Evaluates `text` against [`TestEvent::full`].
pub(super) fn eval(text: &str) -> (Value, Vec<ErrorKind>) {
    eval_on(text, &TestEvent::full())
}
