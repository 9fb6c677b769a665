//! `sluice status`: reads a running sluice's `/api/status` and prints it as tables.

use std::{net::SocketAddr, time::Duration};

use clap::Args;
use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

use super::CliError;
use crate::{admin::Status, config::Config};

/// How long the admin endpoint may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Arguments of `sluice status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Admin address of the running sluice (default: the config's `admin.listen`).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<SocketAddr>,
    /// Print the raw JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Redraw every INTERVAL (default 2s) in place, like `watch`, until interrupted.
    #[arg(
        long,
        value_name = "INTERVAL",
        num_args = 0..=1,
        default_missing_value = "2s",
        value_parser = super::parse_duration
    )]
    pub watch: Option<Duration>,
}

/// Runs `sluice status`.
pub async fn run(config: &Config, args: &StatusArgs) -> Result<(), CliError> {
    let addr = args.admin.unwrap_or(config.admin.listen);
    let Some(interval) = args.watch else {
        print!("{}", once(addr, args.json).await?);
        return Ok(());
    };
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
    loop {
        let _ = tick.tick().await;
        // A sluice that is away for a moment is shown as such, and watched on.
        let screen = match once(addr, args.json).await {
            Ok(screen) => screen,
            Err(err) => format!("{err}\n"),
        };
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        // Home, clear the screen, then the tables: redrawn in place.
        print!(
            "\x1b[H\x1b[2Jevery {}: sluice status at {addr}, {now}\n\n{screen}",
            humantime::format_duration(interval)
        );
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }
}

/// The status as it is printed: tables, or the JSON.
async fn once(addr: SocketAddr, json: bool) -> Result<String, CliError> {
    let body = fetch(addr).await?;
    if json {
        return Ok(format!("{}\n", String::from_utf8_lossy(&body)));
    }
    let status: Status = serde_json::from_slice(&body).map_err(|err| {
        CliError::Failed(format!(
            "unexpected answer from http://{addr}/api/status: {err}"
        ))
    })?;
    Ok(render(&status))
}

async fn fetch(addr: SocketAddr) -> Result<bytes::Bytes, CliError> {
    let url = format!("http://{addr}/api/status");
    let unreachable = |err: &dyn std::fmt::Display| {
        CliError::Failed(format!("cannot reach sluice at {url}: {err}"))
    };
    let uri: hyper::Uri = url.parse().map_err(|err| unreachable(&err))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let response = tokio::time::timeout(TIMEOUT, client.get(uri))
        .await
        .map_err(|_| unreachable(&"no answer within 5s"))?
        .map_err(|err| unreachable(&err))?;
    if !response.status().is_success() {
        return Err(unreachable(&format!("HTTP {}", response.status())));
    }
    Ok(response
        .into_body()
        .collect()
        .await
        .map_err(|err| unreachable(&err))?
        .to_bytes())
}

