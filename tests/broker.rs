//! The embedded broker, in-process, used through the real Kafka client.

mod common;

use std::{collections::BTreeMap, collections::BTreeSet, time::Duration};

use common::{group_consumer, numbered_headers, producer, start_broker, start_broker_on};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer, StreamConsumer},
    message::{Header, Headers, OwnedHeaders},
    producer::FutureRecord,
};
use sluice::kafka::{Kafka, TopicSpec};

const WAIT: Duration = Duration::from_secs(30);

async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    Kafka::new(bootstrap, BTreeMap::new())
        .create_topic(&TopicSpec {
            name: name.into(),
            partitions,
            replication: 1,
            config: BTreeMap::new(),
        })
        .await
        .unwrap();
}

async fn produce_numbers(bootstrap: &str, topic: &str, range: std::ops::Range<u32>) {
    let producer = producer(bootstrap);
    for n in range {
        let key = format!("k{n}");
        let value = format!("v{n}");
        producer
            .send(FutureRecord::to(topic).key(&key).payload(&value), WAIT)
            .await
            .unwrap();
    }
}

/// Receives `count` records, failing if they do not arrive in time.
async fn receive(consumer: &StreamConsumer, count: usize) -> Vec<(i32, i64, String)> {
    let mut out = Vec::new();
    while out.len() < count {
        let message = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .expect("records arrive in time")
            .unwrap();
        out.push((
            message.partition(),
            message.offset(),
            String::from_utf8(message.payload().unwrap().to_vec()).unwrap(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_headers_and_binary_values_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "bytes", 1).await;

    let key: &[u8] = &[0x00, 0xff, 0xfe, b'k'];
    let value: Vec<u8> = (0..=255u8).collect();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "trace",
            value: Some(&[0xc3, 0x28][..]),
        })
        .insert(Header {
            key: "empty",
            value: None::<&[u8]>,
        });
    producer(&bootstrap)
        .send(
            FutureRecord::to("bytes")
                .key(key)
                .payload(&value)
                .headers(headers),
            WAIT,
        )
        .await
        .unwrap();

    let consumer = group_consumer(&bootstrap, "bytes-reader", "bytes");
    // Detached: librdkafka will not close a consumer while one of its messages is alive.
    let message = tokio::time::timeout(WAIT, consumer.recv())
        .await
        .unwrap()
        .unwrap()
        .detach();
    assert_eq!(message.key(), Some(key));
    assert_eq!(message.payload(), Some(&value[..]));
    let got = message.headers().unwrap();
    assert_eq!(got.count(), 2);
    assert_eq!(got.get(0).key, "trace");
    assert_eq!(got.get(0).value, Some(&[0xc3, 0x28][..]));
    assert_eq!(got.get(1).key, "empty");
    assert_eq!(got.get(1).value, None);
    drop(consumer);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_gets_its_own_headers_back_in_order() {
    const COUNT: u32 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "headed", 2).await;

    let producer = producer(&bootstrap);
    let mut pending = Vec::new();
    for n in 0..COUNT {
        let mut headers = OwnedHeaders::new();
        for (name, value) in numbered_headers(n) {
            headers = headers.insert(Header {
                key: &name,
                value: Some(&value),
            });
        }
        let key = n.to_string();
        let record = FutureRecord::to("headed")
            .key(&key)
            .payload("x")
            .headers(headers);
        pending.push(
            producer
                .send_result(record)
                .map_err(|(err, _)| err)
                .unwrap(),
        );
        if pending.len() == 500 {
            for sent in pending.drain(..) {
                sent.await.unwrap().unwrap();
            }
        }
    }
    for sent in pending {
        sent.await.unwrap().unwrap();
    }

    let consumer = group_consumer(&bootstrap, "headed-reader", "headed");
    let mut seen = BTreeSet::new();
    while seen.len() < COUNT as usize {
        let message = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .expect("records arrive in time")
            .unwrap();
        let n: u32 = std::str::from_utf8(message.key().unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            common::header_pairs(&message),
            numbered_headers(n),
            "headers of record {n}"
        );
        let _ = seen.insert(n);
    }
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commits_and_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "resume", 1).await;
    produce_numbers(&bootstrap, "resume", 0..10).await;

    let consumer = group_consumer(&bootstrap, "resumers", "resume");
    let first = receive(&consumer, 6).await;
    assert_eq!(first[0].2, "v0");
    assert_eq!(first[5].2, "v5");
    // Commit after the sixth record only: the next consumer starts at offset 6.
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("resume", 0, Offset::Offset(6))
        .unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
    drop(consumer);

    let consumer = group_consumer(&bootstrap, "resumers", "resume");
    let rest = receive(&consumer, 4).await;
    let values: Vec<_> = rest.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(values, ["v6", "v7", "v8", "v9"]);
    drop(consumer);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_in_a_group_split_the_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "split", 4).await;

    let a = group_consumer(&bootstrap, "splitters", "split");
    let b = group_consumer(&bootstrap, "splitters", "split");
    // Polling drives the group protocol; wait until both hold a share.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (mut got_a, mut got_b) = (BTreeSet::new(), BTreeSet::new());
    while got_a.is_empty() || got_b.is_empty() || got_a.len() + got_b.len() != 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "assignment did not settle: a={got_a:?} b={got_b:?}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), a.recv()).await;
        let _ = tokio::time::timeout(Duration::from_millis(200), b.recv()).await;
        got_a = assigned(&a);
        got_b = assigned(&b);
    }
    assert!(got_a.is_disjoint(&got_b), "a={got_a:?} b={got_b:?}");
    let all: BTreeSet<i32> = got_a.union(&got_b).copied().collect();
    assert_eq!(all, BTreeSet::from([0, 1, 2, 3]));

    // Each consumer receives the records of its own partitions only.
    produce_numbers(&bootstrap, "split", 0..40).await;
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {seen} of 40 arrived"
        );
        for (consumer, mine) in [(&a, &got_a), (&b, &got_b)] {
            if let Ok(Ok(message)) =
                tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await
            {
                assert!(mine.contains(&message.partition()));
                seen += 1;
            }
        }
    }
    drop((a, b));
    broker.shutdown().await;
}

