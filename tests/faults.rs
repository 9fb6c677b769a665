//! Faults under a sequence-numbered load, checked end to end: replicas, the broker and
//! sluice killed with SIGKILL, and a function that fails and hangs. Each test prints what it
//! saw: records acknowledged, delivered, lost (always 0) and duplicated.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use common::{
    committed,
    faults::{
        Check, Load, Random, Recorders, Replica, gaps, parse_id, wait_delivered, wait_readyz,
    },
    function::{Answer, Function},
    read_topic, spawn_broker_logged,
};
use rdkafka::Message;
use sluice::broker::free_local_addr;

/// The tests here load both cores; they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A replica's config: an external broker, its own admin port and function.
fn replica_config(broker: SocketAddr, admin: SocketAddr, url: &str, data: &Path) -> String {
    format!(
        "\
data_dir: {data}
kafka: {{bootstrap_servers: \"{broker}\"}}
admin: {{listen: \"{admin}\"}}
topics:
  - name: load
    partitions: 6
triggers:
  - name: fanin
    topics: [load]
    url: {url}
    initial_offset: earliest
    ordering: partition
    max_in_flight: 16
",
        data = data.display()
    )
}

/// The partitions `instance` delivered in the `window` before `at`.
fn owned_before(
    deliveries: &[common::faults::Delivery],
    instance: usize,
    at: Instant,
    window: Duration,
) -> BTreeSet<i32> {
    deliveries
        .iter()
        .filter(|d| d.instance == instance && d.at <= at && d.at + window >= at)
        .map(|d| d.partition)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_and_restarted_loses_nothing_and_the_others_keep_flowing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("broker");
    std::fs::create_dir_all(&data).unwrap();
    let addr = free_local_addr().unwrap();
    let _broker = spawn_broker_logged(&data, addr, &dir.path().join("broker.log"));
    let bootstrap = addr.to_string();

    let recorders = Recorders::default();
    let mut replicas = Vec::new();
    for i in 0..3 {
        let (index, function) = recorders.add(Duration::from_millis(1)).await;
        assert_eq!(index, i);
        let admin = free_local_addr().unwrap();
        let config = write_config(
            dir.path(),
            &format!("replica-{i}"),
            &replica_config(
                addr,
                admin,
                &function.url(),
                &dir.path().join(format!("d{i}")),
            ),
        );
        replicas.push((
            Replica::start(dir.path(), &format!("replica-{i}"), &config, admin),
            function,
        ));
    }
    for (replica, _) in &replicas {
        let _ = wait_readyz(replica.admin, 200, Duration::from_secs(60)).await;
    }

    const RATE: u64 = 300;
    const COUNT: u64 = RATE * 40;
    let load = Load::start(&bootstrap, "load", 6, COUNT, RATE);
    // Every replica has partitions before the kill.
    let deadline = Instant::now() + Duration::from_secs(60);
    while replicas.iter().any(|(_, f)| f.count() == 0) {
        assert!(
            Instant::now() < deadline,
            "not every replica got partitions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;

    // SIGKILL replica 2.
    let (victim, victim_function) = replicas.pop().unwrap();
    let in_flight = victim_function.in_flight();
    drop(victim);
    let killed_at = Instant::now();
    let before = recorders.deliveries();
    let moved = owned_before(&before, 2, killed_at, Duration::from_secs(2));
    let kept: BTreeSet<i32> = (0..6).filter(|p| !moved.contains(p)).collect();
    assert!(!moved.is_empty(), "the killed replica owned no partition");
    let at_kill = committed(&bootstrap, "sluice-fanin", "load").await;
    let uncommitted: usize = before
        .iter()
        .filter(|d| d.instance == 2 && d.offset >= at_kill.get(&d.partition).copied().unwrap_or(0))
        .count();

    // Its partitions move to the survivors once its session times out.
    let deadline = Instant::now() + Duration::from_secs(60);
    let taken_over = loop {
        let now = recorders.deliveries();
        let firsts: Vec<Instant> = moved
            .iter()
            .filter_map(|p| {
                now.iter()
                    .find(|d| d.instance != 2 && d.partition == *p && d.at > killed_at)
                    .map(|d| d.at)
            })
            .collect();
        if firsts.len() == moved.len() {
            break firsts.into_iter().max().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the killed replica's partitions {moved:?} did not move"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Restart it: partitions move back to it.
    let (index, function) = recorders.add(Duration::from_millis(1)).await;
    assert_eq!(index, 3);
    let admin = free_local_addr().unwrap();
    let config = write_config(
        dir.path(),
        "replica-2-again",
        &replica_config(addr, admin, &function.url(), &dir.path().join("d2")),
    );
    let restarted = Replica::start(dir.path(), "replica-2-again", &config, admin);
    let restarted_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while function.count() == 0 {
        assert!(
            Instant::now() < deadline,
            "the restarted replica got no partitions"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (acked, failed) = load.finish(Duration::from_secs(120)).await;
    assert!(failed.is_empty(), "sends failed: {failed:?}");
    wait_delivered(&recorders, acked.len(), Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deliveries = recorders.deliveries();
    let check = Check::run(&acked, &deliveries);
    println!("replica killed: {}", check.summary(acked.len()));
    println!(
        "killed replica owned partitions {moved:?}; at the kill it had {in_flight} requests in \
         flight and {uncommitted} delivered records not yet committed; duplicates {} \
         (aim: no more than those {uncommitted})",
        check.duplicates
    );
    let moved_back: BTreeSet<i32> = deliveries
        .iter()
        .filter(|d| d.instance == 3)
        .map(|d| d.partition)
        .collect();
    println!("after the restart the replica took partitions {moved_back:?}");
    let end = deliveries.last().map_or(Instant::now(), |d| d.at);
    for (p, gap) in gaps(&deliveries, killed_at, restarted_at) {
        println!(
            "partition {p} ({}): longest pause {:.0} ms from the kill to the restart",
            if moved.contains(&p) { "moved" } else { "kept" },
            gap.as_secs_f64() * 1000.0
        );
    }
    for (p, gap) in gaps(&deliveries, restarted_at, end) {
        println!(
            "partition {p}: longest pause {:.0} ms from the restart to the end",
            gap.as_secs_f64() * 1000.0
        );
    }
    assert!(check.lost.is_empty(), "lost: {:?}", check.lost);
    assert!(check.misplaced.is_empty(), "{:?}", check.misplaced);
    assert!(
        check.out_of_order.is_empty(),
        "order broken within a tenure: {:?}",
        check.out_of_order
    );
    // The survivors' own partitions kept flowing while the dead member's session ran out
    // and its partitions were handed over.
    for p in &kept {
        let during = deliveries
            .iter()
            .filter(|d| d.partition == *p && d.at > killed_at && d.at < taken_over)
            .count();
        assert!(
            during > 0,
            "partition {p} stopped between the kill and the hand-over"
        );
    }
    drop(restarted);
    drop(replicas);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_broker_killed_and_restarted_loses_nothing_and_readyz_says_so_meanwhile() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("broker");
    std::fs::create_dir_all(&data).unwrap();
    let addr = free_local_addr().unwrap();
    let broker_log = dir.path().join("broker.log");
    let first = spawn_broker_logged(&data, addr, &broker_log);
    let bootstrap = addr.to_string();

    let recorders = Recorders::default();
    let (_, function) = recorders.add(Duration::from_millis(1)).await;
    let admin = free_local_addr().unwrap();
    let config = write_config(
        dir.path(),
        "replica",
        &replica_config(addr, admin, &function.url(), &dir.path().join("d")),
    );
    let mut replica = Replica::start(dir.path(), "replica", &config, admin);
    let _ = wait_readyz(admin, 200, Duration::from_secs(60)).await;

    const RATE: u64 = 300;
    let load = Load::start(&bootstrap, "load", 6, RATE * 30, RATE);
    function.wait_for(300, Duration::from_secs(60)).await;

    drop(first); // SIGKILL
    let killed_at = Instant::now();
    let at_kill = recorders.distinct();
    let body = wait_readyz(admin, 503, Duration::from_secs(30)).await;
    println!("/readyz with the broker down: 503 {}", body.trim());
    assert!(body.contains("broker"), "{body}");
    tokio::time::sleep_until((killed_at + Duration::from_secs(5)).into()).await;
    // Records fetched before the kill are still delivered while the broker is down.
    println!(
        "delivered while the broker was down (fetched before the kill): {}",
        recorders.distinct() - at_kill
    );
    let log = dir.path().join("broker-again.log");
    let _second = spawn_broker_logged(&data, addr, &log);
    let _ = wait_readyz(admin, 200, Duration::from_secs(60)).await;
    println!(
        "/readyz answered 200 again {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );

    let (acked, failed) = load.finish(Duration::from_secs(180)).await;
    assert!(failed.is_empty(), "sends failed: {failed:?}");
    wait_delivered(&recorders, acked.len(), Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let check = Check::run(&acked, &recorders.deliveries());
    println!("broker killed: {}", check.summary(acked.len()));
    // The restarted broker hands the partitions out again, and each resumes from its
    // committed offset: the records after it are delivered again, an expected rewind.
    println!("rewinds after the restart: {:?}", check.out_of_order);
    assert!(check.lost.is_empty(), "lost: {:?}", check.lost);
    assert!(check.misplaced.is_empty(), "{:?}", check.misplaced);
    assert!(
        replica.daemon.0.try_wait().unwrap().is_none(),
        "sluice exited while the broker was down: {}",
        replica.log()
    );
}

/// A config with the embedded broker on `broker`.
fn embedded_config(data: &Path, broker: SocketAddr, admin: SocketAddr, trigger: &str) -> String {
    format!(
        "\
data_dir: {data}
embedded: {{listen: \"{broker}\"}}
admin: {{listen: \"{admin}\"}}
topics:
  - name: load
    partitions: 4
{trigger}",
        data = data.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sluice_killed_ten_times_at_random_points_loses_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let broker = free_local_addr().unwrap();
    let admin = free_local_addr().unwrap();
    let recorders = Recorders::default();
    let (_, function) = recorders.add(Duration::from_millis(1)).await;
    let config = write_config(
        dir.path(),
        "sluice",
        &embedded_config(
            &dir.path().join("data"),
            broker,
            admin,
            &format!(
                "\
triggers:
  - name: survivor
    topics: [load]
    url: {}
    initial_offset: earliest
    ordering: partition
    max_in_flight: 16
",
                function.url()
            ),
        ),
    );
    let mut random = Random::new();
    let mut replica = Replica::start(dir.path(), "sluice-0", &config, admin);
    let _ = wait_readyz(admin, 200, Duration::from_secs(60)).await;
    const RATE: u64 = 200;
    let load = Load::start(&broker.to_string(), "load", 4, RATE * 600, RATE);
    // The first kill comes once records flow.
    function.wait_for(1, Duration::from_secs(60)).await;
    let mut kills = Vec::new();
    for round in 1..=10 {
        let wait = Duration::from_millis(300 + random.below(2700));
        tokio::time::sleep(wait).await;
        let delivered = recorders.distinct();
        let acked = load.acked_count();
        drop(replica); // SIGKILL
        kills.push(format!(
            "kill {round} after {} ms up: {acked} acknowledged, {delivered} delivered",
            wait.as_millis()
        ));
        tokio::time::sleep(Duration::from_millis(random.below(500))).await;
        replica = Replica::start(dir.path(), &format!("sluice-{round}"), &config, admin);
        let _ = wait_readyz(admin, 200, Duration::from_secs(60)).await;
    }
    load.stop();
    let (acked, failed) = load.finish(Duration::from_secs(180)).await;
    for line in &kills {
        println!("{line}");
    }
    assert!(failed.is_empty(), "sends failed: {failed:?}");
    wait_delivered(&recorders, acked.len(), Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let check = Check::run(&acked, &recorders.deliveries());
    println!("sluice killed ten times: {}", check.summary(acked.len()));
    assert!(check.lost.is_empty(), "lost: {:?}", check.lost);
    assert!(check.misplaced.is_empty(), "{:?}", check.misplaced);
    assert!(
        replica.daemon.0.try_wait().unwrap().is_none(),
        "{}",
        replica.log()
    );
}

/// What the storm's function did with one request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fate {
    Ok,
    Unavailable,
    Hung,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_function_storm_loses_nothing_and_dead_letters_exactly_what_ran_out_of_retries() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let broker = free_local_addr().unwrap();
    let admin = free_local_addr().unwrap();
    let fates: Arc<Mutex<HashMap<String, Vec<Fate>>>> = Arc::default();
    let random = Arc::new(Mutex::new(Random::new()));
    let function = {
        let fates = fates.clone();
        Function::start(move |_, r| {
            let roll = random.lock().unwrap().below(100);
            let fate = match roll {
                0..30 => Fate::Unavailable,
                30..35 => Fate::Hung,
                _ => Fate::Ok,
            };
            fates
                .lock()
                .unwrap()
                .entry(r.header("ce-id").unwrap_or_default().to_owned())
                .or_default()
                .push(fate);
            match fate {
                Fate::Ok => Answer::ok(),
                Fate::Unavailable => Answer::status(StatusCode::SERVICE_UNAVAILABLE),
                // Past the trigger's 1 s timeout.
                Fate::Hung => Answer::ok().after(Duration::from_secs(3)),
            }
        })
        .await
    };
    let config = write_config(
        dir.path(),
        "sluice",
        &embedded_config(
            &dir.path().join("data"),
            broker,
            admin,
            &format!(
                "\
triggers:
  - name: storm
    topics: [load]
    url: {}
    initial_offset: earliest
    ordering: unordered
    max_in_flight: 64
    delivery:
      retry: 3
      backoff: exponential
      backoff_delay: 50ms
      backoff_max: 400ms
      timeout: 1s
",
                function.url()
            ),
        ),
    );
    let replica = Replica::start(dir.path(), "sluice", &config, admin);
    let _ = wait_readyz(admin, 200, Duration::from_secs(60)).await;

    // A minute of load.
    const RATE: u64 = 100;
    let load = Load::start(&broker.to_string(), "load", 4, RATE * 60, RATE);
    let (acked, failed) = load.finish(Duration::from_secs(180)).await;
    assert!(failed.is_empty(), "sends failed: {failed:?}");
    let by_position: HashMap<(i32, i64), u64> = acked.iter().map(|(s, p)| (*p, *s)).collect();

    // Every record ends: answered 200 once, or out of its 1 + 3 attempts.
    let settled = || {
        let fates = fates.lock().unwrap();
        let mut delivered = BTreeSet::new();
        let mut exhausted = BTreeMap::new();
        for (id, list) in fates.iter() {
            let position = parse_id(id).unwrap();
            let seq = by_position[&position];
            if list.contains(&Fate::Ok) {
                let _ = delivered.insert(seq);
            } else if list.len() >= 4 {
                let _ = exhausted.insert(seq, list.clone());
            }
        }
        (delivered, exhausted)
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let (delivered, exhausted) = loop {
        let (delivered, exhausted) = settled();
        if delivered.len() + exhausted.len() >= acked.len() {
            break (delivered, exhausted);
        }
        assert!(
            Instant::now() < deadline,
            "{} delivered and {} out of retries of {} records",
            delivered.len(),
            exhausted.len(),
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Let the last dead letters be written and any stray retry arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts: usize = fates.lock().unwrap().values().map(Vec::len).sum();
    let hung = fates
        .lock()
        .unwrap()
        .values()
        .flatten()
        .filter(|f| **f == Fate::Hung)
        .count();
    let unavailable = fates
        .lock()
        .unwrap()
        .values()
        .flatten()
        .filter(|f| **f == Fate::Unavailable)
        .count();
    println!(
        "storm: {} records, {attempts} requests ({unavailable} answered 503, {hung} hung past \
         the timeout), {} delivered, {} out of retries",
        acked.len(),
        delivered.len(),
        exhausted.len()
    );
    let lost: Vec<u64> = acked
        .keys()
        .filter(|s| !delivered.contains(s) && !exhausted.contains_key(s))
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "neither delivered nor dead-lettered: {lost:?}"
    );
    assert!(
        !exhausted.is_empty(),
        "no record ran out of retries: the storm was too mild to test dead letters"
    );

    // The dead-letter topic holds exactly the records that ran out of retries.
    let bootstrap = broker.to_string();
    let kafka = sluice::kafka::Kafka::new(&bootstrap, Default::default());
    let info = kafka.describe_topic("sluice.dlq.storm").await.unwrap();
    assert_eq!(
        info.records() as usize,
        exhausted.len(),
        "dead letters against records out of retries"
    );
    let letters = read_topic(&bootstrap, "sluice.dlq.storm", exhausted.len()).await;
    let mut lettered = BTreeSet::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for letter in &letters {
        let header = |name: &str| {
            use rdkafka::message::Headers;
            letter.headers().and_then(|h| {
                h.iter()
                    .find(|x| x.key == name)
                    .and_then(|x| x.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
        };
        let seq: u64 = String::from_utf8_lossy(letter.payload().unwrap())
            .parse()
            .unwrap();
        let partition: i32 = header("sluice-source-partition").unwrap().parse().unwrap();
        let offset: i64 = header("sluice-source-offset").unwrap().parse().unwrap();
        assert_eq!(acked[&seq], (partition, offset), "dead letter of {seq}");
        let fates = &exhausted[&seq];
        let tried: usize = header("sluice-attempts").unwrap().parse().unwrap();
        assert_eq!(tried, fates.len(), "attempts of {seq}: {fates:?}");
        let error = header("sluice-error").unwrap_or_default();
        assert!(!error.is_empty(), "dead letter of {seq} without a reason");
        // The reason is the last attempt's.
        let code = header("knativeerrorcode").unwrap_or_default();
        let last = fates.last().unwrap();
        let expected = if *last == Fate::Unavailable {
            "503"
        } else {
            "timeout"
        };
        assert_eq!(
            code, expected,
            "{seq}: last attempt {last:?}, reason {error:?}"
        );
        *reasons.entry(error).or_insert(0) += 1;
        assert!(lettered.insert(seq), "{seq} dead-lettered twice");
    }
    assert_eq!(lettered, exhausted.keys().copied().collect::<BTreeSet<_>>());
    for (reason, n) in reasons {
        println!("  dead letters with reason {reason:?}: {n}");
    }
    drop(replica);
}

/// A tmpfs of `size` mounted on `dir` for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts it, or says why not: only root can.
    fn mount(dir: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Self(dir.to_path_buf()))
    }

    /// Gives it a new size.
    fn resize(&self, size: &str) {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_refuses_producers_clearly_and_loses_nothing_once_space_is_freed() {
    use rdkafka::{
        ClientConfig,
        producer::{FutureProducer, FutureRecord},
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let disk = match Tmpfs::mount(&data, "12m") {
        Ok(disk) => disk,
        Err(why) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "the full-disk test mounts a tmpfs, which needs root: {why}"
            );
            println!("skipped: cannot mount a tmpfs ({why})");
            return;
        }
    };
    let broker = free_local_addr().unwrap();
    let admin = free_local_addr().unwrap();
    let recorders = Recorders::default();
    let (_, function) = recorders.add(Duration::from_millis(1)).await;
    let config = write_config(
        dir.path(),
        "sluice",
        &embedded_config(
            &data,
            broker,
            admin,
            &format!(
                "\
triggers:
  - name: full
    topics: [load]
    url: {}
    initial_offset: earliest
    ordering: partition
",
                function.url()
            ),
        ),
    );
    let replica = Replica::start(dir.path(), "sluice", &config, admin);
    let _ = wait_readyz(admin, 200, Duration::from_secs(60)).await;
    let bootstrap = broker.to_string();

    // A producer that does not retry sees the broker's own answer once the disk is full.
    let strict: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("message.send.max.retries", "0")
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let value = |seq: u64| format!("{seq:<4096}");
    let mut acked = BTreeMap::new();
    let mut refused = None;
    let mut seq = 0u64;
    'fill: while seq < 20_000 {
        let mut batch = Vec::new();
        for _ in 0..50 {
            let v = value(seq);
            let send = strict
                .send_result(
                    FutureRecord::to("load")
                        .key("k")
                        .payload(&v)
                        .partition(seq as i32 % 4),
                )
                .map_err(|(e, _)| e)
                .unwrap();
            batch.push((seq, send));
            seq += 1;
        }
        for (seq, send) in batch {
            match send.await.unwrap() {
                Ok(d) => {
                    let _ = acked.insert(seq, (d.partition, d.offset));
                }
                Err((err, _)) => {
                    let _ = refused.get_or_insert(err);
                }
            }
        }
        if refused.is_some() {
            break 'fill;
        }
    }
    let refused = refused.expect("the disk never filled");
    println!(
        "{} records of 4 KiB stored, then the broker answered: {refused}",
        acked.len()
    );
    assert!(
        matches!(
            refused.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::KafkaStorageError)
        ),
        "a full disk answered {refused}"
    );
    let body = wait_readyz(admin, 503, Duration::from_secs(30)).await;
    println!("/readyz: 503 {}", body.trim());
    assert!(body.contains("disk is full"), "{body}");
    assert!(
        replica.log().contains("The embedded broker's disk is full"),
        "{}",
        replica.log()
    );

    // A producer that retries keeps its records until there is room again.
    let patient = Load::numbered_from(1_000_000, &bootstrap, "load", 4, 200, 100);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        patient.acked_count(),
        0,
        "records were acknowledged while the disk was full"
    );
    disk.resize("64m");
    let _ = wait_readyz(admin, 200, Duration::from_secs(30)).await;
    let (more, failed) = patient.finish(Duration::from_secs(120)).await;
    assert!(
        failed.is_empty(),
        "sends failed after space was freed: {failed:?}"
    );
    println!(
        "after space was freed: {} records that waited in a retrying producer were stored",
        more.len()
    );
    acked.extend(more);
    wait_delivered(&recorders, acked.len(), Duration::from_secs(120)).await;
    let check = Check::run(&acked, &recorders.deliveries());
    println!("full disk: {}", check.summary(acked.len()));
    assert!(check.lost.is_empty(), "lost: {:?}", check.lost);
    let info = sluice::kafka::Kafka::new(&bootstrap, Default::default())
        .describe_topic("load")
        .await
        .unwrap();
    assert_eq!(
        info.records() as usize,
        acked.len(),
        "the topic holds other than what was acknowledged"
    );

    // Stopped cleanly, the database passes SQLite's integrity check.
    replica.daemon.signal(nix::sys::signal::Signal::SIGTERM);
    let output = replica.daemon.wait(Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(0));
    let check = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('pragma integrity_check').fetchone()[0])",
        ])
        .arg(data.join("broker.db"))
        .output()
        .unwrap();
    let verdict = String::from_utf8_lossy(&check.stdout).trim().to_owned();
    println!("integrity_check: {verdict}");
    assert_eq!(verdict, "ok", "{}", String::from_utf8_lossy(&check.stderr));
    drop(disk);
}
