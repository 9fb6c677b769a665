//! Fan-out of a stream: one topic's records to N WebSocket clients through the real
//! `sluice up` (its `streams`), next to a plain in-memory WebSocket broadcast server in the
//! same run: tokio-tungstenite, a bounded queue per client, a client whose queue is full
//! closed with 4008, no Kafka. The baseline runs as a process of its own (this binary,
//! started again with `baseline-server`), so that its memory is its own.
//!
//! `cargo build --release && cargo bench --bench fanout`. The bench runs
//! `target/release/sluice` (which `cargo bench` relinks with its own build of the same code)
//! or `SLUICE_BIN`, and fails when it is missing. Env:
//! `CLIENTS` (default `1000,10000`), `RATES` (records/s, default `20,50,100`), `SECONDS`
//! (per rate, default 10), `SIZE` (value bytes, default 100), `SLOW` (clients that never
//! read, default 1000; 0 leaves it out), `STORAGE` (`sqlite` or `memory`, default sqlite).
//!
//! It prints, for each N, the memory each server adds per idle connection; for each N and
//! rate, deliveries/s achieved, the latency from produce (sluice) or publish (baseline) to
//! the client's receipt, clients closed as too slow and records missed; then, with SLOW
//! clients that never read (their sockets take 64 KiB, as on a slow link) while 4 KiB
//! records arrive at 200/s, each server's memory over time, its open descriptors and the
//! clients it dropped.
//!
//! For each N, each server is started afresh and measured with its own N clients, sluice
//! first: the open-file limit may not allow 2 × 10,000 clients at once (the bench raises it
//! as far as the hard limit lets it, and the servers inherit it). The clients run as tasks
//! on the bench's runtime, which shares the machine's cores with the server under test.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures::{SinkExt, StreamExt, stream::FuturesUnordered};
use hdrhistogram::Histogram;
use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Semaphore,
    task::JoinHandle,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async_with_config,
    tungstenite::{Message, protocol::WebSocketConfig},
};

/// The stream's queue for the rate runs: more than any client falls behind at these rates.
const FAN_QUEUE: usize = 1024;
/// The slow clients' stream keeps sluice's default queue.
const SLOW_QUEUE: usize = 256;
/// Connections opened at once.
const CONNECTING: usize = 256;
/// Histograms the clients share (each behind its own lock).
const GROUPS: usize = 16;
/// How long the records of a run may take to arrive after the last was published.
const DRAIN: Duration = Duration::from_secs(15);
/// Close code of a client dropped for falling behind (sluice's and the baseline's).
const CLOSE_SLOW: u16 = 4008;

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: {s:?} is not a number"))
        })
        .collect()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: {v:?} is not a number"))
        })
        .unwrap_or(default)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A process's resident memory in KiB, from `/proc/PID/status`.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A process's CPU time so far (user + system, all threads), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Open file descriptors of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Raises the open-file limit so that 10,000 connections fit, in this process and the
