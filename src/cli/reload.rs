//! `sluice reload`: makes a running sluice read its config file again, through the admin
//! API, and prints what changed.

use std::{net::SocketAddr, time::Duration};

use clap::Args;

use super::{CliError, api, status::table};
use crate::admin::{ReloadOutcome, ReloadReport};

/// A reload drains the triggers it stops, each within the grace period.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Arguments of `sluice reload`.
#[derive(Debug, Clone, Args)]
pub struct ReloadArgs {
    /// Admin address of the running sluice (default: the config's `admin.listen`). When
    /// given, the config file here is not read at all.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
}

/// Runs `sluice reload`: exit 0 when the new config runs, 64 when it has errors (then
/// nothing changed), 1 when applying it failed or sluice cannot be reached.
pub async fn run(addr: SocketAddr, token: Option<String>) -> Result<(), CliError> {
    let url = format!("http://{addr}/api/reload");
    let (status, body) = api::post(&url, Vec::new(), TIMEOUT, token.as_deref()).await?;
    let Ok(report) = serde_json::from_slice::<ReloadReport>(&body) else {
        return Err(CliError::Failed(format!(
            "cannot reload: {}",
            api::error_of(status, &body)
        )));
    };
    match report.outcome {
        ReloadOutcome::Applied => {
            print!("{}", render(&report));
            Ok(())
        }
        ReloadOutcome::Refused => Err(CliError::Usage(format!(
            "reload refused: the config has errors; the running config is kept\n  {}",
            report.problems.join("\n  ")
        ))),
        ReloadOutcome::Failed => Err(CliError::Failed(format!(
            "reload failed part way: {}",
            report.error.unwrap_or_default()
        ))),
    }
}

/// What changed, one row per trigger or function.
fn render(report: &ReloadReport) -> String {
    let mut rows = Vec::new();
    if let Some(changes) = &report.changes {
        for (list, what) in [
            (&changes.started, "started"),
            (&changes.restarted, "restarted"),
            (&changes.stopped, "stopped"),
            (&changes.unchanged, "unchanged"),
        ] {
            for name in list {
                rows.push(vec!["trigger".to_owned(), name.clone(), what.to_owned()]);
            }
        }
        for (name, why) in &changes.failed {
            rows.push(vec![
                "trigger".to_owned(),
                name.clone(),
                format!("failed: {why}"),
            ]);
        }
        for name in &changes.functions {
            rows.push(vec![
                "function".to_owned(),
                name.clone(),
                "replaced".to_owned(),
            ]);
        }
        for section in &changes.restart_needed {
            rows.push(vec![
                "section".to_owned(),
                section.clone(),
                "changed; takes effect after a restart".to_owned(),
            ]);
        }
    }
    let mut out = format!("reloaded at {}\n", report.at);
    if !rows.is_empty() {
        out.push_str(&table(&["KIND", "NAME", "CHANGE"], &rows));
    }
    out
}
