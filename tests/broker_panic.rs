//! A panic in the embedded broker is noticed: `/readyz` turns 503 with the panic as the
//! reason, and [`sluice::app::Running::failed`] reports it so that sluice stops.
//!
//! The panic is real: a debug build of the vendored broker has a fault hook,
//! `NISSHI_FAULT_PANIC_AFTER`, that makes one of its tasks panic that long after it started
//! listening (vendor/patches/nisshi-broker). The variable is set for a child process that
//! runs the ignored test below, so no other test sees it.

mod common;

use std::time::Duration;

use common::http_get;
use sluice::broker::free_local_addr;

const FAULT: &str = "NISSHI_FAULT_PANIC_AFTER";

#[test]
fn a_broker_panic_turns_readiness_off_and_is_reported() {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: the broker's fault hook exists only in debug builds");
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "in_a_process_with_the_fault",
            "--nocapture",
        ])
        .env(FAULT, "3s")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

/// Run by the test above, in a process of its own with the fault set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_broker_panic_turns_readiness_off_and_is_reported"]
async fn in_a_process_with_the_fault() {
    assert!(
        std::env::var_os(FAULT).is_some(),
        "run through a_broker_panic_turns_readiness_off_and_is_reported"
    );

    let dir = tempfile::tempdir().unwrap();
    let admin = free_local_addr().unwrap();
    let text = format!(
        "data_dir: {}\nembedded:\n  listen: \"{}\"\nadmin:\n  listen: \"{admin}\"\n",
        dir.path().display(),
        free_local_addr().unwrap(),
    );
    let config = sluice::config::parse(&text, "test.yaml").unwrap();
    let mut running = sluice::app::Running::start(
        &config,
        sluice::app::RunOptions {
            admin: true,
            triggers: true,
            grace: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();

    let ready = tokio::task::spawn_blocking(move || http_get(admin, "/readyz"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ready.0, 200, "ready before the fault: {}", ready.1);

    let reason = tokio::time::timeout(Duration::from_secs(30), running.failed())
        .await
        .expect("the panic is reported");
    assert!(
        reason.contains("panic") && reason.contains("NISSHI_FAULT_PANIC_AFTER"),
        "{reason}"
    );

    let (code, body) = tokio::task::spawn_blocking(move || http_get(admin, "/readyz"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("stopped after a panic"), "{body}");
    assert!(body.contains("NISSHI_FAULT_PANIC_AFTER"), "{body}");
    let status = running.state().status();
    assert!(!status.broker.reachable);
    assert!(status.broker.error.unwrap().contains("panic"));

    running.shutdown(Duration::from_secs(5)).await;
}
