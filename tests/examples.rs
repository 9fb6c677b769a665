//! The examples under `examples/`, run as their walk-throughs run them: the built binary
//! started with the example's own `sluice.yaml` from the repository root (so `workdir`
//! resolves), records produced, and what the walk-through says happens checked in sluice's
//! log, its `/api/status` and the topics. Only the broker and admin addresses and the data
//! directory are overridden, so that the tests run side by side and leave nothing behind;
//! logs are JSON, so that a function's lines are told apart by their fields.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{BufRead, BufReader, Read, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Daemon, TestRecord, http_get, produce_all, read_topic};
use nix::sys::signal::Signal;
use rdkafka::{
    Message,
    message::{Headers, OwnedMessage},
};
use serde_json::Value;
use sluice::{
    admin::{Status, TriggerStatus},
    broker::free_local_addr,
    function::FunctionStatus,
};

/// The longest any one awaited state may take.
const WAIT: Duration = Duration::from_secs(60);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// sluice's stderr, line by line, as it is written.
#[derive(Clone, Default)]
struct Log {
    lines: Arc<Mutex<Vec<String>>>,
    /// Set at the end of the stream: sluice has exited (its children have pipes of their own).
    closed: Arc<AtomicBool>,
}

impl Log {
    fn collect(stream: impl Read + Send + 'static) -> Self {
        let log = Self::default();
        let (lines, closed) = (log.lines.clone(), log.closed.clone());
        drop(std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                lines.lock().unwrap().push(text);
                line.clear();
            }
            closed.store(true, Ordering::SeqCst);
        }));
        log
    }

    fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Every line that is a JSON log entry (`--log-format json`).
    fn entries(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Messages logged about `function`.
    fn messages(&self, function: &str) -> Vec<String> {
        self.entries()
            .iter()
            .filter(|e| e["fields"]["function"] == function)
            .filter_map(|e| e["fields"]["message"].as_str().map(str::to_owned))
            .collect()
    }

    /// Lines `function` printed on its stdout, in order, as sluice logged them.
    fn output(&self, function: &str) -> Vec<String> {
        self.entries()
            .iter()
            .filter(|e| e["fields"]["function"] == function && e["fields"]["stream"] == "stdout")
            .filter_map(|e| e["fields"]["message"].as_str().map(str::to_owned))
            .collect()
    }

    /// How many times `message` was logged about `function`.
    fn count(&self, function: &str, message: &str) -> usize {
        self.messages(function)
            .iter()
            .filter(|m| *m == message)
            .count()
    }

    /// Entries at WARN or ERROR.
    fn warnings(&self) -> Vec<Value> {
        self.entries()
            .into_iter()
            .filter(|e| e["level"] == "WARN" || e["level"] == "ERROR")
            .collect()
    }

    /// The last lines, for failure messages.
    fn tail(&self) -> String {
        let lines = self.lines.lock().unwrap();
        let start = lines.len().saturating_sub(40);
        lines[start..].join("\n")
    }
}

/// `sluice up` running one example.
struct Example {
    /// Taken by [`Example::stop`].
    daemon: Option<Daemon>,
    bootstrap: String,
    admin: SocketAddr,
    /// The public listener, when the example has one.
    public: SocketAddr,
    log: Log,
}

impl Example {
    /// Starts `sluice up -c examples/<name>/sluice.yaml` in `root` (a directory holding
    /// `examples/<name>`) with its data in `data_dir`, and waits until it is ready.
    async fn start(name: &str, root: &Path, data_dir: &Path) -> Self {
        let broker = free_local_addr().unwrap();
        let admin = free_local_addr().unwrap();
        let public = free_local_addr().unwrap();
        let config = format!("examples/{name}/sluice.yaml");
        let mut daemon = Daemon::spawn(
            &[
                "up",
                "-c",
                &config,
                "--listen",
                &broker.to_string(),
                "--admin-listen",
                &admin.to_string(),
                "--public-listen",
                &public.to_string(),
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--log-format",
                "json",
            ],
            root,
        );
        let log = Log::collect(daemon.0.stderr.take().unwrap());
        // Nothing is expected on stdout; it is read so that the pipe can never fill up.
        drop(Log::collect(daemon.0.stdout.take().unwrap()));
        let example = Self {
            daemon: Some(daemon),
            bootstrap: broker.to_string(),
            admin,
            public,
            log,
        };
        example
            .wait_until("sluice is ready", || {
                matches!(http_get(admin, "/readyz"), Ok((200, _)))
            })
            .await;
        example
    }

