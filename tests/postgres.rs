//! The embedded broker on PostgreSQL storage: two `sluice broker` processes on one database
//! serve the same topics and groups, two sluice replicas name both in their bootstrap list,
//! and one broker is killed with SIGKILL in the middle of a sequence-numbered load. Every
//! record still reaches the function; duplicates are counted and printed.

mod common;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use common::{
    Daemon,
    function::{Answer, Function},
    postgres::{Postgres, broker},
    run, stderr, wait_ready,
};
use nix::sys::signal::Signal;
use sluice::broker::free_local_addr;

const RECORDS: u64 = 2000;

fn produce(bootstrap: &str, from: u64, count: u64) {
    let lines: String = (from..from + count).map(|n| format!("{n}\n")).collect();
    let output = common::run_with_input(
        &["-b", bootstrap, "produce", "-t", "sequence"],
        lines.as_bytes(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
}

/// How many times each sequence number reached the function.
fn deliveries(function: &Function) -> HashMap<u64, usize> {
    let mut seen = HashMap::new();
    for received in function.received() {
        let n: u64 = String::from_utf8_lossy(&received.body).parse().unwrap();
        *seen.entry(n).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_on_one_database_survive_one_being_killed() {
    let Some(postgres) = Postgres::start() else {
        return;
    };
    let url = postgres.url();
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (free_local_addr().unwrap(), free_local_addr().unwrap());
    let broker_a = broker(&url, a, dir.path());
    let _broker_b = broker(&url, b, dir.path());

    let output = run(&[
        "-b",
        &a.to_string(),
        "topics",
        "create",
        "sequence",
        "--partitions",
        "4",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    // The other broker serves the topic the first one created.
    let output = run(&["-b", &b.to_string(), "topics", "describe", "sequence"]);
    assert!(
        common::stdout(&output).starts_with("topic sequence: 4 partitions"),
        "{}{}",
        common::stdout(&output),
        stderr(&output)
    );

    let function = Function::start(|_, _| Answer::ok().after(Duration::from_millis(2))).await;
    let both = format!("{a},{b}");
    let mut replicas = Vec::new();
    let mut admins = Vec::new();
    for replica in 0..2 {
        let admin = free_local_addr().unwrap();
        let config = dir.path().join(format!("replica-{replica}.yaml"));
        std::fs::write(
            &config,
            format!(
                "\
kafka:
  bootstrap_servers: \"{both}\"
admin: {{listen: \"{admin}\"}}
triggers:
  - name: sequence
    topics: [sequence]
    url: {url}
    initial_offset: earliest
    ordering: partition
    delivery: {{retry: 100, backoff_delay: 100ms, backoff_max: 1s, timeout: 10s}}
",
                url = function.url()
            ),
        )
        .unwrap();
        replicas.push(Daemon::spawn(
            &["-c", config.to_str().unwrap(), "up", "--grace", "5s"],
            dir.path(),
        ));
        admins.push(admin);
    }
    for admin in &admins {
        wait_ready(*admin).await;
    }

    // Half the load, then the first broker dies while it is being delivered, then the rest
    // through the broker that is left.
    produce(&both, 0, RECORDS / 2);
    function.wait_for(200, Duration::from_secs(60)).await;
    broker_a.signal(Signal::SIGKILL);
    let killed_at = function.count();
    produce(&b.to_string(), RECORDS / 2, RECORDS / 2);

    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let seen = deliveries(&function);
        if (0..RECORDS).all(|n| seen.contains_key(&n)) {
            let duplicates: usize = seen.values().map(|n| n - 1).sum();
            println!(
                "all {RECORDS} records delivered; {killed_at} had been delivered when broker A \
                 was killed; {duplicates} delivered more than once"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 180 s, {} of {RECORDS} records delivered; missing e.g. {:?}",
            seen.len(),
            (0..RECORDS)
                .filter(|n| !seen.contains_key(n))
                .take(10)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for replica in &replicas {
        replica.signal(Signal::SIGTERM);
    }
    for replica in replicas {
        let output = replica.wait(Duration::from_secs(60));
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    }
    drop(postgres);
}
