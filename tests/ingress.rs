//! Ingress: events POSTed over HTTP are stored only once the broker acknowledged them, and a
//! trigger on the topic delivers them unchanged; bad requests are refused with the reason,
//! and a broker that is down gets 503 with nothing acknowledged.

mod common;

use std::{net::SocketAddr, time::Duration};

use common::{
    HttpAnswer, InProcess, function::Answer, function::Function, http_request, read_topic,
};
use rdkafka::message::{Headers, Message};

const WAIT: Duration = Duration::from_secs(60);

fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpAnswer {
    http_request(addr, "POST", path, headers, body).unwrap()
}

/// Runs a blocking HTTP call off the test's runtime, which the in-process sluice shares.
async fn post_async(
    addr: SocketAddr,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
) -> HttpAnswer {
    tokio::task::spawn_blocking(move || post(addr, path, &headers, &body))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_posted_over_http_reach_a_trigger_unchanged() {
    let function = Function::start(|_, _| Answer::ok()).await;
    let public = sluice::broker::free_local_addr().unwrap();
    let sluice = InProcess::start(&format!(
        "topics:\n  - name: hits\n    partitions: 3\ningress:\n  listen: \"{public}\"\n  topics: [hits]\ntriggers:\n  - name: audit\n    topics: [hits]\n    url: {}\n    initial_offset: earliest\n",
        function.url()
    ))
    .await;
    let addr = sluice.running().edge_addr().unwrap();

    // Binary mode, with an extension that needs percent-encoding and a partition key.
    let binary = post_async(
        addr,
        "/topics/hits",
        vec![
            ("ce-specversion", "1.0"),
            ("ce-id", "hit-1"),
            ("ce-source", "/game/7"),
            ("ce-type", "game.hit"),
            ("ce-time", "2026-12-07T10:00:00Z"),
            ("ce-partitionkey", "player-42"),
            ("ce-comment", "caf%C3%A9 au lait"),
            ("content-type", "application/json"),
        ],
        br#"{"target":"player-9"}"#.to_vec(),
    )
    .await;
    assert_eq!(binary.status, 202, "{binary:?}");
    let accepted = binary.json();
    assert_eq!(accepted["topic"], "hits");
    assert_eq!(accepted["id"], "hit-1");

    // Structured mode.
    let structured = post_async(
        addr,
        "/topics/hits",
        vec![("content-type", "application/cloudevents+json")],
        br#"{"specversion":"1.0","id":"hit-2","source":"/game/7","type":"game.hit","partitionkey":"player-42","data":{"target":"player-3"}}"#.to_vec(),
    )
    .await;
    assert_eq!(structured.status, 202, "{structured:?}");

    // A batch: one record per event, each with its outcome.
    let batch = post_async(
        addr,
        "/topics/hits",
        vec![("content-type", "application/cloudevents-batch+json")],
        br#"[{"specversion":"1.0","id":"hit-3","source":"/game/7","type":"game.hit","data":1},
             {"specversion":"1.0","id":"hit-4","source":"/game/7","type":"game.hit","data":2}]"#
            .to_vec(),
    )
    .await;
    assert_eq!(batch.status, 202, "{batch:?}");
    let results = batch.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .all(|r| r["status"] == 202 && r["offset"].is_i64()),
        "{results:?}"
    );

    // A plain body with its key and headers from the request.
    let plain = post_async(
        addr,
        "/topics/hits?key=player-42",
        vec![
            ("kafka-header-trace", "t-1"),
            ("content-type", "text/plain"),
        ],
        b"a plain hit".to_vec(),
    )
    .await;
    assert_eq!(plain.status, 202, "{plain:?}");

    function.wait_for(5, WAIT).await;
    let received = function.received();
    let by_id = |id: &str| {
        received
            .iter()
            .find(|r| r.header("ce-id") == Some(id))
            .unwrap_or_else(|| panic!("{id} not delivered"))
    };
    let hit = by_id("hit-1");
    for (name, value) in [
        ("ce-specversion", "1.0"),
        ("ce-source", "/game/7"),
        ("ce-type", "game.hit"),
        ("ce-time", "2026-12-07T10:00:00Z"),
        ("ce-partitionkey", "player-42"),
        ("ce-comment", "caf%C3%A9%20au%20lait"),
        ("content-type", "application/json"),
    ] {
        assert_eq!(hit.header(name), Some(value), "{name} of {:?}", hit.headers);
    }
    assert_eq!(&hit.body[..], br#"{"target":"player-9"}"#);
    let hit = by_id("hit-2");
    assert_eq!(hit.header("ce-partitionkey"), Some("player-42"));
    assert_eq!(hit.header("content-type"), Some("application/json"));
    assert_eq!(&hit.body[..], br#"{"target":"player-3"}"#);
    assert_eq!(&by_id("hit-4").body[..], b"2");
    let plain = received
        .iter()
        .find(|r| &r.body[..] == b"a plain hit")
        .unwrap();
    assert_eq!(plain.header("ce-key"), Some("player-42"));
    assert_eq!(plain.header("ce-kafkaheadertrace"), Some("t-1"));
    assert_eq!(plain.header("content-type"), Some("text/plain"));

    // The key is the partition key, as Knative's KafkaSink stores it.
    let records = read_topic(&sluice.bootstrap, "hits", 5).await;
    let keyed: Vec<_> = records
        .iter()
        .filter(|m| m.key() == Some(b"player-42"))
        .collect();
    assert_eq!(keyed.len(), 3, "binary, structured and plain share the key");
    assert_eq!(
        keyed
            .iter()
            .map(|m| m.partition())
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        1
    );
    let first = records
        .iter()
        .find(|m| m.payload() == Some(br#"{"target":"player-9"}"#))
        .unwrap();
    let headers = first.headers().unwrap();
    let names: Vec<&str> = headers.iter().map(|h| h.key).collect();
    assert!(
        names.contains(&"ce_id") && names.contains(&"content-type"),
        "{names:?}"
    );
    sluice.stop().await;
}

/// A request and what it must get: headers, path, body, status and a part of the reason.
type Case = (
    Vec<(&'static str, &'static str)>,
    &'static str,
    Vec<u8>,
    u16,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_are_refused_with_the_reason_and_nothing_is_stored() {
    let public = sluice::broker::free_local_addr().unwrap();
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let sluice = InProcess::start(&format!(
        "topics:\n  - name: hits\n    partitions: 1\ningress:\n  listen: \"{public}\"\n  max_body: 1KiB\n  topics:\n    - name: hits\n      tokens: [{{file: {}}}]\n",
        token_file.display()
    ))
    .await;
    let addr = sluice.running().edge_addr().unwrap();
    let auth = ("authorization", "Bearer s3cret");
    let cases: Vec<Case> = vec![
        (
            vec![],
            "/topics/hits",
            b"x".to_vec(),
            401,
            "bearer token is required",
        ),
        (
            vec![("authorization", "Bearer nope")],
            "/topics/hits",
            b"x".to_vec(),
            403,
            "not valid",
        ),
        (
            vec![auth],
            "/topics/elsewhere",
            b"x".to_vec(),
            404,
            "not open to ingress",
        ),
        (
            vec![auth],
            "/topics/hits",
            vec![b'x'; 2048],
            413,
            "larger than 1024 bytes",
        ),
        (
            vec![
                auth,
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-type", "t"),
            ],
            "/topics/hits",
            b"x".to_vec(),
            400,
            "missing required attribute source",
        ),
        (
            vec![auth, ("content-type", "application/cloudevents+json")],
            "/topics/hits",
            b"{not json".to_vec(),
            400,
            "not JSON",
        ),
        (
            vec![auth, ("content-type", "application/cloudevents-batch+json")],
            "/topics/hits",
            br#"[{"specversion":"1.0","id":"a","source":"/s","type":"t"},{"id":"b"}]"#.to_vec(),
            400,
            "none of it was stored",
        ),
    ];
    for (headers, path, body, status, reason) in cases {
        let answer = tokio::task::spawn_blocking(move || post(addr, path, &headers, &body))
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        println!("{status}: {text}");
        assert_eq!(answer.status, status, "{text}");
        assert!(text.contains(reason), "{reason:?} not in {text}");
        if status == 401 {
            assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
        }
    }
    // The one good request is the only record.
    let good = post_async(
        addr,
        "/topics/hits",
        vec![("authorization", "Bearer s3cret")],
        b"ok".to_vec(),
    )
    .await;
    assert_eq!(good.status, 202, "{good:?}");
    let info = sluice::kafka::Kafka::new(sluice.bootstrap.clone(), Default::default())
        .describe_topic("hits")
        .await
        .unwrap();
    assert_eq!(info.records(), 1);
    let metrics = sluice.state().metrics().encode();
    assert!(
        metrics.contains("sluice_ingress_events_total{topic=\"hits\",outcome=\"unauthorized\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_ingress_events_total{topic=\"hits\",outcome=\"malformed\"} 3"),
        "{metrics}"
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_that_is_down_gets_503_and_nothing_unstored_is_acknowledged() {
    use nix::sys::signal::Signal;
    let data = tempfile::tempdir().unwrap();
    let (broker, broker_addr) = common::spawn_broker(data.path());
    let public = sluice::broker::free_local_addr().unwrap();
    let sluice = InProcess::start(&format!(
        "kafka:\n  bootstrap_servers: \"{broker_addr}\"\ntopics:\n  - name: hits\n    partitions: 2\ningress:\n  listen: \"{public}\"\n  topics: [hits]\n"
    ))
    .await;
    let addr = sluice.running().edge_addr().unwrap();
    let mut acknowledged = Vec::new();
    for n in 0..10 {
        let answer = post_async(
            addr,
            "/topics/hits",
            vec![],
            format!("before {n}").into_bytes(),
        )
        .await;
        assert_eq!(answer.status, 202, "{answer:?}");
        let json = answer.json();
        acknowledged.push((
            json["partition"].as_i64().unwrap(),
            json["offset"].as_i64().unwrap(),
            format!("before {n}"),
        ));
    }

    broker.signal(Signal::SIGKILL);
    let _ = broker.wait(WAIT);
    let mut refused = 0;
    for n in 0..3 {
        let answer = post_async(
            addr,
            "/topics/hits",
            vec![],
            format!("during {n}").into_bytes(),
        )
        .await;
        println!(
            "while the broker is down: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        assert_eq!(answer.status, 503, "{answer:?}");
        assert_eq!(answer.header("retry-after"), Some("1"));
        refused += 1;
    }
    assert_eq!(refused, 3);

    // Back on the same data: every acknowledged record is there.
    let (_broker, _) = common::spawn_broker_on(data.path(), broker_addr);
    let records = read_topic(&broker_addr.to_string(), "hits", acknowledged.len()).await;
    for (partition, offset, value) in &acknowledged {
        assert!(
            records
                .iter()
                .any(|m| i64::from(m.partition()) == *partition
                    && m.offset() == *offset
                    && m.payload() == Some(value.as_bytes())),
            "acknowledged {partition}:{offset} {value:?} is missing"
        );
    }
    sluice.stop().await;
}
