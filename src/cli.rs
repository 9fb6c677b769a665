//! The command line: argument definitions and one function per subcommand.

mod api;
mod connector;
pub(crate) mod consume;
mod dlq;
mod filter;
mod logs;
mod produce;
mod reload;
mod status;
mod topics;
mod triggers;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing::{info, warn};

use crate::{
    admin::{ReloadCause, ReloadOutcome, ReloadReport},
    app::{AppError, Event, RunOptions, Running},
    config::{self, Config, ConfigError, Storage},
    kafka::{ClientError, Kafka},
    shutdown,
};

/// Exit code for a bad configuration or bad usage (`EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;

/// The config file read when `-c` is not given, if it exists.
pub const DEFAULT_CONFIG: &str = "sluice.yaml";

/// sluice connects Kafka topics to functions.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
pub struct Cli {
    /// Config file (default: ./sluice.yaml when it exists, else built-in defaults).
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers (default: the config's broker, or 127.0.0.1:9092).
    #[arg(
        short = 'b',
        long = "bootstrap-server",
        global = true,
        value_name = "HOST:PORT"
    )]
    pub bootstrap: Option<String>,
    /// More log output (-v debug, -vv trace).
    #[arg(short = 'v', long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run sluice: the broker (embedded unless configured), topics and the admin endpoints.
    Up(UpArgs),
    /// Run only the embedded broker (and create the declared topics).
    Broker(BrokerArgs),
    /// Check a config file and list every problem in it.
    Validate,
    /// Produce records: stdin lines by default, or generated ones with --count.
    Produce(produce::ProduceArgs),
    /// Consume records and print them.
    Consume(consume::ConsumeArgs),
    /// List, create and describe topics.
    Topics {
        /// What to do with topics.
        #[command(subcommand)]
        command: topics::TopicsCommand,
    },
    /// Show a running sluice's status.
    Status(status::StatusArgs),
    /// Act on a running sluice's triggers.
    Triggers {
        /// What to do.
        #[command(subcommand)]
        command: triggers::TriggersCommand,
    },
    /// Try a filter expression.
    Filter {
        /// What to do.
        #[command(subcommand)]
        command: filter::FilterCommand,
    },
    /// Make a running sluice read its config file again and apply it.
    Reload(reload::ReloadArgs),
    /// A trigger's dead letters: list them, or redrive them to their source topic.
    Dlq {
        /// What to do.
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Print the function instances' output lines from a running sluice, like `stern`.
    Logs(logs::LogsArgs),
    /// Run as a drop-in for another system's Kafka connector, configured as that one is.
    Connector {
        /// Which connector.
        #[command(subcommand)]
        command: connector::ConnectorCommand,
    },
}

/// Overrides of the embedded broker's settings.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// Address the embedded broker listens on.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Storage of the embedded broker: sqlite, memory or a postgres:// URL.
    #[arg(long, value_name = "STORAGE", value_parser = parse_storage)]
    pub storage: Option<Storage>,
    /// Directory for durable state.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// How long a graceful stop may take before it is forced.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub grace: Duration,
}

/// Arguments of `sluice up`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Embedded broker overrides.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Address of the admin endpoints.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Address of the public listener (ingress, streams, static files).
    #[arg(long, value_name = "ADDR")]
    pub public_listen: Option<SocketAddr>,
    /// Reload whenever the config file changes (checked every second).
    #[arg(long)]
    pub watch: bool,
}

/// Why a command failed. Each maps to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The config file is missing or wrong.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// sluice could not start or stopped by itself.
    #[error(transparent)]
    App(#[from] AppError),
    /// Kafka refused or did not answer.
    #[error(transparent)]
    Kafka(#[from] ClientError),
    /// Arguments that parse but make no sense together.
    #[error("{0}")]
    Usage(String),
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) | Self::Usage(_) => EXIT_CONFIG,
            _ => 1,
        }
    }
}

/// Parses a duration such as `30s` or `200ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|err| format!("invalid duration {text:?}: {err}"))
}

/// Parses `--storage`.
fn parse_storage(text: &str) -> Result<Storage, String> {
    text.parse()
}

/// Parses `name=value`.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected name=value, got {text:?}")),
    }
}

