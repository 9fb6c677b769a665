//! A trigger's `filters` and the older `filter`.

use super::*;
use crate::filter::{Cesql, Filter, Filters};

fn trigger_with(filters: &str) -> String {
    format!(
        "triggers:\n  - name: t\n    topics: [orders]\n    url: http://127.0.0.1:8081/\n{filters}"
    )
}

fn exact(attribute: &str, value: &str) -> Filter {
    Filter::Exact {
        attribute: attribute.into(),
        value: value.into(),
    }
}

#[test]
fn every_dialect_is_read_into_its_filter() {
    let text = trigger_with(
        r##"    filters:
      - exact: {type: order.created}
      - prefix: {source: /shop}
      - suffix: {subject: "#7"}
      - any:
          - exact: {kafkaheadertier: gold}
          - not: {exact: {kafkaheadertier: silver}}
      - all: []
      - cesql: "EXISTS key"
"##,
    );
    let config = ok(&text);
    let expected = Filters::new(vec![
        exact("type", "order.created"),
        Filter::Prefix {
            attribute: "source".into(),
            value: "/shop".into(),
        },
        Filter::Suffix {
            attribute: "subject".into(),
            value: "#7".into(),
        },
        Filter::Any(vec![
            exact("kafkaheadertier", "gold"),
            Filter::Not(Box::new(exact("kafkaheadertier", "silver"))),
        ]),
        Filter::All(vec![]),
        Filter::Cesql(Cesql::parse("EXISTS key").unwrap()),
    ]);
    assert_eq!(config.triggers[0].filters, expected);
    assert!(ok(&trigger_with("")).triggers[0].filters.is_empty());
}

#[test]
fn the_older_filter_form_is_read_and_filters_win_over_it() {
    let older = trigger_with("    filter:\n      attributes: {type: a.b, kafkaheadertier: \"\"}\n");
    assert_eq!(
        ok(&older).triggers[0].filters,
        Filters::new(vec![Filter::Attributes(vec![
            ("type".into(), "a.b".into()),
            ("kafkaheadertier".into(), String::new()),
        ])])
    );
    let both = trigger_with(
        "    filter:\n      attributes: {type: a.b}\n    filters:\n      - exact: {type: c.d}\n",
    );
    assert_eq!(
        ok(&both).triggers[0].filters,
        Filters::new(vec![exact("type", "c.d")])
    );
}

#[test]
fn bad_filters_are_all_reported_with_their_lines() {
    let text = trigger_with(
        r#"    filters:
      - exact: {type: a, source: b}
      - prefix: {source: ""}
      - suffix: {Subject: x}
      - exact: {type: a}
        prefix: {type: b}
      - regex: {type: ".*"}
      - not: [exact: {type: a}]
      - any: {exact: {type: a}}
      - cesql: 42
      - {}
"#,
    );
    let found = problems(&text);
    let f = "triggers[0].filters";
    expect(
        &found,
        &text,
        &format!("{f}[0].exact"),
        "source: b",
        "exactly one attribute",
    );
    expect(
        &found,
        &text,
        &format!("{f}[1].prefix.source"),
        "source: \"\"",
        "must not be empty",
    );
    expect(
        &found,
        &text,
        &format!("{f}[2].suffix.Subject"),
        "Subject",
        "lower-case",
    );
    expect(
        &found,
        &text,
        &format!("{f}[3]"),
        "exact: {type: a}\n        prefix",
        "exactly one of",
    );
    expect(
        &found,
        &text,
        &format!("{f}[4].regex"),
        "regex",
        "unknown filter dialect",
    );
    expect(
        &found,
        &text,
        &format!("{f}[5].not"),
        "not:",
        "expected a filter",
    );
    expect(
        &found,
        &text,
        &format!("{f}[6].any"),
        "any:",
        "expected a list of filters",
    );
    expect(
        &found,
        &text,
        &format!("{f}[7].cesql"),
        "cesql: 42",
        "as text",
    );
    assert!(
        found
            .iter()
            .any(|p| p.path == format!("{f}[8]") && p.message.contains("found none")),
        "{found:#?}"
    );
    assert_eq!(found.len(), 9, "{found:#?}");
}

#[test]
fn a_bad_cesql_expression_is_a_problem_at_its_line_with_its_column() {
    let text = trigger_with("    filters:\n      - cesql: \"type = 'a' AND\"\n");
    let found = problems(&text);
    expect(
        &found,
        &text,
        "triggers[0].filters[0].cesql",
        "cesql:",
        "invalid CESQL expression: column",
    );
    assert_eq!(found.len(), 1, "{found:#?}");
}