    /// Polls `check` every 100 ms until it holds; fails after [`WAIT`], or at once if sluice
    /// exits, with the end of its log (and its status, when it is still running).
    async fn wait_until(&self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            if check() {
                return;
            }
            assert!(
                !self.log.closed(),
                "{what}: sluice exited; its log ends:\n{}",
                self.log.tail()
            );
            if Instant::now() >= deadline {
                let status = http_get(self.admin, "/api/status").map(|(_, body)| body);
                panic!(
                    "{what}: not true after {WAIT:?}; status: {status:?}; sluice's log ends:\n{}",
                    self.log.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `/api/status`: a snapshot sluice takes every 2 s, so a state is waited for rather than
    /// read once.
    fn status(&self) -> Status {
        let (code, body) = http_get(self.admin, "/api/status").unwrap();
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    fn function(&self, name: &str) -> FunctionStatus {
        let status = self.status();
        status
            .functions
            .into_iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no function {name} in the status"))
    }

    fn trigger(&self, name: &str) -> TriggerStatus {
        self.status()
            .triggers
            .into_iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no trigger {name} in the status"))
    }

    /// Records in `topic` now, over all partitions.
    async fn records_in(&self, topic: &str) -> i64 {
        sluice::kafka::Kafka::new(self.bootstrap.clone(), Default::default())
            .describe_topic(topic)
            .await
            .unwrap()
            .records()
    }

    /// Stops sluice with SIGTERM, checks that it exits 0 after stopping cleanly, and returns
    /// its whole log.
    fn stop(mut self) -> Log {
        let daemon = self.daemon.take().unwrap();
        daemon.signal(Signal::SIGTERM);
        let output = daemon.wait(WAIT);
        let deadline = Instant::now() + WAIT;
        while !self.log.closed() {
            assert!(Instant::now() < deadline, "sluice's stderr stays open");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            output.status.success(),
            "sluice exited with {}:\n{}",
            output.status,
            self.log.tail()
        );
        let last = self.log.entries().pop();
        assert_eq!(
            last.map(|e| e["fields"]["message"].clone()),
            Some(Value::from("sluice stopped.")),
            "{}",
            self.log.tail()
        );
        self.log.clone()
    }
}

/// A test that fails before [`Example::stop`] still stops sluice with SIGTERM, so that it
/// stops the functions it started: killed outright, it would leave them running.
impl Drop for Example {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            daemon.signal(Signal::SIGTERM);
            let deadline = Instant::now() + WAIT;
            while !self.log.closed() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn record(key: &str, value: &str) -> TestRecord {
    (
        Some(key.as_bytes().to_vec()),
        value.as_bytes().to_vec(),
        vec![],
    )
}

fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_starts_the_logger_from_zero_and_it_logs_every_event() {
    let data = tempfile::tempdir().unwrap();
    let sluice = Example::start("quickstart", repo(), data.path()).await;
    let logger = sluice.function("logger");
    assert_eq!(logger.kind, "command");
    assert_eq!(
        (logger.instances, logger.starting, logger.cold_starts),
        (0, 0, 0),
        "an instance runs before any event: {logger:?}"
    );

    let typed = [("a", "one"), ("b", "two"), ("c", "three")];
    produce_all(
        &sluice.bootstrap,
        "orders",
        typed.iter().map(|(k, v)| record(k, v)).collect(),
    )
    .await;
    sluice
        .wait_until("the logger logs three events", || {
            sluice.log.output("logger").len() >= 3
        })
        .await;
    let lines = sluice.log.output("logger");
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for (key, value) in typed {
        let line = lines
            .iter()
            .find(|l| l.ends_with(&format!(" key={key} data={value}")))
            .unwrap_or_else(|| panic!("no line for {key}:{value} in {lines:#?}"));
        assert!(
            line.starts_with("event id=partition:")
                && line.contains(" source=/sluice/log-orders#orders type=dev.knative.kafka.event "),
            "{line}"
        );
    }
    sluice
        .wait_until(
            "the status shows three deliveries by one cold-started instance",
            || {
                let logger = sluice.function("logger");
                sluice.trigger("log-orders").delivered == 3
                    && (logger.instances, logger.cold_starts) == (1, 1)
            },
        )
        .await;
    let trigger = sluice.trigger("log-orders");
    assert_eq!(trigger.target, "function:logger");
    assert_eq!((trigger.dead_lettered, trigger.retrying), (0, 0));
    assert_eq!(sluice.log.count("logger", "Function instance ready."), 1);
    assert!(sluice.log.warnings().is_empty(), "{}", sluice.log.tail());
    let log = sluice.stop();
    assert_eq!(log.count("logger", "Function instance stopped."), 1);
}

/// What the example's program prints for `name` when run directly: Debian's figlet when it is
/// installed, else the stand-in `banner.py`, as the example's `exec` line chooses.
fn banner(name: &str) -> Vec<u8> {
    let dir = repo().join("examples/figlet");
    let has_figlet = Command::new("sh")
        .args(["-c", "command -v figlet"])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    let mut program = if has_figlet {
        Command::new("figlet")
    } else {
        let mut python = Command::new("python3");
        let _ = python.arg("banner.py");
        python
    };
    let mut child = program
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(name.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{:?}", output.status);
    assert!(!output.stdout.is_empty());
    output.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figlet_turns_a_name_into_a_banner_reply() {
    let data = tempfile::tempdir().unwrap();
    let sluice = Example::start("figlet", repo(), data.path()).await;
    assert_eq!(sluice.function("figlet").kind, "exec");

    // As `echo Ada | sluice produce -t names` does: no key.
    produce_all(
        &sluice.bootstrap,
        "names",
        vec![(None, b"Ada".to_vec(), vec![])],
    )
    .await;
    let replies = read_topic(&sluice.bootstrap, "banners", 1).await;
    let expected = banner("Ada");
    let reply = &replies[0];
    assert_eq!(
        String::from_utf8_lossy(reply.payload().unwrap_or_default()),
        String::from_utf8_lossy(&expected),
    );
    assert_eq!(
        header(reply, "content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        header(reply, "sluice-cause").as_deref(),
        Some("partition:0/offset:0")
    );
    // Keyed like the input.
    assert_eq!(reply.key(), None);

    // The banner's lines are in sluice's log too, in order.
    let expected_lines: Vec<String> = String::from_utf8_lossy(&expected)
        .lines()
        .map(str::to_owned)
        .collect();
    sluice
        .wait_until("the banner is logged", || {
            sluice.log.output("figlet").len() >= expected_lines.len()
        })
        .await;
    assert_eq!(sluice.log.output("figlet"), expected_lines);

    // One process per event, and none left once it is handled.
    sluice
        .wait_until(
            "the status shows the delivery and no process running",
            || {
                sluice.trigger("banner-names").delivered == 1
                    && sluice.function("figlet").instances == 0
            },
        )
        .await;
    assert_eq!(sluice.records_in("banners").await, 1);
    assert!(sluice.log.warnings().is_empty(), "{}", sluice.log.tail());
    let _ = sluice.stop();
}

/// Opens the console of a running example in headless Chromium and checks that it draws
/// `nodes` (`kind:name`) without a page error; the screenshot goes to the target directory.
/// Skipped (with the reason) where Chromium or playwright-core is not installed, but not in
/// CI.
fn console_draws(example: &Example, name: &str, nodes: &[&str]) {
    let installed = Path::new("/usr/bin/chromium").exists()
        && repo()
            .join("tests/browser/node_modules/playwright-core")
            .exists();
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and tests/browser's playwright-core must be installed in CI (see .ci/run)"
        );
        eprintln!("skipped the console check: chromium or playwright-core is not installed");
        return;
    }
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("console-{name}.png"));
    let output = Command::new("node")
        .arg("tests/browser/console-smoke.mjs")
        .arg(format!("http://{}/", example.admin))
        .arg(&shot)
        .args(nodes)
        .current_dir(repo())
        .output()
        .expect("node runs the console check");
    assert!(
        output.status.success(),
        "the console check failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{}", String::from_utf8_lossy(&output.stdout).trim());
}

/// Copies the files of `examples/<name>` into `root/examples/<name>`.
fn copy_example(name: &str, root: &Path) -> PathBuf {
    let from = repo().join("examples").join(name);
    let to = root.join("examples").join(name);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            let _ = std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    to
}

/// The number in an audit line `hit by <player>: <n>...`, by player.
fn counts_by_player(lines: &[String]) -> BTreeMap<String, Vec<u32>> {
    let mut counts: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for line in lines {
        let Some((player, rest)) = line
            .strip_prefix("hit by ")
            .and_then(|l| l.split_once(": "))
        else {
            continue;
        };
        let n = rest
            .split([',', ' '])
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {line:?}"));
        counts.entry(player.to_owned()).or_default().push(n);
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_reports_the_player_past_ten_hits_once() {
    // The example keeps its counts at `../../.sluice/audit.db` from its workdir: beside the
    // broker's data when run from the repository root. Run from a copy of the example in a
    // directory of its own, the unchanged config puts both there instead.
    let root = tempfile::tempdir().unwrap();
    let example = copy_example("audit", root.path());
    assert_eq!(
        std::fs::read(example.join("sluice.yaml")).unwrap(),
        std::fs::read(repo().join("examples/audit/sluice.yaml")).unwrap()
    );
    let data = root.path().join(".sluice");
    let sluice = Example::start("audit", root.path(), &data).await;
    let audit = sluice.function("audit");
    assert_eq!((audit.kind.as_str(), audit.instances), ("command", 0));

    // play.sh's game, POSTed to the ingress: mallory hits 12 times, carol 8, alice 5, bob 3.
    let players = [("mallory", 12), ("carol", 8), ("alice", 5), ("bob", 3)];
    let ingress = format!("http://{}", sluice.public);
    let play = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .arg("examples/audit/play.sh")
            .env("INGRESS", ingress)
            .current_dir(repo())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        play.status.success(),
        "{}",
        String::from_utf8_lossy(&play.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&play.stdout).trim(),
        format!("posted 28 hits to http://{}/topics/hits", sluice.public)
    );
    sluice
        .wait_until("every hit is audited", || {
            let trigger = sluice.trigger("audit-hits");
            trigger.delivered + trigger.dead_lettered >= 28
        })
        .await;
    let trigger = sluice.trigger("audit-hits");
    assert_eq!((trigger.delivered, trigger.dead_lettered), (28, 0));

    // A reply is produced before its hit counts as delivered, so `cheaters` is complete.
    assert_eq!(sluice.records_in("cheaters").await, 1);
    let report = &read_topic(&sluice.bootstrap, "cheaters", 1).await[0];
    assert_eq!(report.key(), Some(&b"mallory"[..]));
    assert_eq!(
        header(report, "ce_type").as_deref(),
        Some("com.example.cheater")
    );
    assert_eq!(header(report, "ce_source").as_deref(), Some("/audit"));
    assert_eq!(header(report, "ce_specversion").as_deref(), Some("1.0"));
    assert!(header(report, "ce_id").is_some_and(|id| !id.is_empty()));
    assert_eq!(
        header(report, "content-type").as_deref(),
        Some("application/json")
    );
    let body: Value = serde_json::from_slice(report.payload().unwrap()).unwrap();
    assert_eq!(body, serde_json::json!({"player": "mallory", "hits": 11}));
    // The report answers mallory's 11th hit, whose CloudEvent id the game chose.
    assert!(
        header(report, "sluice-cause")
            .is_some_and(|id| id.starts_with("game-") && id.ends_with("-mallory-11")),
        "{:?}",
        header(report, "sluice-cause")
    );
    // The same report, streamed to a browser (SSE, ten records back).
    let public = sluice.public;
    let streamed = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(public).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            stream,
            "GET /cheaters?history=10 HTTP/1.1\r\nHost: {public}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        BufReader::new(stream)
            .lines()
            .map(Result::unwrap)
            .find_map(|line| line.strip_prefix("data: ").map(str::to_owned))
            .unwrap()
    })
    .await
    .unwrap();
    let streamed: Value = serde_json::from_str(&streamed).unwrap();
    assert_eq!(streamed["key"], "mallory", "{streamed}");
    assert_eq!(
        streamed["value"], r#"{"player": "mallory", "hits": 11}"#,
        "{streamed}"
    );

    // Each player's hits were counted once each, in order (`ordering: key`).
    let lines = sluice.log.output("audit");
    let counts = counts_by_player(&lines);
    for (player, total) in players {
        assert_eq!(
            counts.get(player).cloned().unwrap_or_default(),
            (1..=total).collect::<Vec<u32>>(),
            "{player}: {lines:#?}"
        );
    }
    assert_eq!(counts.len(), players.len(), "{lines:#?}");
    let reported: Vec<&String> = lines.iter().filter(|l| l.contains("cheater")).collect();
    assert_eq!(
        reported,
        ["hit by mallory: 11, over 10: reported as a cheater"]
    );

    sluice
        .wait_until("the status shows audit started once, from zero", || {
            let audit = sluice.function("audit");
            audit.cold_starts == 1 && audit.instances >= 1
        })
        .await;
    assert!(sluice.log.warnings().is_empty(), "{}", sluice.log.tail());
    tokio::task::block_in_place(|| {
        console_draws(
            &sluice,
            "audit",
            &[
                "ingress:hits",
                "topic:hits",
                "trigger:audit-hits",
                "function:audit",
                "reply:cheaters",
                "stream:/cheaters",
            ],
        );
    });
    let log = sluice.stop();
    assert_eq!(
        log.count("audit", "Function instance ready."),
        log.count("audit", "Function instance stopped."),
        "every instance is stopped with sluice"
    );
    // The counts went to the copy's data directory, beside the broker's.
    assert!(data.join("audit.db").is_file());
    assert!(data.join("broker.db").is_file());
}

/// `(key, value)` of each record a job printed (`<job>: partition=.. offset=.. key=K
/// headers={} V`).
fn consumed(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|line| {
            let (_, rest) = line
                .split_once(" key=")
                .unwrap_or_else(|| panic!("not a record: {line:?}"));
            let (key, rest) = rest.split_once(' ').unwrap();
            let value = rest
                .strip_prefix("headers={} ")
                .unwrap_or_else(|| panic!("not a record: {line:?}"));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

fn pairs(records: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    records
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_jobs_start_for_lag_consume_exit_when_idle_and_come_back() {
    let data = tempfile::tempdir().unwrap();
    let sluice = Example::start("observer", repo(), data.path()).await;
    for job in ["payments-consumer", "shipping-consumer"] {
        let status = sluice.function(job);
        assert_eq!(status.kind, "job");
        assert_eq!((status.instances, status.cold_starts), (0, 0), "{status:?}");
    }
    // Every instance started (as logged) has exited, and the status was taken after that.
    let idle = |sluice: &Example, job: &str| {
        let status = sluice.function(job);
        let started = sluice.log.count(job, "Job started for lag.") as u64;
        started >= 1
            && status.cold_starts == started
            && sluice.log.count(job, "Job finished.") as u64 == started
            && status.instances == 0
            && status.lag == Some(0)
    };
    let prefix = |job: &str| format!("{job}: partition=");
    let lines = |sluice: &Example, job: &str| -> Vec<String> {
        sluice
            .log
            .output(job)
            .into_iter()
            .filter(|l| l.starts_with(&prefix(job)))
            .collect()
    };

    // Lag on `payments` starts its job, which prints every record, then exits when idle.
    let first = [
        ("alice", "10"),
        ("bob", "25"),
        ("carol", "7"),
        ("dave", "12"),
    ];
    produce_all(
        &sluice.bootstrap,
        "payments",
        first.iter().map(|(k, v)| record(k, v)).collect(),
    )
    .await;
    sluice
        .wait_until("payments-consumer prints every record", || {
            consumed(&lines(&sluice, "payments-consumer"))
                .into_iter()
                .collect::<BTreeSet<_>>()
                == pairs(&first)
        })
        .await;
    assert!(
        sluice
            .log
            .count("payments-consumer", "Job started for lag.")
            >= 1
    );
    sluice
        .wait_until("payments-consumer's instances exit", || {
            idle(&sluice, "payments-consumer")
        })
        .await;
    let started = sluice.function("payments-consumer").cold_starts;
    let shipping = sluice.function("shipping-consumer");
    assert_eq!((shipping.instances, shipping.cold_starts), (0, 0));
    let printed_before = lines(&sluice, "payments-consumer").len();

    // New records wake both jobs; payments-consumer goes on after what its group committed.
    produce_all(&sluice.bootstrap, "payments", vec![record("alice", "3")]).await;
    let shipments = [("order-1", "shipped"), ("order-2", "shipped")];
    produce_all(
        &sluice.bootstrap,
        "shipping",
        shipments.iter().map(|(k, v)| record(k, v)).collect(),
    )
    .await;
    sluice
        .wait_until("both jobs print the new records", || {
            !consumed(&lines(&sluice, "payments-consumer")[printed_before..]).is_empty()
                && consumed(&lines(&sluice, "shipping-consumer"))
                    .into_iter()
                    .collect::<BTreeSet<_>>()
                    == pairs(&shipments)
        })
        .await;
    sluice
        .wait_until("both jobs' instances exit", || {
            idle(&sluice, "payments-consumer") && idle(&sluice, "shipping-consumer")
        })
        .await;
    assert_eq!(
        consumed(&lines(&sluice, "payments-consumer")[printed_before..]),
        [("alice".to_owned(), "3".to_owned())],
        "only the new payment is read again"
    );
    assert!(sluice.function("payments-consumer").cold_starts > started);
    assert!(sluice.log.warnings().is_empty(), "{}", sluice.log.tail());
    tokio::task::block_in_place(|| {
        console_draws(
            &sluice,
            "observer",
            &[
                "topic:payments",
                "topic:shipping",
                "function:payments-consumer",
                "function:shipping-consumer",
            ],
        );
    });
    let _ = sluice.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openfaas_discovers_the_annotated_function_and_logs_its_banner() {
    // The walk-through's gateway port, 8080, may be taken here: a copy of the example points
    // at a free one instead.
    let root = tempfile::tempdir().unwrap();
    let example = copy_example("openfaas", root.path());
    let _ = copy_example("figlet", root.path());
    let gateway = free_local_addr().unwrap();
    let config = example.join("sluice.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("http://127.0.0.1:8080"), "{text}");
    std::fs::write(
        &config,
        text.replace("http://127.0.0.1:8080", &format!("http://{gateway}")),
    )
    .unwrap();
    // As its README starts it, from the root.
    let _gateway = common::gateway::Gateway::start(
        root.path(),
        gateway,
        Path::new("examples/openfaas/functions.json"),
        &[],
    );
    let data = tempfile::tempdir().unwrap();
    let sluice = Example::start("openfaas", root.path(), data.path()).await;
    let trigger = "openfaas-figlet.openfaas-fn";
    sluice
        .wait_until("the annotated function is discovered", || {
            sluice.status().triggers.iter().any(|t| t.name == trigger)
        })
        .await;
    assert_eq!(sluice.trigger(trigger).topics, ["faas-request"]);
    assert_eq!(
        sluice.trigger(trigger).target,
        format!("http://{gateway}/function/figlet.openfaas-fn")
    );

    // As `echo Ada | sluice produce -t faas-request` does.
    produce_all(
        &sluice.bootstrap,
        "faas-request",
        vec![(None, b"Ada".to_vec(), vec![])],
    )
    .await;
    let expected = String::from_utf8(banner("Ada")).unwrap();
    let answered = |entry: &Value| {
        entry["fields"]["trigger"] == trigger
            && entry["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Function answered:"))
    };
    sluice
        .wait_until("the banner is logged", || {
            sluice.log.entries().iter().any(answered)
        })
        .await;
    let entries = sluice.log.entries();
    let entry = entries.iter().find(|e| answered(e)).unwrap();
    assert_eq!(entry["fields"]["status"], 200, "{entry}");
    let message = entry["fields"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!("Function answered:\n{expected}"),
        "{message}"
    );
    sluice
        .wait_until("the status shows the delivery", || {
            sluice.trigger(trigger).delivered == 1
        })
        .await;
    assert!(sluice.log.warnings().is_empty(), "{}", sluice.log.tail());
    let _ = sluice.stop();
}
