//! `sluice topics`: list, create and describe.

use clap::Subcommand;

use super::{CliError, parse_key_value};
use crate::{
    config::Config,
    kafka::{Created, Kafka, TopicSpec},
};

/// Topic subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum TopicsCommand {
    /// List topics with their partition counts.
    List,
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Partitions (default: `embedded.default_partitions`).
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor.
        #[arg(long, default_value_t = 1)]
        replication_factor: i32,
        /// A topic config such as `retention.ms=60000` (repeatable).
        #[arg(long = "topic-config", value_name = "NAME=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Succeed without change when the topic exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// Show a topic's partitions, watermarks and configuration.
    Describe {
        /// Topic name.
        name: String,
    },
}

/// Runs `sluice topics ...`.
pub async fn run(kafka: &Kafka, config: &Config, command: &TopicsCommand) -> Result<(), CliError> {
    match command {
        TopicsCommand::List => {
            let topics = kafka.list_topics().await?;
            let width = topics
                .iter()
                .map(|(n, _)| n.len())
                .max()
                .unwrap_or(0)
                .max(5);
            println!("{:<width$}  PARTITIONS", "TOPIC");
            for (name, partitions) in topics {
                println!("{name:<width$}  {partitions}");
            }
            Ok(())
        }
        TopicsCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => {
            let partitions = partitions.unwrap_or(config.embedded.default_partitions);
            if partitions < 1 {
                return Err(CliError::Usage("--partitions must be at least 1".into()));
            }
            let spec = TopicSpec {
                name: name.clone(),
                partitions,
                replication: *replication_factor,
                config: configs.iter().cloned().collect(),
            };
            match kafka.create_topic(&spec).await? {
                Created::Created => {
                    println!("created topic {name} with {partitions} partitions");
                    Ok(())
                }
                Created::Exists if *if_not_exists => {
                    println!("topic {name} already exists");
                    Ok(())
                }
                Created::Exists => Err(CliError::Failed(format!("topic {name} already exists"))),
            }
        }
        TopicsCommand::Describe { name } => {
            let topic = kafka.describe_topic(name).await?;
            println!(
                "topic {}: {} partitions, {} records",
                topic.name,
                topic.partitions.len(),
                topic.records()
            );
            println!("PARTITION  LEADER  LOW  HIGH");
            for p in &topic.partitions {
                println!(
                    "{:<9}  {:<6}  {:<3}  {}",
                    p.partition, p.leader, p.low, p.high
                );
            }
            // Not every broker answers DescribeConfigs; the partitions above are the essence.
            if let Ok(entries) = kafka.topic_config(name).await
                && !entries.is_empty()
            {
                println!("CONFIG");
                for (key, value) in entries {
                    println!("{key}={value}");
                }
            }
            Ok(())
        }
    }
}
