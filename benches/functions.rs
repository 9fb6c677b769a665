//! Function runtime benchmarks, each against a baseline measured in the same run.
//!
//! - Cold start: from a record produced for a `command` function at zero to the function
//!   receiving it, with and without `socket_activation`, next to a bare spawn-to-first-response
//!   of the same binary and to the same path with the function already warm.
//! - exec against command: delivered events/s for the same program logic (`hello --stdin`
//!   once per event against the `hello` HTTP server).
//!
//! `cargo bench --bench functions` (env `COLD` iterations per mode, default 50; `EVENTS`
//! records for the exec/command run, default 5000). Needs a C compiler for
//! `bench/function/hello.c`.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};
use sluice::{
    app::{RunOptions, Running},
    broker::free_local_addr,
    config,
};

/// What sluice runs for socket activation (kept the same here for the bare baseline).
const ACTIVATE: &str = "exec 3<&0 0</dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec \"$@\"";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn build_hello(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/function/hello.c");
    let out = dir.join("hello");
    let status = Command::new("cc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .expect("a C compiler (cc)");
    assert!(status.success(), "cannot compile {}", source.display());
    out
}

/// One POST on a new connection; Ok once a full response came back.
fn request(port: u16) -> std::io::Result<()> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_nodelay(true)?;
    stream.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.ends_with(b"HELLO") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

/// Spawn to first response, polling the port every 200 µs (or, with a handed-over socket,
/// sending at once).
fn bare(hello: &Path, activated: bool, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
        let port = listener.local_addr().unwrap().port();
        let started = Instant::now();
        let mut command = if activated {
            let mut c = Command::new("/bin/sh");
            c.args(["-c", ACTIVATE, "sh"])
                .arg(hello)
                .stdin(Stdio::from(OwnedFd::from(listener)));
            c
        } else {
            drop(listener);
            let mut c = Command::new(hello);
            c.env("PORT", port.to_string()).stdin(Stdio::null());
            c
        };
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while request(port).is_err() {
            assert!(Instant::now() < deadline, "hello did not answer");
            std::thread::sleep(Duration::from_micros(200));
        }
        out.push(started.elapsed());
        let _ = child.kill();
        let _ = child.wait();
    }
    out
}

