//! `sluice dlq list|redrive TRIGGER`: a trigger's dead letters, read from its dead-letter
//! topic, and produced back to where they came from.

use clap::{Subcommand, ValueEnum};

use super::CliError;
use crate::{
    config::{Config, DeadLetter},
    dlq::{self, Matcher},
    event::EventSettings,
    kafka::Kafka,
};

/// How dead letters are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A block per dead letter.
    Text,
    /// One JSON object a line.
    Json,
}

/// Dead-letter subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum DlqCommand {
    /// Print the last dead letters: the original record, why, the attempts and where it came from.
    List {
        /// The trigger.
        trigger: String,
        /// How many, newest last.
        #[arg(long, default_value_t = 20)]
        count: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Produce dead letters back to their source topic, from where the last redrive stopped.
    Redrive {
        /// The trigger.
        trigger: String,
        /// The most dead letters to produce back.
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// Only those matching `ATTRIBUTE=VALUE` or a CESQL expression, over the event as
        /// the trigger delivered it (the others count as handled).
        #[arg(long = "where", value_name = "EXPR")]
        filter: Option<String>,
    },
}

/// Runs `sluice dlq ...`.
pub async fn run(kafka: &Kafka, config: &Config, command: &DlqCommand) -> Result<(), CliError> {
    let name = match command {
        DlqCommand::List { trigger, .. } | DlqCommand::Redrive { trigger, .. } => trigger,
    };
    let Some(trigger) = config.triggers.iter().find(|t| &t.name == name) else {
        let known: Vec<&str> = config.triggers.iter().map(|t| t.name.as_str()).collect();
        return Err(CliError::Usage(format!(
            "no trigger named {name:?} in the config (triggers: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    };
    let topic = match &trigger.dead_letter {
        DeadLetter::Topic(topic) => topic.clone(),
        DeadLetter::None => {
            return Err(CliError::Failed(format!(
                "trigger {name} drops what it cannot deliver (dead_letter: none)"
            )));
        }
        DeadLetter::Url(url) => {
            return Err(CliError::Failed(format!(
                "trigger {name} posts its dead letters to {url}; they are not in a topic"
            )));
        }
    };
    let failed = |err: dlq::DlqError| CliError::Failed(format!("{topic}: {err}"));
    match command {
        DlqCommand::List { count, format, .. } => {
            let letters = dlq::list(kafka, &topic, *count).await.map_err(failed)?;
            for letter in &letters {
                match format {
                    Format::Json => println!("{}", letter.to_json()),
                    Format::Text => print!("{}", text(letter)),
                }
            }
            if letters.is_empty() && *format == Format::Text {
                println!("no dead letters in {topic}");
            }
            Ok(())
        }
        DlqCommand::Redrive { count, filter, .. } => {
            let matcher = filter
                .as_deref()
                .map(Matcher::parse)
                .transpose()
                .map_err(CliError::Usage)?;
            let done = dlq::redrive(
                kafka,
                name,
                &topic,
                *count,
                matcher.as_ref(),
                &EventSettings::of(trigger),
            )
            .await
            .map_err(failed)?;
            println!(
                "redrove {} dead letters of {topic} to their source topics; {} passed over by --where",
                done.redriven, done.skipped
            );
            Ok(())
        }
    }
}

/// A dead letter as a block of text.
fn text(letter: &dlq::DeadLetter) -> String {
    let show = |bytes: Option<&[u8]>| match bytes {
        None => "(none)".to_owned(),
        Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
    };
    let r = &letter.reason;
    let source = match (&r.source_topic, r.source_partition, r.source_offset) {
        (Some(topic), Some(partition), Some(offset)) => format!("{topic} {partition}:{offset}"),
        _ => "unknown".to_owned(),
    };
    let headers: Vec<String> = letter
        .headers
        .iter()
        .map(|(name, value)| format!("{name}={}", show(value.as_deref())))
        .collect();
    let mut out = format!(
        "dead letter {}:{} from {source}\n  reason: {} {}\n  attempts: {}\n  key: {}\n  headers: {}\n  value: {}\n",
        letter.partition,
        letter.offset,
        r.code,
        r.error,
        r.attempts.map_or_else(|| "?".to_owned(), |a| a.to_string()),
        show(letter.key.as_deref()),
        if headers.is_empty() {
            "(none)".to_owned()
        } else {
            headers.join(", ")
        },
        show(letter.value.as_deref()),
    );
    if !r.excerpt.is_empty() {
        out.push_str(&format!("  answer: {}\n", r.excerpt.trim_end()));
    }
    out
}
