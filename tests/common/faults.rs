//! The fault harness: a sequence-numbered load produced at a steady rate, functions that
//! record every delivery with its `ce-id` and sequence number, sluice replicas and brokers
//! as child processes, and a checker that finds what was lost, duplicated or reordered.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use rdkafka::{
    ClientConfig,
    producer::{FutureProducer, FutureRecord},
};

use super::{
    Daemon,
    function::{Answer, Function, Received},
    http_get,
};

/// One delivery a recording function received.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Which process instance delivered it (the function it was sent to).
    pub instance: usize,
    /// The record's partition, from its `ce-id`.
    pub partition: i32,
    /// The record's offset, from its `ce-id`.
    pub offset: i64,
    /// The sequence number the load wrote into the value.
    pub seq: u64,
    /// When it arrived.
    pub at: Instant,
}

/// Reads partition, offset and sequence number off a request sluice delivered.
pub fn delivery(instance: usize, r: &Received) -> Delivery {
    let id = r.header("ce-id").unwrap_or_default();
    let (partition, offset) = parse_id(id).unwrap_or_else(|| panic!("ce-id {id:?}"));
    let seq = std::str::from_utf8(&r.body)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("body {:?} is not a sequence number", r.body));
    Delivery {
        instance,
        partition,
        offset,
        seq,
        at: r.at,
    }
}

/// `partition:P/offset:O` → (P, O).
pub fn parse_id(id: &str) -> Option<(i32, i64)> {
    let rest = id.strip_prefix("partition:")?;
    let (p, o) = rest.split_once("/offset:")?;
    Some((p.parse().ok()?, o.parse().ok()?))
}

/// Recording functions, one per sluice process instance, so that each delivery is known by
/// the instance that made it.
#[derive(Default, Clone)]
pub struct Recorders {
    functions: Arc<Mutex<Vec<Function>>>,
}

impl Recorders {
    /// A new recording function that answers 200 after `delay`; returns its index.
    pub async fn add(&self, delay: Duration) -> (usize, Function) {
        let function = Function::start(move |_, _| Answer::ok().after(delay)).await;
        let mut all = self.functions.lock().unwrap();
        all.push(function.clone());
        (all.len() - 1, function)
    }

    /// Every delivery so far, by every instance, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        let all = self.functions.lock().unwrap().clone();
        let mut out: Vec<Delivery> = all
            .iter()
            .enumerate()
            .flat_map(|(i, f)| {
                f.received()
                    .iter()
                    .map(|r| delivery(i, r))
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by_key(|d| d.at);
        out
    }

    /// Distinct sequence numbers delivered so far.
    pub fn distinct(&self) -> usize {
        let mut seen: Vec<u64> = self.deliveries().iter().map(|d| d.seq).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }
}

/// A sequence-numbered load: record `seq` goes to partition `seq % partitions` with the
/// value `seq`. Sends are paced at `rate` per second and do not wait for each other, so a
/// broker that is down makes records queue in the producer (librdkafka retries them) while
/// the pace goes on.
pub struct Load {
    /// Acknowledged records: seq → (partition, offset).
    pub acked: Arc<Mutex<BTreeMap<u64, (i32, i64)>>>,
    /// Sends that failed for good, with the error.
    pub failed: Arc<Mutex<Vec<(u64, String)>>>,
    /// Records handed to the producer.
    pub sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Starts producing `count` records to `topic` at `rate` per second.
    pub fn start(bootstrap: &str, topic: &str, partitions: i32, count: u64, rate: u64) -> Self {
        Self::numbered_from(0, bootstrap, topic, partitions, count, rate)
    }

