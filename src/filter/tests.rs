use bytes::Bytes;

use super::*;
use crate::event::{EventSettings, Record, from_record};

fn event(key: &str, headers: &[(&str, &str)]) -> Event {
    let record = Record {
        topic: "orders".into(),
        partition: 1,
        offset: 7,
        timestamp: Some(1_700_000_000_000),
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: Some(Bytes::from_static(b"{}")),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), Some(Bytes::copy_from_slice(v.as_bytes()))))
            .collect(),
    };
    from_record(
        &record,
        &EventSettings {
            trigger: "t".into(),
            source: None,
            event_type: None,
            content_type: "application/json".into(),
        },
    )
}

fn exact(attribute: &str, value: &str) -> Filter {
    Filter::Exact {
        attribute: attribute.into(),
        value: value.into(),
    }
}

fn prefix(attribute: &str, value: &str) -> Filter {
    Filter::Prefix {
        attribute: attribute.into(),
        value: value.into(),
    }
}

fn suffix(attribute: &str, value: &str) -> Filter {
    Filter::Suffix {
        attribute: attribute.into(),
        value: value.into(),
    }
}

fn passes(filters: Vec<Filter>, event: &Event) -> bool {
    Filters::new(filters).matches(event)
}

#[test]
fn the_string_dialects_see_the_delivered_attributes_and_are_case_sensitive() {
    let e = event("Gold-42", &[("Region", "eu-west"), ("note", "grüße")]);
    assert!(passes(vec![exact("type", "dev.knative.kafka.event")], &e));
    assert!(passes(vec![exact("key", "Gold-42")], &e));
    assert!(passes(vec![exact("partitionkey", "Gold-42")], &e));
    assert!(passes(vec![exact("kafkaheaderregion", "eu-west")], &e));
    // Percent-encoded on the wire, compared as the text it stands for.
    assert!(passes(vec![exact("kafkaheadernote", "grüße")], &e));
    assert!(passes(
        vec![exact("datacontenttype", "application/json")],
        &e
    ));
    assert!(passes(vec![exact("source", "/sluice/t#orders")], &e));
    assert!(!passes(vec![exact("key", "gold-42")], &e), "case-sensitive");
    assert!(passes(vec![prefix("key", "Gold-")], &e));
    assert!(!passes(vec![prefix("key", "gold")], &e));
    assert!(passes(vec![suffix("source", "#orders")], &e));
    assert!(!passes(vec![suffix("source", "#Orders")], &e));
    // A missing attribute is no match, whatever the dialect.
    for f in [
        exact("kafkaheadermissing", "x"),
        prefix("dataschema", "x"),
        suffix("kafkaheadermissing", "x"),
    ] {
        assert!(!passes(vec![f], &e));
    }
}

#[test]
fn entries_are_and_ed_and_all_any_not_nest() {
    let e = event("k", &[("tier", "gold")]);
    let gold = exact("kafkaheadertier", "gold");
    let silver = exact("kafkaheadertier", "silver");
    assert!(passes(vec![gold.clone(), exact("key", "k")], &e));
    assert!(!passes(vec![gold.clone(), silver.clone()], &e));
    assert!(passes(
        vec![Filter::Any(vec![silver.clone(), gold.clone()])],
        &e
    ));
    assert!(!passes(vec![Filter::Any(vec![silver.clone()])], &e));
    assert!(passes(
        vec![Filter::All(vec![gold.clone(), exact("key", "k")])],
        &e
    ));
    assert!(!passes(
        vec![Filter::All(vec![gold.clone(), silver.clone()])],
        &e
    ));
    assert!(passes(vec![Filter::Not(Box::new(silver.clone()))], &e));
    assert!(!passes(vec![Filter::Not(Box::new(gold.clone()))], &e));
    // A missing attribute fails, so its negation passes.
    assert!(passes(
        vec![Filter::Not(Box::new(exact("kafkaheadermissing", "x")))],
        &e
    ));
    assert!(passes(
        vec![Filter::Not(Box::new(Filter::Any(vec![
            silver.clone(),
            exact("key", "other")
        ])))],
        &e
    ));
}

#[test]
fn empty_all_and_any_have_no_verdict_as_in_knative() {
    let e = event("k", &[]);
    let fail = exact("key", "other");
    assert!(passes(vec![Filter::All(vec![])], &e));
    assert!(passes(vec![Filter::Any(vec![])], &e));
    // No verdict leaves the other side's standing.
    assert!(!passes(vec![Filter::Any(vec![]), fail.clone()], &e));
    assert!(!passes(
        vec![Filter::Any(vec![Filter::All(vec![]), fail.clone()])],
        &e
    ));
    assert!(passes(vec![Filter::Not(Box::new(Filter::All(vec![])))], &e));
    assert!(passes(vec![], &e));
}

#[test]
fn the_older_attributes_form_matches_exactly_and_empty_means_any() {
    let e = event("k", &[("tier", "gold")]);
    let attributes = |pairs: &[(&str, &str)]| {
        Filter::Attributes(
            pairs
                .iter()
                .map(|(a, v)| ((*a).to_owned(), (*v).to_owned()))
                .collect(),
        )
    };
    assert!(passes(
        vec![attributes(&[
            ("type", "dev.knative.kafka.event"),
            ("kafkaheadertier", "gold")
        ])],
        &e
    ));
    assert!(passes(vec![attributes(&[("kafkaheadertier", "")])], &e));
    assert!(!passes(vec![attributes(&[("kafkaheadermissing", "")])], &e));
    assert!(!passes(
        vec![attributes(&[("kafkaheadertier", "Gold")])],
        &e
    ));
}

#[test]
fn a_structured_event_is_filtered_on_its_own_attributes() {
    let body = r#"{"specversion":"1.0","id":"a1","source":"/shop","type":"order.created","tier":3,"vip":true,"data":{"type":"not an attribute"}}"#;
    let record = Record {
        topic: "orders".into(),
        partition: 0,
        offset: 0,
        timestamp: None,
        key: None,
        value: Some(Bytes::from(body)),
        headers: vec![(
            "content-type".into(),
            Some(Bytes::from_static(b"application/cloudevents+json")),
        )],
    };
    let e = from_record(
        &record,
        &EventSettings {
            trigger: "t".into(),
            source: None,
            event_type: None,
            content_type: "application/json".into(),
        },
    );
    assert!(passes(vec![exact("type", "order.created")], &e));
    assert!(passes(vec![exact("tier", "3")], &e));
    assert!(passes(vec![exact("vip", "true")], &e));
    assert!(!passes(vec![exact("type", "not an attribute")], &e));
    let view = Attributes::of(&e);
    use cesql::Event as _;
    assert_eq!(view.attribute("tier"), Some(cesql::Value::Integer(3)));
    assert_eq!(view.attribute("data"), None);
}
