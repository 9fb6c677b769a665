//! Batched delivery: several events in one request, as a JSON array of structured
//! CloudEvents. Batches fill by count, bytes and time within their bounds; order holds per
//! partition and per key; a partial failure list retries only what it lists; a final status
//! dead-letters each event; replies come one record per event; a SIGKILL mid-batch loses
//! nothing.

mod common;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use common::{
    Daemon, InProcess, TestRecord, committed,
    function::{Answer, Function, Received},
    header_map, produce_all, read_topic, stderr, wait_committed, wait_ready,
};
use nix::sys::signal::Signal;
use rdkafka::Message;
use serde_json::Value;
use sluice::broker::free_local_addr;

const WAIT: Duration = Duration::from_secs(60);

/// One event of a batch as the function saw it.
#[derive(Debug, Clone)]
struct Seen {
    id: String,
    partition: i64,
    offset: i64,
    key: Option<String>,
    data: Value,
}

/// The events of one batch request, checking its content type and that every member is a
/// structured CloudEvent.
fn events(r: &Received) -> Vec<Seen> {
    assert_eq!(
        r.header("content-type"),
        Some("application/cloudevents-batch+json")
    );
    let body: Value = serde_json::from_slice(&r.body).expect("a batch is JSON");
    let array = body.as_array().expect("a batch is a JSON array");
    array
        .iter()
        .map(|event| {
            assert_eq!(event["specversion"], "1.0", "{event}");
            assert_eq!(event["type"], "dev.knative.kafka.event", "{event}");
            let number = |name: &str| {
                event[name]
                    .as_str()
                    .and_then(|s| s.parse::<i64>().ok())
                    .unwrap_or_else(|| panic!("{name} in {event}"))
            };
            Seen {
                id: event["id"].as_str().unwrap().to_owned(),
                partition: number("knativekafkapartition"),
                offset: number("knativekafkaoffset"),
                key: event["key"].as_str().map(str::to_owned),
                data: event
                    .get("data")
                    .cloned()
                    .or_else(|| event.get("data_base64").cloned())
                    .unwrap_or(Value::Null),
            }
        })
        .collect()
}

fn yaml(topic: &str, partitions: u32, url: &str, trigger: &str) -> String {
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
{trigger}"
    )
}

fn json_records(count: usize, keys: usize, pad: usize) -> Vec<TestRecord> {
    (0..count)
        .map(|n| {
            (
                Some(format!("k{}", n % keys).into_bytes()),
                format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(pad)).into_bytes(),
                vec![("content-type".to_owned(), b"application/json".to_vec())],
            )
        })
        .collect()
}

/// Events per request, in the order the function received them.
fn batch_sizes(function: &Function) -> Vec<usize> {
    function
        .received()
        .iter()
        .map(|r| events(r).len())
        .collect()
}

