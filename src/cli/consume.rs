//! `sluice consume`: print records with partition, offset, key and headers.

use std::{
    io::{IsTerminal, Write},
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use clap::{Args, ValueEnum};
use rdkafka::{
    ClientContext, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    message::{BorrowedMessage, Headers},
};
use serde_json::{Map, Value, json};
use tracing::warn;

use super::{CliError, parse_duration};
use crate::{
    kafka::{ClientError, Kafka},
    shutdown,
};

/// Notes when the group first assigns partitions. Asking librdkafka for the assignment
/// instead can block for as long as the broker is unreachable.
#[derive(Debug, Default)]
struct Assignment(AtomicBool);

impl ClientContext for Assignment {}

impl ConsumerContext for Assignment {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance
            && list.count() > 0
        {
            self.0.store(true, Ordering::Release);
        }
    }
}

fn create(
    kafka: &Kafka,
    extra: &[(&str, &str)],
) -> Result<StreamConsumer<Assignment>, ClientError> {
    let mut config = kafka.client_config();
    for (key, value) in extra {
        let _ = config.set(*key, *value);
    }
    config
        .create_with_context(Assignment::default())
        .map_err(ClientError::Settings)
}

/// Arguments of `sluice consume`.
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    #[arg(short = 't', long)]
    pub topic: String,
    /// Consumer group: offsets are committed and a restart resumes after them.
    #[arg(short = 'g', long)]
    pub group: Option<String>,
    /// Start at the earliest retained record (default: only new records).
    #[arg(long)]
    pub from_beginning: bool,
    /// Exit after this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Exit after no record arrived for this long, e.g. `5s`.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub idle_exit: Option<Duration>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// How records are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `partition=P offset=O key=K headers={a=1} value`, one line per record.
    Text,
    /// One JSON object per line; bytes that are not UTF-8 go in `*_base64` fields.
    Json,
}

/// How long the final commit and close may take.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// How long `--idle-exit` waits, beyond its limit, for the group to assign partitions.
const JOIN_WAIT: Duration = Duration::from_secs(30);

/// Runs `sluice consume`.
pub async fn run(kafka: &Kafka, args: &ConsumeArgs) -> Result<(), CliError> {
    let partitions = kafka
        .partition_counts(std::slice::from_ref(&args.topic))
        .await?;
    let Some(&partitions) = partitions.get(&args.topic) else {
        return Err(CliError::Failed(format!(
            "topic {} does not exist",
            args.topic
        )));
    };
    let reset = if args.from_beginning {
        "earliest"
    } else {
        "latest"
    };
    let consumer = match &args.group {
        Some(group) => {
            let consumer = create(
                kafka,
                &[
                    ("group.id", group),
                    ("enable.auto.commit", "true"),
                    ("enable.auto.offset.store", "false"),
                    ("auto.offset.reset", reset),
                ],
            )?;
            consumer
                .subscribe(&[&args.topic])
                .map_err(|err| CliError::Failed(format!("cannot subscribe: {err}")))?;
            consumer
        }
        None => {
            // Without a group nothing is committed; the group id only satisfies librdkafka.
            let group = format!("sluice-consume-{}", uuid::Uuid::new_v4());
            let consumer = create(
                kafka,
                &[
                    ("group.id", &group),
                    ("enable.auto.commit", "false"),
                    ("auto.offset.reset", reset),
                ],
            )?;
            let start = if args.from_beginning {
                Offset::Beginning
            } else {
                Offset::End
            };
            let mut assignment = TopicPartitionList::new();
            for p in 0..partitions as i32 {
                assignment
                    .add_partition_offset(&args.topic, p, start)
                    .map_err(|err| CliError::Failed(format!("cannot assign: {err}")))?;
            }
            consumer
                .assign(&assignment)
                .map_err(|err| CliError::Failed(format!("cannot assign: {err}")))?;
            consumer
        }
    };

    let interrupted = shutdown::signalled();
    tokio::pin!(interrupted);
    let stdout = std::io::stdout();
    // With a group, a line is out before its offset is stored, so a kill cannot commit a
    // record that was never printed.
    let flush_each = stdout.is_terminal() || args.group.is_some();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut seen = 0u64;
    let started = tokio::time::Instant::now();
    let mut assigned = args.group.is_none();
    let result = loop {
        if args.count.is_some_and(|count| seen >= count) {
            break Ok(());
        }
        if !assigned {
            assigned = consumer.context().0.load(Ordering::Acquire);
        }
        // The idle clock runs once the group has given this consumer partitions: joining a
        // busy group can take longer than the idle limit. Still without partitions after
        // the limit plus JOIN_WAIT, the consumer gives up as idle.
        let idle = async {
            match args.idle_exit {
                Some(limit) if assigned => {
                    tokio::time::sleep(limit).await;
                    true
                }
                Some(limit) => {
                    let give_up = started + limit + JOIN_WAIT;
                    let recheck = tokio::time::Instant::now() + Duration::from_millis(100);
                    tokio::time::sleep_until(give_up.min(recheck)).await;
                    tokio::time::Instant::now() >= give_up
                }
                None => std::future::pending().await,
            }
        };
        let message = tokio::select! {
            biased;
            _ = &mut interrupted => break Ok(()),
            message = consumer.recv() => message,
            idle = idle => if idle { break Ok(()) } else { continue },
        };
        let message = match message {
            Ok(message) => message,
            Err(err) => break Err(CliError::Failed(format!("cannot consume: {err}"))),
        };
        let line = match args.format {
            Format::Text => text_line(&message),
            Format::Json => json_line(&message),
        };
        if let Err(err) =
            writeln!(out, "{line}").and_then(|()| if flush_each { out.flush() } else { Ok(()) })
        {
            break Err(CliError::Failed(format!("cannot write output: {err}")));
        }
        if args.group.is_some() {
            let _ = consumer.store_offset_from_message(&message);
        }
        seen += 1;
    };
    let _ = out.flush();
    drop(out);
    // Nothing was stored beyond what was printed, so this commits only printed records.
    // A broker that is gone must not keep the process: the commit and the close get
    // CLOSE_WAIT, then the process exits anyway (what was not committed is read again).
    let commit = args.group.is_some();
    let close = tokio::task::spawn_blocking(move || {
        if commit {
            let _ = consumer.commit_consumer_state(CommitMode::Sync);
        }
        drop(consumer);
    });
    if tokio::time::timeout(CLOSE_WAIT, close).await.is_err() {
        warn!(
            wait = ?CLOSE_WAIT,
            "The broker did not answer the final commit; exiting without it."
        );
    }
    result
}

