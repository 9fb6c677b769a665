//! `sluice triggers seek`: moves a running trigger's group, through the admin API.

use std::{net::SocketAddr, time::Duration};

use clap::Subcommand;

use super::{CliError, api, status::table};
use crate::{
    admin::{SeekAnswer, SeekRequest},
    config::Config,
};

/// A seek waits for the trigger's deliveries (up to 10 s) and for the broker.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Trigger subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum TriggersCommand {
    /// Move a trigger's group: it pauses, drains, commits the new positions and goes on.
    Seek {
        /// The trigger's name.
        name: String,
        /// `earliest`, `latest`, an RFC 3339 time in UTC (`2026-12-01T00:00:00Z`) or
        /// `PARTITION:OFFSET[,...]`.
        #[arg(long, value_name = "WHERE")]
        to: String,
        /// Admin address of the running sluice (default: the config's `admin.listen`).
        #[arg(long, value_name = "ADDR")]
        admin: Option<SocketAddr>,
    },
}

/// Runs `sluice triggers ...`.
pub async fn run(config: &Config, command: &TriggersCommand) -> Result<(), CliError> {
    let TriggersCommand::Seek { name, to, admin } = command;
    if let Err(why) = to.parse::<crate::trigger::SeekTo>() {
        return Err(CliError::Usage(why));
    }
    let addr = admin.unwrap_or(config.admin.listen);
    let url = format!("http://{addr}/api/triggers/{name}/seek");
    let failed = |err: &dyn std::fmt::Display| CliError::Failed(format!("{url}: {err}"));
    let body = serde_json::to_vec(&SeekRequest { to: to.clone() }).map_err(|e| failed(&e))?;
    let token = api::token(Some(config));
    let (status, body) = api::post(&url, body, TIMEOUT, token.as_deref()).await?;
    if !status.is_success() {
        return Err(CliError::Failed(format!(
            "cannot move trigger {name}: {}",
            api::error_of(status, &body)
        )));
    }
    let answer: SeekAnswer = serde_json::from_slice(&body).map_err(|e| failed(&e))?;
    let rows: Vec<Vec<String>> = answer
        .moved
        .iter()
        .map(|m| {
            vec![
                m.topic.clone(),
                m.partition.to_string(),
                m.from.map_or_else(|| "-".to_owned(), |o| o.to_string()),
                m.to.to_string(),
            ]
        })
        .collect();
    println!("trigger {} moved:", answer.trigger);
    print!("{}", table(&["TOPIC", "PARTITION", "FROM", "TO"], &rows));
    Ok(())
}