/// Formats rows as left-aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn render(status: &Status) -> String {
    let broker = &status.broker;
    let mut out = format!(
        "sluice {}, up {}\n",
        status.version,
        humantime::format_duration(Duration::from_secs(status.uptime_seconds))
    );
    let storage = match (&broker.storage, &broker.database) {
        (Some(storage), Some(db)) => format!(" ({storage}, {db})"),
        (Some(storage), None) => format!(" ({storage})"),
        _ => String::new(),
    };
    let health = match (&broker.reachable, &broker.error) {
        (true, _) => match broker.disk.as_ref().filter(|d| d.full) {
            Some(disk) => format!(
                "reachable, DISK FULL: {} bytes free of {}",
                disk.free_bytes, disk.total_bytes
            ),
            None => "reachable".to_owned(),
        },
        (false, Some(err)) => format!("UNREACHABLE: {err}"),
        (false, None) => "UNREACHABLE".to_owned(),
    };
    out.push_str(&format!(
        "broker: {} at {}{storage}, {health}\n\n",
        broker.mode, broker.bootstrap
    ));
    let rows: Vec<Vec<String>> = status
        .topics
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                if t.partitions == 0 {
                    "missing".to_owned()
                } else {
                    t.partitions.to_string()
                },
                t.records.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(&["TOPIC", "PARTITIONS", "RECORDS"], &rows));
    if !status.triggers.is_empty() {
        let rows: Vec<Vec<String>> = status
            .triggers
            .iter()
            .map(|t| {
                vec![
                    t.name.clone(),
                    t.topics.join(","),
                    t.lag.to_string(),
                    t.in_flight.to_string(),
                    t.delivered.to_string(),
                    t.retrying.to_string(),
                    t.dead_lettered.to_string(),
                    t.dropped.to_string(),
                    t.filtered.to_string(),
                    t.target.clone(),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &[
                "TRIGGER",
                "TOPICS",
                "LAG",
                "IN FLIGHT",
                "DELIVERED",
                "RETRYING",
                "DEAD-LETTERED",
                "DROPPED",
                "FILTERED",
                "TARGET",
            ],
            &rows,
        ));
    }
    if !status.functions.is_empty() {
        let rows: Vec<Vec<String>> = status
            .functions
            .iter()
            .map(|f| {
                vec![
                    f.name.clone(),
                    f.kind.clone(),
                    f.instances.to_string(),
                    f.starting.to_string(),
                    f.in_flight.to_string(),
                    f.waiting.to_string(),
                    f.cold_starts.to_string(),
                    f.lag.map_or_else(|| "-".to_owned(), |lag| lag.to_string()),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&table(
            &[
                "FUNCTION",
                "KIND",
                "INSTANCES",
                "STARTING",
                "IN FLIGHT",
                "WAITING",
                "STARTS",
                "LAG",
            ],
            &rows,
        ));
        for f in status.functions.iter() {
            if let Some(error) = &f.error {
                out.push_str(&format!("function {} CANNOT START: {error}\n", f.name));
            }
        }
    }
    if let Some(edge) = &status.edge {
        out.push_str(&format!("\npublic listener: http://{}\n", edge.listen));
        if !edge.ingress.is_empty() {
            let rows: Vec<Vec<String>> = edge
                .ingress
                .iter()
                .map(|i| {
                    vec![
                        i.topic.clone(),
                        if i.tokens { "yes" } else { "no" }.to_owned(),
                        i.stored.to_string(),
                        i.refused.to_string(),
                        i.unavailable.to_string(),
                    ]
                })
                .collect();
            out.push_str(&table(
                &[
                    "INGRESS TOPIC",
                    "TOKENS",
                    "STORED",
                    "REFUSED",
                    "UNAVAILABLE",
                ],
                &rows,
            ));
        }
        if !edge.streams.is_empty() {
            let rows: Vec<Vec<String>> = edge
                .streams
                .iter()
                .map(|s| {
                    vec![
                        s.path.clone(),
                        s.topic.clone(),
                        if s.publish { "yes" } else { "no" }.to_owned(),
                        s.clients.to_string(),
                        s.messages_out.to_string(),
                        s.messages_in.to_string(),
                        s.dropped_slow.to_string(),
                        s.resumed.to_string(),
                        s.not_recovered.to_string(),
                    ]
                })
                .collect();
            out.push_str(&table(
                &[
                    "STREAM",
                    "TOPIC",
                    "PUBLISH",
                    "CLIENTS",
                    "SENT",
                    "PUBLISHED",
                    "DROPPED SLOW",
                    "RESUMED",
                    "NOT RECOVERED",
                ],
                &rows,
            ));
        }
    }
    if let Some(discovery) = &status.discovery {
        let state = match (&discovery.error, &discovery.last_read) {
            (Some(err), Some(at)) => format!("READ FAILED, keeping the map of {at}: {err}"),
            (Some(err), None) => format!("NOT READ YET: {err}"),
            (None, Some(at)) => format!("read at {at}"),
            (None, None) => "not read yet".to_owned(),
        };
        out.push_str(&format!(
            "\ndiscovery: OpenFaaS gateway {}, {state}; functions: {}\n",
            discovery.gateway,
            if discovery.functions.is_empty() {
                "none".to_owned()
            } else {
                discovery.functions.join(", ")
            }
        ));
    }
    if let Some(reload) = &status.reload {
        out.push_str(&format!(
            "\nlast reload: {} ({:?}) at {}",
            reload.outcome.as_str(),
            reload.cause,
            reload.at
        ));
        if !reload.problems.is_empty() {
            out.push_str(&format!(": {}", reload.problems.join("; ")));
        }
        if let Some(error) = &reload.error {
            out.push_str(&format!(": {error}"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{BrokerStatus, TopicStatus};

    #[test]
    fn renders_broker_and_topics() {
        let status = Status {
            version: "1.2.3".into(),
            uptime_seconds: 61,
            at_ms: None,
            broker: BrokerStatus {
                mode: "embedded".into(),
                bootstrap: "127.0.0.1:9092".into(),
                storage: Some("sqlite".into()),
                database: Some(".sluice/broker.db".into()),
                reachable: true,
                error: None,
                disk: None,
            },
            topics: vec![
                TopicStatus {
                    name: "orders".into(),
                    partitions: 4,
                    records: 12,
                    high: 12,
                },
                TopicStatus {
                    name: "a-much-longer-name".into(),
                    partitions: 0,
                    records: 0,
                    high: 0,
                },
            ],
            triggers: vec![],
            functions: vec![],
            reload: None,
            discovery: None,
            edge: None,
        };
        let text = render(&status);
        assert_eq!(
            text,
            "sluice 1.2.3, up 1m 1s\n\
             broker: embedded at 127.0.0.1:9092 (sqlite, .sluice/broker.db), reachable\n\n\
             TOPIC               PARTITIONS  RECORDS\n\
             orders              4           12\n\
             a-much-longer-name  missing     0\n"
        );
    }

    #[test]
    fn renders_triggers() {
        let status = Status {
            triggers: vec![crate::admin::TriggerStatus {
                name: "hello-orders".into(),
                topics: vec!["orders".into()],
                target: "http://127.0.0.1:8081/".into(),
                group: "sluice-hello-orders".into(),
                lag: 5,
                in_flight: 2,
                waiting: 3,
                delivered: 100,
                retrying: 1,
                dead_lettered: 4,
                dropped: 0,
                filtered: 7,
                ..Default::default()
            }],
            ..Status::default()
        };
        let text = render(&status);
        let row = text.lines().last().unwrap();
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            [
                "hello-orders",
                "orders",
                "5",
                "2",
                "100",
                "1",
                "4",
                "0",
                "7",
                "http://127.0.0.1:8081/"
            ]
        );
    }

    #[test]
    fn renders_functions() {
        let status = Status {
            functions: vec![
                crate::function::FunctionStatus {
                    name: "audit".into(),
                    kind: "command".into(),
                    instances: 2,
                    starting: 1,
                    in_flight: 9,
                    waiting: 3,
                    cold_starts: 4,
                    lag: None,
                    ..Default::default()
                },
                crate::function::FunctionStatus {
                    name: "payments".into(),
                    kind: "job".into(),
                    instances: 3,
                    cold_starts: 5,
                    lag: Some(120),
                    ..Default::default()
                },
            ],
            ..Status::default()
        };
        let text = render(&status);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .rev()
            .take(2)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[1], ["audit", "command", "2", "1", "9", "3", "4", "-"]);
        assert_eq!(rows[0], ["payments", "job", "3", "0", "0", "0", "5", "120"]);
        assert!(text.contains("FUNCTION"), "{text}");
    }
}
