use super::*;

fn settings() -> EventSettings {
    EventSettings {
        trigger: "hello-orders".into(),
        source: None,
        event_type: None,
        content_type: "application/octet-stream".into(),
    }
}

fn record() -> Record {
    Record {
        topic: "orders".into(),
        partition: 2,
        offset: 41,
        timestamp: Some(1_700_000_000_123),
        key: Some(Bytes::from_static(b"alice")),
        value: Some(Bytes::from_static(b"{\"n\":1}")),
        headers: vec![
            ("Trace-Id".into(), Some(Bytes::from_static(b"abc 1"))),
            ("empty".into(), None),
        ],
    }
}

fn header<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    event
        .headers
        .iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, v)| v.to_str().unwrap())
}

#[test]
fn maps_a_record_like_knative_kafka_source() {
    let event = from_record(&record(), &settings());
    let expected = [
        ("ce-specversion", "1.0"),
        ("ce-id", "partition:2/offset:41"),
        ("ce-source", "/sluice/hello-orders#orders"),
        ("ce-type", "dev.knative.kafka.event"),
        ("ce-subject", "partition:2#41"),
        ("ce-time", "2023-11-14T22:13:20.123Z"),
        ("ce-key", "alice"),
        ("ce-partitionkey", "alice"),
        ("ce-kafkaheadertraceid", "abc%201"),
        ("ce-knativekafkapartition", "2"),
        ("ce-knativekafkaoffset", "41"),
        ("content-type", "application/octet-stream"),
        ("prefer", "reply"),
    ];
    let got: Vec<(&str, &str)> = event
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(event.id, "partition:2/offset:41");
    assert_eq!(&event.body[..], b"{\"n\":1}");
}

#[test]
fn overrides_and_record_content_type_win() {
    let mut r = record();
    r.headers.push((
        "Content-Type".into(),
        Some(Bytes::from_static(b"application/json")),
    ));
    let s = EventSettings {
        source: Some("urn:shop".into()),
        event_type: Some("com.shop.order".into()),
        ..settings()
    };
    let event = from_record(&r, &s);
    assert_eq!(header(&event, "ce-source"), Some("urn:shop"));
    assert_eq!(header(&event, "ce-type"), Some("com.shop.order"));
    assert_eq!(header(&event, "content-type"), Some("application/json"));
    assert_eq!(
        header(&event, "ce-kafkaheadercontenttype"),
        Some("application/json")
    );
}

#[test]
fn null_key_tombstone_and_missing_timestamp_are_left_out() {
    let r = Record {
        key: None,
        value: None,
        timestamp: None,
        headers: vec![],
        ..record()
    };
    let event = from_record(&r, &settings());
    assert!(header(&event, "ce-key").is_none());
    assert!(header(&event, "ce-partitionkey").is_none());
    assert!(header(&event, "ce-time").is_none());
    assert!(event.body.is_empty());
}

#[test]
fn non_utf8_key_and_headers_go_base64_and_are_listed() {
    let r = Record {
        key: Some(Bytes::from_static(&[0xff, 0x00, 0x41])),
        headers: vec![
            ("bin".into(), Some(Bytes::from_static(&[0xc3, 0x28]))),
            ("text".into(), Some(Bytes::from_static("naïve".as_bytes()))),
        ],
        ..record()
    };
    let event = from_record(&r, &settings());
    assert_eq!(header(&event, "ce-key"), Some("/wBB"));
    assert_eq!(header(&event, "ce-partitionkey"), Some("/wBB"));
    assert_eq!(header(&event, "ce-kafkaheaderbin"), Some("wyg="));
    assert_eq!(header(&event, "ce-kafkaheadertext"), Some("na%C3%AFve"));
    assert_eq!(
        header(&event, "ce-sluicebase64"),
        Some("key,kafkaheaderbin")
    );
    assert_eq!(percent_decode("na%C3%AFve"), "naïve".as_bytes());
}

#[test]
fn a_binary_mode_kafka_cloudevent_passes_through() {
    let r = Record {
        headers: vec![
            ("ce_specversion".into(), Some(Bytes::from_static(b"1.0"))),
            ("ce_id".into(), Some(Bytes::from_static(b"order-7"))),
            ("ce_source".into(), Some(Bytes::from_static(b"/shop"))),
            (
                "ce_type".into(),
                Some(Bytes::from_static(b"com.shop.order")),
            ),
            (
                "content-type".into(),
                Some(Bytes::from_static(b"application/json")),
            ),
            ("other".into(), Some(Bytes::from_static(b"x"))),
        ],
        ..record()
    };
    let event = from_record(&r, &settings());
    assert_eq!(event.id, "order-7");
    let got: Vec<(&str, &str)> = event
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("ce-specversion", "1.0"),
            ("ce-id", "order-7"),
            ("ce-source", "/shop"),
            ("ce-type", "com.shop.order"),
            ("content-type", "application/json"),
            ("prefer", "reply"),
        ]
    );
}