/// Reads the config: `-c FILE`, else `./sluice.yaml` when present, else the defaults.
pub fn load_config(path: Option<&Path>) -> Result<Config, ConfigError> {
    match path {
        Some(path) => config::load(path),
        None if Path::new(DEFAULT_CONFIG).exists() => config::load(Path::new(DEFAULT_CONFIG)),
        None => Ok(Config::default()),
    }
}

impl Cli {
    /// The Kafka client for client commands: `-b`, else the config's servers, else the
    /// embedded broker's address.
    fn kafka(&self, config: &Config) -> Kafka {
        let bootstrap = self
            .bootstrap
            .clone()
            .or_else(|| config.kafka.bootstrap_servers.clone())
            .unwrap_or_else(|| {
                let listen = config.embedded.listen;
                if listen.ip().is_unspecified() {
                    format!("127.0.0.1:{}", listen.port())
                } else {
                    listen.to_string()
                }
            });
        Kafka::new(bootstrap, config.kafka.client.clone())
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let config = match &cli.command {
        Command::Validate => {
            let path = cli
                .config
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
            let config = config::load(&path)?;
            println!(
                "{}: valid ({} topics, {} functions, {} triggers)",
                path.display(),
                config.topics.len(),
                config.functions.len(),
                config.triggers.len()
            );
            return Ok(());
        }
        // Needs no config: it tries an expression on its own.
        Command::Filter { command } => {
            println!("{}", filter::run(command)?);
            return Ok(());
        }
        // With its address given, the running sluice is asked whatever the file here says:
        // the answer lists the problems of the file it reads.
        Command::Reload(reload::ReloadArgs { admin: Some(addr) }) => {
            return reload::run(*addr, api::token(None)).await;
        }
        // Configured by its environment, as the connector it replaces.
        Command::Connector { command } => return connector::run(command).await,
        _ => load_config(cli.config.as_deref())?,
    };
    match &cli.command {
        Command::Validate => Ok(()),
        Command::Up(args) => {
            let overrides = |config: Config| {
                let mut config = apply_broker_args(config, &args.broker);
                if let Some(addr) = args.admin_listen {
                    config.admin.listen = addr;
                }
                if let Some(addr) = args.public_listen
                    && config.edge().is_some()
                {
                    config.ingress.get_or_insert_with(Default::default).listen = addr;
                }
                if let Some(bootstrap) = &cli.bootstrap {
                    config.kafka.bootstrap_servers = Some(bootstrap.clone());
                }
                config
            };
            let config = overrides(config);
            let options = RunOptions {
                admin: true,
                triggers: true,
                grace: args.broker.grace,
            };
            let reread = || Ok(overrides(load_config(cli.config.as_deref())?));
            let watch = if args.watch {
                Some(
                    cli.config
                        .clone()
                        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)),
                )
            } else {
                None
            };
            let reload = Reload {
                reread: &reread,
                watch: watch.as_deref(),
            };
            serve(&config, options, args.broker.grace, Some(reload)).await
        }
        Command::Broker(args) => {
            let mut config = apply_broker_args(config, args);
            // `sluice broker` always runs the embedded broker, whatever the file points at.
            config.kafka.bootstrap_servers = None;
            config.triggers.clear();
            let options = RunOptions {
                admin: false,
                triggers: false,
                grace: args.grace,
            };
            serve(&config, options, args.grace, None).await
        }
        Command::Produce(args) => produce::run(&cli.kafka(&config), args).await,
        Command::Consume(args) => consume::run(&cli.kafka(&config), args).await,
        Command::Topics { command } => topics::run(&cli.kafka(&config), &config, command).await,
        Command::Status(args) => status::run(&config, args).await,
        Command::Triggers { command } => triggers::run(&config, command).await,
        Command::Reload(args) => {
            reload::run(
                args.admin.unwrap_or(config.admin.listen),
                api::token(Some(&config)),
            )
            .await
        }
        Command::Dlq { command } => dlq::run(&cli.kafka(&config), &config, command).await,
        Command::Logs(args) => logs::run(&config, args).await,
        Command::Filter { .. } | Command::Connector { .. } => Ok(()),
    }
}

fn apply_broker_args(mut config: Config, args: &BrokerArgs) -> Config {
    if let Some(listen) = args.listen {
        config.embedded.listen = listen;
    }
    if let Some(storage) = &args.storage {
        config.embedded.storage = storage.clone();
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    config
}

/// Reads the config again for a reload.
type Reread<'a> = &'a dyn Fn() -> Result<Config, ConfigError>;

/// How a running sluice gets a new config.
#[derive(Clone, Copy)]
struct Reload<'a> {
    /// Reads the file again, with the command line's overrides.
    reread: Reread<'a>,
    /// The file to watch for changes, with `--watch`.
    watch: Option<&'a Path>,
}