fn stamps(path: &Path) -> Vec<u128> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn start(dir: &Path, yaml: &str) -> Running {
    let listen = free_local_addr().unwrap();
    let text = format!(
        "data_dir: {}\nembedded:\n  listen: \"{listen}\"\n{yaml}",
        dir.display()
    );
    let config = config::parse(&text, "bench.yaml").unwrap_or_else(|e| panic!("{e}"));
    Running::start(
        &config,
        RunOptions {
            admin: false,
            triggers: true,
            grace: Duration::from_secs(5),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .create()
        .unwrap()
}

fn metric(running: &Running, prefix: &str) -> f64 {
    running
        .state()
        .metrics()
        .encode()
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Record produced → function receives it, `n` times. Cold: each record waits until the
/// function is back at zero. Returns the latencies and the mean of sluice's own cold-start
/// histogram (event waiting → instance ready).
async fn through_sluice(
    hello: &Path,
    activated: bool,
    warm: bool,
    n: usize,
) -> (Vec<Duration>, Option<f64>) {
    let dir = tempfile::tempdir().unwrap();
    let stamp = dir.path().join("stamps");
    let yaml = format!(
        "\
topics:
  - name: cold
    partitions: 1
functions:
  hello:
    command: [{hello}]
    env: {{HELLO_STAMP: {stamp}}}
    idle_timeout: {idle}
    socket_activation: {activated}
triggers:
  - name: t
    topics: [cold]
    function: hello
",
        hello = hello.display(),
        stamp = stamp.display(),
        idle = if warm { "1h" } else { "100ms" },
    );
    let running = start(dir.path(), &yaml).await;
    let producer = producer(running.bootstrap());
    let functions = running.functions().unwrap();
    // Let the trigger join its group before the first record.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let send = |i: usize| {
        let producer = producer.clone();
        async move {
            let value = format!("event-{i}");
            producer
                .send(
                    FutureRecord::<(), _>::to("cold").payload(&value),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    };
    let wait_for = |count: usize| {
        let stamp = stamp.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let all = stamps(&stamp);
                if all.len() >= count {
                    return all[count - 1];
                }
                assert!(Instant::now() < deadline, "event {count} did not arrive");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    let mut seen = 0;
    if warm {
        send(usize::MAX).await;
        seen += 1;
        let _ = wait_for(seen).await;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if warm {
            tokio::time::sleep(Duration::from_millis(20)).await;
        } else {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !functions.pids("hello").is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "the function did not scale to zero"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let sent = now_nanos();
        send(i).await;
        seen += 1;
        let received = wait_for(seen).await;
        out.push(Duration::from_nanos(received.saturating_sub(sent) as u64));
    }
    let cold = (!warm).then(|| {
        let sum = metric(&running, "sluice_function_cold_start_seconds_sum{");
        let count = metric(&running, "sluice_function_cold_start_seconds_count{");
        sum / count.max(1.0)
    });
    drop(producer);
    running.shutdown(Duration::from_secs(5)).await;
    (out, cold)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn report(name: &str, mut samples: Vec<Duration>, note: &str) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<48} p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   n {}{note}",
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap()),
        samples.len()
    );
}

/// Delivered events/s for `events` records through a trigger to `function` (YAML of one
/// function named `f`), from the first record produced to the last delivered.
async fn throughput(function: &str, events: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "\
topics:
  - name: load
    partitions: 4
functions:
  f:
{function}
triggers:
  - name: t
    topics: [load]
    function: f
    ordering: unordered
    max_in_flight: 64
"
    );
    let running = start(dir.path(), &yaml).await;
    let producer = producer(running.bootstrap());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let value = vec![b'x'; 100];
    let started = Instant::now();
    let keys: Vec<String> = (0..events).map(|i| i.to_string()).collect();
    let sends: Vec<_> = keys
        .iter()
        .map(|key| {
            producer
                .send_result(FutureRecord::to("load").key(key).payload(&value))
                .map_err(|(err, _)| err)
                .unwrap()
        })
        .collect();
    for send in sends {
        let _ = send.await.unwrap().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while metric(&running, "sluice_events_delivered_total{trigger=\"t\"}") < events as f64 {
        assert!(Instant::now() < deadline, "not every event was delivered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    drop(producer);
    running.shutdown(Duration::from_secs(5)).await;
    rate
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n = env_or("COLD", 50);
    let events = env_or("EVENTS", 5000);
    let tools = tempfile::tempdir().unwrap();
    let hello = build_hello(tools.path());

    println!("cold start, {n} samples per row");
    let bare_port = bare(&hello, false, n);
    let bare_socket = bare(&hello, true, n);
    report("bare spawn → first response (port polling)", bare_port, "");
    report(
        "bare spawn → first response (socket handed over)",
        bare_socket,
        "",
    );
    let (warm, _) = through_sluice(&hello, false, true, n).await;
    report("sluice, record produced → warm function", warm, "");
    for activated in [false, true] {
        let (cold, ready) = through_sluice(&hello, activated, false, n).await;
        let mode = if activated { "socket" } else { "port" };
        let note = ready
            .map(|s| format!("   (waiting → ready, mean {:.2} ms)", s * 1000.0))
            .unwrap_or_default();
        report(
            &format!("sluice, record produced → function at zero ({mode})"),
            cold,
            &note,
        );
    }

    println!(
        "\nexec against command, {events} events of 100 bytes, 4 partitions, unordered, 64 in flight"
    );
    let command = throughput(&format!("    command: [{}]\n", hello.display()), events).await;
    let exec = throughput(
        &format!("    exec: [{}, --stdin]\n", hello.display()),
        events,
    )
    .await;
    println!("command (hello HTTP server)   {command:>9.0} events/s");
    println!("exec (hello --stdin per event) {exec:>8.0} events/s");
    println!("exec / command = {:.2}", exec / command);
}
