//! Interoperability with another Kafka client: Python's `confluent-kafka`.
//!
//! `.ci/run` installs it. Elsewhere, where it cannot be imported, the test says why and stops.

mod common;

use std::process::Command;

use common::{python_client, run, run_with_input, spawn_broker, stderr, stdout};

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python");

#[test]
fn python_producer_to_sluice_consume() {
    if !python_client() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = spawn_broker(dir.path());
    let bootstrap = addr.to_string();
    let output = run(&[
        "-b",
        &bootstrap,
        "topics",
        "create",
        "from-python",
        "--partitions",
        "2",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));

    let output = Command::new("python3")
        .arg(format!("{SCRIPTS}/produce.py"))
        .args([&bootstrap, "from-python", "50"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));

    let output = run(&[
        "-b",
        &bootstrap,
        "consume",
        "-t",
        "from-python",
        "--from-beginning",
        "--count",
        "50",
        "--format",
        "json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut seen = std::collections::BTreeSet::new();
    for line in stdout(&output).lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = record["key"].as_str().unwrap();
        let n: u32 = key.strip_prefix("py-").unwrap().parse().unwrap();
        // The value ends in bytes that are not UTF-8, so it comes back base64-encoded.
        let value = base64_decode(record["value_base64"].as_str().unwrap());
        let mut expected = format!("value-{n}").into_bytes();
        expected.extend_from_slice(b"\xff\x00");
        assert_eq!(value, expected);
        assert_eq!(record["headers"][0]["value"], "python");
        assert_eq!(record["headers"][1]["value"], n.to_string());
        assert!(seen.insert(n), "record {n} twice");
    }
    assert_eq!(seen.len(), 50);
}

#[test]
fn sluice_produce_to_python_consumer_group() {
    if !python_client() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_broker, addr) = spawn_broker(dir.path());
    let bootstrap = addr.to_string();
    let lines: String = (0..20).map(|n| format!("k{n}=v{n}\n")).collect();
    let output = run_with_input(
        &["-b", &bootstrap, "produce", "-t", "to-python", "-K", "="],
        lines.as_bytes(),
    );
    assert!(output.status.success(), "{}", stderr(&output));

    let consume = |count: &str| {
        Command::new("python3")
            .arg(format!("{SCRIPTS}/consume.py"))
            .args([&bootstrap, "to-python", "py-group", count])
            .output()
            .unwrap()
    };
    let output = consume("20");
    assert!(output.status.success(), "{}", stderr(&output));
    let mut got: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
    got.sort();
    let mut expected: Vec<String> = (0..20).map(|n| format!("k{n} v{n}")).collect();
    expected.sort();
    assert_eq!(got, expected);

    // The group committed: more records are all a restarted consumer sees.
    let output = run_with_input(
        &["-b", &bootstrap, "produce", "-t", "to-python", "-K", "="],
        b"late=arrival\n",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let output = consume("1");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "late arrival\n");
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}
