//! Added latency: produce → receipt through sluice against a raw rdkafka consumer on the same
//! broker, at the same fixed rate, in the same run.
//!
//! `cargo bench --bench latency`. First the saturated delivery rate is measured (unordered,
//! one event per request, `SAT_RECORDS` pre-filled records, default 50000); then an
//! open-loop producer sends `RECORDS` (default 100000) at half that rate (`RATE` sets it),
//! each record carrying its send time and a sequence number. A raw consumer with a trigger's
//! consumer settings and a trigger delivering to a no-op function in this process (on a
//! thread and runtime of its own; `FUNCTION_RUNTIME=shared` puts it on the bench's) read the
//! same records at the same time, each in its own group, for `partition`, `key` (1,000
//! keys) and `unordered` ordering. Both record send → receipt in HDR histograms; p50, p99
//! and p99.9 are printed, and the same quantiles of the per-record difference (how much
//! later the function got a record than the raw consumer did). A control runs first: a
//! second raw consumer in sluice's place, whose difference is what two consumers of the
//! same broker differ by anyway. A second control, the forwarder, puts a raw consumer that
//! POSTs each record's value to the same kind of function (plain hyper client, 64 in
//! flight, no offsets kept) in sluice's place: what one request per event adds with no
//! bridge of sluice's in the way.
//!
//! Then a `command` function (this binary, started by sluice) gets `BURSTS` bursts
//! (default 10) of 200 records: kept warm (`min: 1`), and at zero (`min: 0`, stopped after
//! each burst), for its cold-start p99 next to the warm one.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    io::Write as _,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
    producer::{FutureProducer, FutureRecord},
};
use sluice::{
    app::{RunOptions, Running},
    broker::{EmbeddedBroker, free_local_addr},
    config::{self, EmbeddedConfig, InitialOffset, Storage},
    kafka::{Kafka, TopicSpec},
};

const PARTITIONS: i32 = 4;
const IN_FLIGHT: usize = 64;
const VALUE_BYTES: usize = 100;
/// A record whose send time is this is a warm-up, not measured.
const WARM_UP: u64 = 0;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The send time and the sequence number a record's value starts with.
fn stamp(value: &[u8]) -> Option<(u64, u64)> {
    let sent = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    let seq = u64::from_le_bytes(value.get(8..16)?.try_into().ok()?);
    Some((sent, seq))
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds")
}

/// What a function or consumer saw: latencies, each measured record's receipt time by its
/// sequence number, and how many records (warm-ups included).
#[derive(Clone)]
struct Recorder {
    latency: Arc<Mutex<Histogram<u64>>>,
    receipts: Arc<Mutex<Vec<u64>>>,
    seen: Arc<AtomicU64>,
}

impl Recorder {
    fn new(count: u64) -> Self {
        Self {
            latency: Arc::new(Mutex::new(histogram())),
            receipts: Arc::new(Mutex::new(vec![0; count as usize])),
            seen: Arc::new(AtomicU64::new(0)),
        }
    }

    fn record(&self, value: &[u8]) {
        let now = now_us();
        if let Some((sent, seq)) = stamp(value)
            && sent != WARM_UP
        {
            let _ = self
                .latency
                .lock()
                .unwrap()
                .record(now.saturating_sub(sent).max(1));
            if let Some(slot) = self.receipts.lock().unwrap().get_mut(seq as usize) {
                *slot = now;
            }
        }
        self.seen.fetch_add(1, Ordering::Relaxed);
    }

    fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    fn measured(&self) -> u64 {
        self.latency.lock().unwrap().len()
    }
}

/// What a function does with each request's body.
type OnBody = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Serves a no-op function on `listener`: each request's body is a record's value.
async fn serve(listener: tokio::net::TcpListener, on_body: OnBody) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let on_body = on_body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let on_body = on_body.clone();
                async move {
                    if let Ok(body) = request.into_body().collect().await {
                        on_body(&body.to_bytes());
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A no-op function on a thread and runtime of its own, as a function in another process
/// would be: its receipt times do not wait for the runtime sluice and the broker run on.
/// `FUNCTION_RUNTIME=shared` serves it on the bench's runtime instead.
async fn in_process_function(recorder: Recorder) -> SocketAddr {
    let on_body: OnBody = Arc::new(move |body: &[u8]| recorder.record(body));
    if std::env::var("FUNCTION_RUNTIME").is_ok_and(|v| v == "shared") {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, on_body));
        return addr;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || serve_on_own_runtime(listener, on_body));
    addr
}