#[test]
fn a_structured_cloudevent_passes_through() {
    let body = br#"{"specversion":"1.0","id":"s-1","source":"/x","type":"t","data":1}"#;
    let r = Record {
        value: Some(Bytes::from_static(body)),
        headers: vec![(
            "content-type".into(),
            Some(Bytes::from_static(
                b"application/cloudevents+json; charset=utf-8",
            )),
        )],
        ..record()
    };
    let event = from_record(&r, &settings());
    assert_eq!(event.id, "s-1");
    assert_eq!(
        header(&event, "content-type"),
        Some("application/cloudevents+json; charset=utf-8")
    );
    assert!(header(&event, "ce-id").is_none());
    assert_eq!(&event.body[..], body);
}

#[test]
fn percent_encoding_round_trips_every_byte() {
    let all: Vec<u8> = (0..=255).collect();
    let encoded = percent_encode(&all);
    assert!(encoded.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    assert!(HeaderValue::try_from(encoded.as_str()).is_ok());
    assert_eq!(percent_decode(&encoded), all);
    // Random strings, including multi-byte characters, survive too.
    for seed in 0..200u32 {
        let text: String = (0..(seed % 17))
            .map(|i| char::from_u32((seed * 7919 + i * 104_729) % 0x3000).unwrap_or('x'))
            .collect();
        assert_eq!(
            percent_decode(&percent_encode(text.as_bytes())),
            text.as_bytes()
        );
    }
    assert_eq!(percent_decode("100%"), b"100%");
    assert_eq!(percent_decode("%zz"), b"%zz");
}

#[test]
fn header_names_keep_only_lowercase_alphanumerics() {
    assert_eq!(header_suffix("X-Trace_ID.v2"), "xtraceidv2");
    assert_eq!(header_suffix("---"), "");
}

#[test]
fn times_are_written_like_rfc3339_with_millis() {
    let to_ms = |text: &str| {
        humantime::parse_rfc3339(text)
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    for text in [
        "1970-01-01T00:00:00.000Z",
        "1972-02-29T23:59:59.999Z",
        "2000-02-29T12:00:00.001Z",
        "2000-03-01T00:00:00.000Z",
        "2023-11-14T22:13:20.123Z",
        "2100-03-01T01:02:03.004Z",
        "9999-12-31T23:59:59.999Z",
    ] {
        assert_eq!(rfc3339_millis(to_ms(text)).as_deref(), Some(text));
    }
    // Every day for 1,500 years agrees with the humantime crate's formatter.
    let day = 86_400_000i64;
    for n in (0..1500 * 366).step_by(7) {
        let millis = n * day + n % day;
        let expected = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis as u64),
        )
        .to_string();
        assert_eq!(rfc3339_millis(millis), Some(expected), "{millis}");
    }
}

#[test]
fn a_timestamp_rfc3339_cannot_write_leaves_out_the_time() {
    assert_eq!(rfc3339_millis(-1), None);
    assert_eq!(rfc3339_millis(253_402_300_800_000), None);
    let mut r = record();
    for timestamp in [i64::MAX, i64::MIN, -1, 253_402_300_800_000] {
        r.timestamp = Some(timestamp);
        let event = from_record(&r, &settings());
        assert!(header(&event, "ce-time").is_none(), "{timestamp}");
        assert_eq!(header(&event, "ce-id"), Some("partition:2/offset:41"));
    }
}

#[test]
fn positions_are_written_in_decimal() {
    assert_eq!(position("p", 0, "/", 0), "p0/0");
    assert_eq!(
        position("partition:", i32::MAX, "#", i64::MAX),
        "partition:2147483647#9223372036854775807"
    );
    assert_eq!(
        position("partition:", -1, "#", i64::MIN),
        "partition:-1#-9223372036854775808"
    );
}

