//! A running sluice: the broker (embedded or external), declared topics, the admin listener
//! and the background work, all owned here and stopped together.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    admin::{self, AdminState, BrokerStatus, Status, TopicStatus, TriggerStatus},
    broker::{BrokerError, EmbeddedBroker},
    config::{self, Config, DeadLetter, Function, InitialOffset, Target},
    deliver::pipeline::{DeadLetterSink, Pipeline, TriggerMetrics},
    event::EventSettings,
    function::{Destination, Functions},
    kafka::{ClientError, Kafka, OffsetsReader, TopicSpec},
    metrics::{LagLabels, Metrics, PartitionLabels, TopicLabels},
    trigger::{Trigger, TriggerProbe},
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
    /// A trigger cannot run as configured.
    #[error("trigger {trigger}: {reason}")]
    Trigger {
        /// The trigger's name.
        trigger: String,
        /// Why.
        reason: String,
    },
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
    /// Run the configured triggers.
    pub triggers: bool,
    /// How long in-flight deliveries may take to finish on shutdown.
    pub grace: Duration,
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
    functions: Option<Arc<Functions>>,
}

/// Turns the config's declared topics into what the Kafka client creates.
pub fn topic_specs(config: &Config) -> Vec<TopicSpec> {
    config
        .topics
        .iter()
        .map(|t| topic_spec(config, t))
        .collect()
}

/// One declared topic as the Kafka client creates it.
pub fn topic_spec(config: &Config, topic: &config::TopicConfig) -> TopicSpec {
    TopicSpec {
        name: topic.name.clone(),
        partitions: config.topic_partitions(topic),
        replication: i32::from(topic.replication_factor),
        config: topic.config.clone(),
    }
}

/// Dead-letter and reply topics the triggers write to, created like declared topics when
/// missing.
fn output_topics(config: &Config) -> Vec<TopicSpec> {
    let mut names: Vec<&str> = Vec::new();
    for trigger in &config.triggers {
        if let DeadLetter::Topic(topic) = &trigger.dead_letter {
            names.push(topic);
        }
        if let Some(reply) = &trigger.reply {
            names.push(&reply.topic);
        }
    }
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter(|name| !config.topics.iter().any(|t| t.name == *name))
        .map(|name| TopicSpec {
            name: name.to_owned(),
            partitions: config.embedded.default_partitions,
            replication: 1,
            config: Default::default(),
        })
        .collect()
}

/// Where a trigger delivers to.
fn trigger_destination(
    config: &Config,
    trigger: &config::Trigger,
    functions: &Functions,
) -> Result<Destination, AppError> {
    let fail = |reason: String| AppError::Trigger {
        trigger: trigger.name.clone(),
        reason,
    };
    let url = match &trigger.target {
        Target::Url(url) => url.clone(),
        Target::Function(name) => match config.functions.get(name) {
            Some(Function::Url(function)) => function.url.clone(),
            Some(Function::Job(_)) => {
                return Err(fail(format!(
                    "function {name} is a job function, which reads its topics itself"
                )));
            }
            Some(_) => {
                return functions
                    .destination(name)
                    .ok_or_else(|| fail(format!("function {name} is not running")));
            }
            None => return Err(fail(format!("function {name} is not defined"))),
        },
    };
    url.as_str()
        .parse()
        .map(Destination::Url)
        .map_err(|err| fail(format!("URL {url}: {err}")))
}

/// What the status poller needs to know of a running trigger.
#[derive(Debug, Clone)]
struct TriggerView {
    name: String,
    topics: Vec<String>,
    target: String,
    group: String,
    initial_offset: InitialOffset,
    metrics: TriggerMetrics,
    probe: TriggerProbe,
    offsets: OffsetsReader,
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
        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut views = Vec::new();
        let functions = if options.triggers {
            Some(Arc::new(Functions::start(
                config,
                &kafka,
                &metrics,
                options.grace,
            )?))
        } else {
            None
        };
        if let Some(functions) = functions.as_ref().filter(|_| !config.triggers.is_empty()) {
            kafka.ensure_topics(&output_topics(config)).await?;
            let producer: rdkafka::producer::FutureProducer =
                kafka.create(&[("linger.ms", "5")])?;
            for trigger in &config.triggers {
                let target = trigger_destination(config, trigger, functions)?;
                let dead_letter =
                    DeadLetterSink::from_config(&trigger.dead_letter).map_err(|reason| {
                        AppError::Trigger {
                            trigger: trigger.name.clone(),
                            reason,
                        }
                    })?;
                let trigger_metrics = TriggerMetrics::new(&metrics, &trigger.name);
                let pipeline = Arc::new(Pipeline::new(
                    trigger.name.clone(),
                    target.clone(),
                    trigger.delivery.clone(),
                    dead_letter,
                    trigger.reply.as_ref().map(|r| r.topic.clone()),
                    EventSettings {
                        trigger: trigger.name.clone(),
                        source: trigger.source.clone(),
                        event_type: trigger.event_type.clone(),
                        content_type: trigger.content_type.clone(),
                    },
                    producer.clone(),
                    trigger_metrics.clone(),
                ));
                let group = trigger.effective_group();
                let running = Trigger::start(
                    &kafka,
                    &trigger.name,
                    &trigger.topics,
                    &group,
                    trigger.initial_offset,
                    trigger.ordering,
                    trigger.max_in_flight,
                    pipeline,
                )?;
                views.push(TriggerView {
                    name: trigger.name.clone(),
                    topics: trigger.topics.clone(),
                    target: target.to_string(),
                    group: group.clone(),
                    initial_offset: trigger.initial_offset,
                    metrics: trigger_metrics,
                    probe: running.probe(),
                    offsets: kafka.offsets_reader(&group)?,
                });
                info!(trigger = %trigger.name, topics = ?trigger.topics, target = %target, group = %group, "Trigger started.");
                let (cancel, grace) = (cancel.clone(), options.grace);
                let _ = tasks.spawn(running.run(cancel, grace));
            }
        }
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
                    storage: broker.as_ref().map(|b| b.storage().to_string()),
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