/// servers it starts.
fn raise_fd_limit(want: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= want {
        return;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, want, want.max(hard)).is_err() {
        // Not allowed to raise the hard limit: go as far as it allows.
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        if hard < want {
            eprintln!(
                "warning: the open-file limit is {hard} (hard), below the {want} this run needs"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// The baseline: a plain in-memory WebSocket broadcast server.

mod baseline {
    use std::{
        collections::HashMap,
        io::{Read as _, Write as _},
        sync::{Arc, Mutex},
        time::Duration,
    };

    use futures::{SinkExt, StreamExt};
    use tokio::{net::TcpListener, sync::mpsc};
    use tokio_tungstenite::{
        accept_hdr_async_with_config,
        tungstenite::{
            Message, Utf8Bytes,
            handshake::server::{Request, Response},
            protocol::{CloseFrame, WebSocketConfig, frame::coding::CloseCode},
        },
    };
    use tokio_util::sync::CancellationToken;

    /// Messages written before the socket is flushed, as sluice does.
    const BATCH: usize = 64;

    struct Subscriber {
        queue: mpsc::Sender<Utf8Bytes>,
        dropped: CancellationToken,
    }

    /// The clients of one path.
    struct Room {
        queue: usize,
        clients: Mutex<HashMap<u64, Subscriber>>,
        next: std::sync::atomic::AtomicU64,
        /// Clients closed for falling behind.
        dropped: std::sync::atomic::AtomicU64,
    }

    impl Room {
        fn new(queue: usize) -> Self {
            Self {
                queue,
                clients: Mutex::default(),
                next: Default::default(),
                dropped: Default::default(),
            }
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Subscriber>> {
            self.clients.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// Queues a message for every client; a client whose queue is full is dropped.
        fn broadcast(&self, text: &Utf8Bytes) {
            self.lock()
                .retain(|_, client| match client.queue.try_send(text.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        client.dropped.cancel();
                        let _ = self
                            .dropped
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        false
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                });
        }

        /// `{"clients": N, "dropped": D}`, as sluice's status has them.
        fn stats(&self) -> String {
            format!(
                r#"{{"clients":{},"dropped_slow":{}}}"#,
                self.lock().len(),
                self.dropped.load(std::sync::atomic::Ordering::Relaxed)
            )
        }
    }

    /// The same WebSocket settings as sluice's streams.
    fn config() -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(1 << 20))
    }

    /// Serves `/fan` and `/slow` (clients), `/publish/fan`, `/publish/slow` (publishers) and
    /// `/stats/fan`, `/stats/slow` (one message with its counts) on a free port, which it
    /// prints, until its stdin closes.
    pub fn main(fan_queue: usize, slow_queue: usize) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
            let port = listener.local_addr().expect("an address").port();
            println!("{port}");
            let _ = std::io::stdout().flush();
            let fan = Arc::new(Room::new(fan_queue));
            let slow = Arc::new(Room::new(slow_queue));
            let accept = async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let (fan, slow) = (fan.clone(), slow.clone());
                    drop(tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        let mut path = String::new();
                        // The callback's error type is tungstenite's, not ours to shrink.
                        #[allow(clippy::result_large_err)]
                        let callback = |request: &Request, response: Response| {
                            path = request.uri().path().to_owned();
                            Ok(response)
                        };
                        let Ok(socket) =
                            accept_hdr_async_with_config(stream, callback, Some(config())).await
                        else {
                            return;
                        };
                        match path.as_str() {
                            "/fan" => subscriber(socket, &fan).await,
                            "/slow" => subscriber(socket, &slow).await,
                            "/publish/fan" => publisher(socket, &fan).await,
                            "/publish/slow" => publisher(socket, &slow).await,
                            "/stats/fan" => stats(socket, &fan).await,
                            "/stats/slow" => stats(socket, &slow).await,
                            _ => {}
                        }
                    }));
                }
            };
            // The bench holds our stdin: when it ends, so do we.
            let parent = tokio::task::spawn_blocking(|| {
                let mut buf = [0u8; 64];
                while std::io::stdin().read(&mut buf).is_ok_and(|n| n > 0) {}
            });
            tokio::select! {
                () = accept => {}
                _ = parent => {}
            }
        });
        std::process::exit(0);
    }

    type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

    async fn stats(mut socket: Socket, room: &Room) {
        let _ = socket.send(Message::text(room.stats())).await;
        let _ = socket.close(None).await;
    }

    async fn publisher(socket: Socket, room: &Room) {
        let (_sink, mut input) = socket.split();
        while let Some(Ok(message)) = input.next().await {
            match message {
                Message::Text(text) => room.broadcast(&text),
                Message::Close(_) => break,
                _ => {}
            }
        }
    }

    async fn subscriber(socket: Socket, room: &Room) {
        let (queue, mut frames) = mpsc::channel::<Utf8Bytes>(room.queue);
        let dropped = CancellationToken::new();
        let id = room.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = room.lock().insert(
            id,
            Subscriber {
                queue,
                dropped: dropped.clone(),
            },
        );
        let (mut sink, mut input) = socket.split();
        let slow = loop {
            tokio::select! {
                biased;
                _ = dropped.cancelled() => break true,
                frame = frames.recv() => {
                    let Some(frame) = frame else { break false };
                    let write = async {
                        sink.feed(Message::Text(frame)).await?;
                        for _ in 1..BATCH {
                            let Ok(frame) = frames.try_recv() else { break };
                            sink.feed(Message::Text(frame)).await?;
                        }
                        sink.flush().await
                    };
                    let written = tokio::select! {
                        biased;
                        _ = dropped.cancelled() => break true,
                        written = write => written,
                    };
                    if written.is_err() {
                        break false;
                    }
                }
                message = input.next() => match message {
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break false,
                    Some(Ok(_)) => {}
                },
            }
        };
        let _ = room.lock().remove(&id);
        drop(frames);
        if slow {
            // A client that never reads never takes the close frame either: give up soon.
            let close = sink.send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(super::CLOSE_SLOW),
                reason: "too slow".into(),
            })));
            let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The servers under test, as child processes.