#[test]
fn keys_and_names_that_need_escapes_are_percent_encoded() {
    let mut record = record();
    record.key = Some(Bytes::from_static("a b%\"ï".as_bytes()));
    record.topic = "t opic".into();
    let mut settings = settings();
    settings.trigger = "tr%g".into();
    let event = from_record(&record, &settings);
    assert_eq!(header(&event, "ce-key"), Some("a%20b%25%22%C3%AF"));
    assert_eq!(header(&event, "ce-partitionkey"), Some("a%20b%25%22%C3%AF"));
    assert_eq!(header(&event, "ce-source"), Some("/sluice/tr%25g#t%20opic"));
    settings.source = Some("urn:a b".into());
    settings.event_type = Some("t\u{e9}".into());
    let event = from_record(&record, &settings);
    assert_eq!(header(&event, "ce-source"), Some("urn:a%20b"));
    assert_eq!(header(&event, "ce-type"), Some("t%C3%A9"));
}

#[test]
fn the_structured_content_type_is_told_without_case_and_with_parameters() {
    assert!(is_structured("application/cloudevents+json"));
    assert!(is_structured(
        " Application/CloudEvents+JSON; charset=utf-8"
    ));
    assert!(!is_structured("application/json"));
    assert!(!is_structured("application/cloudevents"));
    assert!(!is_structured(""));
}

fn structured_json(event: &Event) -> serde_json::Value {
    let mut out = Vec::new();
    write_structured(event, &mut out);
    serde_json::from_slice(&out).expect("the structured event is JSON")
}

#[test]
fn a_batch_member_is_the_same_event_in_the_json_format() {
    let mut json_record = record();
    json_record.headers.push((
        "content-type".into(),
        Some(Bytes::from_static(b"application/json")),
    ));
    json_record.headers.push((
        "traceparent".into(),
        Some(Bytes::from_static(
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )),
    ));
    let event = from_record(&json_record, &settings());
    let json = structured_json(&event);
    assert_eq!(json["specversion"], "1.0");
    assert_eq!(json["id"], "partition:2/offset:41");
    assert_eq!(json["source"], "/sluice/hello-orders#orders");
    assert_eq!(json["type"], KAFKA_EVENT_TYPE);
    assert_eq!(json["key"], "alice");
    // Percent-encoded in the header, plain text here.
    assert_eq!(json["kafkaheadertraceid"], "abc 1");
    assert_eq!(json["knativekafkaoffset"], "41");
    assert_eq!(json["datacontenttype"], "application/json");
    assert_eq!(
        json["traceparent"],
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    );
    assert_eq!(json["data"], serde_json::json!({"n": 1}));
    assert!(json.get("data_base64").is_none());
    // The official SDK reads it, with the same data.
    let parsed: cloudevents::Event =
        serde_json::from_value(json.clone()).expect("the SDK parses it");
    {
        use cloudevents::AttributesReader;
        assert_eq!(parsed.id(), "partition:2/offset:41");
        assert_eq!(parsed.ty(), KAFKA_EVENT_TYPE);
    }

    // Not JSON by its content type, or not JSON at all: base64.
    let octets = from_record(&record(), &settings());
    let json = structured_json(&octets);
    assert_eq!(json["datacontenttype"], "application/octet-stream");
    assert_eq!(json["data_base64"], BASE64.encode(b"{\"n\":1}"));
    assert!(json.get("data").is_none());
    let mut broken = json_record.clone();
    broken.value = Some(Bytes::from_static(b"{not json"));
    let json = structured_json(&from_record(&broken, &settings()));
    assert_eq!(json["data_base64"], BASE64.encode(b"{not json"));
    let _: cloudevents::Event = serde_json::from_value(json).expect("the SDK parses it");

    // A tombstone has no data; a structured record goes as it is.
    let mut tombstone = record();
    tombstone.value = None;
    let json = structured_json(&from_record(&tombstone, &settings()));
    assert!(json.get("data").is_none() && json.get("data_base64").is_none());
    let mut structured = record();
    structured.headers = vec![(
        "content-type".into(),
        Some(Bytes::from_static(b"application/cloudevents+json")),
    )];
    structured.value = Some(Bytes::from_static(
        br#"{"specversion":"1.0","id":"x","source":"s","type":"t","data":{"a":1}}"#,
    ));
    let json = structured_json(&from_record(&structured, &settings()));
    assert_eq!(json["id"], "x");
    assert_eq!(json["data"], serde_json::json!({"a": 1}));
    assert!(is_json("application/json; charset=utf-8"));
    assert!(is_json("application/vnd.api+json"));
    assert!(!is_json("text/plain"));
}