/// Serves a no-op function on `listener` from a single-threaded runtime on this thread,
/// until the process ends.
fn serve_on_own_runtime(listener: std::net::TcpListener, on_body: OnBody) {
    listener.set_nonblocking(true).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        serve(listener, on_body).await;
    });
}

/// The `command` function: serves on `$PORT` and appends each latency in microseconds to
/// `$LATENCY_OUT`.
fn function_process() {
    let port: u16 = std::env::var("PORT").unwrap().parse().unwrap();
    let out = std::env::var("LATENCY_OUT").unwrap();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let file = Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .unwrap(),
    );
    serve_on_own_runtime(
        listener,
        Arc::new(move |body: &[u8]| {
            let now = now_us();
            if let Some((sent, _)) = stamp(body)
                && sent != WARM_UP
            {
                // One write of a whole line: instances append to one file.
                let line = format!("{}\n", now.saturating_sub(sent));
                let _ = file.lock().unwrap().write_all(line.as_bytes());
            }
        }),
    );
}

fn producer(bootstrap: &str) -> FutureProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "linger.ms",
            std::env::var("LINGER").unwrap_or_else(|_| "5".into()),
        )
        .create()
        .unwrap()
}

fn value(sent: u64, seq: u64) -> Vec<u8> {
    let mut value = sent.to_le_bytes().to_vec();
    value.extend_from_slice(&seq.to_le_bytes());
    value.resize(VALUE_BYTES, b'x');
    value
}

/// Sends `count` records at `rate` per second, open loop: each goes when it is due, whatever
/// the consumer does. Keys cycle through `keys`.
async fn produce_at(producer: &FutureProducer, topic: &str, rate: f64, count: u64, keys: u64) {
    let mut pending = Vec::with_capacity(count as usize);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0u64;
    while sent < count {
        let _ = tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate) as u64).min(count);
        while sent < due {
            let key = (sent % keys).to_string();
            let value = value(now_us(), sent);
            let record = FutureRecord::to(topic).key(&key).payload(&value);
            match producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((err, _)) => panic!("cannot produce: {err}"),
            }
            sent += 1;
        }
    }
    for delivery in pending {
        delivery.await.unwrap().unwrap();
    }
}