fn assigned(consumer: &StreamConsumer) -> BTreeSet<i32> {
    consumer
        .assignment()
        .map(|list| list.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_records_and_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let listen = broker.bootstrap().parse().unwrap();
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "durable", 2).await;
    produce_numbers(&bootstrap, "durable", 0..20).await;

    let consumer = group_consumer(&bootstrap, "durables", "durable");
    let first = receive(&consumer, 20).await;
    // Commit the first half of each partition.
    let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (p, o, _) in &first {
        per_partition.entry(*p).or_default().push(*o);
    }
    let mut offsets = TopicPartitionList::new();
    let mut expected_next = BTreeMap::new();
    for (p, list) in &per_partition {
        let next = list.len() as i64 / 2;
        offsets
            .add_partition_offset("durable", *p, Offset::Offset(next))
            .unwrap();
        let _ = expected_next.insert(*p, next);
    }
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
    drop(consumer);
    broker.shutdown().await;

    let broker = start_broker_on(listen, dir.path()).await;
    let kafka = Kafka::new(broker.bootstrap(), BTreeMap::new());
    let topic = kafka.describe_topic("durable").await.unwrap();
    assert_eq!(topic.partitions.len(), 2);
    assert_eq!(topic.records(), 20, "{topic:?}");

    let consumer = group_consumer(&broker.bootstrap(), "durables", "durable");
    let expected_rest: usize = per_partition.values().map(|l| l.len() - l.len() / 2).sum();
    let rest = receive(&consumer, expected_rest).await;
    for (p, o, _) in &rest {
        assert!(*o >= expected_next[p], "partition {p} resumed at {o}");
    }
    let mut firsts: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, o, _) in &rest {
        let e = firsts.entry(*p).or_insert(*o);
        *e = (*e).min(*o);
    }
    assert_eq!(firsts, expected_next);
    drop(consumer);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_fetch_is_answered_when_a_record_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "wake", 1).await;
    // Fetches may wait over 3 minutes for records (`WAIT` is 30 s). Each record below must arrive while its
    // fetch is still waiting, so the broker must answer on the produce, not on the wait.
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "wake")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "200000")
        .set("socket.timeout.ms", "300000")
        .create()
        .unwrap();
    consumer.subscribe(&["wake"]).unwrap();
    produce_numbers(&bootstrap, "wake", 0..1).await;
    assert_eq!(receive(&consumer, 1).await[0].2, "v0");
    for n in 1..4 {
        // Long enough for the next fetch to be waiting at the broker.
        tokio::time::sleep(Duration::from_millis(300)).await;
        produce_numbers(&bootstrap, "wake", n..n + 1).await;
        assert_eq!(receive(&consumer, 1).await[0].2, format!("v{n}"));
    }
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .unwrap();
    broker.shutdown().await;
}

