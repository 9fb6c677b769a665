//! The embedded broker as other Kafka clients use it: kafkajs (with its idempotent
//! producer), kafka-python, aiokafka, and librdkafka's admin calls through Python's
//! `confluent-kafka`. Each script in `tests/clients/` ends with a produce and a group consume
//! that must still work, so a request that takes the broker down fails it.
//! `hostile_requests.py` sends, byte by byte, malformed requests that made an unpatched
//! broker abort, panic or allocate without bound (a record count of 2^32-1, a 2 GiB frame
//! size, a JoinGroup without protocols, ...) and checks each answer's error code.
//!
//! `.ci/run` installs the clients. Elsewhere, a client that is not installed is skipped with
//! the reason; in CI it must be there.

mod common;

use std::{
    path::Path,
    process::{Command, Output},
};

use common::{run, spawn_broker, stderr, stdout};

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");

/// Whether `probe` (a command line) runs; in CI it must.
fn installed(what: &str, probe: &[&str], hint: &str) -> bool {
    let ok = Command::new(probe[0])
        .args(&probe[1..])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} must be installed in CI (see .ci/run)"
        );
        eprintln!("skipped: {what} is not installed ({hint})");
    }
    ok
}

/// Runs one client script against a fresh broker with `storage` and checks that it passed
/// and that the broker still serves afterwards.
fn run_client(interpreter: &str, script: &str, storage: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, addr) = spawn_broker_with(dir.path(), storage);
    let bootstrap = addr.to_string();
    let output = Command::new("timeout")
        .args(["-k", "5", "170", interpreter])
        .arg(Path::new(SCRIPTS).join(script))
        .arg(&bootstrap)
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .unwrap();
    let report = report(&output);
    let still_serving = run(&["-b", &bootstrap, "topics", "list"]);
    let alive = broker.0.try_wait().unwrap().is_none();
    assert!(
        output.status.success(),
        "{script} on {storage} storage failed:\n{report}"
    );
    assert!(
        alive && still_serving.status.success(),
        "the broker stopped serving after {script}: {}",
        stderr(&still_serving)
    );
    assert!(
        !report.contains("FAIL"),
        "{script} reported a failure:\n{report}"
    );
    println!("{script} on {storage} storage:\n{}", stdout(&output));
}

fn spawn_broker_with(dir: &Path, storage: &str) -> (common::Daemon, std::net::SocketAddr) {
    if storage == "sqlite" {
        return spawn_broker(dir);
    }
    let addr = sluice::broker::free_local_addr().unwrap();
    let daemon = common::Daemon::spawn(
        &[
            "broker",
            "--listen",
            &addr.to_string(),
            "--storage",
            storage,
        ],
        dir,
    );
    common::wait_for_port(addr, std::time::Duration::from_secs(30));
    (daemon, addr)
}

fn report(output: &Output) -> String {
    format!("{}{}", stdout(output), stderr(output))
}

fn kafkajs() -> bool {
    installed(
        "kafkajs",
        &[
            "node",
            "-e",
            &format!("require('{SCRIPTS}/node_modules/kafkajs')"),
        ],
        "cd tests/clients && npm ci",
    )
}

fn python(module: &str) -> bool {
    installed(
        module,
        &["python3", "-c", &format!("import {module}")],
        "python3 -m pip install -r tests/clients/requirements.txt",
    )
}

#[test]
fn kafkajs_with_an_idempotent_producer_on_sqlite() {
    if kafkajs() {
        run_client("node", "kafkajs.js", "sqlite");
    }
}

#[test]
fn kafkajs_with_an_idempotent_producer_on_memory() {
    if kafkajs() {
        run_client("node", "kafkajs.js", "memory");
    }
}

#[test]
fn kafka_python_on_sqlite() {
    if python("kafka") {
        run_client("python3", "kafka_python.py", "sqlite");
    }
}

#[test]
fn kafka_python_on_memory() {
    if python("kafka") {
        run_client("python3", "kafka_python.py", "memory");
    }
}

#[test]
fn aiokafka_close_and_reopen_on_sqlite() {
    if python("aiokafka") {
        run_client("python3", "aiokafka_client.py", "sqlite");
    }
}

#[test]
fn aiokafka_close_and_reopen_on_memory() {
    if python("aiokafka") {
        run_client("python3", "aiokafka_client.py", "memory");
    }
}

#[test]
fn librdkafka_admin_calls_on_sqlite() {
    if python("confluent_kafka") {
        run_client("python3", "librdkafka_admin.py", "sqlite");
    }
}

#[test]
fn librdkafka_admin_calls_on_memory() {
    if python("confluent_kafka") {
        run_client("python3", "librdkafka_admin.py", "memory");
    }
}

#[test]
fn hostile_requests_on_sqlite() {
    if python("kafka") {
        run_client("python3", "hostile_requests.py", "sqlite");
    }
}

#[test]
fn hostile_requests_on_memory() {
    if python("kafka") {
        run_client("python3", "hostile_requests.py", "memory");
    }
}
