//! Shared helpers for integration tests: free ports, an in-process broker, the built binary.
#![allow(dead_code)]

pub mod faults;
pub mod function;
pub mod gateway;
pub mod postgres;

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig,
    consumer::{Consumer, StreamConsumer},
    producer::FutureProducer,
};
use sluice::{
    broker::{EmbeddedBroker, free_local_addr},
    config::{EmbeddedConfig, Storage},
};

/// The embedded broker, in this process but on a runtime of its own: dropping a librdkafka
/// client blocks the thread that drops it, and a test must not block the broker that client
/// is saying goodbye to.
pub struct TestBroker {
    bootstrap: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestBroker {
    /// The broker's address.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// Stops the broker and waits until it has let go of its storage.
    pub async fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Starts the embedded broker in-process on a free loopback port.
pub async fn start_broker(data_dir: &Path) -> TestBroker {
    start_broker_on(free_local_addr().unwrap(), data_dir).await
}

/// Starts the embedded broker in-process on `listen`.
pub async fn start_broker_on(listen: SocketAddr, data_dir: &Path) -> TestBroker {
    let config = EmbeddedConfig {
        listen,
        storage: Storage::Sqlite,
        default_partitions: 3,
    };
    let data_dir = data_dir.to_path_buf();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let broker = EmbeddedBroker::start(&config, &data_dir)
                .await
                .expect("embedded broker starts");
            let _ = ready_tx.send(broker.bootstrap());
            let _ = stop_rx.await;
            broker.shutdown().await;
        });
    });
    let bootstrap = ready_rx.await.expect("embedded broker starts");
    TestBroker {
        bootstrap,
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

/// A producer that waits for every acknowledgement.
pub fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.max.bytes", "4000000")
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap()
}

/// A group consumer that starts at the earliest offset and commits only what is stored.
pub fn group_consumer(bootstrap: &str, group: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    consumer
}

/// The built `sluice` binary.
pub fn sluice() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    let _ = command.env_remove("RUST_LOG").env("NO_COLOR", "1");
    command
}

