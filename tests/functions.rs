//! The function runtime with real processes: command functions scaled from zero and back,
//! crashes, exec's stdin/environment contract and timeouts, jobs woken by lag, and shutdown.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use common::{Daemon, InProcess, produce_all, read_topic};
use rdkafka::{
    Message,
    message::Headers,
    producer::{FutureProducer, FutureRecord},
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/function.py")
}

/// The JSON lines the test function wrote.
fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Event ids the test function received.
fn received_ids(path: &Path) -> BTreeSet<String> {
    log_lines(path)
        .iter()
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect()
}

/// Whether a process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what}: not true after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn records(n: usize) -> Vec<common::TestRecord> {
    (0..n)
        .map(|i| {
            (
                Some(format!("k{i}").into_bytes()),
                format!("v{i}").into_bytes(),
                vec![],
            )
        })
        .collect()
}

fn command_yaml(topic: &str, log: &Path, delay: &str, function: &str, trigger: &str) -> String {
    format!(
        "\
topics:
  - name: {topic}
    partitions: 4
functions:
  fn:
    command: [python3, {fixture}]
    env: {{LOG: {log}, DELAY: \"{delay}\"}}
{function}
triggers:
  - name: t
    topics: [{topic}]
    function: fn
    initial_offset: earliest
{trigger}",
        fixture = fixture().display(),
        log = log.display(),
    )
}

fn function_status(sluice: &InProcess) -> sluice::function::FunctionStatus {
    sluice
        .running()
        .functions()
        .unwrap()
        .status()
        .into_iter()
        .find(|f| f.name == "fn")
        .unwrap()
}

fn metric(sluice: &InProcess, line_start: &str) -> Option<f64> {
    let text = sluice.state().metrics().encode();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn command_function_scales_from_zero_and_back_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let yaml = command_yaml("zero", &log, "0", "    idle_timeout: 1s\n", "");
    let sluice = InProcess::start(&yaml).await;
    let functions = sluice.running().functions().unwrap();
    // Nothing runs before the first event.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(functions.pids("fn").is_empty());
    assert!(!log.exists(), "an instance started without events");

    produce_all(&sluice.bootstrap, "zero", records(1)).await;
    wait_until("the event arrives", WAIT, || received_ids(&log).len() == 1).await;
    let pids: BTreeSet<u64> = log_lines(&log)
        .iter()
        .filter_map(|v| v["pid"].as_u64())
        .collect();
    assert_eq!(pids.len(), 1, "{pids:?}");
    let pid = *pids.iter().next().unwrap() as u32;
    assert_eq!(functions.pids("fn"), vec![pid]);
    assert_eq!(
        metric(
            &sluice,
            "sluice_function_cold_starts_total{function=\"fn\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &sluice,
            "sluice_function_cold_start_seconds_count{function=\"fn\"}"
        ),
        Some(1.0)
    );

    // Idle for 1 s: stopped, and the process is gone.
    wait_until("the instance stops", WAIT, || {
        functions.pids("fn").is_empty() && !alive(pid)
    })
    .await;
    let status = function_status(&sluice);
    assert_eq!((status.instances, status.starting), (0, 0));
    assert_eq!(
        metric(
            &sluice,
            "sluice_function_instances{function=\"fn\",state=\"ready\"}"
        ),
        Some(0.0)
    );

    // And it comes back for the next event.
    produce_all(&sluice.bootstrap, "zero", records(1)).await;
    wait_until("the second event arrives", WAIT, || {
        received_ids(&log).len() == 2
    })
    .await;
    assert_eq!(
        metric(
            &sluice,
            "sluice_function_cold_starts_total{function=\"fn\"}"
        ),
        Some(2.0)
    );
    let pids = functions.pids("fn");
    sluice.stop().await;
    for pid in pids {
        assert!(!alive(pid), "instance {pid} survived the shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn command_function_scales_up_to_max_with_bounded_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let yaml = command_yaml(
        "burst",
        &log,
        "0.1",
        "    concurrency: 2\n    max: 4\n    idle_timeout: 1s\n",
        "    ordering: unordered\n    max_in_flight: 32\n",
    );
    let sluice = InProcess::start(&yaml).await;
    let functions = sluice.running().functions().unwrap();
    produce_all(&sluice.bootstrap, "burst", records(200)).await;
    let mut most = 0;
    wait_until("200 events arrive", WAIT, || {
        most = most.max(functions.pids("fn").len());
        received_ids(&log).len() == 200
    })
    .await;
    assert_eq!(most, 4, "instances at most");
    let lines = log_lines(&log);
    let per_instance = lines
        .iter()
        .filter_map(|v| v["in_flight"].as_u64())
        .max()
        .unwrap();
    assert!(
        per_instance <= 2,
        "an instance had {per_instance} events at once"
    );
    let pids: BTreeSet<u64> = lines.iter().filter_map(|v| v["pid"].as_u64()).collect();
    assert!(pids.len() >= 4, "{pids:?}");
    println!(
        "200 events over {} instances, at most {per_instance} at once each",
        pids.len()
    );

    wait_until("back to zero", WAIT, || functions.pids("fn").is_empty()).await;
    for pid in pids {
        assert!(!alive(pid as u32), "instance {pid} is still alive");
    }
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_instance_is_replaced_and_its_events_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let yaml = command_yaml(
        "crash",
        &log,
        "0.05",
        "    concurrency: 4\n    max: 2\n    readiness_path: /ready\n",
        "    ordering: unordered\n    max_in_flight: 8\n    delivery: {backoff_delay: 50ms}\n",
    );
    let sluice = InProcess::start(&yaml).await;
    let functions = sluice.running().functions().unwrap();
    produce_all(&sluice.bootstrap, "crash", records(300)).await;
    wait_until("some events arrive", WAIT, || {
        received_ids(&log).len() >= 30
    })
    .await;
    let victim = functions.pids("fn")[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let at_kill = received_ids(&log).len();
    wait_until("every event arrives", WAIT, || {
        received_ids(&log).len() == 300
    })
    .await;
    let pids: BTreeSet<u64> = log_lines(&log)
        .iter()
        .filter(|v| v["started"].as_bool() == Some(true))
        .filter_map(|v| v["pid"].as_u64())
        .collect();
    assert!(
        pids.len() >= 3,
        "no replacement was started: instances {pids:?}"
    );
    assert!(!alive(victim));
    let deliveries = log_lines(&log)
        .iter()
        .filter(|v| v["id"].is_string())
        .count();
    println!(
        "killed {victim} after {at_kill} events; 300 distinct delivered in {deliveries} requests by {} instances",
        pids.len()
    );
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn socket_activation_hands_over_a_bound_socket() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let yaml = command_yaml("activated", &log, "0", "    socket_activation: true\n", "");
    let sluice = InProcess::start(&yaml).await;
    produce_all(&sluice.bootstrap, "activated", records(3)).await;
    wait_until("events arrive", WAIT, || received_ids(&log).len() == 3).await;
    let lines = log_lines(&log);
    let started: Vec<&Value> = lines.iter().filter(|v| v["started"] == true).collect();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["activated"], true, "{lines:?}");
    sluice.stop().await;
}

fn exec_yaml(topic: &str, exec: &str, function: &str, trigger: &str) -> String {
    format!(
        "\
topics:
  - name: {topic}
    partitions: 1
functions:
  fn:
    exec: {exec}
{function}
triggers:
  - name: t
    topics: [{topic}]
    function: fn
    initial_offset: earliest
{trigger}"
    )
}

fn header_map(message: &rdkafka::message::OwnedMessage) -> BTreeMap<String, String> {
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_gets_the_data_on_stdin_and_the_event_in_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let script = format!(
        "[sh, -c, 'cat > {out}/$KAFKA_OFFSET.body; env > {out}/$KAFKA_OFFSET.env; printf \"hello %s\" \"$KAFKA_KEY\"']"
    );
    let yaml = exec_yaml("names", &script, "", "    reply: {topic: greetings}\n");
    let sluice = InProcess::start(&yaml).await;
    produce_all(
        &sluice.bootstrap,
        "names",
        vec![
            (
                Some(b"ada".to_vec()),
                b"Ada Lovelace\nline two".to_vec(),
                vec![("trace-id".into(), b"t-1".to_vec())],
            ),
            (Some(vec![0xff, 0x00]), b"binary key".to_vec(), vec![]),
        ],
    )
    .await;
    let replies = read_topic(&sluice.bootstrap, "greetings", 2).await;
    assert_eq!(replies[0].payload(), Some(&b"hello ada"[..]));
    assert_eq!(replies[0].key(), Some(&b"ada"[..]));
    assert_eq!(
        header_map(&replies[0])["sluice-cause"],
        "partition:0/offset:0"
    );
    assert_eq!(
        header_map(&replies[0])["content-type"],
        "text/plain; charset=utf-8"
    );

    let body = std::fs::read(dir.path().join("0.body")).unwrap();
    assert_eq!(body, b"Ada Lovelace\nline two");
    let env: BTreeMap<String, String> = std::fs::read_to_string(dir.path().join("0.env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    assert_eq!(env["CE_ID"], "partition:0/offset:0");
    assert_eq!(env["CE_SOURCE"], "/sluice/t#names");
    assert_eq!(env["CE_TYPE"], "dev.knative.kafka.event");
    assert_eq!(env["CE_SUBJECT"], "partition:0#0");
    assert_eq!(env["CE_SPECVERSION"], "1.0");
    assert!(env["CE_TIME"].ends_with('Z'), "{}", env["CE_TIME"]);
    assert_eq!(env["CE_DATACONTENTTYPE"], "application/octet-stream");
    assert_eq!(env["KAFKA_TOPIC"], "names");
    assert_eq!(env["KAFKA_PARTITION"], "0");
    assert_eq!(env["KAFKA_OFFSET"], "0");
    assert_eq!(env["KAFKA_KEY"], "ada");
    assert_eq!(env["KAFKA_HEADER_TRACE_ID"], "t-1");
    assert_eq!(env["SLUICE_FUNCTION"], "fn");
    assert!(!env.contains_key("SLUICE_BASE64"));

    let env = std::fs::read_to_string(dir.path().join("1.env")).unwrap();
    assert!(env.lines().any(|l| l == "KAFKA_KEY=/wA="), "{env}");
    assert!(env.lines().any(|l| l == "SLUICE_BASE64=KAFKA_KEY"), "{env}");
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_failures_are_retried_then_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("runs");
    let script = format!(
        "[sh, -c, 'echo run >> {}; echo boom >&2; exit 3']",
        count.display()
    );
    let yaml = exec_yaml(
        "failing",
        &script,
        "",
        "    delivery: {retry: 2, backoff_delay: 10ms}\n",
    );
    let sluice = InProcess::start(&yaml).await;
    produce_all(&sluice.bootstrap, "failing", records(1)).await;
    let dead = read_topic(&sluice.bootstrap, "sluice.dlq.t", 1).await;
    let headers = header_map(&dead[0]);
    assert_eq!(headers["knativeerrorcode"], "exit 3");
    assert_eq!(headers["knativeerrordata"], "boom\n");
    assert_eq!(headers["sluice-attempts"], "3");
    assert_eq!(headers["knativeerrordest"], "function:fn");
    assert_eq!(dead[0].payload(), Some(&b"v0"[..]));
    let runs = std::fs::read_to_string(&count).unwrap().lines().count();
    assert_eq!(runs, 3);
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // The program leaves a grandchild behind in its group, then hangs.
    let script = format!(
        "[sh, -c, 'sleep 300 & echo $! >> {p}; sleep 300 & echo $! >> {p}; wait']",
        p = pids.display()
    );
    let yaml = exec_yaml(
        "slow",
        &script,
        "    timeout: 500ms\n",
        "    delivery: {retry: 0}\n",
    );
    let sluice = InProcess::start(&yaml).await;
    produce_all(&sluice.bootstrap, "slow", records(1)).await;
    let dead = read_topic(&sluice.bootstrap, "sluice.dlq.t", 1).await;
    assert_eq!(header_map(&dead[0])["knativeerrorcode"], "timeout");
    let pids: Vec<u32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    wait_until("the group is gone", Duration::from_secs(10), || {
        pids.iter().all(|&p| !alive(p))
    })
    .await;
    sluice.stop().await;
}

/// Produces `n` records to one partition.
async fn produce_to(producer: &FutureProducer, topic: &str, partition: i32, n: usize) {
    for i in 0..n {
        let value = format!("p{partition}-{i}");
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(partition)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lag_wakes_a_job_that_consumes_and_exits_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let yaml = format!(
        "\
topics:
  - name: payments
    partitions: 4
functions:
  fn:
    job: [sh, -c, 'echo $SLUICE_INSTANCE >> {out}/starts; exec \"$SLUICE_BIN\" -b \"$KAFKA_BOOTSTRAP_SERVERS\" consume -t \"$KAFKA_TOPICS\" -g \"$KAFKA_GROUP_ID\" --from-beginning --idle-exit \"$SLUICE_IDLE_TIMEOUT\" >> {out}/consumed.$SLUICE_INSTANCE']
    topics: [payments]
    group: payments-job
    idle_timeout: 2s
    poll_interval: 200ms
    env: {{SLUICE_BIN: {bin}}}
",
        bin = env!("CARGO_BIN_EXE_sluice"),
    );
    let sluice = InProcess::start(&yaml).await;
    let functions = sluice.running().functions().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(functions.pids("fn").is_empty(), "a job runs without lag");
    assert!(!dir.path().join("starts").exists());

    // Distinct records printed by every instance (a redelivery prints a line twice).
    let consumed = || -> usize {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("consumed."))
            .flat_map(|e| {
                let text = std::fs::read_to_string(e.path()).unwrap();
                text.lines().map(str::to_owned).collect::<Vec<_>>()
            })
            .collect::<BTreeSet<String>>()
            .len()
    };
    let producer = common::producer(&sluice.bootstrap);
    // Lag on one partition: one instance, never more.
    produce_to(&producer, "payments", 2, 20).await;
    let mut most = 0;
    wait_until("the job consumes 20 records and exits", WAIT, || {
        most = most.max(functions.pids("fn").len());
        consumed() == 20 && functions.pids("fn").is_empty() && most > 0
    })
    .await;
    assert_eq!(most, 1, "instances for one partition with lag");

    // New lag on two partitions wakes it again, with at most two instances.
    let starts_before = std::fs::read_to_string(dir.path().join("starts"))
        .unwrap()
        .lines()
        .count();
    produce_to(&producer, "payments", 0, 10).await;
    produce_to(&producer, "payments", 3, 10).await;
    let mut most = 0;
    wait_until("the job consumes 20 more and exits", WAIT, || {
        most = most.max(functions.pids("fn").len());
        consumed() == 40 && functions.pids("fn").is_empty()
    })
    .await;
    assert!(
        (1..=2).contains(&most),
        "instances for two partitions with lag: {most}"
    );
    let starts = std::fs::read_to_string(dir.path().join("starts"))
        .unwrap()
        .lines()
        .count();
    assert!(starts > starts_before, "the job was not woken again");
    let status = function_status(&sluice);
    assert_eq!(status.kind, "job");
    // The lag is read every poll interval, and a commit the consumer made during a
    // rebalance may have been refused, so its records are read (and committed) again: the
    // lag reaches 0 once every record is committed.
    wait_until("the job's lag reads 0", WAIT, || {
        function_status(&sluice).lag == Some(0)
    })
    .await;
    drop(producer);
    sluice.stop().await;
}

/// Children of `pid`, read from /proc.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat"))
            && let Some((_, rest)) = stat.rsplit_once(") ")
            && rest.split(' ').nth(1) == Some(&pid.to_string())
        {
            out.push(child);
        }
    }
    out
}

#[test]
fn graceful_shutdown_stops_every_child() {
    let dir = tempfile::tempdir().unwrap();
    let broker = sluice::broker::free_local_addr().unwrap();
    let admin = sluice::broker::free_local_addr().unwrap();
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "\
data_dir: {data}
embedded: {{listen: \"{broker}\"}}
admin: {{listen: \"{admin}\"}}
topics:
  - name: in
functions:
  polite:
    command: [python3, {fixture}]
    min: 2
  stubborn:
    command: [python3, {fixture}]
    env: {{IGNORE_TERM: \"1\"}}
    min: 1
triggers:
  - name: t
    topics: [in]
    function: polite
",
            data = dir.path().join("data").display(),
            fixture = fixture().display(),
        ),
    )
    .unwrap();
    let daemon = Daemon::spawn(
        &["up", "-c", config.to_str().unwrap(), "--grace", "2s"],
        dir.path(),
    );
    let pid = daemon.0.id();
    let deadline = Instant::now() + WAIT;
    let kids = loop {
        let kids = children(pid);
        if kids.len() == 3 {
            break kids;
        }
        assert!(Instant::now() < deadline, "children: {kids:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    common::wait_for_port(admin, WAIT);
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let output = daemon.wait(WAIT);
    assert!(output.status.success(), "{}", common::stderr(&output));
    for kid in &kids {
        assert!(
            !alive(*kid),
            "child {kid} survived: {}",
            common::stderr(&output)
        );
    }
    let err = common::stderr(&output);
    assert_eq!(err.matches("Function instance stopped").count(), 3, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_job_is_restarted_while_lag_remains() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    // The first two runs fail; the third consumes.
    let yaml = format!(
        "\
topics:
  - name: jobs
    partitions: 1
functions:
  fn:
    job: [sh, -c, 'echo $SLUICE_INSTANCE >> {out}/starts; if [ $(wc -l < {out}/starts) -le 2 ]; then echo failing >&2; exit 1; fi; exec \"$SLUICE_BIN\" -b \"$KAFKA_BOOTSTRAP_SERVERS\" consume -t \"$KAFKA_TOPICS\" -g \"$KAFKA_GROUP_ID\" --from-beginning --idle-exit \"$SLUICE_IDLE_TIMEOUT\" >> {out}/consumed']
    topics: [jobs]
    group: jobs-group
    idle_timeout: 1s
    poll_interval: 100ms
    env: {{SLUICE_BIN: {bin}}}
",
        bin = env!("CARGO_BIN_EXE_sluice"),
    );
    let sluice = InProcess::start(&yaml).await;
    let functions = sluice.running().functions().unwrap();
    produce_all(&sluice.bootstrap, "jobs", records(5)).await;
    let consumed = || {
        std::fs::read_to_string(dir.path().join("consumed"))
            .unwrap_or_default()
            .lines()
            .collect::<BTreeSet<_>>()
            .len()
    };
    // The lag is read every `poll_interval`; the read after the last commit shows 0.
    wait_until("the third run consumes every record", WAIT, || {
        consumed() == 5
            && functions.pids("fn").is_empty()
            && function_status(&sluice).lag == Some(0)
    })
    .await;
    let starts = std::fs::read_to_string(dir.path().join("starts")).unwrap();
    assert_eq!(starts.lines().count(), 3, "{starts}");
    assert_eq!(function_status(&sluice).cold_starts, 3);
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_function_that_cannot_start_is_a_retried_failure_then_a_dead_letter() {
    let yaml = "\
topics:
  - name: broken
    partitions: 1
functions:
  fn:
    command: [sh, -c, 'echo cannot start >&2; exit 3']
triggers:
  - name: t
    topics: [broken]
    function: fn
    initial_offset: earliest
    delivery: {retry: 2, backoff_delay: 10ms}
";
    let sluice = InProcess::start(yaml).await;
    produce_all(&sluice.bootstrap, "broken", records(1)).await;
    let dead = read_topic(&sluice.bootstrap, "sluice.dlq.t", 1).await;
    let headers = header_map(&dead[0]);
    assert_eq!(headers["knativeerrorcode"], "start");
    assert!(
        headers["sluice-error"].contains("exited before it was ready (exit status 3)"),
        "{headers:?}"
    );
    assert_eq!(headers["sluice-attempts"], "3");
    assert_eq!(dead[0].payload(), Some(&b"v0"[..]));
    assert!(sluice.running().functions().unwrap().pids("fn").is_empty());
    sluice.stop().await;
}
