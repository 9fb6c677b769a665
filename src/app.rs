//! A running sluice: the broker (embedded or external), declared topics, the admin listener
//! and the background work, all owned here and stopped together.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    admin::{self, AdminState, BrokerStatus, Status, TopicStatus},
    broker::{BrokerError, EmbeddedBroker},
    config::{Config, Storage},
    kafka::{ClientError, Kafka, TopicSpec},
    metrics::{Metrics, PartitionLabels, TopicLabels},
};

/// How often topic watermarks are read for `/metrics` and `/api/status`.
const STATUS_INTERVAL: Duration = Duration::from_secs(2);

/// Why sluice could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The embedded broker did not start.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// Kafka refused or did not answer.
    #[error(transparent)]
    Kafka(#[from] ClientError),
    /// The admin listener could not be bound.
    #[error("cannot listen on {addr} for the admin endpoints: {source}")]
    AdminListen {
        /// The address from `admin.listen`.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// What to run besides the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Serve the admin endpoints.
    pub admin: bool,
}

/// sluice, started.
#[derive(Debug)]
pub struct Running {
    kafka: Kafka,
    broker: Option<EmbeddedBroker>,
    admin_addr: Option<SocketAddr>,
    state: Arc<AdminState>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

/// Turns the config's declared topics into what the Kafka client creates.
pub fn topic_specs(config: &Config) -> Vec<TopicSpec> {
    config
        .topics
        .iter()
        .map(|t| TopicSpec {
            name: t.name.clone(),
            partitions: config.topic_partitions(t),
            replication: i32::from(t.replication_factor),
            config: t.config.clone(),
        })
        .collect()
}

/// The topics whose state is reported: declared ones, then those triggers read.
fn watched_topics(config: &Config) -> Vec<String> {
    let mut names: Vec<String> = config.topics.iter().map(|t| t.name.clone()).collect();
    for trigger in &config.triggers {
        for topic in &trigger.topics {
            if !names.contains(topic) {
                names.push(topic.clone());
            }
        }
    }
    names
}

impl Running {
    /// Starts everything the config describes and returns once it is ready.
    pub async fn start(config: &Config, options: RunOptions) -> Result<Self, AppError> {
        // Bound first so that a taken port fails before the broker starts.
        let admin_listener = if options.admin {
            let addr = config.admin.listen;
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| AppError::AdminListen { addr, source })?,
            )
        } else {
            None
        };

        let (broker, bootstrap) = match &config.kafka.bootstrap_servers {
            None => {
                let broker = EmbeddedBroker::start(&config.embedded, &config.data_dir).await?;
                let bootstrap = broker.bootstrap();
                (Some(broker), bootstrap)
            }
            Some(servers) => (None, servers.clone()),
        };
        let kafka = Kafka::new(bootstrap.clone(), config.kafka.client.clone());
        kafka.ping().await?;
        kafka.ensure_topics(&topic_specs(config)).await?;

        let metrics = Arc::new(Metrics::new());
        let state = Arc::new(AdminState::new(
            metrics,
            Status {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                broker: BrokerStatus {
                    mode: if broker.is_some() {
                        "embedded"
                    } else {
                        "external"
                    }
                    .to_owned(),
                    bootstrap: bootstrap.clone(),
                    storage: broker.as_ref().map(|b| {
                        match b.storage() {
                            Storage::Sqlite => "sqlite",
                            Storage::Memory => "memory",
                        }
                        .to_owned()
                    }),
                    database: broker
                        .as_ref()
                        .and_then(|b| b.database())
                        .map(|p| p.display().to_string()),
                    reachable: true,
                    error: None,
                },
                ..Status::default()
            },
        ));

        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let watched = watched_topics(config);
        refresh_status(&kafka, &watched, &state).await;
        {
            let (kafka, state, cancel) = (kafka.clone(), state.clone(), cancel.clone());
            let _ = tasks.spawn(async move {
                let mut tick = tokio::time::interval(STATUS_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => break,
                        _ = tick.tick() => refresh_status(&kafka, &watched, &state).await,
                    }
                }
            });
        }

        let mut admin_addr = None;
        if let Some(listener) = admin_listener {
            admin_addr = listener.local_addr().ok();
            let (state, cancel) = (state.clone(), cancel.clone());
            let _ = tasks.spawn(async move {
                if let Err(err) = admin::serve(listener, state, cancel).await {
                    warn!(error = %err, "Admin listener stopped.");
                }
            });
        }

        state.set_ready(true);
        info!(
            bootstrap = %bootstrap,
            admin = ?admin_addr.map(|a| format!("http://{a}")),
            topics = config.topics.len(),
            "sluice is up."
        );
        Ok(Self {
            kafka,
            broker,
            admin_addr,
            state,
            cancel,
            tasks,
        })
    }

    /// The bootstrap servers clients should use.
    pub fn bootstrap(&self) -> &str {
        self.kafka.bootstrap()
    }

    /// The admin listener's address, when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The shared admin state (status report, readiness, metrics).
    pub fn state(&self) -> &Arc<AdminState> {
        &self.state
    }

    /// Resolves if the embedded broker stops by itself; never resolves otherwise.
    pub async fn failed(&self) -> String {
        loop {
            if self
                .broker
                .as_ref()
                .is_some_and(EmbeddedBroker::is_finished)
            {
                return "the embedded broker stopped".to_owned();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops everything, waiting at most `grace` for background work to finish.
    pub async fn shutdown(mut self, grace: Duration) {
        self.state.set_ready(false);
        self.cancel.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            warn!(
                grace = ?grace,
                "Background work did not stop within the grace period; aborting it."
            );
            self.tasks.abort_all();
        }
        if let Some(broker) = self.broker.take() {
            broker.shutdown().await;
        }
        info!("sluice stopped.");
    }
}

/// Reads watermarks of the watched topics into the status report and the metrics.
async fn refresh_status(kafka: &Kafka, watched: &[String], state: &AdminState) {
    let metrics = state.metrics();
    match kafka.describe_topics(watched).await {
        Ok(topics) => {
            metrics.broker_up.set(1);
            for topic in &topics {
                let labels = TopicLabels {
                    topic: topic.name.clone(),
                };
                let _ = metrics
                    .topic_partitions
                    .get_or_create(&labels)
                    .set(topic.partitions.len() as i64);
                let _ = metrics
                    .topic_records
                    .get_or_create(&labels)
                    .set(topic.records());
                for p in &topic.partitions {
                    let labels = PartitionLabels {
                        topic: topic.name.clone(),
                        partition: p.partition,
                    };
                    let _ = metrics
                        .partition_high_watermark
                        .get_or_create(&labels)
                        .set(p.high);
                    let _ = metrics
                        .partition_low_watermark
                        .get_or_create(&labels)
                        .set(p.low);
                }
            }
            state.update_status(|status| {
                status.broker.reachable = true;
                status.broker.error = None;
                status.topics = watched
                    .iter()
                    .map(|name| match topics.iter().find(|t| &t.name == name) {
                        Some(t) => TopicStatus {
                            name: name.clone(),
                            partitions: t.partitions.len(),
                            records: t.records(),
                        },
                        None => TopicStatus {
                            name: name.clone(),
                            ..TopicStatus::default()
                        },
                    })
                    .collect();
            });
        }
        Err(err) => {
            metrics.broker_up.set(0);
            warn!(error = %err, "Cannot read topic state from the broker.");
            state.update_status(|status| {
                status.broker.reachable = false;
                status.broker.error = Some(err.to_string());
            });
        }
    }
}