/// A consumer with its own session timeout.
fn member(bootstrap: &str, group: &str, topic: &str, session: Duration) -> StreamConsumer {
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session.as_millis().to_string())
        .set("heartbeat.interval.ms", "500")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// Polls until the consumer holds `partitions` partitions; returns how long that took.
async fn until_assigned(consumer: &StreamConsumer, partitions: usize, limit: Duration) -> Duration {
    let started = tokio::time::Instant::now();
    while assigned(consumer).len() != partitions {
        assert!(
            started.elapsed() < limit,
            "not assigned {partitions} partitions within {limit:?}: {:?}",
            assigned(consumer)
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }
    started.elapsed()
}

/// A member that closes sends LeaveGroup, and the next member is given the partitions without
/// waiting for the leaver's session timeout (30 s here). The bound checked is a third of that
/// timeout: what is being tested is that the broker does not wait for the session to expire,
/// not how fast it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_leaves_cleanly_hands_its_partitions_over_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "handover", 3).await;
    let session = Duration::from_secs(30);

    for round in 0..3 {
        let first = member(&bootstrap, "handover-group", "handover", session);
        let _ = until_assigned(&first, 3, WAIT).await;
        // Closing a librdkafka consumer blocks while it leaves the group.
        tokio::task::spawn_blocking(move || drop(first))
            .await
            .unwrap();

        let next = member(&bootstrap, "handover-group", "handover", session);
        let took = until_assigned(&next, 3, session / 3).await;
        println!("round {round}: the next member was assigned {took:?} after the leave");
        tokio::task::spawn_blocking(move || drop(next))
            .await
            .unwrap();
    }
    broker.shutdown().await;
}

/// A member killed without leaving keeps its partitions until its session timeout passes,
/// and then the next member gets them. The lower bound is what Kafka promises the killed
/// member (less one heartbeat interval, since its last heartbeat came before the kill); the
/// upper bound only bounds the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_member_is_replaced_after_its_session_timeout_and_not_before() {
    if !common::python_client() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path()).await;
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "replaced", 3).await;
    let session = Duration::from_secs(6);

    let mut killed = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/group_member.py"
        ))
        .args([&bootstrap, "replaced-group", "replaced"])
        .arg(session.as_millis().to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(killed.stdout.take().unwrap()));
    let line = tokio::task::spawn_blocking(move || lines.next())
        .await
        .unwrap()
        .expect("the member says it was assigned")
        .unwrap();
    assert_eq!(line, "assigned 3");

    killed.kill().unwrap();
    let _ = killed.wait();
    let since_kill = tokio::time::Instant::now();
    let next = member(&bootstrap, "replaced-group", "replaced", session);
    let _ = until_assigned(&next, 3, session * 5).await;
    let waited = since_kill.elapsed();
    println!("the killed member's partitions moved {waited:?} after the kill");
    assert!(
        waited >= session - Duration::from_secs(1),
        "the partitions moved after {waited:?}, before the {session:?} session timeout"
    );
    tokio::task::spawn_blocking(move || drop(next))
        .await
        .unwrap();
    broker.shutdown().await;
}
