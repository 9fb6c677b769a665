//! Trigger filters, as Knative's Trigger has them: `exact`, `prefix`, `suffix`, `all`, `any`,
//! `not` and `cesql` (CloudEvents SQL, [`cesql`]), and the older `filter.attributes` form.
//!
//! A filter sees the event sluice would deliver: its CloudEvent attributes and extensions
//! (`key`, `partitionkey`, `kafkaheader*`, or a CloudEvent record's own attributes). Matching
//! is case-sensitive; a missing attribute, or a CESQL evaluation error, is no match.
//!
//! Like Knative, each filter comes to pass, fail or no verdict. Entries are AND-ed, `any`
//! OR-ed, and a filter without a verdict (an empty `all` or `any`) leaves the other side's
//! verdict standing; an event with no verdict at all is delivered.

pub mod cesql;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use hyper::header::CONTENT_TYPE;
use serde_json::Value as Json;

use crate::event::{Event, is_structured, percent_decode};

/// One filter of a trigger's `filters`, or one nested in `all`, `any` or `not`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// The attribute equals the value.
    Exact {
        /// The attribute's name.
        attribute: String,
        /// What it must equal.
        value: String,
    },
    /// The attribute starts with the value.
    Prefix {
        /// The attribute's name.
        attribute: String,
        /// What it must start with.
        value: String,
    },
    /// The attribute ends with the value.
    Suffix {
        /// The attribute's name.
        attribute: String,
        /// What it must end with.
        value: String,
    },
    /// Every one passes.
    All(Vec<Filter>),
    /// At least one passes.
    Any(Vec<Filter>),
    /// The filter fails.
    Not(Box<Filter>),
    /// The expression evaluates to true, without an error.
    Cesql(Cesql),
    /// Knative's older `filter: {attributes: {...}}`: each attribute is present, and equal to
    /// its value unless the value is empty (which matches any value).
    Attributes(Vec<(String, String)>),
}

impl Filter {
    /// The filter as it is written in the config.
    pub fn to_json(&self) -> Json {
        let one = |dialect: &str, attribute: &str, value: &str| serde_json::json!({ dialect: { attribute: value } });
        match self {
            Self::Exact { attribute, value } => one("exact", attribute, value),
            Self::Prefix { attribute, value } => one("prefix", attribute, value),
            Self::Suffix { attribute, value } => one("suffix", attribute, value),
            Self::All(filters) => {
                serde_json::json!({ "all": filters.iter().map(Self::to_json).collect::<Vec<_>>() })
            }
            Self::Any(filters) => {
                serde_json::json!({ "any": filters.iter().map(Self::to_json).collect::<Vec<_>>() })
            }
            Self::Not(filter) => serde_json::json!({ "not": filter.to_json() }),
            Self::Cesql(cesql) => serde_json::json!({ "cesql": cesql.text }),
            Self::Attributes(pairs) => {
                let attributes: serde_json::Map<String, Json> = pairs
                    .iter()
                    .map(|(name, value)| (name.clone(), Json::from(value.as_str())))
                    .collect();
                serde_json::json!({ "filter": { "attributes": attributes } })
            }
        }
    }
}

/// A CESQL filter: the expression as written, and parsed once, at load.
#[derive(Debug, Clone)]
pub struct Cesql {
    text: String,
    expression: Arc<cesql::Expression>,
}

impl Cesql {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, cesql::ParseError> {
        Ok(Self {
            expression: Arc::new(cesql::Expression::parse(text)?),
            text: text.to_owned(),
        })
    }
}

/// Two filters are the same when their expressions are written the same.
impl PartialEq for Cesql {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for Cesql {}

/// A filter's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Fail,
    /// Nothing to decide on: an empty `all` or `any`.
    None,
}

impl Verdict {
    fn and(self, other: Self) -> Self {
        match (self, other) {
            (Self::None, v) | (v, Self::None) => v,
            (Self::Pass, Self::Pass) => Self::Pass,
            _ => Self::Fail,
        }
    }

    fn or(self, other: Self) -> Self {
        match (self, other) {
            (Self::None, v) | (v, Self::None) => v,
            (Self::Fail, Self::Fail) => Self::Fail,
            _ => Self::Pass,
        }
    }

    fn of(pass: bool) -> Self {
        if pass { Self::Pass } else { Self::Fail }
    }
}

