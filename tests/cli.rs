//! The built `sluice` binary, driven as a user would.

mod common;

use std::{net::TcpListener, time::Duration};

use common::{
    Daemon, assert_clean_failure, http_get, run, run_with_input, spawn_broker, stderr, stdout,
    wait_until,
};
use nix::sys::signal::Signal;
use sluice::broker::free_local_addr;

#[test]
fn validate_lists_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "\
colour: blue
functions:
  hello:
    url: http://127.0.0.1:8081/
    concurrency: 3
triggers:
  - name: t1
    topics: [orders]
    function: nowhere
    ordering: sideways
    delivery:
      timeout: 3x
  - name: t1
    topics: [orders]
    function: hello
",
    )
    .unwrap();
    let output = run(&["-c", path.to_str().unwrap(), "validate"]);
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(!err.contains("panicked"), "{err}");
    for expected in [
        "1:1: colour",
        "5:5: functions.hello.concurrency",
        "9:5: triggers[0].function",
        "10:5: triggers[0].ordering",
        "12:7: triggers[0].delivery.timeout",
        "triggers[1].name",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn validate_accepts_the_quickstart() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/quickstart/sluice.yaml"
    );
    let output = run(&["-c", config, "validate"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("valid"), "{}", stdout(&output));
}

#[test]
fn produce_then_consume_round_trips_keys_headers_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = spawn_broker(dir.path());
    let bootstrap = addr.to_string();

    let output = run_with_input(
        &[
            "-b",
            &bootstrap,
            "produce",
            "-t",
            "greetings",
            "-K",
            ":",
            "-H",
            "source=cli",
        ],
        "k1:hello\nk2:wörld\nno-key-here\n".as_bytes(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    // The topic did not exist: the broker created it when the producer named it, with
    // `embedded.default_partitions` partitions, as Kafka does with auto.create.topics.enable.
    let output = run(&["-b", &bootstrap, "topics", "describe", "greetings"]);
    assert!(
        stdout(&output).starts_with("topic greetings: 3 partitions"),
        "{}",
        stdout(&output)
    );

    let output = run(&[
        "-b",
        &bootstrap,
        "consume",
        "-t",
        "greetings",
        "--from-beginning",
        "--count",
        "3",
        "--format",
        "json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut records: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    records.sort_by_key(|r| r["value"].as_str().unwrap().to_owned());
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["value"], "hello");
    assert_eq!(records[0]["key"], "k1");
    assert_eq!(records[1]["value"], "no-key-here");
    assert_eq!(records[1]["key"], serde_json::Value::Null);
    assert_eq!(records[2]["value"], "wörld");
    assert_eq!(records[2]["key"], "k2");
    for record in &records {
        assert_eq!(record["headers"][0]["name"], "source");
        assert_eq!(record["headers"][0]["value"], "cli");
        assert_eq!(record["topic"], "greetings");
    }

    // The text format shows partition, offset, key and headers.
    let output = run(&[
        "-b",
        &bootstrap,
        "consume",
        "-t",
        "greetings",
        "--from-beginning",
        "--count",
        "3",
    ]);
    let text = stdout(&output);
    assert!(
        text.lines()
            .any(|l| l.starts_with("partition=") && l.contains("key=k1 headers={source=cli} hello")),
        "{text}"
    );
}

#[test]
fn a_consumer_group_resumes_after_what_it_printed() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = spawn_broker(dir.path());
    let bootstrap = addr.to_string();
    let output = run(&[
        "-b",
        &bootstrap,
        "topics",
        "create",
        "numbers",
        "--partitions",
        "1",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: String = (1..=5).map(|n| format!("{n}\n")).collect();
    let output = run_with_input(
        &["-b", &bootstrap, "produce", "-t", "numbers"],
        lines.as_bytes(),
    );
    assert!(output.status.success(), "{}", stderr(&output));

    let read = |count: &str| {
        let output = run(&[
            "-b",
            &bootstrap,
            "consume",
            "-t",
            "numbers",
            "-g",
            "readers",
            "--from-beginning",
            "--count",
            count,
            "--format",
            "json",
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["value"].as_str().unwrap().to_owned()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(read("2"), ["1", "2"]);
    assert_eq!(read("3"), ["3", "4", "5"]);
}

#[test]
fn a_group_consumer_exits_when_its_broker_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, addr) = spawn_broker(dir.path());
    let bootstrap = addr.to_string();
    let output = run_with_input(&["-b", &bootstrap, "produce", "-t", "gone"], b"one\n");
    assert!(output.status.success(), "{}", stderr(&output));
    let mut consumer = Daemon::spawn(
        &[
            "-b",
            &bootstrap,
            "consume",
            "-t",
            "gone",
            "-g",
            "readers",
            "--from-beginning",
            "--idle-exit",
            "3s",
        ],
        dir.path(),
    );
    // Killed once the record is printed, while the consumer idles: its final commit finds
    // no broker, and it must still exit.
    let stdout = consumer.0.stdout.take().unwrap();
    let (lines, printed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let line = printed.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(line.ends_with(" one"), "{line}");
    drop(broker);
    let output = consumer.wait(Duration::from_secs(60));
    let err = stderr(&output);
    assert!(!err.contains("panicked"), "{err}");
    if !output.status.success() {
        assert_clean_failure(&output, "cannot consume");
    }
}

#[test]
fn topics_create_list_and_describe() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = spawn_broker(dir.path());
    let bootstrap = addr.to_string();

    let output = run(&[
        "-b",
        &bootstrap,
        "topics",
        "create",
        "events",
        "--partitions",
        "5",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "created topic events with 5 partitions\n");

    let output = run(&["-b", &bootstrap, "topics", "create", "events"]);
    assert_clean_failure(&output, "topic events already exists");
    let output = run(&[
        "-b",
        &bootstrap,
        "topics",
        "create",
        "events",
        "--if-not-exists",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));

    let output = run(&["-b", &bootstrap, "topics", "list"]);
    let text = stdout(&output);
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().eq(["events", "5"])),
        "{text}"
    );

    let output = run(&["-b", &bootstrap, "topics", "describe", "events"]);
    let text = stdout(&output);
    assert!(
        text.starts_with("topic events: 5 partitions, 0 records\n"),
        "{text}"
    );
    for p in 0..5 {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(&p.to_string())),
            "partition {p} missing: {text}"
        );
    }

    let output = run(&["-b", &bootstrap, "topics", "describe", "nothing-here"]);
    assert_clean_failure(&output, "topic nothing-here does not exist");
}

#[test]
fn an_unreachable_broker_is_a_one_line_error() {
    let nobody = free_local_addr().unwrap().to_string();
    let output = run_with_input(&["-b", &nobody, "produce", "-t", "x"], b"a\n");
    assert_clean_failure(&output, &format!("cannot reach Kafka at {nobody}"));
    let output = run(&["-b", &nobody, "consume", "-t", "x", "--count", "1"]);
    assert_clean_failure(&output, "cannot reach Kafka");
    let output = run(&["-b", &nobody, "topics", "list"]);
    assert_clean_failure(&output, "cannot reach Kafka");
}

#[test]
fn a_taken_port_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = run(&[
        "broker",
        "--listen",
        &addr,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_clean_failure(&output, &format!("cannot listen on {addr}"));

    let free = free_local_addr().unwrap().to_string();
    let output = run(&[
        "up",
        "--listen",
        &free,
        "--admin-listen",
        &addr,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_clean_failure(
        &output,
        &format!("cannot listen on {addr} for the admin endpoints"),
    );
}

#[test]
fn an_unwritable_data_dir_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    // A path below a regular file can never be created, even by root.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"").unwrap();
    let data_dir = file.join("data");
    let free = free_local_addr().unwrap().to_string();
    let output = run(&[
        "broker",
        "--listen",
        &free,
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    assert_clean_failure(&output, "is not writable");
}

#[test]
fn a_missing_or_broken_config_file_is_reported() {
    let output = run(&["-c", "/nonexistent/sluice.yaml", "up"]);
    assert_eq!(output.status.code(), Some(64));
    assert_clean_failure(&output, "/nonexistent/sluice.yaml");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, "topics: [unclosed\n").unwrap();
    let output = run(&["-c", path.to_str().unwrap(), "validate"]);
    assert_eq!(output.status.code(), Some(64));
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
}

#[test]
fn up_serves_admin_endpoints_stops_on_sigint_and_keeps_records() {
    let dir = tempfile::tempdir().unwrap();
    let broker = free_local_addr().unwrap();
    let admin = free_local_addr().unwrap();
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "\
data_dir: {data}
embedded:
  listen: {broker}
admin:
  listen: {admin}
topics:
  - name: orders
    partitions: 4
",
            data = dir.path().join("data").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let bootstrap = broker.to_string();

    let up = Daemon::spawn(&["-c", &config, "up"], dir.path());
    wait_until("readyz answers 200", Duration::from_secs(30), || {
        matches!(http_get(admin, "/readyz"), Ok((200, _)))
    });
    assert_eq!(
        http_get(admin, "/healthz").unwrap(),
        (200, "ok\n".to_owned())
    );

    let output = run(&["-b", &bootstrap, "topics", "describe", "orders"]);
    assert!(
        stdout(&output).starts_with("topic orders: 4 partitions"),
        "{}",
        stdout(&output)
    );

    let lines: String = (0..10).map(|n| format!("order-{n}\n")).collect();
    let output = run_with_input(
        &["-b", &bootstrap, "produce", "-t", "orders"],
        lines.as_bytes(),
    );
    assert!(output.status.success(), "{}", stderr(&output));

    wait_until("metrics count the records", Duration::from_secs(20), || {
        http_get(admin, "/metrics")
            .map(|(_, body)| body.contains("sluice_topic_records{topic=\"orders\"} 10"))
            .unwrap_or(false)
    });
    let (_, metrics) = http_get(admin, "/metrics").unwrap();
    assert!(
        metrics.contains("sluice_topic_partitions{topic=\"orders\"} 4"),
        "{metrics}"
    );
    assert!(metrics.contains("sluice_broker_up 1"), "{metrics}");

    let (code, body) = http_get(admin, "/api/status").unwrap();
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["broker"]["mode"], "embedded");
    assert_eq!(status["topics"][0]["name"], "orders");

    let output = run(&["-c", &config, "status"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains(&format!("broker: embedded at {bootstrap}")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().eq(["orders", "4", "10"])),
        "{text}"
    );

    up.signal(Signal::SIGINT);
    let output = up.wait(Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("sluice stopped."),
        "{}",
        stderr(&output)
    );

    // Everything is still there after a restart.
    let up = Daemon::spawn(&["-c", &config, "up"], dir.path());
    wait_until("readyz answers 200 again", Duration::from_secs(30), || {
        matches!(http_get(admin, "/readyz"), Ok((200, _)))
    });
    let output = run(&[
        "-b",
        &bootstrap,
        "consume",
        "-t",
        "orders",
        "--from-beginning",
        "--count",
        "10",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut values: Vec<String> = stdout(&output)
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().to_owned())
        .collect();
    values.sort();
    let mut expected: Vec<String> = (0..10).map(|n| format!("order-{n}")).collect();
    expected.sort();
    assert_eq!(values, expected);

    up.signal(Signal::SIGTERM);
    let output = up.wait(Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn a_declared_topic_with_fewer_partitions_is_reported_not_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, addr) = spawn_broker(dir.path());
    let bootstrap = addr.to_string();
    let output = run(&[
        "-b",
        &bootstrap,
        "topics",
        "create",
        "narrow",
        "--partitions",
        "1",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    drop(broker);

    let config = dir.path().join("sluice.yaml");
    let admin = free_local_addr().unwrap();
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\nembedded: {{listen: \"{addr}\"}}\nadmin: {{listen: \"{admin}\"}}\ntopics:\n  - name: narrow\n    partitions: 3\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let up = Daemon::spawn(&["-c", config.to_str().unwrap(), "up"], dir.path());
    wait_until("readyz answers 200", Duration::from_secs(30), || {
        matches!(http_get(admin, "/readyz"), Ok((200, _)))
    });
    let output = run(&["-b", &bootstrap, "topics", "describe", "narrow"]);
    assert!(
        stdout(&output).starts_with("topic narrow: 1 partitions"),
        "{}",
        stdout(&output)
    );
    up.signal(Signal::SIGINT);
    let output = up.wait(Duration::from_secs(30));
    let err = stderr(&output);
    assert!(err.contains("fewer partitions than declared"), "{err}");
}

/// A panic in the embedded broker stops sluice with a non-zero exit and the cause in its
/// log, for a supervisor to restart it; the panic comes from the broker's debug-build fault
/// hook (tests/broker_panic.rs checks `/readyz` while it happens).
#[test]
fn up_exits_non_zero_when_the_embedded_broker_panics() {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the broker's fault hook exists only in debug builds");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = free_local_addr().unwrap();
    let admin = free_local_addr().unwrap();
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\nembedded:\n  listen: {broker}\nadmin:\n  listen: {admin}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let up = Daemon::spawn_with_env(
        &["-c", config.to_str().unwrap(), "up", "--grace", "2s"],
        dir.path(),
        &[("NISSHI_FAULT_PANIC_AFTER", "2s")],
    );
    let output = up.wait(Duration::from_secs(60));
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(
        log.contains("ERROR") && log.contains("The embedded broker stopped; sluice stops too."),
        "{log}"
    );
    assert!(log.contains("NISSHI_FAULT_PANIC_AFTER"), "{log}");
    assert!(
        log.contains("error: embedded broker stopped after a panic"),
        "{log}"
    );
}

#[test]
fn filter_eval_prints_the_value_or_the_error_kind() {
    let value = |args: &[&str]| {
        let output = run(args);
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output).trim().to_owned()
    };
    assert_eq!(value(&["filter", "eval", "1 + 2 * 3"]), "7");
    // Without an event, one with the required attributes set.
    assert_eq!(
        value(&["filter", "eval", "EXISTS id AND specversion = '1.0'"]),
        "true"
    );
    assert_eq!(value(&["filter", "eval", "EXISTS subject"]), "false");
    assert_eq!(value(&["filter", "eval", "LOWER('ABC')"]), "\"abc\"");
    let event = br#"{"specversion":"1.0","id":"x","source":"/shop","type":"order.created","tier":"gold","count":3}"#;
    let output = run_with_input(
        &[
            "filter",
            "eval",
            "type LIKE 'order.%' AND tier = 'gold' AND count > 2",
            "--event",
            "-",
        ],
        event,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "true");
    let output = run(&["filter", "eval", "1 / 0"]);
    assert_clean_failure(&output, "error: math:");
    assert_eq!(output.status.code(), Some(1));
    let output = run(&["filter", "eval", "1 +"]);
    assert_clean_failure(&output, "error: parse:");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn up_raises_its_open_file_limit_to_the_hard_limit() {
    use nix::sys::resource::{Resource, getrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let hard = hard.min(8192);
    assert!(hard > 256, "the hard open-file limit here is only {hard}");
    let dir = tempfile::tempdir().unwrap();
    let broker = free_local_addr().unwrap();
    let admin = free_local_addr().unwrap();
    let mut child = std::process::Command::new("prlimit")
        .arg(format!("--nofile=256:{hard}"))
        .arg(env!("CARGO_BIN_EXE_sluice"))
        .args(["up", "--listen", &broker.to_string()])
        .args(["--admin-listen", &admin.to_string()])
        .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prlimit (util-linux) runs");
    common::wait_for_port(admin, Duration::from_secs(60));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers, [hard, hard], "{line}");
}