/// How records reach the server.
enum Publisher {
    /// Produced to the topic with librdkafka.
    Kafka(FutureProducer),
    /// Sent over a WebSocket of the baseline's, per path.
    Ws { fan: Box<Socket>, slow: Box<Socket> },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sluice,
    Baseline,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sluice => "sluice",
            Kind::Baseline => "baseline",
        }
    }
}

struct Server {
    kind: Kind,
    child: Child,
    /// `ws://127.0.0.1:PORT`.
    base: String,
    admin: Option<String>,
    publisher: Publisher,
    /// Records acknowledged by the broker (sluice) or sent (baseline).
    acked: Arc<AtomicU64>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.kind == Kind::Sluice {
            // A graceful stop, bounded; then killed.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sluice_bin() -> PathBuf {
    let bin = std::env::var_os("SLUICE_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/sluice"),
        PathBuf::from,
    );
    if !bin.is_file() {
        eprintln!(
            "error: {} is missing: build it first with `cargo build --release` (or set SLUICE_BIN)",
            bin.display()
        );
        std::process::exit(2);
    }
    bin
}

/// GET `path` on `addr` over HTTP/1.0, the body; `None` when nothing answers 200.
async fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_owned()))
}

/// A stream's figures from sluice's `/api/status`: (clients, dropped_slow).
async fn stream_status(admin: &str, path: &str) -> Option<(i64, u64)> {
    let body = http_get(admin, "/api/status").await?;
    let status: serde_json::Value = serde_json::from_str(&body).ok()?;
    let stream = status["edge"]["streams"]
        .as_array()?
        .iter()
        .find(|s| s["path"] == path)?;
    Some((
        stream["clients"].as_i64()?,
        stream["dropped_slow"].as_u64()?,
    ))
}

/// The same figures from the baseline's `/stats/...`.
async fn baseline_status(base: &str, path: &str) -> Option<(i64, u64)> {
    let mut socket = connect(&format!("{base}/stats{path}")).await.ok()?;
    let Some(Ok(Message::Text(text))) = socket.next().await else {
        return None;
    };
    let stats: serde_json::Value = serde_json::from_str(text.as_str()).ok()?;
    Some((stats["clients"].as_i64()?, stats["dropped_slow"].as_u64()?))
}

