//! Shared helpers for integration tests: free ports, an in-process broker, the built binary.
#![allow(dead_code)]

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
        let child = sluice()
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
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
