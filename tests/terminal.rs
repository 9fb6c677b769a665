//! The terminal: `sluice logs` prints the function instances' output from a running sluice
//! (and follows it with `-f`), and `sluice status --watch` redraws the tables in place.

mod common;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::Stdio,
    sync::mpsc,
    time::Duration,
};

use common::{Daemon, http_get, produce_all, wait_until};
use nix::sys::signal::Signal;
use sluice::broker::free_local_addr;

const WAIT: Duration = Duration::from_secs(60);

fn records(from: usize, to: usize) -> Vec<common::TestRecord> {
    (from..to)
        .map(|n| {
            (
                Some(format!("k{n}").into_bytes()),
                format!("line {n}").into_bytes(),
                vec![],
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_the_functions_and_status_watch_redraws() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let broker = free_local_addr().unwrap();
    let admin = free_local_addr().unwrap();
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\nembedded:\n  listen: \"{broker}\"\nadmin:\n  listen: \"{admin}\"\ntopics:\n  - name: orders\n    partitions: 1\nfunctions:\n  logger:\n    command: [python3, function.py]\n    workdir: {}\ntriggers:\n  - name: log-orders\n    topics: [orders]\n    function: logger\n    initial_offset: earliest\n",
            dir.path().join("data").display(),
            repo.join("examples/quickstart").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("sluice.log");
    let up = Daemon::spawn_logged(&["-c", config.to_str().unwrap(), "up"], dir.path(), &log);
    wait_until("readyz answers 200", WAIT, || {
        matches!(http_get(admin, "/readyz"), Ok((200, _)))
    });
    produce_all(&broker.to_string(), "orders", records(0, 3)).await;
    let config_arg = config.to_str().unwrap().to_owned();
    wait_until("the logger printed three events", WAIT, || {
        let output = common::run(&["-c", &config_arg, "logs", "logger"]);
        common::stdout(&output).matches("data=line").count() >= 3
    });
    let output = common::run(&["-c", &config_arg, "logs", "logger", "--tail", "2"]);
    let printed = common::stdout(&output);
    println!("{printed}");
    let lines: Vec<&str> = printed
        .lines()
        .filter(|l| l.contains("data=line"))
        .collect();
    assert_eq!(lines.len(), 2, "{printed}");
    assert!(
        lines.iter().all(|l| l.starts_with("logger/1 event id=")),
        "{printed}"
    );
    assert!(lines[1].ends_with("key=k2 data=line 2"), "{printed}");

    // -f goes on with new lines.
    let mut follow = common::sluice()
        .args(["-c", &config_arg, "logs", "logger", "-f", "--tail", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    produce_all(&broker.to_string(), "orders", records(3, 5)).await;
    let mut followed = Vec::new();
    while followed.len() < 2 {
        let line = lines_rx
            .recv_timeout(WAIT)
            .expect("a followed line in time");
        if line.contains("data=line") {
            followed.push(line);
        }
    }
    assert!(followed[0].ends_with("data=line 3"), "{followed:?}");
    assert!(followed[1].ends_with("data=line 4"), "{followed:?}");
    let _ = follow.kill();
    let _ = follow.wait();

    // --watch redraws: the screen is cleared before each drawing.
    let mut watch = common::sluice()
        .args(["-c", &config_arg, "status", "--watch", "500ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let _ = watch.kill();
    let output = watch.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&output.stdout);
    let redraws = screen.matches("\x1b[H\x1b[2J").count();
    assert!(redraws >= 3, "{redraws} redraws: {screen}");
    assert!(
        screen.contains("TRIGGER") && screen.contains("log-orders"),
        "{screen}"
    );

    up.signal(Signal::SIGTERM);
    let output = up.wait(WAIT);
    assert!(
        output.status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