async fn start_sluice(storage: &str) -> Server {
    let bin = sluice_bin();
    let dir = tempfile::tempdir().expect("a temp dir");
    let free = || sluice::broker::free_local_addr().expect("a free port");
    let (broker, admin, public) = (free(), free(), free());
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "topics:\n  - name: fan\n    partitions: 1\n  - name: slow\n    partitions: 1\n\
             ingress:\n  listen: \"{public}\"\n\
             streams:\n  - path: /fan\n    topic: fan\n    queue: {FAN_QUEUE}\n  \
             - path: /slow\n    topic: slow\n    queue: {SLOW_QUEUE}\n"
        ),
    )
    .expect("the config");
    let log = std::fs::File::create(dir.path().join("sluice.log")).expect("a log file");
    let child = Command::new(&bin)
        .arg("-c")
        .arg(&config)
        .arg("up")
        .args(["--listen", &broker.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--public-listen", &public.to_string()])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--storage", storage, "--grace", "5s"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("a log file"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let admin = admin.to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http_get(&admin, "/readyz").await.is_some()
            && stream_status(&admin, "/fan").await.is_some()
        {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.path().join("sluice.log")).unwrap_or_default();
            panic!("sluice is not ready after 60 s; its log:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.to_string())
        .set("linger.ms", "0")
        .create()
        .expect("a producer");
    let mut server = Server {
        kind: Kind::Sluice,
        child,
        base: format!("ws://{public}"),
        admin: Some(admin),
        publisher: Publisher::Kafka(producer),
        acked: Arc::default(),
        _dir: Some(dir),
    };
    // The producer's first record waits for metadata; none of the runs should.
    for topic in ["fan", "slow"] {
        server.publish(topic, "warm-up".to_owned()).await;
    }
    server.settle(2).await;
    server
}

async fn start_baseline() -> Server {
    let exe = std::env::current_exe().expect("this bench's path");
    let mut child = Command::new(exe)
        .args([
            "baseline-server",
            &FAN_QUEUE.to_string(),
            &SLOW_QUEUE.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the baseline server");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("its stdout");
    let _ = BufReader::new(stdout).read_line(&mut line);
    let port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the baseline server said {line:?}"));
    let base = format!("ws://127.0.0.1:{port}");
    let (fan, slow) = (
        Box::new(
            connect(&format!("{base}/publish/fan"))
                .await
                .expect("a publisher"),
        ),
        Box::new(
            connect(&format!("{base}/publish/slow"))
                .await
                .expect("a publisher"),
        ),
    );
    Server {
        kind: Kind::Baseline,
        child,
        base,
        admin: None,
        publisher: Publisher::Ws { fan, slow },
        acked: Arc::default(),
        _dir: None,
    }
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's own count of a path's clients and of those it dropped as too slow.
    async fn status(&self, path: &str) -> Option<(i64, u64)> {
        match &self.admin {
            Some(admin) => stream_status(admin, path).await,
            None => baseline_status(&self.base, path).await,
        }
    }

    /// Publishes `value` to the topic (sluice) or path (baseline) named `to`.
    async fn publish(&mut self, to: &str, value: String) {
        match &mut self.publisher {
            Publisher::Kafka(producer) => {
                let record = FutureRecord::<str, str>::to(to).payload(&value);
                match producer.send_result(record) {
                    Ok(delivery) => {
                        let acked = self.acked.clone();
                        drop(tokio::spawn(async move {
                            if let Ok(Ok(_)) = delivery.await {
                                let _ = acked.fetch_add(1, Ordering::Relaxed);
                            }
                        }));
                    }
                    Err((err, _)) => eprintln!("produce failed: {err}"),
                }
            }
            Publisher::Ws { fan, slow } => {
                let socket = if to == "fan" { fan } else { slow };
                let seq = self.acked.fetch_add(1, Ordering::Relaxed);
                // The same message as sluice's frame for such a record.
                let json = format!(
                    r#"{{"type":"record","topic":"{to}","partition":0,"offset":{seq},"timestamp":{},"key":null,"headers":{{}},"value":"{value}","position":"0:{}"}}"#,
                    now_ns() / 1_000_000,
                    seq + 1
                );
                match tokio::time::timeout(Duration::from_secs(5), socket.send(Message::text(json)))
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => eprintln!("publish failed: {err}"),
                    Err(_) => eprintln!("publish failed: the baseline took no message for 5 s"),
                }
            }
        }
    }

    /// Waits until every record published so far is acknowledged (sluice), at most `secs`.
    async fn settle(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let published = self.acked.load(Ordering::Relaxed);
        while Instant::now() < deadline && self.acked.load(Ordering::Relaxed) < published {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Clients.

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

async fn connect(url: &str) -> Result<Socket, String> {
    let mut last = String::new();
    for _ in 0..5 {
        match tokio::time::timeout(
            Duration::from_secs(5),
            connect_async_with_config(url, Some(client_config()), true),
        )
        .await
        {
            Ok(Ok((socket, _))) => return Ok(socket),
            Ok(Err(err)) => last = err.to_string(),
            Err(_) => last = "timed out".to_owned(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!("{url}: {last}"))
}

/// A client whose socket takes at most 64 KiB (the kernel doubles it) and does not grow,
/// as on a slow link; its reader never reads.
async fn connect_small(url: &str) -> Result<Socket, String> {
    let addr: std::net::SocketAddr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("{url}: no address"))?;
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .set_recv_buffer_size(64 * 1024)
        .map_err(|e| e.to_string())?;
    let stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
    let (socket, _) = tokio_tungstenite::client_async_with_config(
        url,
        MaybeTlsStream::Plain(stream),
        Some(client_config()),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(socket)
}

/// The value of a record: `PHASE:SEQ:SENT_NS:` padded with `x` to `size` bytes.
fn value(phase: u32, seq: u64, size: usize) -> String {
    let mut value = format!("{phase}:{seq}:{}:", now_ns());
    while value.len() < size {
        value.push('x');
    }
    value
}

/// The phase and send time of a record's message, read from its `value`.
fn stamp(text: &str) -> Option<(u32, u64)> {
    const VALUE: &str = "\"value\":\"";
    let at = text.find(VALUE)? + VALUE.len();
    let mut parts = text[at..].splitn(4, ':');
    let phase = parts.next()?.parse().ok()?;
    let _seq = parts.next()?;
    let sent = parts.next()?.parse().ok()?;
    Some((phase, sent))
}

/// What one client saw in the current phase.
#[derive(Default)]
struct ClientState {
    connected: AtomicBool,
    done: AtomicBool,
    slow: AtomicBool,
    received: AtomicU64,
}

/// What clients of one set share: the phase and latency histograms.
struct Shared {
    phase: AtomicU32,
    groups: Vec<Mutex<Group>>,
}

struct Group {
    latency_us: Histogram<u64>,
    last_ns: u64,
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            phase: AtomicU32::new(0),
            groups: (0..GROUPS)
                .map(|_| {
                    Mutex::new(Group {
                        latency_us: Histogram::new_with_bounds(1, 600_000_000, 3)
                            .expect("histogram bounds"),
                        last_ns: 0,
                    })
                })
                .collect(),
        })
    }

    fn group(&self, i: usize) -> std::sync::MutexGuard<'_, Group> {
        self.groups[i % GROUPS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

async fn client(
    url: String,
    state: Arc<ClientState>,
    shared: Arc<Shared>,
    index: usize,
    gate: Arc<Semaphore>,
) {
    let socket = {
        let _permit = gate.acquire().await;
        connect(&url).await
    };
    let Ok(mut socket) = socket else {
        state.done.store(true, Ordering::Relaxed);
        return;
    };
    state.connected.store(true, Ordering::Relaxed);
    while let Some(message) = socket.next().await {
        match message {
            Ok(Message::Text(text)) => {
                let now = now_ns();
                let Some((phase, sent)) = stamp(text.as_str()) else {
                    continue;
                };
                if phase != shared.phase.load(Ordering::Relaxed) {
                    continue;
                }
                let _ = state.received.fetch_add(1, Ordering::Relaxed);
                let mut group = shared.group(index);
                group
                    .latency_us
                    .saturating_record(now.saturating_sub(sent) / 1000);
                group.last_ns = group.last_ns.max(now);
            }
            Ok(Message::Close(frame)) => {
                if frame.is_some_and(|f| u16::from(f.code) == CLOSE_SLOW) {
                    state.slow.store(true, Ordering::Relaxed);
                }
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    state.done.store(true, Ordering::Relaxed);
}

/// N clients of one server's `/fan`, reading.
struct Clients {
    url: String,
    shared: Arc<Shared>,
    states: Vec<Arc<ClientState>>,
    tasks: Vec<JoinHandle<()>>,
    gate: Arc<Semaphore>,
}

impl Clients {
    fn new(url: String, n: usize) -> Self {
        Self {
            url,
            shared: Shared::new(),
            states: Vec::with_capacity(n),
            tasks: Vec::with_capacity(n),
            gate: Arc::new(Semaphore::new(CONNECTING)),
        }
        .grow(n)
    }

    fn grow(mut self, n: usize) -> Self {
        for index in 0..n {
            let state = Arc::new(ClientState::default());
            self.tasks.push(tokio::spawn(client(
                self.url.clone(),
                state.clone(),
                self.shared.clone(),
                index,
                self.gate.clone(),
            )));
            self.states.push(state);
        }
        self
    }

    fn live(&self) -> usize {
        self.states
            .iter()
            .filter(|s| s.connected.load(Ordering::Relaxed) && !s.done.load(Ordering::Relaxed))
            .count()
    }

    /// Waits until every client connected or gave up, at most 120 s; the connected count.
    async fn connected(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let settled = self
                .states
                .iter()
                .all(|s| s.connected.load(Ordering::Relaxed) || s.done.load(Ordering::Relaxed));
            if settled || Instant::now() > deadline {
                return self.live();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Replaces clients that were closed, so that a run starts with all N.
    async fn refill(&mut self) -> usize {
        for index in 0..self.states.len() {
            if self.states[index].done.load(Ordering::Relaxed) {
                let state = Arc::new(ClientState::default());
                self.tasks[index] = tokio::spawn(client(
                    self.url.clone(),
                    state.clone(),
                    self.shared.clone(),
                    index,
                    self.gate.clone(),
                ));
                self.states[index] = state;
            }
        }
        self.connected().await
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Runs.

struct Run {
    clients: usize,
    rate: u64,
    offered: f64,
    published: u64,
    expected: u64,
    delivered: f64,
    latency: Histogram<u64>,
    dropped: usize,
    missed_total: u64,
    missed_clients: usize,
    missed_max: u64,
    cpu_cores: f64,
    cpu_us: f64,
}

async fn run(
    server: &mut Server,
    clients: &mut Clients,
    phase: u32,
    rate: u64,
    seconds: u64,
    size: usize,
) -> Run {
    let live = clients.refill().await;
    // The phase first, so that anything still arriving from the last run is not counted.
    clients.shared.phase.store(phase, Ordering::Relaxed);
    for state in &clients.states {
        state.received.store(0, Ordering::Relaxed);
    }
    for i in 0..GROUPS {
        let mut group = clients.shared.group(i);
        group.latency_us.reset();
        group.last_ns = 0;
    }
    let at_start: Vec<bool> = clients
        .states
        .iter()
        .map(|s| s.connected.load(Ordering::Relaxed) && !s.done.load(Ordering::Relaxed))
        .collect();
    let acked_before = server.acked.load(Ordering::Relaxed);
    let cpu_before = cpu_seconds(server.pid());
    let total = rate * seconds;
    let first_ns = now_ns();
    let started = tokio::time::Instant::now();
    for seq in 0..total {
        tokio::time::sleep_until(started + Duration::from_secs_f64(seq as f64 / rate as f64)).await;
        server.publish("fan", value(phase, seq, size)).await;
    }
    // Every record acknowledged (sluice), then every client has them all, or the drain ends.
    let deadline = Instant::now() + DRAIN;
    while Instant::now() < deadline && server.acked.load(Ordering::Relaxed) - acked_before < total {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let published = server.acked.load(Ordering::Relaxed) - acked_before;
    loop {
        let waiting = clients.states.iter().any(|s| {
            !s.done.load(Ordering::Relaxed) && s.received.load(Ordering::Relaxed) < published
        });
        if !waiting || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = cpu_seconds(server.pid()) - cpu_before;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
    let mut last_ns = first_ns;
    for i in 0..GROUPS {
        let group = clients.shared.group(i);
        latency.add(&group.latency_us).expect("same bounds");
        last_ns = last_ns.max(group.last_ns);
    }
    let received: u64 = clients
        .states
        .iter()
        .map(|s| s.received.load(Ordering::Relaxed))
        .sum();
    let mut dropped = 0;
    let (mut missed_total, mut missed_clients, mut missed_max) = (0, 0, 0);
    for (state, was) in clients.states.iter().zip(at_start) {
        if !was {
            continue;
        }
        if state.slow.load(Ordering::Relaxed) {
            dropped += 1;
        }
        let missed = published.saturating_sub(state.received.load(Ordering::Relaxed));
        if missed > 0 {
            missed_total += missed;
            missed_clients += 1;
            missed_max = missed_max.max(missed);
        }
    }
    let elapsed = (last_ns - first_ns) as f64 / 1e9;
    let wall = started.elapsed().as_secs_f64();
    Run {
        clients: live,
        rate,
        offered: (live as u64 * rate) as f64,
        published,
        expected: total,
        delivered: if elapsed > 0.0 {
            received as f64 / elapsed
        } else {
            0.0
        },
        latency,
        dropped,
        missed_total,
        missed_clients,
        missed_max,
        cpu_cores: cpu / wall,
        cpu_us: if received > 0 {
            cpu / received as f64 * 1e6
        } else {
            0.0
        },
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}ms", us as f64 / 1000.0)
}

fn print_run(kind: Kind, run: &Run) {
    let l = &run.latency;
    println!(
        "{:>6} {:>5} {:<9} {:>10.0} {:>11.0} {:>9} {:>9} {:>9} {:>9} {:>7} {:>16} {:>6.2} {:>7.2}",
        run.clients,
        run.rate,
        kind.name(),
        run.offered,
        run.delivered,
        ms(l.value_at_quantile(0.5)),
        ms(l.value_at_quantile(0.99)),
        ms(l.value_at_quantile(0.999)),
        ms(l.max()),
        run.dropped,
        format!(
            "{}/{}/{}",
            run.missed_total, run.missed_clients, run.missed_max
        ),
        run.cpu_cores,
        run.cpu_us,
    );
    if run.published != run.expected {
        println!(
            "       (published {} of {} records)",
            run.published, run.expected
        );
    }
}

/// The memory a server adds per idle connection: N clients connected, reading, nothing
/// published; measured 3 s after the last connected.
async fn idle(server: &Server, n: usize) -> (Clients, u64, u64, usize) {
    let before = rss_kib(server.pid());
    let clients = Clients::new(format!("{}/fan", server.base), n);
    let connected = clients.connected().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(server.pid());
    (clients, before, after, connected)
}

/// SLOW clients that never read while 4 KiB records arrive at 200/s for 10 s: the server's
/// RSS at the start, its peak and at the end (3 s after the last record, clients still not
/// reading), its open descriptors, and then how many clients find a 4008 close when they
/// finally read.
async fn slow(server: &mut Server, n: usize) -> String {
    const RATE: u64 = 200;
    const SECONDS: u64 = 10;
    const SIZE: usize = 4096;
    let pid = server.pid();
    let start = rss_kib(pid);
    let fds_start = fds(pid);
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let url = format!("{}/slow", server.base);
    let mut connecting = FuturesUnordered::new();
    for _ in 0..n {
        let (gate, url) = (gate.clone(), url.clone());
        connecting.push(async move {
            let _permit = gate.acquire().await;
            connect_small(&url).await
        });
    }
    let mut sockets = Vec::with_capacity(n);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while let Ok(Some(socket)) = tokio::time::timeout_at(deadline, connecting.next()).await {
        if let Ok(socket) = socket {
            sockets.push(socket);
        }
    }
    drop(connecting);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let connected_rss = rss_kib(pid);
    let mut peak = connected_rss;
    let started = tokio::time::Instant::now();
    let mut next_sample = started;
    for seq in 0..RATE * SECONDS {
        tokio::time::sleep_until(started + Duration::from_secs_f64(seq as f64 / RATE as f64)).await;
        server.publish("slow", value(0, seq, SIZE)).await;
        if tokio::time::Instant::now() >= next_sample {
            peak = peak.max(rss_kib(pid));
            next_sample += Duration::from_millis(100);
        }
    }
    let after_publish = rss_kib(pid);
    peak = peak.max(after_publish);
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_kib(pid));
    }
    let end = rss_kib(pid);
    let fds_end = fds(pid);
    let status = server.status("/slow").await;
    // Now read: each client takes what it was sent until its close, within 10 s.
    let reading: FuturesUnordered<_> = sockets
        .into_iter()
        .map(|mut socket| async move {
            let mut records = 0u64;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                match tokio::time::timeout_at(deadline, socket.next()).await {
                    Ok(Some(Ok(Message::Text(_)))) => records += 1,
                    Ok(Some(Ok(Message::Close(frame)))) => {
                        return (
                            records,
                            frame.is_some_and(|f| u16::from(f.code) == CLOSE_SLOW),
                        );
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => return (records, false),
                }
            }
        })
        .collect();
    let outcomes: Vec<(u64, bool)> = reading.collect().await;
    let dropped = outcomes.iter().filter(|(_, slow)| *slow).count();
    let received: u64 = outcomes.iter().map(|(r, _)| r).sum();
    let after_read = rss_kib(pid);
    let fds_after_read = fds(pid);
    let status = status.map_or(String::new(), |(clients, dropped)| {
        format!(", server's count then: {clients} clients, {dropped} dropped as too slow")
    });
    format!(
        "{:<9} connected {:>5}  rss start {:>10}  connected {:>10}  peak {:>10}  end {:>10}  \
         after reading {:>10}  saw a 4008 close {:>5}  records read {:>7}  fds start {} end {} after reading {}{status}",
        server.kind.name(),
        outcomes.len(),
        mib(start),
        mib(connected_rss),
        mib(peak),
        mib(end),
        mib(after_read),
        dropped,
        received,
        fds_start,
        fds_end,
        fds_after_read,
    )
}

/// Waits until this process's client sockets are closed (at most 10 s), so that the next
/// server starts with the descriptors free.
async fn closed() {
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while fds(me) > 256 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("baseline-server") {
        let queue = |i: usize| {
            args.get(i)
                .and_then(|q| q.parse().ok())
                .expect("queue sizes")
        };
        baseline::main(queue(2), queue(3));
        return;
    }
    let clients = env_list("CLIENTS", "1000,10000");
    let rates = env_list("RATES", "20,50,100");
    let seconds = env_u64("SECONDS", 10);
    let size = env_u64("SIZE", 100) as usize;
    let slow_clients = env_u64("SLOW", 1000) as usize;
    let storage = std::env::var("STORAGE").unwrap_or_else(|_| "sqlite".to_owned());
    let most = clients
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(slow_clients as u64);
    raise_fd_limit(most + 1024);
    let bin = sluice_bin();
    let began = Instant::now();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async move {
        println!(
            "fan-out: stream /fan (topic fan, 1 partition, queue {FAN_QUEUE}), {size}-byte values, \
             {} cores; sluice: {} up, embedded broker ({storage}); baseline: in-memory WebSocket \
             broadcast (tokio-tungstenite, queue {FAN_QUEUE} per client), own process",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            bin.display(),
        );
        let mut idle_rows = Vec::new();
        let mut runs = Vec::new();
        let mut phase = 0;
        // One server at a time: the open-file limit may not allow 2 × 10,000 clients here.
        for &n in &clients {
            let n = n as usize;
            for kind in [Kind::Sluice, Kind::Baseline] {
                eprintln!("{n} clients: starting {}", kind.name());
                let mut server = match kind {
                    Kind::Sluice => start_sluice(&storage).await,
                    Kind::Baseline => start_baseline().await,
                };
                eprintln!("{n} clients: connecting to {}", kind.name());
                let (mut set, before, after, connected) = idle(&server, n).await;
                let seen = server
                    .status("/fan")
                    .await
                    .map_or(String::new(), |(c, _)| format!(" (server counts {c})"));
                idle_rows.push(format!(
                    "{:<9} {:>6} {:>9}{:<20} {:>10} {:>10} {:>8.2} KiB",
                    kind.name(),
                    n,
                    connected,
                    seen,
                    mib(before),
                    mib(after),
                    (after.saturating_sub(before)) as f64 / connected.max(1) as f64
                ));
                for &rate in &rates {
                    phase += 1;
                    eprintln!("{n} clients, {rate}/s: {}", kind.name());
                    let run = run(&mut server, &mut set, phase, rate, seconds, size).await;
                    runs.push((n, rate, kind, run));
                }
                drop(set);
                closed().await;
                drop(server);
            }
        }
        runs.sort_by_key(|(n, rate, kind, _)| (*n, *rate, *kind == Kind::Baseline));
        println!();
        println!("idle connections (RSS 3 s after the last connected, nothing published)");
        println!(
            "{:<9} {:>6} {:>9}{:<20} {:>10} {:>10} {:>12}",
            "server", "N", "connected", "", "before", "after", "per conn."
        );
        for row in &idle_rows {
            println!("{row}");
        }
        println!();
        println!(
            "runs: {seconds} s of publishing at RATE/s; delivered/s = records received by all \
             clients / (first publish → last receipt); latency = publish → client receipt; \
             missed = total/clients/most per client; cpu = server process (sluice: broker \
             included), cores and CPU-µs per delivery"
        );
        println!(
            "{:>6} {:>5} {:<9} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>7} {:>16} {:>6} {:>7}",
            "N",
            "rate",
            "server",
            "offered/s",
            "delivered/s",
            "p50",
            "p99",
            "p99.9",
            "max",
            "dropped",
            "missed",
            "cores",
            "us/del"
        );
        for (_, _, kind, run) in &runs {
            print_run(*kind, run);
        }
        if slow_clients > 0 {
            eprintln!("{slow_clients} slow clients: starting sluice and the baseline");
            let mut sluice = start_sluice(&storage).await;
            let mut plain = start_baseline().await;
            let a = slow(&mut sluice, slow_clients).await;
            closed().await;
            let b = slow(&mut plain, slow_clients).await;
            println!();
            println!(
                "slow clients: {slow_clients} clients of /slow (queue {SLOW_QUEUE}) that never \
                 read while 4096-byte values are published at 200/s for 10 s"
            );
            println!("{a}");
            println!("{b}");
        }
        println!();
        println!("took {:.0} s", began.elapsed().as_secs_f64());
    });
}