        let watched = watched_topics(config);
        refresh_status(&kafka, &watched, &views, functions.as_deref(), &state).await;
        {
            let (kafka, state, cancel) = (kafka.clone(), state.clone(), cancel.clone());
            let functions = functions.clone();
            let _ = tasks.spawn(async move {
                let mut tick = tokio::time::interval(STATUS_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => break,
                        _ = tick.tick() => {
                            refresh_status(&kafka, &watched, &views, functions.as_deref(), &state)
                                .await;
                        }
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
            functions,
        })
    }

    /// The functions sluice runs, when triggers run.
    pub fn functions(&self) -> Option<&Functions> {
        self.functions.as_deref()
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

    /// Resolves if the embedded broker stops by itself, with the reason; never resolves
    /// otherwise. From then on `/readyz` answers 503 with that reason, and the caller stops
    /// sluice with a non-zero exit, for a supervisor to start it again: the broker's state
    /// after a panic cannot be trusted, while everything it acknowledged is stored.
    pub async fn failed(&mut self) -> String {
        let Some(broker) = self.broker.as_mut() else {
            return std::future::pending().await;
        };
        let reason = broker.stopped().await.to_string();
        error!(error = %reason, "The embedded broker stopped; sluice stops too.");
        self.state.update_status(|status| {
            status.broker.reachable = false;
            status.broker.error = Some(reason.clone());
        });
        self.state.set_not_ready(reason.clone());
        reason
    }

    /// Stops everything, waiting at most `grace` for background work to finish.
    pub async fn shutdown(mut self, grace: Duration) {
        self.state.set_ready(false);
        self.cancel.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        // Triggers drain within the grace themselves; the margin covers their final commit.
        if tokio::time::timeout(grace + Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            warn!(
                grace = ?grace,
                "Background work did not stop within the grace period; aborting it."
            );
            self.tasks.abort_all();
        }
        // Instances stop after the triggers, which may still have had events for them.
        if let Some(functions) = self.functions.take() {
            functions.shutdown().await;
        }
        if let Some(broker) = self.broker.take() {
            broker.shutdown().await;
        }
        info!("sluice stopped.");
    }
}

/// Reads watermarks of the watched topics and the triggers' committed offsets into the
/// status report and the metrics.
async fn refresh_status(
    kafka: &Kafka,
    watched: &[String],
    triggers: &[TriggerView],
    functions: Option<&Functions>,
    state: &AdminState,
) {
    let metrics = state.metrics();
    if let Some(functions) = functions {
        let status = functions.status();
        state.update_status(|s| s.functions = status);
    }
    match kafka.describe_topics(watched).await {
        Ok(topics) => {
            let mut trigger_status = Vec::with_capacity(triggers.len());
            for view in triggers {
                let partitions: Vec<(String, i32)> = topics
                    .iter()
                    .filter(|t| view.topics.contains(&t.name))
                    .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition)))
                    .collect();
                let committed = view.offsets.committed(partitions).await.unwrap_or_default();
                let mut lag = 0;
                for topic in topics.iter().filter(|t| view.topics.contains(&t.name)) {
                    for p in &topic.partitions {
                        let behind = match committed.get(&(topic.name.clone(), p.partition)) {
                            Some(&offset) => p.high - offset.max(p.low),
                            // Nothing committed yet: a trigger reading from the end has
                            // nothing to catch up on.
                            None if view.initial_offset == InitialOffset::Latest => 0,
                            None => p.high - p.low,
                        }
                        .max(0);
                        lag += behind;
                        let _ = metrics
                            .consumer_lag
                            .get_or_create(&LagLabels {
                                trigger: view.name.clone(),
                                topic: topic.name.clone(),
                                partition: p.partition,
                            })
                            .set(behind);
                    }
                }
                let counts = view.probe.counts();
                let (delivered, dead_lettered, dropped, retrying) = view.metrics.counts();
                trigger_status.push(TriggerStatus {
                    name: view.name.clone(),
                    topics: view.topics.clone(),
                    target: view.target.clone(),
                    group: view.group.clone(),
                    lag,
                    in_flight: counts.in_flight,
                    waiting: counts.waiting,
                    delivered,
                    retrying,
                    dead_lettered,
                    dropped,
                });
            }
            state.update_status(|status| status.triggers = trigger_status);
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
