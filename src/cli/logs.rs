//! `sluice logs [FUNCTION] [-f]`: the function instances' output lines, read from a running
//! sluice through the admin API, each prefixed with its function and instance.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

use super::CliError;
use crate::{config::Config, function::logbook::LogLine};

/// Arguments of `sluice logs`.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Only this function's lines.
    pub function: Option<String>,
    /// Go on printing lines as they come, until interrupted.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// How many recent lines to start with.
    #[arg(long, default_value_t = 100)]
    pub tail: usize,
    /// Admin address of the running sluice (default: the config's `admin.listen`).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
}

/// Runs `sluice logs`.
pub async fn run(config: &Config, args: &LogsArgs) -> Result<(), CliError> {
    let addr = args.admin.unwrap_or(config.admin.listen);
    let mut url = format!(
        "http://{addr}/api/logs?tail={}&follow={}",
        args.tail, args.follow
    );
    if let Some(function) = &args.function {
        url.push_str("&function=");
        url.push_str(
            &percent_encoding::utf8_percent_encode(function, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        );
    }
    let unreachable = |err: &dyn std::fmt::Display| {
        CliError::Failed(format!("cannot reach sluice at {url}: {err}"))
    };
    let uri: hyper::Uri = url.parse().map_err(|e| unreachable(&e))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .map_err(|_| unreachable(&"no answer within 5s"))?
        .map_err(|e| unreachable(&e))?;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Err(CliError::Failed(super::api::error_of(status, &bytes)));
    }
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CliError::Failed(format!("{url}: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            print_line(&line);
        }
    }
    Ok(())
}

fn print_line(line: &[u8]) {
    match serde_json::from_slice::<LogLine>(line) {
        Ok(l) => {
            let stream = if l.stream == "stderr" {
                " (stderr)"
            } else {
                ""
            };
            println!("{}/{}{stream} {}", l.function, l.instance, l.text);
        }
        Err(_) => {
            if let Ok(Some(missed)) =
                serde_json::from_slice::<serde_json::Value>(line).map(|v| v["missed"].as_u64())
            {
                eprintln!("({missed} lines missed: this terminal fell behind)");
            }
        }
    }
}
