//! Delivery throughput: sluice's trigger against a plain hyper client sending the same
//! requests to the same no-op function, in the same process and run.
//!
//! `cargo bench --bench delivery` (env `RECORDS`, default 100000; `STORAGE=memory` for the
//! embedded broker's memory storage instead of SQLite). Prints events/s for each
//! and the ratios the design asks for: unordered at 64 in flight (target ≥ 0.7×) and
//! partition-ordered against one-at-a-time per partition (target ≥ 0.8×), in `ROUNDS` rounds
//! (default 3) with the median ratio at the end. In each round the plain client runs right
//! before and right after sluice and its mean is the baseline. `MODE=unordered`
//! or `MODE=ordered` runs one of the two; `MODE=filter` measures unordered delivery with a
//! CESQL filter that passes every record against the same trigger without one; `MODE=batch`
//! measures batched delivery (`BATCH` events at most, default 1000; the function parses each
//! batch) against a raw rdkafka consumer draining the same records with a trigger's consumer
//! settings; `MODE=nginx` delivers unordered to nginx from Debian (a `return 200` on
//! loopback, one worker) against wrk at 64 connections on the same nginx, and runs a
//! forwarder there too; `MODE=forwarder` measures unordered delivery against the least bridge
//! from Kafka to HTTP (a raw consumer POSTing each record through the plain client, with no
//! offsets kept) and against the plain client, all with sluice's headers; `MODE=curve` prints
//! events/s and CPU per event as partitions, triggers, record size and distinct keys grow
//! (`bench/curve.py` plots them; `CURVE=bytes,keys` measures only those). Each phase also prints the process's CPU time per
//! event (user and system, every thread: broker, client, function and sluice).

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Request, Response,
    body::Incoming,
    header::{CONTENT_TYPE, HeaderName, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice::{
    app::{RunOptions, Running},
    broker::{EmbeddedBroker, free_local_addr},
    config::{self, EmbeddedConfig, Storage},
    event::{self, EventSettings, Record},
    kafka::{Kafka, TopicSpec},
};

const PARTITIONS: i32 = 4;
const IN_FLIGHT: usize = 64;

/// The filter of `MODE=filter`: true for every record, reading three attributes.
const FILTER: &str = "EXISTS id AND type = 'dev.knative.kafka.event' AND source LIKE '/sluice/%'";

/// A no-op function that counts requests.
#[derive(Clone, Default)]
struct Counter {
    count: Arc<AtomicU64>,
}

async fn serve_noop(counter: Counter) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let counter = counter.clone();
                    async move {
                        let batch = request
                            .headers()
                            .get(CONTENT_TYPE)
                            .is_some_and(|t| t == "application/cloudevents-batch+json");
                        let body = request.into_body().collect().await;
                        let events = match (batch, body) {
                            // A batch is parsed whole, as a function would.
                            (true, Ok(body)) => {
                                serde_json::from_slice::<Vec<serde_json::Value>>(&body.to_bytes())
                                    .map_or(0, |events| events.len() as u64)
                            }
                            _ => 1,
                        };
                        counter.count.fetch_add(events, Ordering::Relaxed);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// CPU time this process has used so far (user + system), from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// One delivery mode measured against the plain client.
struct Mode {
    name: &'static str,
    /// Pre-filled topic; also the `MODE` value that selects it.
    topic: &'static str,
    ordering: &'static str,
    /// The plain client's concurrency.
    workers: usize,
    baseline: String,
    target: f64,
}

/// The median of `ratios`, with the lowest and highest.
fn summary(mut ratios: Vec<f64>) -> String {
    ratios.sort_by(f64::total_cmp);
    format!(
        "{:.2} ({:.2}–{:.2})",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    )
}

/// Events/s and CPU microseconds per event of one measured phase.
struct Phase {
    rate: f64,
    cpu_us: f64,
}

impl Phase {
    /// The mean of a phase measured before sluice's and the same one measured after it: the
    /// machine's speed drifts, and a drift during the round then moves both sides alike.
    fn and(self, after: Phase) -> Phase {
        Phase {
            rate: (self.rate + after.rate) / 2.0,
            cpu_us: (self.cpu_us + after.cpu_us) / 2.0,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.0}/s, {:.1} CPU-us each", self.rate, self.cpu_us)
    }
}

/// Plain hyper client: `workers` tasks, each sending one request at a time.
/// Headers of a request: the plain client's few, or sluice's whole set for a record.
type Headers = Arc<Vec<(HeaderName, HeaderValue)>>;

/// The plain client's headers: a CloudEvent's bare minimum.
fn few_headers() -> Headers {
    Arc::new(vec![
        (
            HeaderName::from_static("ce-specversion"),
            HeaderValue::from_static("1.0"),
        ),
        (
            HeaderName::from_static("ce-id"),
            HeaderValue::from_static("partition:0/offset:0"),
        ),
        (
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        ),
    ])
}

/// The headers sluice sends for a record like the benchmark's (the wire contract's set).
fn sluice_headers() -> Headers {
    let record = Record {
        topic: "unordered".into(),
        partition: 2,
        offset: 12345,
        timestamp: Some(1_700_000_000_000),
        key: Some(Bytes::from_static(b"12345")),
        value: Some(Bytes::from(vec![b'x'; 100])),
        headers: Vec::new(),
    };
    let settings = EventSettings {
        trigger: "bench-unordered-1".into(),
        source: None,
        event_type: None,
        content_type: "application/octet-stream".into(),
    };
    Arc::new(event::from_record(&record, &settings).headers)
}

async fn plain_client(url: &str, total: u64, workers: usize, headers: Headers) -> Phase {
    let client = plain_http_client();
    let uri: hyper::Uri = url.parse().unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let body = Bytes::from(vec![b'x'; 100]);
    eprintln!("measuring the plain client, {} headers", headers.len());
    let started = Instant::now();
    let cpu = cpu_seconds();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, uri, next, body, headers) = (
            client.clone(),
            uri.clone(),
            next.clone(),
            body.clone(),
            headers.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let mut request = Request::post(uri.clone())
                    .body(Full::new(body.clone()))
                    .unwrap();
                for (name, value) in headers.iter() {
                    let _ = request.headers_mut().append(name.clone(), value.clone());
                }
                let response = client.request(request).await.unwrap();
                let _ = response.into_body().collect().await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    Phase {
        rate: total as f64 / started.elapsed().as_secs_f64(),
        cpu_us: (cpu_seconds() - cpu) * 1e6 / total as f64,
    }
}

async fn produce(bootstrap: &str, topic: &str, total: u64) {
    produce_with(bootstrap, topic, total, 100, u64::MAX).await;
}

/// Produces `total` records of `size` bytes, keyed by their number modulo `keys`.
async fn produce_with(bootstrap: &str, topic: &str, total: u64, size: usize, keys: u64) {
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let value = vec![b'x'; size];
    let mut pending = Vec::new();
    for n in 0..total {
        let key = (n % keys).to_string();
        let mut record = FutureRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send_result(record) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((_, back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        if pending.len() >= 50_000 {
            for f in pending.drain(..) {
                f.await.unwrap().unwrap();
            }
        }
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
    tokio::task::spawn_blocking(move || drop(producer))
        .await
        .unwrap();
}

/// A raw rdkafka consumer with a trigger's consumer settings, subscribed to `topic` in
/// `group` from the earliest offset.
fn raw_consumer(bootstrap: &str, topic: &str, group: &str) -> rdkafka::consumer::StreamConsumer {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let kafka = Kafka::new(bootstrap, BTreeMap::new());
    let consumer: StreamConsumer =
        sluice::trigger::consumer_config(&kafka, group, config::InitialOffset::Earliest)
            .create()
            .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// The plain client: hyper's pooled client, with `TCP_NODELAY` as sluice sets it.
fn plain_http_client() -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Reads `total` records of `topic` with a raw consumer in `group`, handing each value to
/// `each`. Returns the consumer, when its first record came and the process's CPU time then.
async fn read_raw(
    bootstrap: &str,
    topic: &str,
    group: &str,
    total: u64,
    mut each: impl AsyncFnMut(&[u8]),
) -> (rdkafka::consumer::StreamConsumer, Instant, f64) {
    use rdkafka::Message;
    let consumer = raw_consumer(bootstrap, topic, group);
    let mut first = None;
    let mut cpu = cpu_seconds();
    let started = Instant::now();
    for seen in 0..total {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {seen} of {total}"
        );
        let message = consumer.recv().await.unwrap();
        if first.is_none() {
            first = Some(Instant::now());
            cpu = cpu_seconds();
        }
        each(message.payload().unwrap_or_default()).await;
    }
    (consumer, first.unwrap_or(started), cpu)
}

/// The phase of `total` events from `first` and the CPU time `cpu` then, to now; closes
/// `consumer` afterwards (leaving its group takes a while).
async fn raw_phase(
    consumer: rdkafka::consumer::StreamConsumer,
    first: Instant,
    cpu: f64,
    total: u64,
) -> Phase {
    let elapsed = first.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .unwrap();
    Phase {
        rate: total as f64 / elapsed,
        cpu_us: cpu * 1e6 / total as f64,
    }
}

/// A raw rdkafka consumer draining the topic with a trigger's consumer settings, and doing
/// nothing else with the records; events/s from the first record to the last.
async fn raw_drain(bootstrap: &str, topic: &str, total: u64, group: &str) -> Phase {
    eprintln!("measuring a raw consumer draining {topic}");
    let mut bytes = 0usize;
    let (consumer, first, cpu) = read_raw(bootstrap, topic, group, total, async |value| {
        bytes += value.len();
    })
    .await;
    assert!(bytes > 0);
    raw_phase(consumer, first, cpu, total).await
}

/// nginx from Debian answering 200 to every request, on a free loopback port, with one
/// worker: the function in another process.
struct Nginx {
    child: std::process::Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start() -> Option<Self> {
        let binary = std::path::Path::new("/usr/sbin/nginx");
        if !binary.exists() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let addr = free_local_addr().unwrap();
        let prefix = dir.path().display();
        let conf = dir.path().join("nginx.conf");
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        std::fs::write(
            &conf,
            format!(
                "\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  server {{
    listen {addr};
    location / {{ return 200; }}
  }}
}}
"
            ),
        )
        .unwrap();
        let child = std::process::Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.path().join("logs/error.log"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self { child, addr, dir })
    }

    /// wrk against it: `connections` connections over 2 threads for `seconds`, POSTing
    /// 100 bytes with the headers sluice sends; returns requests/s.
    fn wrk(&self, connections: usize, seconds: u64, headers: &Headers) -> f64 {
        let script = self.dir.path().join("post.lua");
        let mut lua = String::from("wrk.method = \"POST\"\nwrk.body = string.rep(\"x\", 100)\n");
        for (name, value) in headers.iter() {
            lua.push_str(&format!(
                "wrk.headers[\"{}\"] = \"{}\"\n",
                name.as_str(),
                value.to_str().unwrap_or_default().replace('"', "\\\"")
            ));
        }
        std::fs::write(&script, lua).unwrap();
        eprintln!("measuring wrk against nginx, {connections} connections");
        let output = std::process::Command::new("wrk")
            .args(["-t2", &format!("-c{connections}"), &format!("-d{seconds}s")])
            .arg("-s")
            .arg(&script)
            .arg(format!("http://{}/", self.addr))
            .output()
            .expect("wrk (Debian: apt-get install wrk)");
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .find_map(|line| line.trim().strip_prefix("Requests/sec:"))
            .and_then(|rate| rate.trim().parse().ok())
            .unwrap_or_else(|| panic!("no rate in wrk's output:\n{text}"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master stops its worker, which would outlive it.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// The least a bridge from Kafka to HTTP does: a raw rdkafka consumer with a trigger's
/// consumer settings, in a group of its own, POSTing each record's value with `headers` to
/// `url` through the plain hyper client, [`IN_FLIGHT`] at once. It keeps no offsets, commits
/// nothing and never retries, so what sluice does past it is what its guarantees cost.
/// Events/s from the first record to the last answer.
async fn forwarder(
    bootstrap: &str,
    topic: &str,
    url: &str,
    total: u64,
    group: &str,
    headers: Headers,
) -> Phase {
    let client = plain_http_client();
    let uri: hyper::Uri = url.parse().unwrap();
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let answered = Arc::new(AtomicU64::new(0));
    eprintln!("measuring a forwarder (raw consumer and plain client) against {url}");
    let mut tasks = tokio::task::JoinSet::new();
    let (consumer, first, cpu) = read_raw(bootstrap, topic, group, total, async |value| {
        let body = Bytes::copy_from_slice(value);
        let slot = slots.clone().acquire_owned().await.unwrap();
        let (client, uri, headers, answered) = (
            client.clone(),
            uri.clone(),
            headers.clone(),
            answered.clone(),
        );
        tasks.spawn(async move {
            let mut request = Request::post(uri).body(Full::new(body)).unwrap();
            for (name, value) in headers.iter() {
                let _ = request.headers_mut().append(name.clone(), value.clone());
            }
            let response = client.request(request).await.unwrap();
            let _ = response.into_body().collect().await;
            answered.fetch_add(1, Ordering::Relaxed);
            drop(slot);
        });
        while tasks.try_join_next().is_some() {}
    })
    .await;
    while tasks.join_next().await.is_some() {}
    assert_eq!(answered.load(Ordering::Relaxed), total);
    raw_phase(consumer, first, cpu, total).await
}

/// Runs one trigger over a pre-filled topic, delivering to `url` outside this process;
/// returns events/s from the first delivery to the last, read from sluice's metrics.
async fn sluice_external(
    bootstrap: &str,
    topic: &str,
    url: &str,
    round: usize,
    total: u64,
) -> Phase {
    let name = format!("bench-external-{round}");
    let yaml = format!(
        "\
kafka:
  bootstrap_servers: \"{bootstrap}\"
  client: {{{client}}}
triggers:
  - name: {name}
    topics: [{topic}]
    url: {url}
    initial_offset: earliest
    ordering: unordered
    max_in_flight: {IN_FLIGHT}
    dead_letter: none
",
        client = std::env::var("CLIENT").unwrap_or_default(),
    );
    let config = config::parse(&yaml, "bench.yaml").unwrap();
    eprintln!("measuring sluice against {url}");
    let running = Running::start(
        &config,
        RunOptions {
            admin: false,
            triggers: true,
            grace: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    let needle = format!("sluice_events_delivered_total{{trigger=\"{name}\"}} ");
    let delivered = || {
        running
            .state()
            .metrics()
            .encode()
            .lines()
            .find_map(|line| line.strip_prefix(&needle)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let started = Instant::now();
    let mut first = None;
    let mut cpu = cpu_seconds();
    loop {
        let n = delivered();
        if n > 0 && first.is_none() {
            first = Some((Instant::now(), n));
            cpu = cpu_seconds();
        }
        if n >= total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {n} of {total}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (at, from) = first.unwrap_or((started, 0));
    let elapsed = at.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    running.shutdown(Duration::from_secs(5)).await;
    Phase {
        rate: (total - from) as f64 / elapsed,
        cpu_us: cpu * 1e6 / (total - from) as f64,
    }
}

/// Runs `triggers` triggers over one pre-filled topic of `total` records, each delivering
/// every record to the same no-op function; returns delivered events/s over all of them.
async fn sluice_triggers(
    bootstrap: &str,
    topic: &str,
    ordering: &str,
    triggers: usize,
    total: u64,
    tag: &str,
) -> Phase {
    let function = Counter::default();
    let addr = serve_noop(function.clone()).await;
    let mut yaml = format!(
        "\
kafka:
  bootstrap_servers: \"{bootstrap}\"
  client: {{{client}}}
triggers:
",
        client = std::env::var("CLIENT").unwrap_or_default(),
    );
    for n in 0..triggers {
        yaml.push_str(&format!(
            "  - name: curve-{tag}-{n}
    topics: [{topic}]
    url: http://{addr}/
    initial_offset: earliest
    ordering: {ordering}
    max_in_flight: {IN_FLIGHT}
    dead_letter: none
"
        ));
    }
    let config = config::parse(&yaml, "bench.yaml").unwrap();
    let expected = total * triggers as u64;
    let started = Instant::now();
    let running = Running::start(
        &config,
        RunOptions {
            admin: false,
            triggers: true,
            grace: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    let mut first = None;
    let mut cpu = cpu_seconds();
    loop {
        let n = function.count.load(Ordering::Relaxed);
        if n > 0 && first.is_none() {
            first = Some((Instant::now(), n));
            cpu = cpu_seconds();
        }
        if n >= expected {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "only {n} of {expected}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (at, from) = first.unwrap_or((started, 0));
    let elapsed = at.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    running.shutdown(Duration::from_secs(5)).await;
    Phase {
        rate: (expected - from) as f64 / elapsed,
        cpu_us: cpu * 1e6 / (expected - from) as f64,
    }
}

/// How cost grows with partitions, triggers, record size and distinct keys: one line of
/// `curve,<dimension>,<value>,<events/s>,<CPU-us per event>` each, for `bench/curve.py`.
async fn cost_curve(bootstrap: &str, total: u64) {
    let kafka = Kafka::new(bootstrap, BTreeMap::new());
    let create = |name: String, partitions: i32| {
        let kafka = kafka.clone();
        async move {
            kafka
                .create_topic(&TopicSpec {
                    name,
                    partitions,
                    replication: 1,
                    config: BTreeMap::new(),
                })
                .await
                .unwrap();
        }
    };
    // CURVE=partitions,bytes (say) measures only those.
    let only = std::env::var("CURVE").ok();
    let wanted = |dimension: &str| {
        only.as_deref()
            .is_none_or(|only| only.split(',').any(|d| d == dimension))
    };
    let report = |dimension: &str, value: u64, phase: &Phase| {
        println!("{dimension} {value}: {phase}");
        println!(
            "curve,{dimension},{value},{:.0},{:.2}",
            phase.rate, phase.cpu_us
        );
    };
    // Partitions, under partition order: each partition is a lane.
    for partitions in [1, 4, 16, 64].into_iter().filter(|_| wanted("partitions")) {
        let topic = format!("curve-partitions-{partitions}");
        create(topic.clone(), partitions).await;
        produce(bootstrap, &topic, total).await;
        let phase = sluice_triggers(bootstrap, &topic, "partition", 1, total, &topic).await;
        report("partitions", partitions as u64, &phase);
    }
    // Triggers on one topic, unordered: each reads every record.
    if wanted("triggers") {
        create("curve-triggers".into(), PARTITIONS).await;
        produce(bootstrap, "curve-triggers", total).await;
    }
    for triggers in [1, 4, 16].into_iter().filter(|_| wanted("triggers")) {
        let phase = sluice_triggers(
            bootstrap,
            "curve-triggers",
            "unordered",
            triggers,
            total,
            &format!("triggers-{triggers}"),
        )
        .await;
        report("triggers", triggers as u64, &phase);
    }
    // Record size, unordered; larger records are fewer, at most 256 MiB a topic.
    for size in [100usize, 1024, 65536]
        .into_iter()
        .filter(|_| wanted("bytes"))
    {
        let topic = format!("curve-size-{size}");
        let count = total.min((256 << 20) / size as u64);
        create(topic.clone(), PARTITIONS).await;
        produce_with(bootstrap, &topic, count, size, u64::MAX).await;
        let phase = sluice_triggers(bootstrap, &topic, "unordered", 1, count, &topic).await;
        report("bytes", size as u64, &phase);
    }
    // Distinct keys under key order.
    for keys in [10u64, 1000, 100_000]
        .into_iter()
        .filter(|_| wanted("keys"))
    {
        let topic = format!("curve-keys-{keys}");
        create(topic.clone(), PARTITIONS).await;
        produce_with(bootstrap, &topic, total, 100, keys).await;
        let phase = sluice_triggers(bootstrap, &topic, "key", 1, total, &topic).await;
        report("keys", keys, &phase);
    }
}

/// Runs one trigger over a pre-filled topic; returns events/s from start to the last one.
async fn sluice_run(
    bootstrap: &str,
    topic: &str,
    ordering: &str,
    round: usize,
    total: u64,
    extra: &str,
    tag: &str,
) -> Phase {
    let function = Counter::default();
    let addr = serve_noop(function.clone()).await;
    let yaml = format!(
        "\
kafka:
  bootstrap_servers: \"{bootstrap}\"
  client: {{{client}}}
admin:
  listen: \"{admin}\"
triggers:
  - name: bench-{ordering}-{round}-{tag}
    topics: [{topic}]
    url: http://{addr}/
    initial_offset: earliest
    ordering: {ordering}
    max_in_flight: {IN_FLIGHT}
    dead_letter: none
{extra}",
        admin = free_local_addr().unwrap(),
        // CLIENT="key: value, ..." passes librdkafka properties to the trigger.
        client = std::env::var("CLIENT").unwrap_or_default(),
    );
    let config = config::parse(&yaml, "bench.yaml").unwrap();
    eprintln!("measuring sluice, {ordering}");
    let started = Instant::now();
    let running = Running::start(
        &config,
        RunOptions {
            admin: false,
            triggers: true,
            grace: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    let mut first = None;
    let mut cpu = cpu_seconds();
    loop {
        let n = function.count.load(Ordering::Relaxed);
        if n > 0 && first.is_none() {
            first = Some(Instant::now());
            cpu = cpu_seconds();
        }
        if n >= total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "only {n} of {total}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = first.unwrap_or(started).elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    running.shutdown(Duration::from_secs(5)).await;
    Phase {
        rate: total as f64 / elapsed,
        cpu_us: cpu * 1e6 / total as f64,
    }
}

fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let total: u64 = std::env::var("RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // STORAGE=memory runs the embedded broker on memory storage instead of SQLite.
    let memory = std::env::var("STORAGE").is_ok_and(|s| s == "memory");
    let (storage, storage_name) = if memory {
        (Storage::Memory, "memory storage")
    } else {
        (Storage::Sqlite, "SQLite")
    };
    // ROUNDS of baseline and sluice, 3 unless set.
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // MODE=unordered or MODE=ordered measures only that one.
    let mode = std::env::var("MODE").ok();
    let mode = mode.as_deref();
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
        let kafka = Kafka::new(&bootstrap, BTreeMap::new());
        for topic in ["unordered", "ordered"] {
            kafka
                .create_topic(&TopicSpec {
                    name: topic.into(),
                    partitions: PARTITIONS,
                    replication: 1,
                    config: BTreeMap::new(),
                })
                .await
                .unwrap();
            produce(&bootstrap, topic, total).await;
        }
        let baseline_fn = Counter::default();
        let addr = serve_noop(baseline_fn.clone()).await;
        let url = format!("http://{addr}/");

        println!("records: {total} x 100 bytes, {PARTITIONS} partitions, embedded broker ({storage_name})");
        // Each round measures the baseline right before and right after sluice (a new
        // consumer group reads the same records again) and takes the mean, so both see the
        // same machine; the median ratio is the figure. The plain client sends a
        // CloudEvent's three essential headers; the figure after "same headers" is the same
        // client sending the whole set sluice sends, which the function also has to parse.
        let (few, full) = (few_headers(), sluice_headers());
        let modes = [
            Mode {
                name: "unordered",
                topic: "unordered",
                ordering: "unordered",
                workers: IN_FLIGHT,
                baseline: format!("{IN_FLIGHT} in flight"),
                target: 0.7,
            },
            Mode {
                name: "partition order",
                topic: "ordered",
                ordering: "partition",
                workers: PARTITIONS as usize,
                baseline: format!("one at a time per partition, {PARTITIONS} in flight"),
                target: 0.8,
            },
        ];
        if mode == Some("filter") {
            // A CESQL filter that lets every record through, against the same trigger without
            // one, measured before and after it in each round.
            let filter = format!("    filters:\n      - cesql: \"{FILTER}\"\n");
            let mut ratios = Vec::new();
            for round in 1..=rounds {
                // Each run is a new consumer group, so each reads every record.
                let run = |extra: String, tag: &'static str| {
                    let bootstrap = bootstrap.clone();
                    async move {
                        sluice_run(&bootstrap, "unordered", "unordered", round, total, &extra, tag)
                            .await
                    }
                };
                let plain = run(String::new(), "before").await;
                let filtered = run(filter.clone(), "filtered").await;
                let plain = plain.and(run(String::new(), "after").await);
                println!(
                    "round {round}: unordered with a CESQL filter {filtered}, without {plain}, ratio {:.2}",
                    filtered.rate / plain.rate
                );
                ratios.push(filtered.rate / plain.rate);
            }
            println!(
                "CESQL filter: median ratio {} against no filter, over {rounds} rounds; target 0.95",
                summary(ratios)
            );
            broker.shutdown().await;
            return;
        }
        if mode == Some("curve") {
            cost_curve(&bootstrap, total).await;
            broker.shutdown().await;
            return;
        }
        if mode == Some("nginx") {
            // The function in another process: nginx answering 200, against wrk at 64
            // connections on the same nginx, measured before and after sluice in each round.
            let Some(nginx) = Nginx::start() else {
                println!("nginx is not installed (Debian: apt-get install nginx wrk)");
                broker.shutdown().await;
                return;
            };
            let url = format!("http://{}/", nginx.addr);
            let seconds = 10;
            let mut ratios = Vec::new();
            let mut bridge = Vec::new();
            for round in 1..=rounds {
                let before = nginx.wrk(IN_FLIGHT, seconds, &full);
                let ours = sluice_external(&bootstrap, "unordered", &url, round, total).await;
                let least = forwarder(
                    &bootstrap,
                    "unordered",
                    &url,
                    total,
                    &format!("forwarder-nginx-{round}"),
                    full.clone(),
                )
                .await;
                let after = nginx.wrk(IN_FLIGHT, seconds, &full);
                let wrk = (before + after) / 2.0;
                println!(
                    "round {round}: unordered to nginx: sluice {ours} (sluice's process only), wrk {wrk:.0}/s, ratio {:.2}; forwarder {least}, ratio {:.2}",
                    ours.rate / wrk,
                    least.rate / wrk
                );
                ratios.push(ours.rate / wrk);
                bridge.push(least.rate / wrk);
            }
            println!(
                "unordered to nginx: median ratio {} against wrk at {IN_FLIGHT} connections, over {rounds} rounds; target 0.7",
                summary(ratios)
            );
            println!(
                "forwarder (raw consumer and plain client) to nginx: median ratio {} against wrk",
                summary(bridge)
            );
            broker.shutdown().await;
            return;
        }
        if mode == Some("forwarder") {
            // sluice against the least bridge from Kafka to HTTP and against the plain client,
            // all three sending sluice's headers to the same no-op function, 64 in flight.
            let mut ratios = vec![Vec::new(), Vec::new(), Vec::new()];
            for round in 1..=rounds {
                let plain = plain_client(&url, total, IN_FLIGHT, full.clone()).await;
                let ours =
                    sluice_run(&bootstrap, "unordered", "unordered", round, total, "", "fwd").await;
                let least = forwarder(
                    &bootstrap,
                    "unordered",
                    &url,
                    total,
                    &format!("forwarder-{round}"),
                    full.clone(),
                )
                .await;
                let plain = plain.and(plain_client(&url, total, IN_FLIGHT, full.clone()).await);
                println!(
                    "round {round}: unordered: sluice {ours}, forwarder {least}, plain client {plain}; sluice/plain {:.2}, forwarder/plain {:.2}, sluice/forwarder {:.2}",
                    ours.rate / plain.rate,
                    least.rate / plain.rate,
                    ours.rate / least.rate
                );
                ratios[0].push(ours.rate / plain.rate);
                ratios[1].push(least.rate / plain.rate);
                ratios[2].push(ours.rate / least.rate);
            }
            let [to_plain, least_to_plain, to_least] = <[Vec<f64>; 3]>::try_from(ratios).unwrap();
            println!(
                "unordered, same headers, {IN_FLIGHT} in flight, over {rounds} rounds: sluice/plain {}, forwarder/plain {}, sluice/forwarder {}",
                summary(to_plain),
                summary(least_to_plain),
                summary(to_least)
            );
            broker.shutdown().await;
            return;
        }
        if mode == Some("batch") {
            // Batched delivery against a raw consumer draining the same records with the same
            // fetch settings, measured before and after it in each round.
            let batch = std::env::var("BATCH").unwrap_or_else(|_| "1000".into());
            let extra = format!(
                "    delivery:\n      batch: {{max_events: {batch}, max_bytes: 4MiB}}\n"
            );
            println!("batches of up to {batch} events; the function parses each batch");
            let mut ratios = vec![Vec::new(), Vec::new()];
            for round in 1..=rounds {
                for (i, (topic, ordering)) in
                    [("unordered", "unordered"), ("ordered", "partition")].into_iter().enumerate()
                {
                    let raw = raw_drain(&bootstrap, topic, total, &format!("raw-{topic}-{round}-a")).await;
                    let ours =
                        sluice_run(&bootstrap, topic, ordering, round, total, &extra, "batch").await;
                    let raw = raw.and(
                        raw_drain(&bootstrap, topic, total, &format!("raw-{topic}-{round}-b")).await,
                    );
                    println!(
                        "round {round}: {ordering} batches: sluice {ours}, raw consumer {raw}, ratio {:.2}",
                        ours.rate / raw.rate
                    );
                    ratios[i].push(ours.rate / raw.rate);
                }
            }
            for (ordering, ratios) in ["unordered", "partition"].into_iter().zip(ratios) {
                println!(
                    "{ordering} batches: median ratio {} against the raw consumer, over {rounds} rounds; target 0.5",
                    summary(ratios)
                );
            }
            broker.shutdown().await;
            return;
        }
        let modes: Vec<Mode> = modes
            .into_iter()
            .filter(|m| mode.is_none_or(|only| only == m.topic))
            .collect();
        let mut ratios = vec![(Vec::new(), Vec::new()); modes.len()];
        for round in 1..=rounds {
            for (m, (to_plain, to_same)) in modes.iter().zip(ratios.iter_mut()) {
                let plain = plain_client(&url, total, m.workers, few.clone()).await;
                let same = plain_client(&url, total, m.workers, full.clone()).await;
                let ours = sluice_run(&bootstrap, m.topic, m.ordering, round, total, "", "run").await;
                let plain = plain.and(plain_client(&url, total, m.workers, few.clone()).await);
                let same = same.and(plain_client(&url, total, m.workers, full.clone()).await);
                println!(
                    "round {round}: {}: sluice {ours}, plain hyper client ({}) {plain}, ratio {:.2}; same headers {same}, ratio {:.2}",
                    m.name,
                    m.baseline,
                    ours.rate / plain.rate,
                    ours.rate / same.rate
                );
                to_plain.push(ours.rate / plain.rate);
                to_same.push(ours.rate / same.rate);
            }
        }
        for (m, (to_plain, to_same)) in modes.iter().zip(ratios) {
            println!(
                "{}: median ratio {} against the plain client, {} against the same headers, over {rounds} rounds; target {}",
                m.name,
                summary(to_plain),
                summary(to_same),
                m.target
            );
        }
        broker.shutdown().await;
    });
}