/// Waits until the function received `count` events over all its requests.
async fn wait_events(function: &Function, count: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got: usize = batch_sizes(function).iter().sum();
        if got >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {got} of {count} events arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the function accepted `count` distinct events (answers that were 2xx and did
/// not list them).
async fn wait_distinct(accepted: &Mutex<HashSet<String>>, count: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = accepted.lock().unwrap().len();
        if got >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {got} of {count} events accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_fill_by_count_and_never_pass_their_bounds() {
    let function = Function::start(|_, _| Answer::ok()).await;
    let sluice = InProcess::start(&yaml(
        "counted",
        2,
        &function.url(),
        "    ordering: unordered\n    max_in_flight: 1\n    delivery:\n      batch: {max_events: 10, max_wait: 2s}\n",
    ))
    .await;
    produce_all(&sluice.bootstrap, "counted", json_records(95, 7, 10)).await;
    let deadline = Instant::now() + WAIT;
    let mut ids = HashSet::new();
    while ids.len() < 95 {
        assert!(Instant::now() < deadline, "only {} of 95", ids.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
        ids = function
            .received()
            .iter()
            .flat_map(events)
            .map(|e| e.id)
            .collect();
    }
    let sizes = batch_sizes(&function);
    println!("batch sizes: {sizes:?}");
    assert!(sizes.iter().all(|&n| (1..=10).contains(&n)), "{sizes:?}");
    assert!(
        sizes.iter().filter(|&&n| n == 10).count() >= 8,
        "batches did not fill to max_events: {sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<usize>(), 95, "duplicates: {sizes:?}");
    let ends: BTreeMap<i32, i64> = {
        let mut ends = BTreeMap::new();
        for e in function.received().iter().flat_map(events) {
            let end = ends.entry(e.partition as i32).or_insert(0);
            *end = (*end).max(e.offset + 1);
        }
        ends
    };
    wait_committed(&sluice.bootstrap, "sluice-t", "counted", &ends).await;
    assert_eq!(
        committed(&sluice.bootstrap, "sluice-t", "counted").await,
        ends
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_fill_by_bytes_and_never_pass_max_bytes() {
    let function = Function::start(|_, _| Answer::ok()).await;
    let sluice = InProcess::start(&yaml(
        "sized",
        1,
        &function.url(),
        "    ordering: partition\n    delivery:\n      batch: {max_events: 1000, max_bytes: 4KiB, max_wait: 2s}\n",
    ))
    .await;
    // About 900 bytes of JSON each: four fit in 4 KiB, five do not.
    produce_all(&sluice.bootstrap, "sized", json_records(60, 3, 500)).await;
    wait_events(&function, 60).await;
    let received = function.received();
    let lengths: Vec<(usize, usize)> = received
        .iter()
        .map(|r| (events(r).len(), r.body.len()))
        .collect();
    println!("(events, bytes) per batch: {lengths:?}");
    assert!(
        lengths.iter().all(|&(_, bytes)| bytes <= 4096),
        "{lengths:?}"
    );
    assert!(
        lengths.iter().filter(|&&(n, _)| n >= 2).count() >= 10,
        "batches did not fill by bytes: {lengths:?}"
    );
    // Partition order: one partition, offsets rising across batches.
    let offsets: Vec<i64> = received.iter().flat_map(events).map(|e| e.offset).collect();
    assert_eq!(offsets, (0..60).collect::<Vec<i64>>());
    // Every event is the one the trigger would deliver alone, as JSON.
    let first = &events(&received[0])[0];
    assert_eq!(first.data["n"], 0);
    assert_eq!(first.id, "partition:0/offset:0");
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_waits_up_to_max_wait_for_more_records() {
    let function = Function::start(|_, _| Answer::ok()).await;
    let sluice = InProcess::start(&yaml(
        "timed",
        1,
        &function.url(),
        "    delivery:\n      batch: {max_events: 100, max_wait: 3s}\n",
    ))
    .await;
    // Five records produced one by one, well within the wait: they go in one request.
    for n in 0..5 {
        produce_all(&sluice.bootstrap, "timed", json_records(1, 1, n)).await;
    }
    function.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = events(&function.received()[0]);
    assert_eq!(
        first.len(),
        5,
        "the first batch did not wait for the others: {first:?}"
    );
    // A lone record goes once the wait is over.
    produce_all(&sluice.bootstrap, "timed", json_records(1, 1, 0)).await;
    function.wait_for(2, WAIT).await;
    assert_eq!(events(&function.received()[1]).len(), 1);
    sluice.stop().await;
}

/// A function that checks order as batches arrive: under `key` ordering no key's offsets
/// may go back, under `partition` no partition's.
async fn order_holds(ordering: &str, topic: &str) {
    let last: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let (l, v) = (last.clone(), violations.clone());
    let by_key = ordering == "key";
    let function = Function::start(move |n, r| {
        let mut last = l.lock().unwrap();
        let batch = events(r);
        let partitions: HashSet<i64> = batch.iter().map(|e| e.partition).collect();
        if !by_key && partitions.len() != 1 {
            v.lock()
                .unwrap()
                .push(format!("batch {n} spans partitions {partitions:?}"));
        }
        for e in &batch {
            let lane = if by_key {
                format!("{}/{}", e.partition, e.key.as_deref().unwrap_or("-"))
            } else {
                e.partition.to_string()
            };
            let previous = last.insert(lane.clone(), e.offset);
            if previous.is_some_and(|p| p >= e.offset) {
                v.lock()
                    .unwrap()
                    .push(format!("{lane}: {} after {previous:?}", e.offset));
            }
        }
        // Some time in the function, so batches overlap.
        Answer::ok().after(Duration::from_millis(3))
    })
    .await;
    let sluice = InProcess::start(&yaml(
        topic,
        4,
        &function.url(),
        &format!(
            "    ordering: {ordering}\n    max_in_flight: 8\n    delivery:\n      batch: {{max_events: 25, max_wait: 5ms}}\n"
        ),
    ))
    .await;
    const RECORDS: usize = 3000;
    produce_all(&sluice.bootstrap, topic, json_records(RECORDS, 40, 20)).await;
    wait_events(&function, RECORDS).await;
    let received = function.received();
    let sizes: Vec<usize> = received.iter().map(|r| events(r).len()).collect();
    println!(
        "{ordering}: {} batches, largest {}, most in flight {}",
        sizes.len(),
        sizes.iter().max().unwrap(),
        function.max_in_flight()
    );
    assert!(sizes.iter().all(|&n| n <= 25));
    assert!(
        function.max_in_flight() > 1,
        "batches never overlapped, so order was not put to the test"
    );
    assert_eq!(violations.lock().unwrap().clone(), Vec::<String>::new());
    assert_eq!(sizes.iter().sum::<usize>(), RECORDS);
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_holds_per_partition() {
    order_holds("partition", "by-partition").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_holds_per_key() {
    order_holds("key", "by-key").await;
}

/// The function fails the events whose `n` is a multiple of 7 on their first delivery, by
/// listing them; returns the function and the set of events it accepted.
async fn partially_failing() -> (Function, Arc<Mutex<HashSet<String>>>, Arc<Mutex<Vec<i64>>>) {
    let accepted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let failed_once: Arc<Mutex<HashSet<String>>> = Arc::default();
    let deliveries: Arc<Mutex<Vec<i64>>> = Arc::default();
    let (a, f, d) = (accepted.clone(), failed_once.clone(), deliveries.clone());
    let function = Function::start(move |_, r| {
        let mut failed = Vec::new();
        for e in events(r) {
            let n = e.data["n"].as_i64().unwrap();
            d.lock().unwrap().push(n);
            if n % 7 == 0 && f.lock().unwrap().insert(e.id.clone()) {
                failed.push(serde_json::json!({"id": e.id, "reason": "multiple of 7"}));
            } else {
                let _ = a.lock().unwrap().insert(e.id);
            }
        }
        let mut answer = Answer::ok();
        answer.body = serde_json::json!({ "failed": failed }).to_string().into();
        answer
    })
    .await;
    (function, accepted, deliveries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partial_failure_list_retries_only_those_events() {
    let (function, accepted, deliveries) = partially_failing().await;
    let sluice = InProcess::start(&yaml(
        "partial",
        2,
        &function.url(),
        "    ordering: unordered\n    delivery:\n      retry: 3\n      backoff_delay: 10ms\n      batch: {max_events: 20}\n",
    ))
    .await;
    produce_all(&sluice.bootstrap, "partial", json_records(200, 10, 0)).await;
    wait_distinct(&accepted, 200).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for n in deliveries.lock().unwrap().iter() {
        *counts.entry(*n).or_default() += 1;
    }
    for n in 0..200 {
        let expected = if n % 7 == 0 { 2 } else { 1 };
        assert_eq!(counts.get(&n), Some(&expected), "event {n}: {counts:?}");
    }
    let text = sluice.state().metrics().encode();
    assert!(
        text.contains("sluice_events_delivered_total{trigger=\"t\"} 200\n"),
        "{text}"
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_key_order_a_failed_event_is_retried_with_the_later_events_of_its_key() {
    let (function, accepted, deliveries) = partially_failing().await;
    let sluice = InProcess::start(&yaml(
        "partial-key",
        1,
        &function.url(),
        "    ordering: key\n    delivery:\n      retry: 3\n      backoff_delay: 10ms\n      batch: {max_events: 100, max_wait: 2s}\n",
    ))
    .await;
    // One batch: keys k0..k4, n = 0..49; the failed ones are 0, 7, 14, ..., 49.
    produce_all(&sluice.bootstrap, "partial-key", json_records(50, 5, 0)).await;
    wait_distinct(&accepted, 50).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivered = deliveries.lock().unwrap().clone();
    let first: Vec<i64> = delivered[..50].to_vec();
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..50).collect::<Vec<_>>(),
        "first batch: {first:?}"
    );
    // Resent: for each key, everything from its first failed event on.
    let mut expected: Vec<i64> = (0..5)
        .flat_map(|key| {
            let from = (0..50)
                .filter(|n| n % 5 == key && n % 7 == 0)
                .min()
                .unwrap_or(50);
            (from..50).filter(move |n| n % 5 == key)
        })
        .collect();
    expected.sort();
    let mut resent: Vec<i64> = delivered[50..].to_vec();
    resent.sort();
    // Events of a key resent after its failure that fail themselves on their first listing
    // come once more; count only the first resend of each.
    resent.dedup();
    assert_eq!(resent, expected);
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_final_status_dead_letters_each_event_and_replies_come_one_per_event() {
    // Requests with an event whose n is 3 are refused for good; the others are answered with
    // one reply event per event.
    let function = Function::start(|_, r| {
        let batch = events(r);
        if batch.iter().any(|e| e.data["n"] == 3) {
            let mut answer = Answer::status(StatusCode::BAD_REQUEST);
            answer.body = "n is 3".into();
            return answer;
        }
        let replies: Vec<Value> = batch
            .iter()
            .map(|e| {
                serde_json::json!({
                    "specversion": "1.0", "id": format!("reply-{}", e.id),
                    "source": "test", "type": "reply", "data": {"n": e.data["n"]}
                })
            })
            .collect();
        let mut answer = Answer::ok();
        answer.body = Value::Array(replies).to_string().into();
        answer
    })
    .await;
    let sluice = InProcess::start(&yaml(
        "finals",
        1,
        &function.url(),
        "    reply: {topic: finals-out}\n    delivery:\n      batch: {max_events: 4, max_wait: 2s}\n",
    ))
    .await;
    produce_all(&sluice.bootstrap, "finals", json_records(12, 2, 0)).await;
    // Batches 0-3, 4-7, 8-11: the first is dead-lettered whole, the others reply.
    let dead = read_topic(&sluice.bootstrap, "sluice.dlq.t", 4).await;
    let mut dead_offsets: Vec<i64> = dead
        .iter()
        .map(|m| {
            let headers = header_map(m);
            assert_eq!(headers["knativeerrorcode"], b"400");
            assert_eq!(headers["knativeerrordata"], b"n is 3");
            String::from_utf8(headers["sluice-source-offset"].clone())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    dead_offsets.sort();
    assert_eq!(dead_offsets, [0, 1, 2, 3]);
    let replies = read_topic(&sluice.bootstrap, "finals-out", 8).await;
    let mut ns: Vec<i64> = replies
        .iter()
        .map(|m| {
            let headers = header_map(m);
            assert_eq!(headers["content-type"], b"application/cloudevents+json");
            let event: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let n = event["data"]["n"].as_i64().unwrap();
            // Keyed like the event at its position.
            assert_eq!(m.key(), Some(format!("k{}", n % 2).as_bytes()));
            assert_eq!(
                headers["sluice-cause"],
                format!("partition:0/offset:{n}").as_bytes()
            );
            n
        })
        .collect();
    ns.sort();
    assert_eq!(ns, (4..12).collect::<Vec<_>>());
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_batch_loses_nothing() {
    const RECORDS: usize = 3000;
    // Accepted: every event of a batch that was answered 200 before the answer was sent.
    let accepted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let a = accepted.clone();
    let function = Function::start(move |_, r| {
        let ids: Vec<String> = events(r).into_iter().map(|e| e.id).collect();
        a.lock().unwrap().extend(ids);
        Answer::ok().after(Duration::from_millis(100))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let broker = free_local_addr().unwrap();
    let admin = free_local_addr().unwrap();
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "\
data_dir: {data}
embedded: {{listen: \"{broker}\"}}
admin: {{listen: \"{admin}\"}}
topics:
  - name: burst
    partitions: 4
triggers:
  - name: t
    topics: [burst]
    url: {url}
    initial_offset: earliest
    max_in_flight: 4
    delivery:
      batch: {{max_events: 50, max_wait: 10ms}}
",
            data = dir.path().join("data").display(),
            url = function.url()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let up = Daemon::spawn(&["-c", &config, "up"], dir.path());
    wait_ready(admin).await;
    produce_all(&broker.to_string(), "burst", json_records(RECORDS, 100, 10)).await;
    // Killed while batches are in the function.
    let deadline = Instant::now() + WAIT;
    while !(function.count() >= 5 && function.in_flight() > 0) {
        assert!(Instant::now() < deadline, "batches did not start");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    drop(up); // SIGKILL
    let at_kill = accepted.lock().unwrap().len();
    assert!(
        at_kill < RECORDS,
        "everything was delivered before the kill"
    );

    let up = Daemon::spawn(&["-c", &config, "up"], dir.path());
    wait_ready(admin).await;
    wait_distinct(&accepted, RECORDS).await;
    let seen: Vec<String> = function
        .received()
        .iter()
        .flat_map(events)
        .map(|e| e.id)
        .collect();
    let distinct: HashSet<&String> = seen.iter().collect();
    println!(
        "{} distinct of {RECORDS}; {at_kill} before SIGKILL; {} duplicates",
        distinct.len(),
        seen.len() - distinct.len()
    );
    assert_eq!(distinct.len(), RECORDS);
    up.signal(Signal::SIGTERM);
    let output = up.wait(Duration::from_secs(40));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_answer_that_cannot_be_read_retries_the_batch() {
    // The first answer is JSON of the wrong shape: it may list failures, so nothing in it
    // counts as delivered.
    let function = Function::start(|n, _| {
        let mut answer = Answer::ok();
        if n == 0 {
            answer.body = r#"{"failed": 3}"#.into();
        }
        answer
    })
    .await;
    let sluice = InProcess::start(&yaml(
        "unreadable",
        1,
        &function.url(),
        "    delivery:\n      backoff_delay: 10ms\n      batch: {max_events: 10, max_wait: 2s}\n",
    ))
    .await;
    produce_all(&sluice.bootstrap, "unreadable", json_records(5, 1, 0)).await;
    function.wait_for(2, WAIT).await;
    let received = function.received();
    let first: Vec<String> = events(&received[0]).into_iter().map(|e| e.id).collect();
    let second: Vec<String> = events(&received[1]).into_iter().map(|e| e.id).collect();
    assert_eq!(first.len(), 5);
    assert_eq!(first, second, "the same batch again");
    let ends = BTreeMap::from([(0, 5)]);
    wait_committed(&sluice.bootstrap, "sluice-t", "unreadable", &ends).await;
    assert_eq!(
        committed(&sluice.bootstrap, "sluice-t", "unreadable").await,
        ends
    );
    assert_eq!(function.count(), 2);
    sluice.stop().await;
}
