//! Databases that sluice's earlier broker (nisshi 0.7.0-pre.2) wrote, opened by today's. Both
//! fixtures were made by that broker, fed by `tests/fixtures/nisshi-0.7/make.py` (which says
//! how): 60 records in two partitions with `numbered_headers` headers, and a group's committed
//! offsets. Their header tables predate the `ordinal` column that today's schema keys headers
//! by; the broker upgrades them when it starts, keeping every header.

mod common;

use std::{collections::BTreeMap, path::Path, time::Duration};

use common::{
    TestRecord, committed, numbered_headers,
    postgres::{Postgres, broker},
    producer, read_topic, start_broker,
};
use rdkafka::{
    Message,
    message::{Header, OwnedHeaders},
    producer::FutureRecord,
};
use sluice::broker::free_local_addr;

const TOPIC: &str = "upgrade";
const WAIT: Duration = Duration::from_secs(30);

/// A record as read back: `(partition, value, headers)`, by key.
type Read = BTreeMap<u32, (i32, String, Vec<(String, String)>)>;

fn expected(range: std::ops::Range<u32>) -> Read {
    range
        .map(|n| {
            let partition = i32::try_from(n % 2).unwrap();
            (n, (partition, format!("v{n}"), numbered_headers(n)))
        })
        .collect()
}

async fn read_by_key(bootstrap: &str, count: usize) -> Read {
    read_topic(bootstrap, TOPIC, count)
        .await
        .into_iter()
        .map(|message| {
            let n: u32 = std::str::from_utf8(message.key().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            let headers = common::header_pairs(&message);
            let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
            (n, (message.partition(), value, headers))
        })
        .collect()
}

/// Produces records `range` as the fixtures' were: key n, value `v{n}`, partition n % 2.
async fn produce(bootstrap: &str, range: std::ops::Range<u32>) {
    let records: Vec<TestRecord> = range
        .map(|n| {
            let headers = numbered_headers(n)
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            (
                Some(n.to_string().into_bytes()),
                format!("v{n}").into_bytes(),
                headers,
            )
        })
        .collect();
    let producer = producer(bootstrap);
    for (key, value, headers) in &records {
        let key = key.as_deref().unwrap();
        let n: u32 = std::str::from_utf8(key).unwrap().parse().unwrap();
        let mut h = OwnedHeaders::new();
        for (name, v) in headers {
            h = h.insert(Header {
                key: name,
                value: Some(v),
            });
        }
        let record = FutureRecord::to(TOPIC)
            .partition(i32::try_from(n % 2).unwrap())
            .key(key)
            .payload(value)
            .headers(h);
        producer.send(record, WAIT).await.unwrap();
    }
    tokio::task::spawn_blocking(move || drop(producer))
        .await
        .unwrap();
}

/// What every upgraded broker must answer: the fixture's records with their headers and the
/// group's offsets, then 20 more records beside them.
async fn check_upgraded(bootstrap: &str) {
    assert_eq!(read_by_key(bootstrap, 60).await, expected(0..60));
    assert_eq!(
        committed(bootstrap, "upgrade-group", TOPIC).await,
        BTreeMap::from([(0, 20), (1, 15)])
    );
    produce(bootstrap, 60..80).await;
    assert_eq!(read_by_key(bootstrap, 80).await, expected(0..80));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_the_earlier_broker_wrote_keeps_its_records_headers_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nisshi-0.7/broker.db"),
        dir.path().join(sluice::broker::DATABASE_FILE),
    )
    .unwrap();

    let broker = start_broker(dir.path()).await;
    check_upgraded(&broker.bootstrap()).await;
    broker.shutdown().await;

    // A second start finds the schema current and changes nothing.
    let broker = start_broker(dir.path()).await;
    assert_eq!(read_by_key(&broker.bootstrap(), 80).await, expected(0..80));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_database_the_earlier_broker_wrote_keeps_its_records_headers_and_offsets() {
    let Some(postgres) = Postgres::start() else {
        return;
    };
    postgres
        .load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nisshi-0.7/broker.sql"));
    let url = postgres.url();
    let dir = tempfile::tempdir().unwrap();

    let listen = free_local_addr().unwrap();
    let daemon = broker(&url, listen, dir.path());
    check_upgraded(&listen.to_string()).await;
    drop(daemon);

    let listen = free_local_addr().unwrap();
    let _daemon = broker(&url, listen, dir.path());
    assert_eq!(read_by_key(&listen.to_string(), 80).await, expected(0..80));
}
