//! A running sluice: the broker (embedded or external), declared topics, the admin listener
//! and the background work, all owned here and stopped together.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use rdkafka::producer::FutureProducer;
use tokio::{
    net::TcpListener,
    sync::watch,
    task::{JoinHandle, JoinSet},
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

mod status;

use crate::{
    admin::{self, AdminState, BrokerStatus, Status},
    broker::{BrokerError, EmbeddedBroker},
    config::{self, Config, DeadLetter},
    function::Functions,
    kafka::{ClientError, Kafka, TopicSpec},
    metrics::Metrics,
    trigger::{self, Trigger, TriggerProbe},
};
use status::TriggerView;

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
    #[error("trigger {trigger}: {source}")]
    Trigger {
        /// The trigger's name.
        trigger: String,
        /// Why.
        source: Box<trigger::BuildError>,
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
pub struct Running {
    kafka: Kafka,
    broker: Option<EmbeddedBroker>,
    admin_addr: Option<SocketAddr>,
    state: Arc<AdminState>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    /// The running triggers, by name.
    triggers: BTreeMap<String, RunningTrigger>,
    /// What the status poller reports of the triggers.
    views: watch::Sender<Vec<TriggerView>>,
    functions: Option<Arc<Functions>>,
    /// The producer of the triggers' dead letters and replies, when triggers run.
    producer: Option<FutureProducer>,
    /// The config that runs now.
    config: Config,
    grace: Duration,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("bootstrap", &self.kafka.bootstrap())
            .field("admin_addr", &self.admin_addr)
            .field("triggers", &self.triggers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What a reload did, trigger by trigger.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Changes {
    /// Triggers that were not running before.
    pub started: Vec<String>,
    /// Triggers whose settings changed: drained, committed and started again on their group.
    pub restarted: Vec<String>,
    /// Triggers no longer in the config: drained, committed and stopped.
    pub stopped: Vec<String>,
    /// Triggers left running untouched.
    pub unchanged: Vec<String>,
    /// Triggers that could not start again, with the reason.
    pub failed: Vec<(String, String)>,
    /// Config sections that changed but take effect only after a restart.
    pub restart_needed: Vec<String>,
}

/// A trigger's run, with what it was built from and the token that stops it alone.
#[derive(Debug)]
struct RunningTrigger {
    spec: config::Trigger,
    stop: CancellationToken,
    handle: JoinHandle<()>,
    probe: TriggerProbe,
}

impl RunningTrigger {
    /// Runs `trigger`, built from `spec`, under its own token, a child of `cancel`: one
    /// trigger can be stopped alone.
    fn spawn(
        spec: &config::Trigger,
        trigger: Trigger,
        cancel: &CancellationToken,
        grace: Duration,
    ) -> Self {
        info!(trigger = %spec.name, topics = ?spec.topics, target = %trigger.probe().target(), group = %spec.effective_group(), "Trigger started.");
        let stop = cancel.child_token();
        let probe = trigger.probe();
        let handle = tokio::spawn(trigger.run(stop.clone(), grace));
        Self {
            spec: spec.clone(),
            stop,
            handle,
            probe,
        }
    }
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
        let mut triggers = BTreeMap::new();
        let mut producer = None;
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
            let made: FutureProducer = kafka.create(&[("linger.ms", "5")])?;
            let producer = &*producer.insert(made);
            let context = trigger::Context {
                kafka: &kafka,
                functions,
                producer,
                metrics: &metrics,
            };
            for spec in &config.triggers {
                let trigger =
                    Trigger::build(spec, &context).map_err(|source| AppError::Trigger {
                        trigger: spec.name.clone(),
                        source: Box::new(source),
                    })?;
                views.push(TriggerView::new(spec, trigger.probe(), &kafka)?);
                let running = RunningTrigger::spawn(spec, trigger, &cancel, options.grace);
                let _ = triggers.insert(spec.name.clone(), running);
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

        state.set_triggers(
            views
                .iter()
                .map(|v| (v.name().to_owned(), v.probe().clone()))
                .collect(),
        );
        let (views, watched_views) = watch::channel(views);
        let poller = status::Poller {
            kafka: kafka.clone(),
            declared: status::declared_topics(config),
            triggers: watched_views,
            functions: functions.clone(),
            state: state.clone(),
        };
        poller.refresh().await;
        let _ = tasks.spawn(poller.run(cancel.clone()));

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
            triggers,
            views,
            functions,
            producer,
            config: config.clone(),
            grace: options.grace,
        })
    }

    /// Applies a new config's triggers and declared topics to what runs: an unchanged
    /// trigger keeps running untouched; a changed one is drained, committed and started
    /// again on its group, so its offsets continue; a removed one is drained, committed and
    /// stopped; a new one starts. Changes to the broker, Kafka, admin or functions sections
    /// are only reported, in [`Changes::restart_needed`]: they need a restart.
    pub async fn reload(&mut self, config: Config) -> Result<Changes, AppError> {
        let mut changes = Changes::default();
        let old = &self.config;
        for (section, same) in [
            ("data_dir", old.data_dir == config.data_dir),
            ("kafka", old.kafka == config.kafka),
            ("embedded", old.embedded == config.embedded),
            ("admin", old.admin == config.admin),
            ("functions", old.functions == config.functions),
        ] {
            if !same {
                changes.restart_needed.push(section.to_owned());
            }
        }
        let Some(functions) = self.functions.clone() else {
            // Only the broker runs here: there are no triggers to change.
            return Ok(changes);
        };
        // Made by the first reload that brings triggers to a sluice that started without.
        let producer = match &self.producer {
            Some(producer) => producer.clone(),
            None => {
                let made: FutureProducer = self.kafka.create(&[("linger.ms", "5")])?;
                self.producer.insert(made).clone()
            }
        };
        self.kafka.ensure_topics(&topic_specs(&config)).await?;
        self.kafka.ensure_topics(&output_topics(&config)).await?;

        // Stopped first, so that a changed trigger's new consumer never shares its group
        // with the old one.
        let mut stopping = Vec::new();
        for (name, running) in &self.triggers {
            match config.triggers.iter().find(|t| &t.name == name) {
                Some(spec) if *spec == running.spec => changes.unchanged.push(name.clone()),
                Some(_) => changes.restarted.push(name.clone()),
                None => changes.stopped.push(name.clone()),
            }
        }
        for name in changes.restarted.iter().chain(&changes.stopped) {
            if let Some(running) = self.triggers.remove(name) {
                running.stop.cancel();
                stopping.push((name.clone(), running.handle));
            }
        }
        for (name, handle) in stopping {
            if let Err(err) = handle.await {
                warn!(trigger = %name, error = %err, "A stopped trigger's task failed.");
            }
            info!(trigger = %name, "Trigger drained and stopped.");
        }

        let context = trigger::Context {
            kafka: &self.kafka,
            functions: &functions,
            producer: &producer,
            metrics: self.state.metrics(),
        };
        for spec in &config.triggers {
            if self.triggers.contains_key(&spec.name) {
                continue;
            }
            if !changes.restarted.contains(&spec.name) {
                changes.started.push(spec.name.clone());
            }
            let trigger = match Trigger::build(spec, &context) {
                Ok(trigger) => trigger,
                Err(err) => {
                    warn!(trigger = %spec.name, error = %err, "Trigger cannot start.");
                    changes.failed.push((spec.name.clone(), err.to_string()));
                    continue;
                }
            };
            let running = RunningTrigger::spawn(spec, trigger, &self.cancel, self.grace);
            let _ = self.triggers.insert(spec.name.clone(), running);
        }

        let mut views = Vec::with_capacity(self.triggers.len());
        for running in self.triggers.values() {
            views.push(TriggerView::new(
                &running.spec,
                running.probe.clone(),
                &self.kafka,
            )?);
        }
        self.state.set_triggers(
            self.triggers
                .iter()
                .map(|(name, t)| (name.clone(), t.probe.clone()))
                .collect(),
        );
        let _ = self.views.send_replace(views);
        // The sections that need a restart keep their running values.
        let mut kept = config;
        kept.data_dir = self.config.data_dir.clone();
        kept.kafka = self.config.kafka.clone();
        kept.embedded = self.config.embedded.clone();
        kept.admin = self.config.admin.clone();
        kept.functions = self.config.functions.clone();
        self.config = kept;
        Ok(changes)
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
        let triggers = std::mem::take(&mut self.triggers);
        let mut handles: Vec<_> = triggers.into_values().map(|t| t.handle).collect();
        let drain = async {
            for handle in &mut handles {
                let _ = handle.await;
            }
            while self.tasks.join_next().await.is_some() {}
        };
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
            for handle in &handles {
                handle.abort();
            }
        }
        // The triggers are done with these clients; they go before the broker they talk to.
        drop(self.producer.take());
        drop(self.views.send_replace(Vec::new()));
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
