//! The console in real headless Chromium, on the quickstart (`tests/browser/console.mjs`,
//! playwright-core): the graph shows `orders` → `log-orders` → `logger`; `sluice produce
//! --count 10000` makes the delivered count rise; the function's instances go 0 → 1 and,
//! after its idle timeout, back to 0; the trigger's detail panel shows its partitions.

mod common;

use std::{
    io::{BufRead, BufReader, Write},
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
    let installed = Path::new("/usr/bin/chromium").exists()
        && repo
            .join("tests/browser/node_modules/playwright-core")
            .exists()
        && Command::new("node").arg("--version").output().is_ok();
    if !installed {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium, node and tests/browser's playwright-core must be installed in CI (see .ci/run)"
        );
        eprintln!("skipped: chromium, node or playwright-core is not installed");
    }
    installed
}

#[test]
fn the_console_draws_the_quickstart_live() {
    if !browser() {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The quickstart as it is, but for an idle timeout short enough to watch.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo.join("examples/quickstart/sluice.yaml")).unwrap();
    let text = text
        .replace(
            "    workdir: examples/quickstart\n",
            &format!(
                "    workdir: {}\n    idle_timeout: 3s\n",
                repo.join("examples/quickstart").display()
            ),
        )
        .replace(
            "data_dir: .sluice",
            &format!("data_dir: {}", dir.path().join("data").display()),
        );
    assert!(text.contains("idle_timeout: 3s"), "{text}");
    let config = dir.path().join("sluice.yaml");
    std::fs::write(&config, text).unwrap();
    let broker = free_local_addr().unwrap();
    let admin = free_local_addr().unwrap();
    let log = dir.path().join("sluice.log");
    let up = Daemon::spawn_logged(
        &[
            "-c",
            config.to_str().unwrap(),
            "up",
            "--listen",
            &broker.to_string(),
            "--admin-listen",
            &admin.to_string(),
        ],
        dir.path(),
        &log,
    );
    wait_until("readyz answers 200", WAIT, || {
        matches!(http_get(admin, "/readyz"), Ok((200, _)))
    });

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let started = Instant::now();
    let mut driver = Command::new("node")
        .arg("tests/browser/console.mjs")
        .arg(format!("http://{admin}/"))
        .arg(&shots)
        .current_dir(repo)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs the browser driver");
    let mut answers = driver.stdin.take().unwrap();
    let mut checks = Vec::new();
    for line in BufReader::new(driver.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        println!("{line}");
        if line.contains("\"step\":\"produce\"") {
            let output = common::run(&[
                "-b",
                &broker.to_string(),
                "produce",
                "-t",
                "orders",
                "--count",
                "10000",
            ]);
            assert!(output.status.success(), "{}", common::stderr(&output));
            println!("{}", common::stderr(&output).trim());
            writeln!(answers, "ok").unwrap();
        } else if line.contains("\"check\"") {
            checks.push(line);
        }
    }
    let output = driver.wait_with_output().unwrap();
    println!("the driver took {:.1} s", started.elapsed().as_secs_f64());
    if !output.status.success() {
        let (_, status) = http_get(admin, "/api/status").unwrap_or_default();
        println!("status at the failure: {status}");
    }
    assert!(
        output.status.success(),
        "the browser driver failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for check in [
        "page-live",
        "graph",
        "produce",
        "scale-to-zero",
        "detail",
        "no-page-errors",
    ] {
        assert!(
            checks
                .iter()
                .any(|c| c.contains(&format!("\"check\":\"{check}\"")) && c.contains("\"ok\":true")),
            "check {check} did not pass: {checks:#?}"
        );
    }
    assert!(shots.join("console.png").exists());
    up.signal(Signal::SIGTERM);
    let output = up.wait(WAIT);
    assert!(
        output.status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