/// Produces warm-up records until `seen` moves: the reader has its partitions.
async fn warm_up(producer: &FutureProducer, topic: &str, seen: impl Fn() -> u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = seen();
    let value = value(WARM_UP, 0);
    while seen() == before {
        assert!(Instant::now() < deadline, "the reader never got a record");
        for partition in 0..PARTITIONS {
            let record = FutureRecord::<(), _>::to(topic)
                .partition(partition)
                .payload(&value);
            let _ = producer.send(record, Duration::from_secs(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let every partition's warm-up through.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

async fn create_topic(kafka: &Kafka, name: &str) {
    kafka
        .create_topic(&TopicSpec {
            name: name.into(),
            partitions: PARTITIONS,
            replication: 1,
            config: BTreeMap::new(),
        })
        .await
        .unwrap();
}

async fn wait_measured(measured: impl Fn() -> u64, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while measured() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} measured",
            measured()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A consumer with a trigger's consumer settings, subscribed to `topic` in `group` from the
/// earliest offset.
fn subscribed(kafka: &Kafka, group: &str, topic: &str) -> Arc<StreamConsumer> {
    let consumer: StreamConsumer =
        sluice::trigger::consumer_config(kafka, group, InitialOffset::Earliest)
            .create()
            .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    Arc::new(consumer)
}

/// A raw consumer with a trigger's consumer settings, reading `topic` in a group of its own
/// and recording into `recorder` until aborted.
fn raw_reader(
    kafka: &Kafka,
    group: &str,
    topic: &str,
    recorder: Recorder,
) -> (Arc<StreamConsumer>, tokio::task::JoinHandle<()>) {
    let consumer = subscribed(kafka, &format!("raw-{group}"), topic);
    let reader = {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            loop {
                match consumer.recv().await {
                    Ok(message) => recorder.record(message.payload().unwrap_or_default()),
                    Err(err) => eprintln!("consumer error: {err}"),
                }
            }
        })
    };
    (consumer, reader)
}

/// A raw consumer that forwards each record to the function at `addr` as one HTTP POST of
/// its value, up to [`IN_FLIGHT`] at once, with a plain hyper client: one event per request
/// and nothing else (no CloudEvent headers, no offsets kept, no commits). What it adds to the
/// raw consumer is what a request per event costs, with no bridge of sluice's in the way.
fn forwarding_reader(
    kafka: &Kafka,
    group: &str,
    topic: &str,
    addr: SocketAddr,
) -> (Arc<StreamConsumer>, tokio::task::JoinHandle<()>) {
    let consumer = subscribed(kafka, &format!("forward-{group}"), topic);
    // TCP_NODELAY, as sluice's connections have it.
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let uri: hyper::Uri = format!("http://{addr}/").parse().unwrap();
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let reader = {
        let consumer = consumer.clone();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                let body = match consumer.recv().await {
                    Ok(message) => Bytes::copy_from_slice(message.payload().unwrap_or_default()),
                    Err(err) => {
                        eprintln!("consumer error: {err}");
                        continue;
                    }
                };
                let slot = slots.clone().acquire_owned().await.unwrap();
                let (client, uri) = (client.clone(), uri.clone());
                tasks.spawn(async move {
                    let request = Request::post(uri).body(Full::new(body)).unwrap();
                    if let Ok(response) = client.request(request).await {
                        let _ = response.into_body().collect().await;
                    }
                    drop(slot);
                });
                while tasks.try_join_next().is_some() {}
            }
        })
    };
    (consumer, reader)
}

/// One ordering's figures: the raw consumer's and sluice's produce → receipt, and per record
/// how much later sluice's function got it than the raw consumer did.
struct Paired {
    raw: Histogram<u64>,
    sluice: Histogram<u64>,
    /// Sorted, in microseconds; negative when the function was first.
    added: Vec<i64>,
}

/// The same records read at once by a raw consumer and by a trigger delivering to a no-op
/// function in this process, at `rate`.
async fn paired(bootstrap: &str, topic: &str, ordering: &str, rate: f64, count: u64) -> Paired {
    let kafka = Kafka::new(bootstrap, BTreeMap::new());
    create_topic(&kafka, topic).await;
    let raw = Recorder::new(count);
    let (consumer, reader) = raw_reader(&kafka, topic, topic, raw.clone());
    let ours = Recorder::new(count);
    // The control: a second raw consumer in the place of sluice.
    let (running, control) = if ordering == "control" {
        (
            None,
            Some(raw_reader(
                &kafka,
                &format!("{topic}-control"),
                topic,
                ours.clone(),
            )),
        )
    } else if ordering == "forwarder" {
        // The second control: a raw consumer forwarding each record to the same function.
        let addr = in_process_function(ours.clone()).await;
        (None, Some(forwarding_reader(&kafka, topic, topic, addr)))
    } else {
        let addr = in_process_function(ours.clone()).await;
        let running = start(&trigger_yaml(
            bootstrap,
            topic,
            ordering,
            &format!("url: http://{addr}/"),
            "",
        ))
        .await;
        (Some(running), None)
    };
    let producer = producer(bootstrap);
    warm_up(&producer, topic, || raw.seen().min(ours.seen())).await;
    produce_at(&producer, topic, rate, count, 1000).await;
    wait_measured(|| raw.measured().min(ours.measured()), count).await;
    if let Some(running) = running {
        running.shutdown(Duration::from_secs(5)).await;
    }
    if let Some((consumer, reader)) = control {
        reader.abort();
        let _ = reader.await;
        tokio::task::spawn_blocking(move || drop(consumer))
            .await
            .unwrap();
    }
    reader.abort();
    let _ = reader.await;
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .unwrap();
    let mut added: Vec<i64> = {
        let (raw, ours) = (raw.receipts.lock().unwrap(), ours.receipts.lock().unwrap());
        raw.iter()
            .zip(ours.iter())
            .filter(|(r, o)| **r > 0 && **o > 0)
            .map(|(r, o)| *o as i64 - *r as i64)
            .collect()
    };
    added.sort_unstable();
    let raw = raw.latency.lock().unwrap().clone();
    let sluice = ours.latency.lock().unwrap().clone();
    Paired { raw, sluice, added }
}

