use super::*;
use hyper::header::HeaderValue;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let _ = map.append(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn one(body: Body) -> Outgoing {
    match body {
        Body::One(record) => record,
        Body::Batch(_) => panic!("a batch"),
    }
}

fn header<'a>(record: &'a Outgoing, name: &str) -> Option<&'a str> {
    record
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
}

const REQUIRED: [(&str, &str); 4] = [
    ("ce-specversion", "1.0"),
    ("ce-id", "hit-1"),
    ("ce-source", "/game/7"),
    ("ce-type", "game.hit"),
];

#[test]
fn a_binary_event_becomes_the_kafka_binary_binding_keyed_by_its_partitionkey() {
    let mut pairs = REQUIRED.to_vec();
    pairs.extend([
        ("ce-partitionkey", "player%2042"),
        ("ce-comexampleext", "caf%C3%A9"),
        ("content-type", "application/json"),
        ("x-other", "ignored"),
    ]);
    let record = one(parse(&headers(&pairs), None, Bytes::from_static(b"{\"hits\":1}")).unwrap());
    assert_eq!(record.key.as_deref(), Some(&b"player 42"[..]));
    assert_eq!(record.value, Bytes::from_static(b"{\"hits\":1}"));
    assert_eq!(record.id.as_deref(), Some("hit-1"));
    assert_eq!(header(&record, "ce_specversion"), Some("1.0"));
    assert_eq!(header(&record, "ce_source"), Some("/game/7"));
    assert_eq!(header(&record, "ce_comexampleext"), Some("café"));
    assert_eq!(header(&record, "ce_partitionkey"), Some("player 42"));
    assert_eq!(header(&record, "content-type"), Some("application/json"));
    assert_eq!(header(&record, "x-other"), None);
}

#[test]
fn a_binary_event_without_its_required_attributes_is_malformed() {
    for missing in ["ce-specversion", "ce-id", "ce-source", "ce-type"] {
        let pairs: Vec<_> = REQUIRED
            .iter()
            .copied()
            .filter(|(n, _)| *n != missing)
            .collect();
        let err = parse(&headers(&pairs), None, Bytes::new()).unwrap_err();
        assert!(
            err.to_string().contains("missing required attribute"),
            "{missing}: {err}"
        );
    }
    let mut pairs = REQUIRED.to_vec();
    pairs[0] = ("ce-specversion", "0.3");
    let err = parse(&headers(&pairs), None, Bytes::new()).unwrap_err();
    assert!(err.to_string().contains("unsupported specversion"), "{err}");
    let mut pairs = REQUIRED.to_vec();
    pairs.push(("ce-Bad_Name", "x"));
    let err = parse(&headers(&pairs), None, Bytes::new()).unwrap_err();
    assert!(err.to_string().contains("invalid attribute name"), "{err}");
    let mut pairs = REQUIRED.to_vec();
    pairs.push(("ce-id", "twice"));
    let err = parse(&headers(&pairs), None, Bytes::new()).unwrap_err();
    assert!(err.to_string().contains("given twice"), "{err}");
}

#[test]
fn a_structured_event_becomes_the_binary_binding() {
    let body = br#"{"specversion":"1.0","id":"e1","source":"/s","type":"t","partitionkey":"k",
        "subject":"sub","count":3,"flag":true,"gone":null,"data":{"a":[1,2]}}"#;
    let h = headers(&[(
        "content-type",
        "application/cloudevents+json; charset=utf-8",
    )]);
    let record = one(parse(&h, None, Bytes::from_static(body)).unwrap());
    assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
    assert_eq!(record.value, Bytes::from_static(b"{\"a\":[1,2]}"));
    assert_eq!(header(&record, "content-type"), Some("application/json"));
    assert_eq!(header(&record, "ce_count"), Some("3"));
    assert_eq!(header(&record, "ce_flag"), Some("true"));
    assert_eq!(header(&record, "ce_gone"), None);
    assert_eq!(header(&record, "ce_datacontenttype"), None);

    // Text data of a text type is the text itself; data_base64 is decoded.
    let body = br#"{"specversion":"1.0","id":"e2","source":"/s","type":"t","datacontenttype":"text/plain","data":"hello"}"#;
    let h = headers(&[("content-type", "application/cloudevents+json")]);
    let record = one(parse(&h, None, Bytes::from_static(body)).unwrap());
    assert_eq!(record.value, Bytes::from_static(b"hello"));
    assert_eq!(header(&record, "content-type"), Some("text/plain"));
    let body =
        br#"{"specversion":"1.0","id":"e3","source":"/s","type":"t","data_base64":"AAEC/w=="}"#;
    let record = one(parse(&h, None, Bytes::from_static(body)).unwrap());
    assert_eq!(record.value, Bytes::from_static(&[0, 1, 2, 255]));
    assert_eq!(record.key, None);
}

