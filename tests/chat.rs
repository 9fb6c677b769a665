//! The chat example as a person uses it: two sluice replicas, like two pods behind a load
//! balancer (A with the embedded broker, B pointing at A's broker), each serving the chat page
//! and its stream, and real headless Chromium driving a page on each
//! (`tests/browser/chat.mjs`, playwright-core). The pages exchange messages both ways, a page
//! that was away resumes with every missed message once and in order, and a page whose
//! replica is killed shows it and reconnects when the replica is back.

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Daemon, http_get, wait_until};
use nix::sys::signal::Signal;
use sluice::broker::free_local_addr;

const WAIT: Duration = Duration::from_secs(60);

/// Whether the browser and its driver are installed; in CI they must be.
fn browser() -> bool {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let missing = if !Path::new("/usr/bin/chromium").exists() {
        Some("Debian's chromium (apt-get install chromium)")
    } else if !repo
        .join("tests/browser/node_modules/playwright-core")
        .exists()
    {
        Some("playwright-core (cd tests/browser && npm ci)")
    } else if Command::new("node").arg("--version").output().is_err() {
        Some("Node.js")
    } else {
        None
    };
    if let Some(what) = missing {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} must be installed in CI (see .ci/run)"
        );
        eprintln!("skipped: {what} is not installed");
        return false;
    }
    true
}

/// One replica of the chat example, started from the repository root as its README says.
fn replica(data: &Path, extra: &[&str], public: SocketAddr) -> (Daemon, SocketAddr) {
    let admin = free_local_addr().unwrap();
    let mut args = vec![
        "up",
        "-c",
        "examples/chat/sluice.yaml",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let admin_arg = admin.to_string();
    let public_arg = public.to_string();
    args.extend_from_slice(&["--admin-listen", &admin_arg, "--public-listen", &public_arg]);
    let daemon = Daemon::spawn(&args, Path::new(env!("CARGO_MANIFEST_DIR")));
    wait_until("the replica is ready", WAIT, || {
        matches!(http_get(admin, "/readyz"), Ok((200, _)))
    });
    (daemon, admin)
}

#[test]
fn two_pages_on_two_replicas_chat_resume_and_survive_a_replica_going_away() {
    if !browser() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = free_local_addr().unwrap();
    let (public_a, public_b) = (free_local_addr().unwrap(), free_local_addr().unwrap());
    let broker_arg = broker.to_string();
    let (a, admin_a) = replica(&dir.path().join("a"), &["--listen", &broker_arg], public_a);
    let b_args = ["-b", broker_arg.as_str()];
    let (b, mut admin_b) = replica(&dir.path().join("b"), &b_args, public_b);
    let mut b = Some(b);

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("chat-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let started = Instant::now();
    let mut driver = Command::new("node")
        .arg("tests/browser/chat.mjs")
        .arg(format!("http://{public_a}/"))
        .arg(format!("http://{public_b}/"))
        .arg(&shots)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs the browser driver");
    let mut answers = driver.stdin.take().unwrap();
    let lines = BufReader::new(driver.stdout.take().unwrap());
    let mut checks = Vec::new();
    for line in lines.lines() {
        let line = line.unwrap();
        println!("{line}");
        if line.contains("\"kill-b\"") {
            let replica = b.take().unwrap();
            replica.signal(Signal::SIGKILL);
            let _ = replica.wait(WAIT);
            writeln!(answers, "ok").unwrap();
        } else if line.contains("\"restart-b\"") {
            let (replica, admin) = replica(&dir.path().join("b"), &b_args, public_b);
            (b, admin_b) = (Some(replica), admin);
            writeln!(answers, "ok").unwrap();
        } else if line.contains("\"check\"") {
            checks.push(line);
        }
    }
    let output = driver.wait_with_output().unwrap();
    let errors = String::from_utf8_lossy(&output.stderr);
    println!("the driver took {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        output.status.success(),
        "the browser driver failed: {errors}"
    );
    for check in [
        "pages-live",
        "a-to-b",
        "b-to-a",
        "resume-after-away",
        "b-down",
        "b-back",
        "after-restart",
        "no-page-errors",
    ] {
        assert!(
            checks
                .iter()
                .any(|c| c.contains(&format!("\"check\":\"{check}\"")) && c.contains("\"ok\":true")),
            "check {check} did not pass: {checks:#?}"
        );
    }
    for file in ["chat-a.png", "chat-b.png", "chat-b-down.png"] {
        assert!(shots.join(file).exists(), "no screenshot {file}");
    }
    let stream = |admin| {
        let (_, status) = http_get(admin, "/api/status").unwrap();
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        status["edge"]["streams"][0].clone()
    };
    // A took alice's messages; the restarted B resumed bob's page from its position.
    let a_stream = stream(admin_a);
    assert_eq!(a_stream["path"], "/chat/stream", "{a_stream}");
    assert!(
        a_stream["messages_in"].as_u64().unwrap() >= 21,
        "{a_stream}"
    );
    wait_until("B's status counts the resume", WAIT, || {
        stream(admin_b)["resumed"].as_u64().unwrap_or(0) >= 1
    });
    drop(b);
    a.signal(Signal::SIGTERM);
    let output = a.wait(WAIT);
    assert!(output.status.success(), "{}", common::stderr(&output));
}
