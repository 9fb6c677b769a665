//! `sluice produce`: stdin lines to records, or a load generator with `--count`.

use std::{
    io::{BufRead, IsTerminal},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rdkafka::{
    ClientContext,
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer},
};

use super::{CliError, parse_key_value};
use crate::kafka::Kafka;

/// How long the final flush may wait for acknowledgements.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

/// Arguments of `sluice produce`.
#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    /// Topic to produce to; a broker that auto-creates topics (the embedded one does)
    /// creates it when missing.
    #[arg(short = 't', long)]
    pub topic: String,
    /// Key for every record.
    #[arg(short = 'k', long, conflicts_with = "key_separator")]
    pub key: Option<String>,
    /// Split each line at the first SEP into key and value.
    #[arg(short = 'K', long = "key-separator", value_name = "SEP")]
    pub key_separator: Option<String>,
    /// A header for every record (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE", value_parser = parse_key_value)]
    pub headers: Vec<(String, String)>,
    /// Generate this many records instead of reading stdin.
    #[arg(long)]
    pub count: Option<u64>,
    /// Generated records per second (default: as fast as the broker takes them).
    #[arg(long, requires = "count")]
    pub rate: Option<f64>,
    /// Size of each generated value in bytes.
    #[arg(long, default_value_t = 100, requires = "count")]
    pub size: usize,
}

/// Counts acknowledgements from librdkafka's delivery reports.
#[derive(Clone, Default)]
struct Acks(Arc<AckCounts>);

#[derive(Default)]
struct AckCounts {
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<KafkaError>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                let _ = self.0.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((err, _)) => {
                let _ = self.0.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.0.first_error.lock().unwrap_or_else(|e| e.into_inner());
                if first.is_none() {
                    *first = Some(err.clone());
                }
            }
        }
    }
}

/// One record to send.
struct Outgoing<'a> {
    key: Option<&'a [u8]>,
    value: &'a [u8],
}

/// A producer plus what is needed to send, pace and report.
struct Sender {
    producer: ThreadedProducer<Acks>,
    acks: Acks,
    topic: String,
    headers: Option<OwnedHeaders>,
    sent: u64,
}

impl Sender {
    /// Enqueues one record, waiting while librdkafka's local queue is full.
    fn send(&mut self, record: Outgoing<'_>) -> Result<(), CliError> {
        let mut base = BaseRecord::to(&self.topic).payload(record.value);
        if let Some(key) = record.key {
            base = base.key(key);
        }
        if let Some(headers) = &self.headers {
            base = base.headers(headers.clone());
        }
        loop {
            match self.producer.send(base) {
                Ok(()) => {
                    self.sent += 1;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    base = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((err, _)) => {
                    return Err(CliError::Failed(format!(
                        "cannot produce to {}: {err}",
                        self.topic
                    )));
                }
            }
        }
    }

    /// Waits for every acknowledgement and fails if any record was refused.
    fn finish(self) -> Result<u64, CliError> {
        self.producer
            .flush(FLUSH_TIMEOUT)
            .map_err(|err| CliError::Failed(format!("records were not acknowledged: {err}")))?;
        let delivered = self.acks.0.delivered.load(Ordering::Relaxed);
        let failed = self.acks.0.failed.load(Ordering::Relaxed);
        if failed > 0 || delivered != self.sent {
            let first = self
                .acks
                .0
                .first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "no acknowledgement".to_owned());
            return Err(CliError::Failed(format!(
                "{} of {} records were not acknowledged by the broker: {first}",
                self.sent - delivered,
                self.sent
            )));
        }
        Ok(delivered)
    }
}