/// How often `--watch` looks at the config file.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Runs until SIGINT/SIGTERM, then stops within `grace`. A reload (SIGHUP, `POST
/// /api/reload`, or a change to the file under `--watch`) reads the config again and applies
/// it ([`Running::reload`]); a config with errors changes nothing.
async fn serve(
    config: &Config,
    options: RunOptions,
    grace: Duration,
    reload: Option<Reload<'_>>,
) -> Result<(), CliError> {
    // Caught before anything starts, so a signal during start-up still stops every child
    // process cleanly once start-up is over.
    let mut signals = shutdown::Signals::new()
        .map_err(|err| CliError::Failed(format!("cannot watch signals: {err}")))?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|err| CliError::Failed(format!("cannot watch signals: {err}")))?;
    let watched = reload.and_then(|r| r.watch);
    let mut last_text = match watched {
        Some(path) => tokio::fs::read(path).await.ok(),
        None => None,
    };
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running = Running::start(config, options).await?;
    if let Some(path) = watched {
        info!(file = %path.display(), "Watching the config file for changes.");
    }
    let outcome = loop {
        tokio::select! {
            signal = signals.recv() => {
                info!(signal, grace = ?grace, "Shutting down.");
                break Ok(());
            }
            event = running.next() => match event {
                Event::Failed(reason) => break Err(CliError::Failed(reason)),
                Event::Reload(ask) => {
                    let report = apply(&mut running, reload, ReloadCause::Api).await;
                    let _ = ask.send(report);
                }
                Event::Discovered => match running.apply_discovered().await {
                    Ok(changes) => info!(
                        started = ?changes.started,
                        restarted = ?changes.restarted,
                        stopped = ?changes.stopped,
                        failed = ?changes.failed,
                        "Discovered functions applied."
                    ),
                    Err(err) => warn!(error = %err, "Discovered functions could not be applied in full."),
                },
            },
            _ = hangup.recv() => {
                let _ = apply(&mut running, reload, ReloadCause::Signal).await;
            }
            _ = tick.tick(), if watched.is_some() => {
                let Some(path) = watched else { continue };
                let text = tokio::fs::read(path).await.ok();
                // A file that cannot be read right now (an editor replacing it) is looked
                // at again on the next tick.
                if text.is_some() && text != last_text {
                    last_text = text;
                    info!(file = %path.display(), "The config file changed.");
                    let _ = apply(&mut running, reload, ReloadCause::Watch).await;
                }
            }
        }
    };
    shutdown::force_exit_on_next_signal();
    running.shutdown(grace).await;
    outcome
}

/// Applies the config as it reads now, or keeps the running one when it has errors; the
/// report is logged, counted and kept for `/api/status`.
async fn apply(
    running: &mut Running,
    reload: Option<Reload<'_>>,
    cause: ReloadCause,
) -> ReloadReport {
    let mut report = ReloadReport {
        at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        cause,
        outcome: ReloadOutcome::Refused,
        changes: None,
        problems: Vec::new(),
        error: None,
    };
    let Some(reload) = reload else {
        info!("Nothing to reload here.");
        report.error = Some("this sluice has no config file to reload".to_owned());
        return report;
    };
    match (reload.reread)() {
        Err(err) => {
            warn!(problems = %err, "Reload refused: the config has errors; the running config is kept.");
            report.problems = err.lines();
        }
        Ok(config) => match running.reload(config).await {
            Ok(changes) => {
                info!(
                    started = ?changes.started,
                    restarted = ?changes.restarted,
                    stopped = ?changes.stopped,
                    unchanged = ?changes.unchanged,
                    functions = ?changes.functions,
                    failed = ?changes.failed,
                    restart_needed = ?changes.restart_needed,
                    "Reloaded."
                );
                report.outcome = ReloadOutcome::Applied;
                report.changes = Some(changes);
            }
            Err(err) => {
                warn!(error = %err, "Reload failed part way.");
                report.outcome = ReloadOutcome::Failed;
                report.error = Some(err.to_string());
            }
        },
    }
    running.state().record_reload(&report);
    report
}
