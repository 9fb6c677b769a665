//! W3C trace context follows an event through sluice: from a Kafka header or from the
//! CloudEvents distributed-tracing extension to the function's `traceparent` and
//! `tracestate` HTTP headers (and an exec function's `TRACEPARENT`), and on to its reply and
//! its dead letter.

mod common;

use std::time::Duration;

use common::{InProcess, function::Answer, function::Function, produce_all, read_topic};
use hyper::StatusCode;
use rdkafka::message::{Headers, Message, OwnedMessage};

const WAIT: Duration = Duration::from_secs(60);
const FROM_HEADER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const FROM_EXTENSION: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const FROM_STRUCTURED: &str = "00-11111111111111111111111111111111-2222222222222222-01";

fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

fn records() -> Vec<common::TestRecord> {
    let h = |pairs: &[(&str, &str)]| -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
            .collect()
    };
    vec![
        // A plain record with the W3C headers as Kafka headers.
        (
            Some(b"plain".to_vec()),
            b"one".to_vec(),
            h(&[("traceparent", FROM_HEADER), ("tracestate", "vendor=1")]),
        ),
        // A CloudEvent in the Kafka binding's binary mode, with the tracing extension.
        (
            Some(b"binary".to_vec()),
            b"two".to_vec(),
            h(&[
                ("ce_specversion", "1.0"),
                ("ce_id", "e-2"),
                ("ce_source", "/test"),
                ("ce_type", "t"),
                ("ce_traceparent", FROM_EXTENSION),
            ]),
        ),
        // A structured CloudEvent with the extension as a member.
        (
            Some(b"structured".to_vec()),
            format!(
                r#"{{"specversion":"1.0","id":"e-3","source":"/test","type":"t","traceparent":"{FROM_STRUCTURED}","data":"three"}}"#
            )
            .into_bytes(),
            h(&[("content-type", "application/cloudevents+json")]),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trace_context_reaches_the_function_its_reply_and_its_dead_letter() {
    // `replier` answers with a body (a reply); `refuser` answers 400 (a dead letter at once).
    let replier = Function::start(|_, _| {
        let mut answer = Answer::ok();
        answer.body = "a reply".into();
        answer
    })
    .await;
    let refuser = Function::start(|_, _| Answer::status(StatusCode::BAD_REQUEST)).await;
    let sluice = InProcess::start(&format!(
        "topics:\n  - name: in\n    partitions: 1\nfunctions:\n  printer:\n    exec: [sh, -c, 'printf \"%s|%s\" \"$TRACEPARENT\" \"$TRACESTATE\"']\ntriggers:\n  - name: replying\n    topics: [in]\n    url: {}\n    initial_offset: earliest\n    reply: {{topic: replies}}\n  - name: refused\n    topics: [in]\n    url: {}\n    initial_offset: earliest\n  - name: printing\n    topics: [in]\n    function: printer\n    initial_offset: earliest\n    reply: {{topic: printed}}\n",
        replier.url(),
        refuser.url()
    ))
    .await;
    produce_all(&sluice.bootstrap, "in", records()).await;
    replier.wait_for(3, WAIT).await;
    refuser.wait_for(3, WAIT).await;

    // The function gets the W3C headers, whichever way the record carried them.
    for function in [&replier, &refuser] {
        let received = function.received();
        let by_key = |id_or_key: &str| {
            received
                .iter()
                .find(|r| {
                    // A structured event is delivered as it is: its id is in its body.
                    r.header("ce-key") == Some(id_or_key)
                        || r.header("ce-id") == Some(id_or_key)
                        || String::from_utf8_lossy(&r.body)
                            .contains(&format!("\"id\":\"{id_or_key}\""))
                })
                .unwrap_or_else(|| panic!("{id_or_key} not delivered"))
        };
        let plain = by_key("plain");
        assert_eq!(plain.header("traceparent"), Some(FROM_HEADER));
        assert_eq!(plain.header("tracestate"), Some("vendor=1"));
        assert_eq!(by_key("e-2").header("traceparent"), Some(FROM_EXTENSION));
        assert_eq!(by_key("e-2").header("ce-traceparent"), Some(FROM_EXTENSION));
        assert_eq!(by_key("e-3").header("traceparent"), Some(FROM_STRUCTURED));
    }

    // Replies carry the trace on.
    let replies = read_topic(&sluice.bootstrap, "replies", 3).await;
    let traces: std::collections::BTreeMap<Option<Vec<u8>>, Option<String>> = replies
        .iter()
        .map(|m| (m.key().map(<[u8]>::to_vec), header(m, "traceparent")))
        .collect();
    assert_eq!(
        traces[&Some(b"plain".to_vec())].as_deref(),
        Some(FROM_HEADER)
    );
    assert_eq!(
        traces[&Some(b"binary".to_vec())].as_deref(),
        Some(FROM_EXTENSION)
    );
    assert_eq!(
        traces[&Some(b"structured".to_vec())].as_deref(),
        Some(FROM_STRUCTURED)
    );

    // So do dead letters, also when the trace came as an extension.
    let dead = read_topic(&sluice.bootstrap, "sluice.dlq.refused", 3).await;
    for (key, trace) in [("plain", FROM_HEADER), ("binary", FROM_EXTENSION)] {
        let letter = dead
            .iter()
            .find(|m| m.key() == Some(key.as_bytes()))
            .unwrap_or_else(|| panic!("no dead letter for {key}"));
        assert_eq!(
            header(letter, "traceparent").as_deref(),
            Some(trace),
            "{key}"
        );
        assert_eq!(header(letter, "knativeerrorcode").as_deref(), Some("400"));
    }

    // An exec function gets TRACEPARENT and TRACESTATE.
    let printed = read_topic(&sluice.bootstrap, "printed", 3).await;
    let plain = printed.iter().find(|m| m.key() == Some(b"plain")).unwrap();
    assert_eq!(
        plain.payload(),
        Some(format!("{FROM_HEADER}|vendor=1").as_bytes())
    );
    let binary = printed.iter().find(|m| m.key() == Some(b"binary")).unwrap();
    assert_eq!(
        binary.payload(),
        Some(format!("{FROM_EXTENSION}|").as_bytes())
    );
    sluice.stop().await;
}