impl Filter {
    fn verdict(&self, event: &dyn cesql::Event) -> Verdict {
        match self {
            Self::Exact { attribute, value } => {
                Verdict::of(text(event, attribute).is_some_and(|v| v == *value))
            }
            Self::Prefix { attribute, value } => {
                Verdict::of(text(event, attribute).is_some_and(|v| v.starts_with(value.as_str())))
            }
            Self::Suffix { attribute, value } => {
                Verdict::of(text(event, attribute).is_some_and(|v| v.ends_with(value.as_str())))
            }
            Self::All(filters) => all(filters, event),
            Self::Any(filters) => any(filters, event),
            Self::Not(filter) => match filter.verdict(event) {
                Verdict::Pass => Verdict::Fail,
                Verdict::Fail => Verdict::Pass,
                Verdict::None => Verdict::None,
            },
            Self::Cesql(cesql) => {
                let (value, errors) = cesql.expression.evaluate(event);
                Verdict::of(errors.is_empty() && value == cesql::Value::Boolean(true))
            }
            Self::Attributes(attributes) => Verdict::of(attributes.iter().all(|(name, want)| {
                text(event, name).is_some_and(|got| want.is_empty() || got == *want)
            })),
        }
    }
}

/// AND over `filters`, stopping at the first failure: nothing after it can make the whole
/// pass.
fn all(filters: &[Filter], event: &dyn cesql::Event) -> Verdict {
    let mut verdict = Verdict::None;
    for filter in filters {
        verdict = verdict.and(filter.verdict(event));
        if verdict == Verdict::Fail {
            break;
        }
    }
    verdict
}

/// OR over `filters`, stopping at the first pass.
fn any(filters: &[Filter], event: &dyn cesql::Event) -> Verdict {
    let mut verdict = Verdict::None;
    for filter in filters {
        verdict = verdict.or(filter.verdict(event));
        if verdict == Verdict::Pass {
            break;
        }
    }
    verdict
}

/// An attribute as text, as the string dialects compare it.
fn text(event: &dyn cesql::Event, name: &str) -> Option<String> {
    Some(match event.attribute(name)? {
        cesql::Value::String(text) => text,
        cesql::Value::Integer(n) => n.to_string(),
        cesql::Value::Boolean(b) => b.to_string(),
    })
}

/// A trigger's `filters` (AND-ed), or its older `filter`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filters(Vec<Filter>);

impl Filters {
    /// The filters, AND-ed.
    pub fn new(filters: Vec<Filter>) -> Self {
        Self(filters)
    }

    /// Whether there are none: every event passes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The filters in the config's own shape, for the status report.
    pub fn to_json(&self) -> Json {
        Json::Array(self.0.iter().map(Filter::to_json).collect())
    }

    /// Whether `event` is delivered.
    pub fn matches(&self, event: &Event) -> bool {
        if self.0.is_empty() {
            return true;
        }
        all(&self.0, &Attributes::of(event)) != Verdict::Fail
    }
}

/// The attributes of an event as sluice delivers it: `ce-*` headers (percent-decoded) and
/// `Content-Type` in binary mode, the JSON object's members in structured mode.
#[derive(Debug)]
pub enum Attributes<'a> {
    /// A binary-mode event's headers.
    Binary(&'a Event),
    /// A structured-mode event's members.
    Structured(serde_json::Map<String, Json>),
}

impl<'a> Attributes<'a> {
    /// The view of `event`.
    pub fn of(event: &'a Event) -> Self {
        let structured = event
            .headers
            .iter()
            .find(|(name, _)| *name == CONTENT_TYPE)
            .and_then(|(_, v)| v.to_str().ok())
            .filter(|v| is_structured(v))
            .and_then(|_| serde_json::from_slice::<Json>(&event.body).ok());
        match structured {
            Some(Json::Object(members)) => Self::Structured(members),
            _ => Self::Binary(event),
        }
    }
}

impl cesql::Event for Attributes<'_> {
    fn attribute(&self, name: &str) -> Option<cesql::Value> {
        let event = match self {
            Self::Binary(event) => event,
            Self::Structured(map) => {
                if name == "data" || name == "data_base64" {
                    return None;
                }
                return match map.get(name)? {
                    Json::String(s) => Some(cesql::Value::String(s.clone())),
                    Json::Bool(b) => Some(cesql::Value::Boolean(*b)),
                    Json::Number(n) => match n.as_i64().and_then(|n| i32::try_from(n).ok()) {
                        Some(n) => Some(cesql::Value::Integer(n)),
                        None => Some(cesql::Value::String(n.to_string())),
                    },
                    Json::Null => None,
                    other => Some(cesql::Value::String(other.to_string())),
                };
            }
        };
        if name == "datacontenttype" {
            return event
                .headers
                .iter()
                .find(|(n, _)| *n == CONTENT_TYPE)
                .map(|(_, v)| {
                    cesql::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned())
                });
        }
        event
            .headers
            .iter()
            .find(|(n, _)| n.as_str().strip_prefix("ce-") == Some(name))
            .map(|(_, v)| {
                let text = v.to_str().unwrap_or_default();
                // Most values need no decoding; those are copied once, not decoded.
                if !text.contains('%') {
                    return cesql::Value::String(text.to_owned());
                }
                let decoded = percent_decode(text);
                cesql::Value::String(
                    String::from_utf8(decoded)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                )
            })
    }
}
