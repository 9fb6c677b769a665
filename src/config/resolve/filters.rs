//! A trigger's `filters` (and the older `filter`), checked and built once at load: a CESQL
//! expression is parsed here, so a bad one is a config problem with its position.

use super::*;
use crate::filter::{Cesql, Filter, Filters};

const DIALECTS: &str = "`exact`, `prefix`, `suffix`, `all`, `any`, `not` or `cesql`";

/// Filters are nested at most this deep, so a hostile file cannot overflow the stack.
const MAX_DEPTH: usize = 32;

/// `filters`, or else `filter`; Knative uses `filters` when both are set.
pub(super) fn filters(
    report: &mut Report<'_>,
    filters: Option<&Value>,
    legacy: Option<&Value>,
    path: &str,
) -> Filters {
    let key = |k: &str| join_key(path, k);
    match (filters, legacy) {
        (Some(Value::Null) | None, Some(legacy)) => Filters::new(
            attributes(report, legacy, &key("filter"))
                .into_iter()
                .collect(),
        ),
        (Some(Value::Array(items)), _) => Filters::new(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| filter(report, item, &join_index(&key("filters"), i), 0))
                .collect(),
        ),
        (Some(Value::Null) | None, None) => Filters::default(),
        (Some(other), _) => {
            report.add(
                &key("filters"),
                format!("expected a list of filters, found {}", describe(other)),
            );
            Filters::default()
        }
    }
}

/// `filter: {attributes: {name: value, ...}}`.
fn attributes(report: &mut Report<'_>, value: &Value, path: &str) -> Option<Filter> {
    let shape = "expected `{attributes: {NAME: VALUE, ...}}`";
    let Value::Object(map) = value else {
        report.add(path, format!("{shape}, found {}", describe(value)));
        return None;
    };
    let mut out = Vec::new();
    for (key, value) in map {
        let key_path = join_key(path, key);
        if key != "attributes" {
            report.add(&key_path, format!("unknown key `{key}`: {shape}"));
            continue;
        }
        let Value::Object(attributes) = value else {
            report.add(&key_path, format!("{shape}, found {}", describe(value)));
            continue;
        };
        for (name, value) in attributes {
            let at = join_key(&key_path, name);
            check_attribute(report, &at, name);
            match value {
                Value::String(text) => out.push((name.clone(), text.clone())),
                other => report.add(
                    &at,
                    format!(
                        "expected the attribute's value as text, found {}",
                        describe(other)
                    ),
                ),
            }
        }
    }
    Some(Filter::Attributes(out))
}

/// One filter: a mapping with exactly one dialect.
fn filter(report: &mut Report<'_>, value: &Value, path: &str, depth: usize) -> Option<Filter> {
    if depth >= MAX_DEPTH {
        report.add(
            path,
            format!("filters are nested more than {MAX_DEPTH} deep"),
        );
        return None;
    }
    let Value::Object(map) = value else {
        report.add(
            path,
            format!(
                "expected a filter with one of {DIALECTS}, found {}",
                describe(value)
            ),
        );
        return None;
    };
    let mut entries = map.iter();
    let (Some((dialect, value)), None) = (entries.next(), entries.next()) else {
        let found = if map.is_empty() {
            "none".to_owned()
        } else {
            map.keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        report.add(
            path,
            format!("a filter has exactly one of {DIALECTS}; found {found}"),
        );
        return None;
    };
    let at = join_key(path, dialect);
    match dialect.as_str() {
        "exact" | "prefix" | "suffix" => {
            let (attribute, text) = single(report, value, &at, dialect)?;
            Some(match dialect.as_str() {
                "exact" => Filter::Exact {
                    attribute,
                    value: text,
                },
                "prefix" => Filter::Prefix {
                    attribute,
                    value: text,
                },
                _ => Filter::Suffix {
                    attribute,
                    value: text,
                },
            })
        }
        "all" | "any" => {
            let Value::Array(items) = value else {
                report.add(
                    &at,
                    format!("expected a list of filters, found {}", describe(value)),
                );
                return None;
            };
            let nested: Vec<Filter> = items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| filter(report, item, &join_index(&at, i), depth + 1))
                .collect();
            Some(if dialect == "all" {
                Filter::All(nested)
            } else {
                Filter::Any(nested)
            })
        }
        "not" => filter(report, value, &at, depth + 1).map(|f| Filter::Not(Box::new(f))),
        "cesql" => {
            let Value::String(text) = value else {
                report.add(
                    &at,
                    format!(
                        "expected a CESQL expression as text, found {}",
                        describe(value)
                    ),
                );
                return None;
            };
            match Cesql::parse(text) {
                Ok(cesql) => Some(Filter::Cesql(cesql)),
                Err(err) => {
                    report.add(&at, format!("invalid CESQL expression: {err}"));
                    None
                }
            }
        }
        other => {
            report.add(
                &at,
                format!("unknown filter dialect `{other}`; expected one of {DIALECTS}"),
            );
            None
        }
    }
}

/// The one `attribute: value` of an `exact`, `prefix` or `suffix` filter.
fn single(
    report: &mut Report<'_>,
    value: &Value,
    path: &str,
    dialect: &str,
) -> Option<(String, String)> {
    let Value::Object(map) = value else {
        report.add(
            path,
            format!("expected `{{ATTRIBUTE: VALUE}}`, found {}", describe(value)),
        );
        return None;
    };
    let mut entries = map.iter();
    let (Some((name, value)), None) = (entries.next(), entries.next()) else {
        report.add(
            path,
            format!("`{dialect}` takes exactly one attribute; use `all` for more"),
        );
        return None;
    };
    let at = join_key(path, name);
    check_attribute(report, &at, name);
    match value {
        Value::String(text) if !text.is_empty() => Some((name.clone(), text.clone())),
        Value::String(_) => {
            report.add(&at, "must not be empty");
            None
        }
        other => {
            report.add(
                &at,
                format!(
                    "expected the attribute's value as text, found {}",
                    describe(other)
                ),
            );
            None
        }
    }
}

/// CloudEvents attribute names are lower-case letters and digits.
fn check_attribute(report: &mut Report<'_>, path: &str, name: &str) {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        report.add(
            path,
            format!(
                "invalid attribute name {name:?}: CloudEvents attribute names are lower-case letters and digits"
            ),
        );
    }
}