    /// The same, numbering the records from `first`.
    pub fn numbered_from(
        first: u64,
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        count: u64,
        rate: u64,
    ) -> Self {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            // Long enough to outlive a broker or a sluice with its broker that is down.
            .set("message.timeout.ms", "180000")
            .set("reconnect.backoff.max.ms", "500")
            .create()
            .unwrap();
        let acked = Arc::new(Mutex::new(BTreeMap::new()));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let topic = topic.to_owned();
        let task = {
            let (acked, failed, sent, stop) =
                (acked.clone(), failed.clone(), sent.clone(), stop.clone());
            tokio::spawn(async move {
                let began = Instant::now();
                let mut waits = tokio::task::JoinSet::new();
                for seq in first..first + count {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let due = began + Duration::from_secs_f64((seq - first) as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                    let value = seq.to_string();
                    let key = format!("k{seq}");
                    let partition = (seq % partitions as u64) as i32;
                    let record = FutureRecord::to(&topic)
                        .key(&key)
                        .payload(&value)
                        .partition(partition);
                    match producer.send_result(record) {
                        Ok(wait) => {
                            let _ = sent.fetch_add(1, Ordering::AcqRel);
                            let (acked, failed) = (acked.clone(), failed.clone());
                            let _ = waits.spawn(async move {
                                match wait.await {
                                    Ok(Ok(d)) => {
                                        let _ = acked
                                            .lock()
                                            .unwrap()
                                            .insert(seq, (d.partition, d.offset));
                                    }
                                    Ok(Err((e, _))) => {
                                        failed.lock().unwrap().push((seq, e.to_string()))
                                    }
                                    Err(_) => {
                                        failed.lock().unwrap().push((seq, "cancelled".into()))
                                    }
                                }
                            });
                        }
                        Err((e, _)) => failed.lock().unwrap().push((seq, e.to_string())),
                    }
                }
                while waits.join_next().await.is_some() {}
                // Dropping a librdkafka client blocks its thread while it says goodbye.
                let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
            })
        };
        Self {
            acked,
            failed,
            sent,
            stop,
            task,
        }
    }

    /// Stops sending new records.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Waits (bounded) until every record sent has been acknowledged or has failed.
    pub async fn finish(self, limit: Duration) -> (BTreeMap<u64, (i32, i64)>, Vec<(u64, String)>) {
        tokio::time::timeout(limit, self.task)
            .await
            .expect("the load did not finish in time")
            .unwrap();
        let acked = self.acked.lock().unwrap().clone();
        let failed = self.failed.lock().unwrap().clone();
        (acked, failed)
    }

    /// Records acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Check {
    /// Acknowledged records never delivered.
    pub lost: Vec<u64>,
    /// Deliveries beyond the first of each record.
    pub duplicates: usize,
    /// Records delivered at least once.
    pub distinct: usize,
    /// Deliveries whose offset did not rise within one instance's run on a partition.
    pub out_of_order: Vec<String>,
    /// Deliveries of a record at a position other than the one the broker acknowledged.
    pub misplaced: Vec<String>,
}

impl Check {
    /// Checks `deliveries` against the acknowledged records.
    pub fn run(acked: &BTreeMap<u64, (i32, i64)>, deliveries: &[Delivery]) -> Self {
        let mut check = Self::default();
        let mut count: HashMap<u64, usize> = HashMap::new();
        let mut last: HashMap<(usize, i32), i64> = HashMap::new();
        for d in deliveries {
            *count.entry(d.seq).or_insert(0) += 1;
            // An acknowledgement of a retried send that the broker already had carries no
            // offset (-1): its position is unknown, not wrong.
            if let Some(&(p, o)) = acked.get(&d.seq)
                && o >= 0
                && (p, o) != (d.partition, d.offset)
                && check.misplaced.len() < 10
            {
                check.misplaced.push(format!(
                    "seq {} acknowledged at {p}/{o}, delivered as {}/{}",
                    d.seq, d.partition, d.offset
                ));
            }
            if let Some(prev) = last.insert((d.instance, d.partition), d.offset)
                && d.offset <= prev
                && check.out_of_order.len() < 10
            {
                check.out_of_order.push(format!(
                    "instance {} partition {}: offset {} after {prev}",
                    d.instance, d.partition, d.offset
                ));
            }
        }
        check.lost = acked
            .keys()
            .filter(|seq| !count.contains_key(seq))
            .copied()
            .collect();
        check.duplicates = count.values().map(|n| n - 1).sum();
        check.distinct = count.len();
        check
    }

    /// A line for the test's output.
    pub fn summary(&self, acked: usize) -> String {
        format!(
            "{acked} acknowledged, {} delivered, {} lost, {} duplicates",
            self.distinct,
            self.lost.len(),
            self.duplicates
        )
    }
}

/// The longest pause between two deliveries of each partition between `from` and `to`.
pub fn gaps(deliveries: &[Delivery], from: Instant, to: Instant) -> BTreeMap<i32, Duration> {
    let mut last: HashMap<i32, Instant> = HashMap::new();
    let mut gaps = BTreeMap::new();
    for d in deliveries.iter().filter(|d| d.at >= from && d.at <= to) {
        if let Some(prev) = last.insert(d.partition, d.at) {
            let gap = gaps.entry(d.partition).or_insert(Duration::ZERO);
            *gap = (*gap).max(d.at - prev);
        }
    }
    gaps
}

/// Waits (bounded) until `recorders` have delivered every one of `want` records.
pub async fn wait_delivered(recorders: &Recorders, want: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let have = recorders.distinct();
        if have >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {have} of {want} records delivered after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `/readyz` until its status is `code`; returns the body.
pub async fn wait_readyz(admin: SocketAddr, code: u16, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok((c, body)) = http_get(admin, "/readyz")
            && c == code
        {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz did not answer {code} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A sluice process and where its output goes.
pub struct Replica {
    /// The process; dropping it is a SIGKILL.
    pub daemon: Daemon,
    /// Its admin address.
    pub admin: SocketAddr,
    /// Its log file.
    pub log: PathBuf,
}

impl Replica {
    /// Starts `sluice -c CONFIG up` with its output in `DIR/NAME.log`.
    pub fn start(dir: &Path, name: &str, config: &Path, admin: SocketAddr) -> Self {
        let log = dir.join(format!("{name}.log"));
        let daemon = Daemon::spawn_logged(&["-c", config.to_str().unwrap(), "up"], dir, &log);
        Self { daemon, admin, log }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A small deterministic random source for kill points, seeded from the clock and printed
/// so that a failing run can be repeated with `FAULT_SEED`.
pub struct Random(u64);

impl Random {
    /// Seeded from `FAULT_SEED` or the clock.
    pub fn new() -> Self {
        let seed = std::env::var("FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        println!("FAULT_SEED={seed}");
        Self(seed | 1)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}
