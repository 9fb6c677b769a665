//! sluice killed with SIGKILL in the middle of a burst loses nothing: after a restart every
//! record reaches the function at least once.

mod common;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use common::{
    Daemon, TestRecord,
    function::{Answer, Function},
    produce_all, stderr, wait_ready,
};
use nix::sys::signal::Signal;
use sluice::broker::free_local_addr;

const RECORDS: usize = 5000;

fn distinct(function: &Function) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in function.received() {
        *seen
            .entry(r.header("ce-id").unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_burst_then_restart_delivers_every_record() {
    let function = Function::start(|_, _| Answer::ok().after(Duration::from_millis(2))).await;
    let dir = tempfile::tempdir().unwrap();
    let broker = free_local_addr().unwrap();
    let admin = free_local_addr().unwrap();
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "\
data_dir: {data}
embedded: {{listen: \"{broker}\"}}
admin: {{listen: \"{admin}\"}}
topics:
  - name: burst
    partitions: 4
triggers:
  - name: crash
    topics: [burst]
    url: {url}
    initial_offset: earliest
    ordering: unordered
    max_in_flight: 16
",
            data = dir.path().join("data").display(),
            url = function.url()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();

    let up = Daemon::spawn(&["-c", &config, "up"], dir.path());
    wait_ready(admin).await;
    let records: Vec<TestRecord> = (0..RECORDS)
        .map(|n| {
            (
                Some(format!("k{n}").into_bytes()),
                n.to_string().into_bytes(),
                vec![],
            )
        })
        .collect();
    produce_all(&broker.to_string(), "burst", records).await;

    // Kill it while deliveries are under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    while function.count() < 1000 {
        assert!(Instant::now() < deadline, "deliveries did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(up); // SIGKILL
    let at_kill = distinct(&function).len();
    assert!(
        at_kill < RECORDS,
        "everything was delivered before the kill"
    );

    let up = Daemon::spawn(&["-c", &config, "up"], dir.path());
    wait_ready(admin).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while distinct(&function).len() < RECORDS {
        assert!(
            Instant::now() < deadline,
            "only {} of {RECORDS} records arrived after the restart",
            distinct(&function).len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = distinct(&function);
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    println!(
        "delivered {} distinct of {RECORDS} records; {at_kill} before SIGKILL; {duplicates} duplicates",
        seen.len()
    );
    assert_eq!(seen.len(), RECORDS);
    for n in 0..4 {
        assert!(
            seen.keys()
                .any(|id| id.starts_with(&format!("partition:{n}/")))
        );
    }

    up.signal(Signal::SIGTERM);
    let output = up.wait(Duration::from_secs(40));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}