/// Runs `sluice produce`.
pub async fn run(kafka: &Kafka, args: &ProduceArgs) -> Result<(), CliError> {
    if args.size == 0 && args.count.is_some() {
        return Err(CliError::Usage("--size must be at least 1".into()));
    }
    if args.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        return Err(CliError::Usage("--rate must be a positive number".into()));
    }
    // A broker that cannot be reached is one clear error now, not a flush that times out
    // later. The topic itself need not exist: a broker that creates topics on first use
    // (the embedded one does) creates it when the producer names it.
    let _ = kafka
        .partition_counts(std::slice::from_ref(&args.topic))
        .await?;

    let acks = Acks::default();
    let producer: ThreadedProducer<Acks> = kafka
        .client_config()
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .create_with_context(acks.clone())
        .map_err(|err| CliError::Failed(format!("invalid Kafka client settings: {err}")))?;
    let headers = (!args.headers.is_empty()).then(|| {
        args.headers
            .iter()
            .fold(OwnedHeaders::new(), |headers, (name, value)| {
                headers.insert(Header {
                    key: name,
                    value: Some(value.as_bytes()),
                })
            })
    });
    let sender = Sender {
        producer,
        acks,
        topic: args.topic.clone(),
        headers,
        sent: 0,
    };
    let args = args.clone();
    tokio::task::spawn_blocking(move || match args.count {
        Some(count) => generate(sender, &args, count),
        None => from_stdin(sender, &args),
    })
    .await
    .map_err(|err| CliError::Failed(format!("producer stopped: {err}")))?
}

fn from_stdin(mut sender: Sender, args: &ProduceArgs) -> Result<(), CliError> {
    let started = Instant::now();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = input
            .read_until(b'\n', &mut line)
            .map_err(|err| CliError::Failed(format!("cannot read stdin: {err}")))?;
        if read == 0 {
            break;
        }
        let text = trim_newline(&line);
        let (key, value) = match &args.key_separator {
            Some(sep) => split_key(text, sep.as_bytes()),
            None => (args.key.as_deref().map(str::as_bytes), text),
        };
        sender.send(Outgoing { key, value })?;
    }
    let topic = sender.topic.clone();
    let delivered = sender.finish()?;
    eprintln!(
        "produced {delivered} records to {topic} in {:.2}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn generate(mut sender: Sender, args: &ProduceArgs, count: u64) -> Result<(), CliError> {
    let progress = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(count), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} records  {per_sec}  eta {eta}")
    {
        progress.set_style(style);
    }
    let key = args.key.as_deref().map(str::as_bytes);
    let mut value = vec![b'x'; args.size];
    let started = Instant::now();
    for n in 0..count {
        let number = n.to_string();
        let prefix = number.len().min(value.len());
        value[..prefix].copy_from_slice(&number.as_bytes()[..prefix]);
        sender.send(Outgoing { key, value: &value })?;
        if n % 1000 == 999 {
            progress.set_position(n + 1);
        }
        if let Some(rate) = args.rate {
            let due = started + Duration::from_secs_f64((n + 1) as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
    let topic = sender.topic.clone();
    let delivered = sender.finish()?;
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "produced {delivered} records of {} bytes to {topic} in {seconds:.2}s: {:.0} records/s, {:.1} MiB/s",
        args.size,
        delivered as f64 / seconds,
        (delivered as f64 * args.size as f64) / seconds / (1024.0 * 1024.0)
    );
    Ok(())
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits at the first separator; a line without one is a value with no key.
fn split_key<'a>(line: &'a [u8], sep: &[u8]) -> (Option<&'a [u8]>, &'a [u8]) {
    if sep.is_empty() {
        return (None, line);
    }
    match line.windows(sep.len()).position(|w| w == sep) {
        Some(at) => (Some(&line[..at]), &line[at + sep.len()..]),
        None => (None, line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_first_separator() {
        assert_eq!(split_key(b"k1:v:1", b":"), (Some(&b"k1"[..]), &b"v:1"[..]));
        assert_eq!(split_key(b"novalue", b":"), (None, &b"novalue"[..]));
        assert_eq!(split_key(b"a::b", b"::"), (Some(&b"a"[..]), &b"b"[..]));
        assert_eq!(split_key(b":v", b":"), (Some(&b""[..]), &b"v"[..]));
    }

    #[test]
    fn trims_line_endings() {
        assert_eq!(trim_newline(b"abc\r\n"), b"abc");
        assert_eq!(trim_newline(b"abc\n"), b"abc");
        assert_eq!(trim_newline(b"abc"), b"abc");
    }
}