/// Text for bytes: as is when UTF-8, else with non-printable bytes escaped.
fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => bytes.escape_ascii().to_string(),
    }
}

fn text_line(message: &BorrowedMessage<'_>) -> String {
    let key = message.key().map_or_else(|| "null".to_owned(), show);
    let mut headers = Vec::new();
    if let Some(list) = message.headers() {
        for header in list.iter() {
            headers.push(format!(
                "{}={}",
                header.key,
                header.value.map_or_else(|| "null".to_owned(), show)
            ));
        }
    }
    format!(
        "partition={} offset={} key={} headers={{{}}} {}",
        message.partition(),
        message.offset(),
        key,
        headers.join(","),
        message.payload().map(show).unwrap_or_default()
    )
}

/// Puts bytes under `name` as a string, or under `name_base64` when they are not UTF-8;
/// null when absent. Records are shown this way everywhere they are JSON: `sluice consume`,
/// dead letters and stream messages.
pub(crate) fn put_bytes(object: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>) {
    match bytes {
        None => {
            let _ = object.insert(name.to_owned(), Value::Null);
        }
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => {
                let _ = object.insert(name.to_owned(), Value::String(text.to_owned()));
            }
            Err(_) => {
                let _ = object.insert(
                    format!("{name}_base64"),
                    Value::String(BASE64.encode(bytes)),
                );
            }
        },
    }
}

fn json_line(message: &BorrowedMessage<'_>) -> String {
    let mut object = Map::new();
    let _ = object.insert("topic".into(), json!(message.topic()));
    let _ = object.insert("partition".into(), json!(message.partition()));
    let _ = object.insert("offset".into(), json!(message.offset()));
    let _ = object.insert("timestamp".into(), json!(message.timestamp().to_millis()));
    put_bytes(&mut object, "key", message.key());
    let mut headers = Vec::new();
    if let Some(list) = message.headers() {
        for header in list.iter() {
            let mut entry = Map::new();
            let _ = entry.insert("name".into(), json!(header.key));
            put_bytes(&mut entry, "value", header.value);
            headers.push(Value::Object(entry));
        }
    }
    let _ = object.insert("headers".into(), Value::Array(headers));
    put_bytes(&mut object, "value", message.payload());
    Value::Object(object).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_bytes_go_to_base64_fields() {
        let mut object = Map::new();
        put_bytes(&mut object, "key", Some(&[0xff, 0x00, 0x41]));
        put_bytes(&mut object, "value", Some("héllo".as_bytes()));
        put_bytes(&mut object, "none", None);
        assert_eq!(object["key_base64"], json!("/wBB"));
        assert_eq!(object["value"], json!("héllo"));
        assert_eq!(object["none"], Value::Null);
        assert!(!object.contains_key("key"));
    }

    #[test]
    fn shows_text_and_escapes_binary() {
        assert_eq!(show("naïve".as_bytes()), "naïve");
        assert_eq!(show(&[0xff, b'a', b'\n']), "\\xffa\\n");
    }
}