/// Runs the binary to completion with `stdin` as input.
pub fn run_with_input(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = sluice()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs the binary to completion with no input.
pub fn run(args: &[&str]) -> Output {
    sluice().args(args).stdin(Stdio::null()).output().unwrap()
}

/// A child process that is killed when the test ends, however it ends.
pub struct Daemon(pub Child);

impl Daemon {
    /// Starts the binary in the background with its output captured.
    pub fn spawn(args: &[&str], dir: &Path) -> Self {
        Self::spawn_with_env(args, dir, &[])
    }

    /// Starts the binary in the background with extra environment variables.
    pub fn spawn_with_env(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Self {
        let child = sluice()
            .envs(env.iter().copied())
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self(child)
    }

    /// Starts the binary in the background with its output going to `log` (a file): a
    /// process that logs a lot would block on a full pipe that nobody reads until it exits.
    pub fn spawn_logged(args: &[&str], dir: &Path, log: &Path) -> Self {
        let file = std::fs::File::create(log).unwrap();
        let child = sluice()
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Self(child)
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Waits (bounded) for the process to exit and returns its output.
    pub fn wait(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(_status) = self.0.try_wait().unwrap() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let child = std::mem::replace(&mut self.0, Command::new("true").spawn().unwrap());
        child.wait_with_output().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {addr} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP GET over loopback; returns the status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `check` until it returns true, failing after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what}: not true after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Text of a process's stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Text of a process's stdout.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts a failed command explained itself in one `error:` line, without a panic.
pub fn assert_clean_failure(output: &Output, expected: &str) {
    let err = stderr(output);
    assert!(!output.status.success(), "command succeeded: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    assert!(!err.contains("RUST_BACKTRACE"), "backtrace: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line: {err}");
    assert!(
        errors[0].contains(expected),
        "expected {expected:?} in {err}"
    );
}

/// Starts `sluice broker` as a child process on a free port; returns it and its address.
pub fn spawn_broker(data_dir: &Path) -> (Daemon, SocketAddr) {
    spawn_broker_on(data_dir, free_local_addr().unwrap())
}

/// Starts `sluice broker` as a child process on `addr`, e.g. again on the address and data
/// of one that was killed.
pub fn spawn_broker_on(data_dir: &Path, addr: SocketAddr) -> (Daemon, SocketAddr) {
    let daemon = Daemon::spawn(
        &broker_args(data_dir, addr).each_ref().map(String::as_str),
        data_dir,
    );
    wait_for_port(addr, Duration::from_secs(30));
    (daemon, addr)
}

/// The same with its output going to `log`, for a broker under a long load.
pub fn spawn_broker_logged(data_dir: &Path, addr: SocketAddr, log: &Path) -> Daemon {
    let daemon = Daemon::spawn_logged(
        &broker_args(data_dir, addr).each_ref().map(String::as_str),
        data_dir,
        log,
    );
    wait_for_port(addr, Duration::from_secs(30));
    daemon
}

fn broker_args(data_dir: &Path, addr: SocketAddr) -> [String; 5] {
    [
        "broker".into(),
        "--listen".into(),
        addr.to_string(),
        "--data-dir".into(),
        data_dir.to_str().unwrap().to_owned(),
    ]
}

/// sluice running in this process with its embedded broker, for delivery tests.
pub struct InProcess {
    running: Option<sluice::app::Running>,
    /// The embedded broker's address.
    pub bootstrap: String,
    /// Holds the data directory for the test's lifetime.
    pub dir: tempfile::TempDir,
}

impl InProcess {
    /// Starts sluice with `yaml` appended to a config that sets the data dir and a free
    /// broker port.
    pub async fn start(yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, free_local_addr().unwrap(), yaml).await
    }

    /// Starts sluice on an existing data directory and broker address.
    pub async fn start_in(dir: tempfile::TempDir, listen: SocketAddr, yaml: &str) -> Self {
        // RUST_LOG=sluice=debug shows what sluice did in a failing test.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
            )
            .try_init();
        let text = format!(
            "data_dir: {}\nembedded:\n  listen: \"{listen}\"\n{yaml}",
            dir.path().display()
        );
        let running = start_running(&text).await;
        Self {
            bootstrap: running.bootstrap().to_owned(),
            running: Some(running),
            dir,
        }
    }

    /// The admin state (status report and metrics).
    pub fn state(&self) -> &std::sync::Arc<sluice::admin::AdminState> {
        self.running.as_ref().unwrap().state()
    }

    /// The running sluice.
    pub fn running(&self) -> &sluice::app::Running {
        self.running.as_ref().unwrap()
    }

    /// The running sluice, to reload it.
    pub fn running_mut(&mut self) -> &mut sluice::app::Running {
        self.running.as_mut().unwrap()
    }

    /// Stops sluice gracefully and returns the data directory for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(running) = self.running.take() {
            running.shutdown(Duration::from_secs(10)).await;
        }
        self.dir
    }
}

/// Starts sluice in this process (triggers, no admin endpoint) from a whole config text.
pub async fn start_running(text: &str) -> sluice::app::Running {
    let config = sluice::config::parse(text, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
    sluice::app::Running::start(
        &config,
        sluice::app::RunOptions {
            admin: false,
            triggers: true,
            grace: Duration::from_secs(10),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Record `n`'s headers: none for every third, else `n % 4 + 1` of them, named in an order
/// that is not alphabetical so a reordering shows.
pub fn numbered_headers(n: u32) -> Vec<(String, String)> {
    if n.is_multiple_of(3) {
        return Vec::new();
    }
    (0..n % 4 + 1)
        .map(|i| (format!("h{}", 9 - i), format!("{n}-{i}")))
        .collect()
}

/// A record to produce: key, value, headers.
pub type TestRecord = (Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);

/// Produces records and waits for every acknowledgement.
pub async fn produce_all(bootstrap: &str, topic: &str, records: Vec<TestRecord>) {
    use rdkafka::{
        message::{Header, OwnedHeaders},
        producer::FutureRecord,
    };
    let producer = producer(bootstrap);
    let mut pending = Vec::with_capacity(records.len());
    for (key, value, headers) in &records {
        let mut h = OwnedHeaders::new();
        for (name, v) in headers {
            h = h.insert(Header {
                key: name,
                value: Some(v),
            });
        }
        let mut record = FutureRecord::to(topic).payload(value).headers(h);
        if let Some(key) = key {
            record = record.key(key);
        }
        pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for ack in pending {
        ack.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
    tokio::task::spawn_blocking(move || drop(producer))
        .await
        .unwrap();
}

/// Reads `count` records of a topic from the beginning (all partitions), failing after a
/// while if they do not arrive.
pub async fn read_topic(
    bootstrap: &str,
    topic: &str,
    count: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::{Message, Offset, TopicPartitionList};
    let kafka = sluice::kafka::Kafka::new(bootstrap, Default::default());
    let info = kafka.describe_topic(topic).await.unwrap();
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in &info.partitions {
        list.add_partition_offset(topic, p.partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records in {topic}",
            out.len()
        );
        if let Ok(Ok(message)) =
            tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await
        {
            let _ = message.offset();
            out.push(message.detach());
        }
    }
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .unwrap();
    out
}

/// Committed offsets of a group, per partition.
pub async fn committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
) -> std::collections::BTreeMap<i32, i64> {
    let kafka = sluice::kafka::Kafka::new(bootstrap, Default::default());
    let info = kafka.describe_topic(topic).await.unwrap();
    let partitions = info
        .partitions
        .iter()
        .map(|p| (topic.to_owned(), p.partition))
        .collect();
    kafka
        .committed(group, partitions)
        .await
        .unwrap()
        .into_iter()
        .map(|((_, p), o)| (p, o))
        .collect()
}

/// Waits until the group's committed offsets reach `ends` on each partition `ends` names.
pub async fn wait_committed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    ends: &std::collections::BTreeMap<i32, i64>,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = committed(bootstrap, group, topic).await;
        if ends.iter().all(|(p, end)| got.get(p) == Some(end)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "committed {got:?}, expected {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the admin server at `admin` answers `/readyz` with 200.
pub async fn wait_ready(admin: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(http_get(admin, "/readyz"), Ok((200, _))) {
        assert!(
            Instant::now() < deadline,
            "sluice at {admin} did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A record's headers by name; a header without a value maps to no bytes.
pub fn header_map(message: &impl rdkafka::Message) -> std::collections::HashMap<String, Vec<u8>> {
    use rdkafka::message::Headers as _;
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

/// A record's headers in order, as `(name, UTF-8 value)` pairs.
pub fn header_pairs(message: &impl rdkafka::Message) -> Vec<(String, String)> {
    use rdkafka::message::Headers as _;
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    let value = String::from_utf8(h.value.unwrap().to_vec()).unwrap();
                    (h.key.to_owned(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `confluent_kafka` can be imported; in CI it must be.
pub fn python_client() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "confluent-kafka must be installed in CI (see .ci/run)"
        );
        eprintln!("skipped: python3 cannot import confluent_kafka (pip install confluent-kafka)");
    }
    ok
}

/// An HTTP answer: status, headers (names lower-cased) and body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The first header of this name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One HTTP/1.1 request over loopback with `Connection: close`; the body is sent with its
/// length, and the answer read to its end (a chunked answer is decoded).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpAnswer> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    // A server may answer before reading a body it refuses; the rest then goes nowhere.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        let mut decoded = Vec::new();
        let mut rest = &body[..];
        while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..end]).trim(), 16)
                .unwrap_or(0);
            if size == 0 {
                break;
            }
            let start = end + 2;
            decoded.extend_from_slice(&rest[start..(start + size).min(rest.len())]);
            rest = &rest[(start + size + 2).min(rest.len())..];
        }
        body = decoded;
    }
    Ok(HttpAnswer {
        status,
        headers,
        body,
    })
}
