//! Triggers deliver records to real HTTP functions: the wire contract, ordering, retries,
//! dead letters, replies, outages and shutdown.

mod common;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use common::{
    InProcess, committed,
    function::{Answer, Function},
    header_map, produce_all, read_topic, wait_committed,
};
use rdkafka::{Message, message::OwnedMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);

type Rec = common::TestRecord;

fn rec(key: &str, value: &str) -> Rec {
    (
        Some(key.as_bytes().to_vec()),
        value.as_bytes().to_vec(),
        vec![],
    )
}

fn trigger_yaml(topic: &str, partitions: u32, url: &str, extra: &str) -> String {
    format!(
        "\
topics:
  - name: {topic}
    partitions: {partitions}
triggers:
  - name: t
    topics: [{topic}]
    url: {url}
    initial_offset: earliest
{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_record_arrives_as_a_knative_cloudevent() {
    let function = Function::start(|_, _| Answer::ok()).await;
    let yaml = trigger_yaml("orders", 4, &function.url(), "    ordering: unordered\n");
    let sluice = InProcess::start(&yaml).await;
    let records: Vec<Rec> = (0..1000)
        .map(|n| {
            (
                Some(format!("key-{}", n % 37).into_bytes()),
                format!("{{\"n\":{n}}}").into_bytes(),
                vec![("Trace-Id".to_owned(), format!("t{n}").into_bytes())],
            )
        })
        .collect();
    let started = chrono_now_millis();
    produce_all(&sluice.bootstrap, "orders", records).await;
    function.wait_for(1000, WAIT).await;

    let mut seen = BTreeMap::new();
    for r in function.received() {
        let partition: i32 = r
            .header("ce-knativekafkapartition")
            .unwrap()
            .parse()
            .unwrap();
        let offset: i64 = r.header("ce-knativekafkaoffset").unwrap().parse().unwrap();
        let body = String::from_utf8(r.body.to_vec()).unwrap();
        let n: u32 = body
            .trim_start_matches("{\"n\":")
            .trim_end_matches('}')
            .parse()
            .unwrap();
        assert_eq!(r.header("ce-specversion"), Some("1.0"));
        assert_eq!(
            r.header("ce-id"),
            Some(format!("partition:{partition}/offset:{offset}").as_str())
        );
        assert_eq!(r.header("ce-source"), Some("/sluice/t#orders"));
        assert_eq!(r.header("ce-type"), Some("dev.knative.kafka.event"));
        assert_eq!(
            r.header("ce-subject"),
            Some(format!("partition:{partition}#{offset}").as_str())
        );
        let key = format!("key-{}", n % 37);
        assert_eq!(r.header("ce-key"), Some(key.as_str()));
        assert_eq!(r.header("ce-partitionkey"), Some(key.as_str()));
        assert_eq!(
            r.header("ce-kafkaheadertraceid"),
            Some(format!("t{n}").as_str())
        );
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.header("prefer"), Some("reply"));
        let time = r.header("ce-time").unwrap();
        assert!(time.ends_with('Z') && time.len() == 24, "{time}");
        assert!(time >= started.as_str(), "{time} before {started}");
        // The CloudEvents SDK reads it as a valid event.
        let event = cloudevents::binding::http::to_event(&r.headers, r.body.to_vec()).unwrap();
        use cloudevents::AttributesReader;
        assert_eq!(event.id(), format!("partition:{partition}/offset:{offset}"));
        assert!(seen.insert((partition, offset), n).is_none(), "duplicate");
    }
    assert_eq!(seen.len(), 1000);
    let partitions: std::collections::BTreeSet<i32> = seen.keys().map(|(p, _)| *p).collect();
    assert_eq!(partitions.len(), 4, "{partitions:?}");
    sluice.stop().await;
}

fn chrono_now_millis() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Records are stamped by the producer, a moment later.
    sluice::event::rfc3339_millis(now - 1).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binary_keys_and_headers_round_trip_and_big_values_arrive() {
    let function = Function::start(|_, _| Answer::ok()).await;
    let yaml = trigger_yaml("bytes", 1, &function.url(), "");
    let sluice = InProcess::start(&yaml).await;
    // Big, and within Kafka's default max.message.bytes (1,048,588 bytes a batch), which the
    // broker enforces as Kafka does.
    let big = vec![b'z'; 1_000_000];
    produce_all(
        &sluice.bootstrap,
        "bytes",
        vec![
            (
                Some(vec![0xff, 0x00, 0x41]),
                b"binary".to_vec(),
                vec![
                    ("bin".to_owned(), vec![0xc3, 0x28]),
                    ("text".to_owned(), "naïve €".as_bytes().to_vec()),
                ],
            ),
            (Some(b"big".to_vec()), big.clone(), vec![]),
        ],
    )
    .await;
    function.wait_for(2, WAIT).await;
    let received = function.received();
    let first = &received[0];
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        b64.decode(first.header("ce-key").unwrap()).unwrap(),
        [0xff, 0x00, 0x41]
    );
    assert_eq!(
        b64.decode(first.header("ce-kafkaheaderbin").unwrap())
            .unwrap(),
        [0xc3, 0x28]
    );
    assert_eq!(first.header("ce-sluicebase64"), Some("key,kafkaheaderbin"));
    assert_eq!(
        sluice::event::percent_decode(first.header("ce-kafkaheadertext").unwrap()),
        "naïve €".as_bytes()
    );
    assert_eq!(&first.body[..], b"binary");
    assert_eq!(received[1].body.len(), big.len());
    assert_eq!(&received[1].body[..], &big[..]);
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partition_ordering_keeps_each_partition_in_order() {
    let function = Function::start(|_, _| Answer::ok().after(Duration::from_millis(5))).await;
    let yaml = trigger_yaml("seq", 3, &function.url(), "    ordering: partition\n");
    let sluice = InProcess::start(&yaml).await;
    let records = (0..150)
        .map(|n| rec(&format!("k{}", n % 10), &n.to_string()))
        .collect();
    produce_all(&sluice.bootstrap, "seq", records).await;
    function.wait_for(150, WAIT).await;
    let mut last: HashMap<i32, i64> = HashMap::new();
    let mut in_flight_per_partition: HashMap<i32, usize> = HashMap::new();
    for r in function.received() {
        let p: i32 = r
            .header("ce-knativekafkapartition")
            .unwrap()
            .parse()
            .unwrap();
        let o: i64 = r.header("ce-knativekafkaoffset").unwrap().parse().unwrap();
        let previous = last.insert(p, o);
        assert!(
            previous.is_none_or(|prev| prev + 1 == o),
            "partition {p}: {previous:?} then {o}"
        );
        *in_flight_per_partition.entry(p).or_default() += 1;
    }
    // One at a time per partition: never more in flight than partitions.
    assert!(
        function.max_in_flight() <= 3,
        "{}",
        function.max_in_flight()
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_ordering_keeps_each_key_in_order_with_keys_in_parallel() {
    let function = Function::start(|_, _| Answer::ok().after(Duration::from_millis(20))).await;
    let yaml = trigger_yaml("keyed", 1, &function.url(), "    ordering: key\n");
    let sluice = InProcess::start(&yaml).await;
    let records = (0..120)
        .map(|n| rec(&format!("player-{}", n % 6), &n.to_string()))
        .collect();
    produce_all(&sluice.bootstrap, "keyed", records).await;
    function.wait_for(120, WAIT).await;
    let mut last: HashMap<String, u32> = HashMap::new();
    for r in function.received() {
        let key = r.header("ce-key").unwrap().to_owned();
        let n: u32 = std::str::from_utf8(&r.body).unwrap().parse().unwrap();
        if let Some(prev) = last.insert(key.clone(), n) {
            assert_eq!(prev + 6, n, "key {key}: {prev} then {n}");
        }
    }
    let max = function.max_in_flight();
    assert!(
        max > 1,
        "keys were not delivered in parallel (max in flight {max})"
    );
    assert!(max <= 6, "more in flight ({max}) than keys");
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unordered_reaches_max_in_flight() {
    let function = Function::start(|_, _| Answer::ok().after(Duration::from_millis(300))).await;
    let yaml = trigger_yaml(
        "loose",
        2,
        &function.url(),
        "    ordering: unordered\n    max_in_flight: 8\n",
    );
    let sluice = InProcess::start(&yaml).await;
    let records = (0..48).map(|n| rec("same-key", &n.to_string())).collect();
    produce_all(&sluice.bootstrap, "loose", records).await;
    function.wait_for(48, WAIT).await;
    assert_eq!(function.max_in_flight(), 8);
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_503_twice_then_200_is_delivered_once_after_3_attempts() {
    let function = Function::start(|n, _| {
        if n < 2 {
            Answer::status(StatusCode::SERVICE_UNAVAILABLE)
        } else {
            Answer::ok()
        }
    })
    .await;
    let yaml = trigger_yaml(
        "flaky",
        1,
        &function.url(),
        "    delivery: {backoff_delay: 20ms}\n",
    );
    let sluice = InProcess::start(&yaml).await;
    produce_all(&sluice.bootstrap, "flaky", vec![rec("k", "v")]).await;
    wait_committed(
        &sluice.bootstrap,
        "sluice-t",
        "flaky",
        &BTreeMap::from([(0, 1)]),
    )
    .await;
    let received = function.received();
    assert_eq!(received.len(), 3);
    assert!(
        received
            .iter()
            .all(|r| r.header("ce-id") == Some("partition:0/offset:0"))
    );
    let metrics = sluice.state().metrics().encode();
    assert!(
        metrics.contains("sluice_events_delivered_total{trigger=\"t\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_delivery_attempts_total{trigger=\"t\",outcome=\"retry\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_delivery_attempts_total{trigger=\"t\",outcome=\"delivered\"} 1\n"),
        "{metrics}"
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_after_is_waited_for() {
    let function = Function::start(|n, _| {
        if n == 0 {
            let mut answer = Answer::status(StatusCode::TOO_MANY_REQUESTS);
            answer.headers.push(("retry-after", "2".to_owned()));
            answer
        } else {
            Answer::ok()
        }
    })
    .await;
    let yaml = trigger_yaml(
        "slowdown",
        1,
        &function.url(),
        "    delivery: {backoff_delay: 10ms}\n",
    );
    let sluice = InProcess::start(&yaml).await;
    produce_all(&sluice.bootstrap, "slowdown", vec![rec("k", "v")]).await;
    function.wait_for(2, WAIT).await;
    let received = function.received();
    let gap = received[1].at - received[0].at;
    // The backoff alone would be about 10 ms; the function asked for 2 s.
    assert!(gap >= Duration::from_millis(1990), "retried after {gap:?}");
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_400_is_dead_lettered_at_once_with_the_original_record_and_reasons() {
    let function = Function::start(|_, _| {
        let mut answer = Answer::status(StatusCode::BAD_REQUEST);
        answer.body = "bad order: missing item".into();
        answer
    })
    .await;
    let yaml = trigger_yaml("bad", 1, &function.url(), "");
    let sluice = InProcess::start(&yaml).await;
    produce_all(
        &sluice.bootstrap,
        "bad",
        vec![(
            Some(b"order-9".to_vec()),
            b"{\"item\":null}".to_vec(),
            vec![("origin".to_owned(), b"shop".to_vec())],
        )],
    )
    .await;
    let dead = read_topic(&sluice.bootstrap, "sluice.dlq.t", 1).await;
    assert_eq!(function.count(), 1, "a 400 is not retried");
    let letter = &dead[0];
    assert_eq!(letter.key(), Some(&b"order-9"[..]));
    assert_eq!(letter.payload(), Some(&b"{\"item\":null}"[..]));
    let headers = header_map(letter);
    assert_eq!(headers["origin"], b"shop");
    assert_eq!(headers["knativeerrorcode"], b"400");
    assert_eq!(headers["knativeerrordata"], b"bad order: missing item");
    assert_eq!(headers["knativeerrordest"], function.url().as_bytes());
    assert_eq!(headers["sluice-attempts"], b"1");
    assert_eq!(headers["sluice-source-topic"], b"bad");
    assert_eq!(headers["sluice-source-partition"], b"0");
    assert_eq!(headers["sluice-source-offset"], b"0");
    assert_eq!(headers["sluice-trigger"], b"t");
    assert!(
        String::from_utf8_lossy(&headers["sluice-error"]).contains("400"),
        "{:?}",
        String::from_utf8_lossy(&headers["sluice-error"])
    );
    wait_committed(
        &sluice.bootstrap,
        "sluice-t",
        "bad",
        &BTreeMap::from([(0, 1)]),
    )
    .await;
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exhausted_retries_are_dead_lettered() {
    let function = Function::start(|_, _| Answer::status(StatusCode::INTERNAL_SERVER_ERROR)).await;
    let yaml = trigger_yaml(
        "broken",
        1,
        &function.url(),
        "    delivery: {retry: 2, backoff_delay: 10ms}\n    dead_letter: {topic: graveyard}\n",
    );
    let sluice = InProcess::start(&yaml).await;
    produce_all(&sluice.bootstrap, "broken", vec![rec("k", "v")]).await;
    let dead = read_topic(&sluice.bootstrap, "graveyard", 1).await;
    assert_eq!(function.count(), 3);
    let headers = header_map(&dead[0]);
    assert_eq!(headers["sluice-attempts"], b"3");
    assert_eq!(headers["knativeerrorcode"], b"500");
    wait_committed(
        &sluice.bootstrap,
        "sluice-t",
        "broken",
        &BTreeMap::from([(0, 1)]),
    )
    .await;
    let metrics = sluice.state().metrics().encode();
    assert!(
        metrics.contains("sluice_events_dead_lettered_total{trigger=\"t\"} 1\n"),
        "{metrics}"
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_dead_letter_sink_exhausted_records_are_dropped_and_counted() {
    let function = Function::start(|_, _| Answer::status(StatusCode::BAD_GATEWAY)).await;
    let yaml = trigger_yaml(
        "lossy",
        1,
        &function.url(),
        "    delivery: {retry: 1, backoff_delay: 10ms}\n    dead_letter: none\n",
    );
    let sluice = InProcess::start(&yaml).await;
    produce_all(
        &sluice.bootstrap,
        "lossy",
        vec![rec("a", "1"), rec("b", "2")],
    )
    .await;
    wait_committed(
        &sluice.bootstrap,
        "sluice-t",
        "lossy",
        &BTreeMap::from([(0, 2)]),
    )
    .await;
    assert_eq!(function.count(), 4);
    let metrics = sluice.state().metrics().encode();
    assert!(
        metrics.contains("sluice_events_dropped_total{trigger=\"t\"} 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_events_dead_lettered_total{trigger=\"t\"} 0\n"),
        "{metrics}"
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_url_receives_the_event_with_knative_error_extensions() {
    let function = Function::start(|_, _| {
        let mut answer = Answer::status(StatusCode::UNPROCESSABLE_ENTITY);
        answer.body = "nope".into();
        answer
    })
    .await;
    let sink = Function::start(|_, _| Answer::status(StatusCode::ACCEPTED)).await;
    let yaml = trigger_yaml(
        "to-sink",
        1,
        &function.url(),
        &format!("    dead_letter: {{url: \"{}\"}}\n", sink.url()),
    );
    let sluice = InProcess::start(&yaml).await;
    produce_all(&sluice.bootstrap, "to-sink", vec![rec("k", "payload")]).await;
    sink.wait_for(1, WAIT).await;
    let letter = &sink.received()[0];
    assert_eq!(letter.header("ce-id"), Some("partition:0/offset:0"));
    assert_eq!(letter.header("ce-knativeerrorcode"), Some("422"));
    assert_eq!(letter.header("ce-knativeerrordata"), Some("bm9wZQ=="));
    assert_eq!(
        letter.header("ce-knativeerrordest"),
        Some(function.url().as_str())
    );
    assert_eq!(&letter.body[..], b"payload");
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_function_down_for_10s_gets_everything_afterwards_and_nothing_is_committed_early() {
    // Reserve a port, then leave it closed: connections are refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let yaml = trigger_yaml(
        "outage",
        2,
        &format!("http://{addr}/"),
        "    delivery: {backoff_delay: 100ms, backoff_max: 1s}\n",
    );
    let sluice = InProcess::start(&yaml).await;
    let records: Vec<Rec> = (0..40)
        .map(|n| rec(&format!("k{n}"), &n.to_string()))
        .collect();
    produce_all(&sluice.bootstrap, "outage", records).await;

    let down_until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < down_until {
        let got = committed(&sluice.bootstrap, "sluice-t", "outage").await;
        assert!(
            got.values().all(|&o| o == 0),
            "committed past an undelivered record: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = sluice.state().status();
    assert!(status.triggers[0].retrying > 0, "{status:?}");

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let function = Function::serve(listener, |_, _| Answer::ok());
    function.wait_for(40, WAIT).await;
    let kafka = sluice::kafka::Kafka::new(&sluice.bootstrap, Default::default());
    let ends: BTreeMap<i32, i64> = kafka
        .describe_topic("outage")
        .await
        .unwrap()
        .partitions
        .iter()
        .map(|p| (p.partition, p.high))
        .collect();
    wait_committed(&sluice.bootstrap, "sluice-t", "outage", &ends).await;
    let mut values: Vec<u32> = function
        .received()
        .iter()
        .map(|r| std::str::from_utf8(&r.body).unwrap().parse().unwrap())
        .collect();
    values.sort();
    values.dedup();
    assert_eq!(values, (0..40).collect::<Vec<_>>());
    let metrics = sluice.state().metrics().encode();
    assert!(
        metrics.contains("sluice_events_dead_lettered_total{trigger=\"t\"} 0\n"),
        "{metrics}"
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replies_land_in_the_reply_topic_with_the_input_key() {
    let function = Function::start(|_, r| {
        let body = std::str::from_utf8(&r.body).unwrap().to_owned();
        let mut answer = Answer::ok();
        if body == "event" {
            answer.headers = vec![
                ("ce-specversion", "1.0".into()),
                ("ce-id", "reply-1".into()),
                ("ce-source", "/fn".into()),
                ("ce-type", "com.example.reply".into()),
                ("content-type", "application/json".into()),
            ];
            answer.body = "{\"ok\":true}".into();
        } else if body == "silent" {
            // An empty body produces no reply.
        } else {
            answer.headers = vec![("content-type", "text/plain".into())];
            answer.body = format!("ack {body}").into();
        }
        answer
    })
    .await;
    let yaml = trigger_yaml("asks", 1, &function.url(), "    reply: {topic: answers}\n");
    let sluice = InProcess::start(&yaml).await;
    produce_all(
        &sluice.bootstrap,
        "asks",
        vec![rec("k1", "plain"), rec("k2", "silent"), rec("k3", "event")],
    )
    .await;
    let replies = read_topic(&sluice.bootstrap, "answers", 2).await;
    let by_key: HashMap<Vec<u8>, &OwnedMessage> = replies
        .iter()
        .map(|m| (m.key().unwrap().to_vec(), m))
        .collect();
    let plain = by_key[&b"k1".to_vec()];
    assert_eq!(plain.payload(), Some(&b"ack plain"[..]));
    let headers = header_map(plain);
    assert_eq!(headers["content-type"], b"text/plain");
    assert_eq!(headers["sluice-cause"], b"partition:0/offset:0");
    let event = by_key[&b"k3".to_vec()];
    assert_eq!(event.payload(), Some(&b"{\"ok\":true}"[..]));
    let headers = header_map(event);
    assert_eq!(headers["ce_specversion"], b"1.0");
    assert_eq!(headers["ce_id"], b"reply-1");
    assert_eq!(headers["ce_type"], b"com.example.reply");
    assert_eq!(headers["content-type"], b"application/json");
    assert_eq!(headers["sluice-cause"], b"partition:0/offset:2");
    assert!(!by_key.contains_key(b"k2".as_slice()));
    let metrics = sluice.state().metrics().encode();
    assert!(
        metrics.contains("sluice_replies_total{trigger=\"t\"} 2\n"),
        "{metrics}"
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_triggers_on_one_topic_each_get_every_record() {
    let a = Function::start(|_, _| Answer::ok()).await;
    let b = Function::start(|_, _| Answer::ok()).await;
    let yaml = format!(
        "\
topics:
  - name: shared
    partitions: 2
triggers:
  - name: first
    topics: [shared]
    url: {}
    initial_offset: earliest
  - name: second
    topics: [shared]
    url: {}
    initial_offset: earliest
",
        a.url(),
        b.url()
    );
    let sluice = InProcess::start(&yaml).await;
    let records = (0..30)
        .map(|n| rec(&format!("k{n}"), &n.to_string()))
        .collect();
    produce_all(&sluice.bootstrap, "shared", records).await;
    a.wait_for(30, WAIT).await;
    b.wait_for(30, WAIT).await;
    assert_eq!(
        a.received()[0].header("ce-source"),
        Some("/sluice/first#shared")
    );
    assert_eq!(
        b.received()[0].header("ce-source"),
        Some("/sluice/second#shared")
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_finishes_slow_requests_and_commits() {
    let function = Function::start(|_, _| Answer::ok().after(Duration::from_secs(2))).await;
    let yaml = trigger_yaml(
        "slow",
        1,
        &function.url(),
        "    ordering: unordered\n    max_in_flight: 5\n",
    );
    let sluice = InProcess::start(&yaml).await;
    let bootstrap = sluice.bootstrap.clone();
    // Five in flight and three waiting behind them.
    let records = (0..8).map(|n| rec("k", &n.to_string())).collect();
    produce_all(&bootstrap, "slow", records).await;
    function.wait_for(5, WAIT).await;
    assert_eq!(function.in_flight(), 5);
    let listen = bootstrap.parse().unwrap();
    let dir = sluice.stop().await;
    // Every slow request completed before the stop returned, and none of the waiting
    // records was started once the stop had begun.
    assert_eq!(function.in_flight(), 0);
    assert_eq!(function.count(), 5);
    // The finished ones were committed, so a restart delivers only the three left.
    let sluice = InProcess::start_in(dir, listen, &yaml).await;
    assert_eq!(
        committed(&bootstrap, "sluice-t", "slow").await,
        BTreeMap::from([(0, 5)])
    );
    function.wait_for(8, WAIT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        function.count(),
        8,
        "records were delivered again after a clean stop"
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_abandons_retry_waits_and_a_restart_delivers_the_record() {
    // The first attempt fails and its retry is due 2.4–3.6 s later, well within the 10 s
    // grace. A stop gives up the wait at once: the record is not final, stays uncommitted
    // and is delivered by the next run.
    let function = Function::start(|n, _| {
        if n == 0 {
            Answer::status(StatusCode::SERVICE_UNAVAILABLE)
        } else {
            Answer::ok()
        }
    })
    .await;
    let yaml = trigger_yaml(
        "later",
        1,
        &function.url(),
        "    delivery: {backoff_delay: 3s}\n",
    );
    let sluice = InProcess::start(&yaml).await;
    let bootstrap = sluice.bootstrap.clone();
    produce_all(&bootstrap, "later", vec![rec("k", "v")]).await;
    function.wait_for(1, WAIT).await;
    let listen = bootstrap.parse().unwrap();
    let dir = sluice.stop().await;
    assert_eq!(function.count(), 1, "the retry was sent during the stop");
    let sluice = InProcess::start_in(dir, listen, &yaml).await;
    let before = committed(&bootstrap, "sluice-t", "later").await;
    assert!(
        before.get(&0).is_none_or(|o| *o == 0),
        "committed past a record that was not final: {before:?}"
    );
    function.wait_for(2, WAIT).await;
    wait_committed(&bootstrap, "sluice-t", "later", &BTreeMap::from([(0, 1)])).await;
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_function_pauses_consumption_instead_of_buffering() {
    // Every request hangs, so nothing completes while records keep arriving.
    let function = Function::start(|_, _| Answer::ok().after(Duration::from_secs(60))).await;
    let yaml = trigger_yaml(
        "flood",
        2,
        &function.url(),
        "    ordering: unordered\n    max_in_flight: 4\n    delivery: {timeout: 120s}\n",
    );
    let sluice = InProcess::start(&yaml).await;
    let records = (0..20_000).map(|n| rec(&format!("k{n}"), "x")).collect();
    produce_all(&sluice.bootstrap, "flood", records).await;
    function.wait_for(4, WAIT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = sluice.state().status();
    let t = &status.triggers[0];
    assert_eq!(t.in_flight, 4);
    // The pause mark is max_in_flight * 8 + 4096 buffered records; what librdkafka had
    // already fetched may add a little, never the whole backlog.
    assert!(t.waiting < 6000, "{t:?}");
    let metrics = sluice.state().metrics().encode();
    let received: u64 = metrics
        .lines()
        .find(|l| l.starts_with("sluice_events_received_total{trigger=\"t\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        received < 8000,
        "received {received} of 20000 while stalled"
    );
    function.stop();
    sluice.stop().await;
}

/// A function that answers one request per connection with 200 and then closes the
/// connection without announcing it (no `Connection: close`), as a server whose keep-alive
/// timeout is shorter than the client's does. It never reads a second request, so nothing it
/// counts can be a duplicate. Returns its URL and the `ce-id` of every request it answered.
async fn one_request_per_connection() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let answered = Arc::new(Mutex::new(Vec::new()));
    let seen = answered.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    request.extend_from_slice(&chunk[..n]);
                    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                    let field = |name: &str| {
                        head.lines()
                            .find_map(|line| line.strip_prefix(name).map(|v| v.trim().to_owned()))
                    };
                    let length: usize = field("content-length:").map_or(0, |v| v.parse().unwrap());
                    if request.len() < end + 4 + length {
                        continue;
                    }
                    seen.lock()
                        .unwrap()
                        .push(field("ce-id:").unwrap_or_default());
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    // Dropping the stream closes the connection.
                    return;
                }
            });
        }
    });
    (url, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_the_function_closes_after_each_answer_lose_and_repeat_nothing() {
    let (url, answered) = one_request_per_connection().await;
    let yaml = trigger_yaml(
        "closing",
        2,
        &url,
        "    ordering: partition\n    delivery: {backoff_delay: 10ms}\n",
    );
    let sluice = InProcess::start(&yaml).await;
    let records = (0..300)
        .map(|n| rec(&format!("k{n}"), &n.to_string()))
        .collect();
    produce_all(&sluice.bootstrap, "closing", records).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let count = answered.lock().unwrap().len();
        if count >= 300 {
            break;
        }
        assert!(Instant::now() < deadline, "only {count} answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ids = answered.lock().unwrap().clone();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, ids.len(), "a record was delivered twice");
    assert_eq!(ids.len(), 300);
    // Each request that met a connection closed under it went out again on a new one at
    // once: none of them counts as a failed attempt.
    let metrics = sluice.state().metrics().encode();
    assert!(
        metrics
            .contains("sluice_delivery_attempts_total{trigger=\"t\",outcome=\"delivered\"} 300\n"),
        "{metrics}"
    );
    for outcome in ["retry", "unreachable"] {
        assert!(
            metrics.contains(&format!(
                "sluice_delivery_attempts_total{{trigger=\"t\",outcome=\"{outcome}\"}} 0\n"
            )),
            "{metrics}"
        );
    }
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_joining_mid_stream_takes_partitions_without_loss_or_repeats() {
    // Two replicas of one trigger (one consumer group), each calling a function of its own,
    // so what each delivered is known. The second joins while the first is busy with a
    // backlog: the first must hand over the revoked partitions (stop taking their records,
    // finish those in flight, commit) so that the second starts right after them.
    const RECORDS: usize = 3000;
    let first = Function::start(|_, _| Answer::ok().after(Duration::from_millis(5))).await;
    let second = Function::start(|_, _| Answer::ok().after(Duration::from_millis(5))).await;
    let extra = "    ordering: partition\n    max_in_flight: 8\n";
    let yaml = trigger_yaml("shared", 4, &first.url(), extra);
    let sluice = InProcess::start(&yaml).await;
    let records = (0..RECORDS)
        .map(|n| rec(&format!("k{n}"), &n.to_string()))
        .collect();
    produce_all(&sluice.bootstrap, "shared", records).await;
    first.wait_for(200, WAIT).await;
    let text = format!(
        "kafka:\n  bootstrap_servers: \"{}\"\ntriggers:\n  - name: t\n    topics: [shared]\n    url: {}\n    initial_offset: earliest\n{extra}",
        sluice.bootstrap,
        second.url()
    );
    let replica = common::start_running(&text).await;

    let ids = |f: &Function| -> Vec<String> {
        f.received()
            .iter()
            .map(|r| r.header("ce-id").unwrap().to_owned())
            .collect()
    };
    let deadline = Instant::now() + WAIT;
    let mut seen: HashMap<String, usize> = HashMap::new();
    while seen.len() < RECORDS {
        assert!(
            Instant::now() < deadline,
            "{} of {RECORDS} delivered",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen.clear();
        for id in ids(&first).into_iter().chain(ids(&second)) {
            *seen.entry(id).or_default() += 1;
        }
    }
    let (by_first, by_second) = (first.count(), second.count());
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "first replica delivered {by_first}, second {by_second}, repeated {}",
        repeated.len()
    );
    assert!(by_second > 0, "the joining replica was given no partition");
    assert!(by_first > 200, "the first replica stopped at the hand-over");
    assert!(
        repeated.is_empty(),
        "delivered more than once: {repeated:?}"
    );
    // Every partition's records arrived in order at whichever replica had it.
    for f in [&first, &second] {
        let mut last: HashMap<String, i64> = HashMap::new();
        for r in f.received() {
            let partition = r.header("ce-knativekafkapartition").unwrap().to_owned();
            let offset: i64 = r.header("ce-knativekafkaoffset").unwrap().parse().unwrap();
            if let Some(before) = last.insert(partition.clone(), offset) {
                assert!(
                    before < offset,
                    "partition {partition}: {offset} after {before}"
                );
            }
        }
    }
    replica.shutdown(Duration::from_secs(10)).await;
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filters_let_through_only_matching_events_and_commit_past_the_rest() {
    let function = Function::start(|_, _| Answer::ok()).await;
    let yaml = trigger_yaml(
        "mixed",
        2,
        &function.url(),
        "    ordering: unordered
    filters:
      - prefix: {key: order-}
      - cesql: \"kafkaheadertier IN ('gold', 'silver') AND EXISTS partitionkey\"
",
    );
    let sluice = InProcess::start(&yaml).await;
    let tiers = ["gold", "silver", "bronze"];
    let records: Vec<Rec> = (0..300)
        .map(|n| {
            let key = if n % 2 == 0 { "order" } else { "other" };
            (
                Some(format!("{key}-{n}").into_bytes()),
                n.to_string().into_bytes(),
                vec![("tier".to_owned(), tiers[n % 3].as_bytes().to_vec())],
            )
        })
        .collect();
    let wanted = (0..300).filter(|n| n % 2 == 0 && n % 3 != 2).count();
    produce_all(&sluice.bootstrap, "mixed", records).await;
    function.wait_for(wanted, WAIT).await;
    // Filtered-out records are final: the group commits past all 300.
    let deadline = Instant::now() + WAIT;
    loop {
        let committed = committed(&sluice.bootstrap, "sluice-t", "mixed").await;
        if committed.values().sum::<i64>() == 300 {
            break;
        }
        assert!(Instant::now() < deadline, "committed {committed:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(function.count(), wanted);
    for r in function.received() {
        assert!(r.header("ce-key").unwrap().starts_with("order-"));
        let tier = r.header("ce-kafkaheadertier").unwrap();
        assert!(tier == "gold" || tier == "silver", "{tier}");
    }
    // The status poller reports the counts every 2 s.
    let deadline = Instant::now() + WAIT;
    let t = loop {
        let status = sluice.state().status();
        let t = status.triggers[0].clone();
        if t.filtered + t.delivered == 300 || Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (t.delivered, t.filtered),
        (wanted as u64, (300 - wanted) as u64)
    );
    let metrics = sluice.state().metrics().encode();
    assert!(
        metrics.contains(&format!(
            "sluice_events_filtered_total{{trigger=\"t\"}} {}\n",
            300 - wanted
        )),
        "{metrics}"
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_function_that_lists_topics_receives_their_records() {
    let function = Function::start(|_, _| Answer::ok()).await;
    let yaml = format!(
        "\
topics:
  - name: subs
    partitions: 2
functions:
  hello:
    url: {}
    topics: [subs]
",
        function.url()
    );
    let sluice = InProcess::start(&yaml).await;
    // The implicit trigger reads from the latest offset, as a trigger does by default: probe
    // until it has joined, then send the records that count.
    let deadline = Instant::now() + WAIT;
    while function.count() == 0 {
        assert!(
            Instant::now() < deadline,
            "the implicit trigger never delivered"
        );
        produce_all(&sluice.bootstrap, "subs", vec![rec("probe", "probe")]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let records = (0..50).map(|n| rec("k", &format!("batch-{n}"))).collect();
    produce_all(&sluice.bootstrap, "subs", records).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let batch: std::collections::BTreeSet<String> = function
            .received()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .filter(|b| b.starts_with("batch-"))
            .collect();
        if batch.len() == 50 {
            break;
        }
        assert!(Instant::now() < deadline, "{} of 50", batch.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = &function.received()[0];
    assert_eq!(first.header("ce-source"), Some("/sluice/hello#subs"));
    let status = sluice.state().status();
    let t = &status.triggers[0];
    assert_eq!(
        (t.name.as_str(), t.group.as_str()),
        ("hello", "sluice-hello")
    );
    assert_eq!(t.target, function.url());
    sluice.stop().await;
}

/// Runs `sluice triggers seek` against `admin` and returns its stdout, failing on an error.
async fn seek(admin: std::net::SocketAddr, to: &str) -> String {
    let (to, admin) = (to.to_owned(), admin.to_string());
    tokio::task::spawn_blocking(move || {
        let output = common::run(&["triggers", "seek", "t", "--to", &to, "--admin", &admin]);
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        out
    })
    .await
    .unwrap()
}

/// How many times each record value reached the function.
fn deliveries(function: &Function) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for r in function.received() {
        *seen
            .entry(String::from_utf8_lossy(&r.body).into_owned())
            .or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seek_replays_from_the_earliest_from_a_time_and_from_offsets() {
    let function = Function::start(|_, _| Answer::ok()).await;
    let yaml = trigger_yaml("replay", 2, &function.url(), "");
    let sluice = InProcess::start(&yaml).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = listener.local_addr().unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(sluice::admin::serve(
        listener,
        sluice.state().clone(),
        cancel.clone(),
    ));
    let first: Vec<Rec> = (0..10)
        .map(|n| rec(&format!("k{n}"), &format!("a{n}")))
        .collect();
    produce_all(&sluice.bootstrap, "replay", first).await;
    function.wait_for(10, WAIT).await;

    // From the earliest: every record again, once.
    let out = seek(admin, "earliest").await;
    assert!(out.starts_with("trigger t moved:"), "{out}");
    assert!(out.contains("TOPIC   PARTITION  FROM  TO"), "{out}");
    function.wait_for(20, WAIT).await;
    assert!(
        deliveries(&function).values().all(|n| *n == 2),
        "{:?}",
        deliveries(&function)
    );

    // From a time: only the records from then on.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let second: Vec<Rec> = (0..5)
        .map(|n| rec(&format!("k{n}"), &format!("b{n}")))
        .collect();
    produce_all(&sluice.bootstrap, "replay", second).await;
    function.wait_for(25, WAIT).await;
    seek(admin, &since).await;
    function.wait_for(30, WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = deliveries(&function);
    assert_eq!(function.count(), 30, "{seen:?}");
    assert!(
        seen.iter()
            .all(|(value, n)| *n == 2 || !value.starts_with('b')),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .filter(|(v, _)| v.starts_with('b'))
            .all(|(_, n)| *n == 2)
    );

    // From an offset of one partition: that partition's records from there; the other
    // partition stays where it is.
    let in_zero = function
        .received()
        .iter()
        .filter(|r| r.header("ce-knativekafkapartition") == Some("0"))
        .count()
        / 2;
    seek(admin, "0:0").await;
    function.wait_for(30 + in_zero, WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(function.count(), 30 + in_zero);

    // Each partition is committed to its end again.
    let ends = {
        let mut ends = BTreeMap::new();
        for r in function.received() {
            let p: i32 = r
                .header("ce-knativekafkapartition")
                .unwrap()
                .parse()
                .unwrap();
            let o: i64 = r.header("ce-knativekafkaoffset").unwrap().parse().unwrap();
            let end = ends.entry(p).or_insert(0);
            *end = (*end).max(o + 1);
        }
        ends
    };
    wait_committed(&sluice.bootstrap, "sluice-t", "replay", &ends).await;

    // Bad requests are one-line errors.
    let admin_text = admin.to_string();
    let (unknown, bad) = tokio::task::spawn_blocking(move || {
        (
            common::run(&[
                "triggers",
                "seek",
                "nope",
                "--to",
                "earliest",
                "--admin",
                &admin_text,
            ]),
            common::run(&[
                "triggers",
                "seek",
                "t",
                "--to",
                "yesterday",
                "--admin",
                &admin_text,
            ]),
        )
    })
    .await
    .unwrap();
    common::assert_clean_failure(&unknown, "no trigger named \"nope\"");
    assert_eq!(unknown.status.code(), Some(1));
    common::assert_clean_failure(&bad, "expected earliest, latest");
    assert_eq!(bad.status.code(), Some(64));
    cancel.cancel();
    sluice.stop().await;
}