fn trigger_yaml(bootstrap: &str, topic: &str, ordering: &str, target: &str, extra: &str) -> String {
    format!(
        "\
kafka:
  bootstrap_servers: \"{bootstrap}\"
admin:
  listen: \"{admin}\"
{extra}triggers:
  - name: latency-{topic}
    topics: [{topic}]
    {target}
    initial_offset: earliest
    ordering: {ordering}
    max_in_flight: {IN_FLIGHT}
    dead_letter: none
",
        admin = free_local_addr().unwrap(),
    )
}

async fn start(yaml: &str) -> Running {
    let config = config::parse(yaml, "bench.yaml").unwrap();
    Running::start(
        &config,
        RunOptions {
            admin: false,
            triggers: true,
            grace: Duration::from_secs(5),
        },
    )
    .await
    .unwrap()
}

/// Bursts of `burst` records at `rate` to a `command` function, `min` instances kept; with
/// `min: 0` each burst waits until the function is stopped, so it starts on the burst's
/// first record.
async fn command_bursts(
    bootstrap: &str,
    topic: &str,
    min: usize,
    rate: f64,
    bursts: usize,
    burst: u64,
) -> Histogram<u64> {
    let kafka = Kafka::new(bootstrap, BTreeMap::new());
    create_topic(&kafka, topic).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("latency.txt");
    let exe = std::env::current_exe().unwrap();
    let function = format!(
        "functions:
  probe:
    command: [\"{exe}\"]
    env: {{LATENCY_FUNCTION: \"1\", LATENCY_OUT: \"{out}\"}}
    min: {min}
    max: 4
    concurrency: 64
    idle_timeout: 1s
",
        exe = exe.display(),
        out = out.display()
    );
    let running = start(&trigger_yaml(
        bootstrap,
        topic,
        "unordered",
        "function: probe",
        &function,
    ))
    .await;
    let producer = producer(bootstrap);
    let lines = || {
        std::fs::read_to_string(&out)
            .map(|text| text.lines().count() as u64)
            .unwrap_or(0)
    };
    for n in 0..bursts {
        if min == 0 {
            // Past idle_timeout, the instance is gone.
            tokio::time::sleep(Duration::from_millis(2500)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        produce_at(&producer, topic, rate, burst, 1000).await;
        wait_measured(lines, (n as u64 + 1) * burst).await;
    }
    let starts = running
        .state()
        .metrics()
        .encode()
        .lines()
        .find_map(|line| {
            line.strip_prefix("sluice_function_cold_starts_total{function=\"probe\"} ")?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    println!("  min: {min}: {starts} instance starts over {bursts} bursts");
    running.shutdown(Duration::from_secs(5)).await;
    let mut latency = histogram();
    for line in std::fs::read_to_string(&out).unwrap().lines() {
        let _ = latency.record(line.parse::<u64>().unwrap().max(1));
    }
    latency
}

/// Delivery events/s, saturated: unordered, one event per request, over a pre-filled topic.
async fn saturated_rate(bootstrap: &str, total: u64) -> f64 {
    let kafka = Kafka::new(bootstrap, BTreeMap::new());
    create_topic(&kafka, "saturated").await;
    let producer = producer(bootstrap);
    let mut pending = Vec::new();
    for n in 0..total {
        let key = n.to_string();
        let value = value(1, n);
        loop {
            match producer.send_result(FutureRecord::to("saturated").key(&key).payload(&value)) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
    }
    for delivery in pending {
        delivery.await.unwrap().unwrap();
    }
    let recorder = Recorder::new(0);
    let addr = in_process_function(recorder.clone()).await;
    let running = start(&trigger_yaml(
        bootstrap,
        "saturated",
        "unordered",
        &format!("url: http://{addr}/"),
        "",
    ))
    .await;
    let deadline = Instant::now() + Duration::from_secs(600);
    while recorder.seen() == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    let first = recorder.seen();
    while recorder.seen() < total {
        assert!(Instant::now() < deadline, "only {}", recorder.seen());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = (total - first) as f64 / started.elapsed().as_secs_f64();
    running.shutdown(Duration::from_secs(5)).await;
    rate
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn line(name: &str, h: &Histogram<u64>) -> String {
    format!(
        "{name}: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({} records)",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.len()
    )
}

/// The `q` quantile of sorted values.
fn quantile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn added(sorted: &[i64]) -> String {
    let at = |q: f64| quantile(sorted, q) as f64 / 1000.0;
    format!(
        "added per record (sluice's function minus the raw consumer): p50 {:+.2} ms, p99 {:+.2} ms, p99.9 {:+.2} ms ({} records)",
        at(0.5),
        at(0.99),
        at(0.999),
        sorted.len()
    )
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::var_os("LATENCY_FUNCTION").is_some() {
        function_process();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let records: u64 = env_or("RECORDS", 100_000);
    let saturation_records: u64 = env_or("SAT_RECORDS", 50_000);
    let bursts: usize = env_or("BURSTS", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // STORAGE=memory runs the embedded broker on memory storage instead of SQLite.
    let (storage, storage_name) = if std::env::var("STORAGE").is_ok_and(|s| s == "memory") {
        (Storage::Memory, "memory storage")
    } else {
        (Storage::Sqlite, "SQLite")
    };
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let broker = EmbeddedBroker::start(
            &EmbeddedConfig {
                listen: free_local_addr().unwrap(),
                storage,
                default_partitions: PARTITIONS,
            },
            dir.path(),
        )
        .await
        .unwrap();
        let bootstrap = broker.bootstrap();
        let rate = match std::env::var("RATE").ok().and_then(|r| r.parse::<f64>().ok()) {
            Some(rate) => {
                println!("rate: {rate:.0} records/s (RATE)");
                rate
            }
            None => {
                let saturated = saturated_rate(&bootstrap, saturation_records).await;
                println!(
                    "saturated delivery: {saturated:.0} events/s (unordered, one per request); rate: half, {:.0} records/s",
                    saturated / 2.0
                );
                saturated / 2.0
            }
        };
        println!(
            "{records} records x {VALUE_BYTES} bytes, {PARTITIONS} partitions, 1,000 keys, embedded broker ({storage_name}), open-loop producer (linger.ms {})",
            std::env::var("LINGER").unwrap_or_else(|_| "5".into())
        );
        for ordering in ["control", "forwarder", "partition", "key", "unordered"] {
            let figures = paired(&bootstrap, &format!("latency-{ordering}"), ordering, rate, records).await;
            if ordering == "control" {
                println!("control, a second raw consumer in sluice's place:");
                println!("  {}", line("raw consumer", &figures.raw));
                println!("  {}", line("second raw consumer", &figures.sluice));
                println!("  {}", added(&figures.added).replace("sluice's function", "the second"));
                continue;
            }
            if ordering == "forwarder" {
                println!(
                    "forwarder, a raw consumer POSTing each record to the same function ({IN_FLIGHT} in flight, plain hyper client) in sluice's place:"
                );
                println!("  {}", line("raw consumer", &figures.raw));
                println!("  {}", line("forwarder's function", &figures.sluice));
                println!(
                    "  {}",
                    added(&figures.added).replace("sluice's function", "the forwarder's function")
                );
                continue;
            }
            println!("{ordering}:");
            println!("  {}", line("raw consumer", &figures.raw));
            println!("  {}", line("sluice", &figures.sluice));
            println!("  {}", added(&figures.added));
        }
        let burst = 200;
        let warm = command_bursts(&bootstrap, "warm", 1, rate, bursts, burst).await;
        let cold = command_bursts(&bootstrap, "cold", 0, rate, bursts, burst).await;
        println!("command function, {bursts} bursts of {burst} records at {rate:.0}/s:");
        println!("  {}", line("warm (min: 1)", &warm));
        println!("  {}", line("from zero (min: 0)", &cold));
        broker.shutdown().await;
    });
}