#[test]
fn malformed_structured_events_say_why() {
    let h = headers(&[("content-type", "application/cloudevents+json")]);
    for (body, expected) in [
        (&b"not json"[..], "not JSON"),
        (b"[1]", "JSON object"),
        (br#"{"specversion":"1.0","id":"e","source":"/s"}"#, "missing required attribute type"),
        (br#"{"specversion":"1.0","id":"","source":"/s","type":"t"}"#, "id must not be empty"),
        (br#"{"specversion":"1.0","id":"e","source":"/s","type":"t","data":1,"data_base64":"AA=="}"#, "not both"),
        (br#"{"specversion":"1.0","id":"e","source":"/s","type":"t","data_base64":"%%%"}"#, "not base64"),
        (br#"{"specversion":"1.0","id":"e","source":"/s","type":"t","ext":{"a":1}}"#, "string, number or boolean"),
        (br#"{"specversion":"1.0","id":"e","source":"/s","type":"t","Bad":"x"}"#, "invalid attribute name"),
    ] {
        let err = parse(&h, None, Bytes::copy_from_slice(body)).unwrap_err().to_string();
        assert!(err.contains(expected), "{expected:?} not in {err:?}");
    }
}

#[test]
fn a_batch_is_one_record_per_event_and_one_bad_event_refuses_it_all() {
    let h = headers(&[("content-type", "application/cloudevents-batch+json")]);
    let body = br#"[{"specversion":"1.0","id":"a","source":"/s","type":"t","data":1},
                    {"specversion":"1.0","id":"b","source":"/s","type":"t","data":2}]"#;
    let Body::Batch(records) = parse(&h, None, Bytes::from_static(body)).unwrap() else {
        panic!("not a batch")
    };
    let ids: Vec<_> = records.iter().map(|r| r.id.clone().unwrap()).collect();
    assert_eq!(ids, ["a", "b"]);
    let body = br#"[{"specversion":"1.0","id":"a","source":"/s","type":"t"}, 7,
                    {"specversion":"1.0","source":"/s","type":"t"}]"#;
    match parse(&h, None, Bytes::from_static(body)).unwrap_err() {
        Malformed::Events(problems) => {
            assert_eq!(problems.len(), 2, "{problems:?}");
            assert_eq!(problems[0].0, 1);
            assert_eq!(problems[1].0, 2);
            assert!(problems[1].1.contains("missing required attribute id"));
        }
        other => panic!("{other:?}"),
    }
    assert!(parse(&h, None, Bytes::from_static(b"[]")).is_err());
    assert!(parse(&h, None, Bytes::from_static(b"{}")).is_err());
}

#[test]
fn a_plain_body_takes_its_key_and_headers_from_the_request() {
    let h = headers(&[
        ("kafka-key", "from-header"),
        ("kafka-header-trace", "t-1"),
        ("kafka-header-user", "ada"),
        ("content-type", "text/plain"),
    ]);
    let record = one(parse(&h, Some("from-query"), Bytes::from_static(b"hello")).unwrap());
    assert_eq!(record.key.as_deref(), Some(&b"from-query"[..]));
    assert_eq!(record.value, Bytes::from_static(b"hello"));
    assert_eq!(header(&record, "trace"), Some("t-1"));
    assert_eq!(header(&record, "user"), Some("ada"));
    assert_eq!(header(&record, "content-type"), Some("text/plain"));
    let record = one(parse(&h, None, Bytes::new()).unwrap());
    assert_eq!(record.key.as_deref(), Some(&b"from-header"[..]));
    let record = one(parse(&HeaderMap::new(), None, Bytes::from_static(b"x")).unwrap());
    assert_eq!((record.key, record.headers.len()), (None, 0));
}

proptest::proptest! {
    /// Any body with any content type is an answer, never a panic.
    #[test]
    fn any_body_is_parsed_or_refused(body in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
                                     kind in 0usize..4) {
        let content_type = ["application/cloudevents+json", "application/cloudevents-batch+json",
                            "text/plain", "application/json"][kind];
        let h = headers(&[("content-type", content_type)]);
        let _ = parse(&h, None, Bytes::from(body));
    }
}
