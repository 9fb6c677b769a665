//! A running sluice: the broker (embedded or external), declared topics, the admin listener
//! and the background work, all owned here and stopped together.
//!
//! What runs can change while sluice runs: a reload brings a new config, and discovery a new
//! set of functions from an OpenFaaS gateway. Both end in one reconciliation
//! (`triggers.rs`) that compares what is wanted with what runs.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use rdkafka::producer::FutureProducer;
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
    task::{JoinHandle, JoinSet},
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

mod status;
mod triggers;

pub use crate::admin::Changes;
use crate::{
    admin::{self, AdminState, BrokerStatus, ReloadAsk, Status},
    broker::{BrokerError, EmbeddedBroker},
    config::{self, Config, DeadLetter, discovery::OpenFaasDiscovery},
    discovery::{self, Gateway},
    edge::Edge,
    function::Functions,
    kafka::{ClientError, Kafka, TopicSpec},
    metrics::Metrics,
};
use status::TriggerView;
use triggers::RunningTrigger;

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
    #[error("trigger {trigger}: {why}")]
    Start {
        /// The trigger's name.
        trigger: String,
        /// Why.
        why: String,
    },
    /// The public listener could not start.
    #[error(transparent)]
    Edge(#[from] crate::edge::EdgeError),
    /// The admin listener would be reachable from other hosts without a token.
    #[error(
        "the admin listener on {0} is reachable from other hosts: set admin.token, which seek, reload and redrive then need"
    )]
    AdminToken(SocketAddr),
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
    triggers: std::collections::BTreeMap<String, RunningTrigger>,
    /// What the status poller reports of the triggers.
    views: watch::Sender<Vec<TriggerView>>,
    functions: Option<Arc<Functions>>,
    /// The producer of the triggers' dead letters and replies, made with the first trigger.
    producer: Option<FutureProducer>,
    /// The config that runs now.
    config: Config,
    /// Discovery, when the config has a `discovery` section and triggers run.
    discovery: Option<Discovery>,
    /// The triggers discovery made at its last good read.
    discovered: Vec<config::Trigger>,
    /// Reload requests from the admin API.
    reloads: mpsc::Receiver<ReloadAsk>,
    /// The public listener: ingress, streams, static files.
    edge: Option<Edge>,
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

/// Discovery running from an OpenFaaS gateway.
#[derive(Debug)]
struct Discovery {
    stop: CancellationToken,
    handle: JoinHandle<()>,
    updates: discovery::Updates,
}

impl Discovery {
    fn start(
        settings: &OpenFaasDiscovery,
        state: &Arc<AdminState>,
        cancel: &CancellationToken,
    ) -> Self {
        let (sender, updates) = watch::channel(None);
        let stop = cancel.child_token();
        let handle = tokio::spawn(discovery::run(
            Gateway::new(settings.clone()),
            state.clone(),
            sender,
            stop.clone(),
        ));
        info!(gateway = %settings.gateway, every = %humantime::format_duration(settings.rebuild_interval), "Discovering functions from the OpenFaaS gateway.");
        Self {
            stop,
            handle,
            updates,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }
}

/// Something a running sluice must act on, from [`Running::next`].
#[derive(Debug)]
pub enum Event {
    /// The embedded broker stopped by itself, for this reason; sluice must stop.
    Failed(String),
    /// `POST /api/reload` asks for the config to be read again, and waits for the report.
    Reload(ReloadAsk),
    /// Discovery read a different set of functions; [`Running::apply_discovered`] applies it.
    Discovered,
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

/// Topics open to ingress and streamed, created like declared topics when missing.
fn edge_topics(config: &Config) -> Vec<TopicSpec> {
    let mut names: Vec<&str> = config
        .ingress
        .iter()
        .flat_map(|i| i.topics.iter().map(|t| t.name.as_str()))
        .chain(config.streams.iter().map(|s| s.topic.as_str()))
        .filter(|name| !config.topics.iter().any(|t| t.name == *name))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .map(|name| TopicSpec {
            name: name.to_owned(),
            partitions: config.embedded.default_partitions,
            replication: 1,
            config: Default::default(),
        })
        .collect()
}

/// Dead-letter and reply topics the triggers write to, created like declared topics when
/// missing.
fn output_topics(config: &Config, triggers: &[config::Trigger]) -> Vec<TopicSpec> {
    let mut names: Vec<&str> = Vec::new();
    for trigger in triggers {
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
        if options.admin && !config.admin.listen.ip().is_loopback() && config.admin.token.is_none()
        {
            return Err(AppError::AdminToken(config.admin.listen));
        }
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
        let edge_settings = config.edge().filter(|_| options.triggers);
        let edge_listener = match &edge_settings {
            Some(settings) => Some(crate::edge::bind(settings).await?),
            None => None,
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
        kafka.ensure_topics(&edge_topics(config)).await?;

        let metrics = Arc::new(Metrics::new());
        let state = Arc::new(
            AdminState::new(
                metrics.clone(),
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
                        disk: None,
                    },
                    ..Status::default()
                },
            )
            .with_token(config.admin.token.clone()),
        );
        state.set_kafka(kafka.clone());
        let cancel = CancellationToken::new();
        let functions = if options.triggers {
            let logbook = Arc::new(crate::function::logbook::LogBook::default());
            state.set_logbook(logbook.clone());
            Some(Arc::new(Functions::start(
                &config.functions,
                &kafka,
                &metrics,
                options.grace,
                logbook,
            )?))
        } else {
            None
        };
        let (views, watched_views) = watch::channel(Vec::new());
        let (reload_requests, reloads) = mpsc::channel(4);
        if options.triggers {
            state.accept_reloads(reload_requests);
        }
        let mut running = Self {
            kafka,
            broker,
            admin_addr: None,
            state,
            cancel,
            tasks: JoinSet::new(),
            triggers: Default::default(),
            views,
            functions,
            producer: None,
            config: config.clone(),
            discovery: None,
            discovered: Vec::new(),
            reloads,
            edge: None,
            grace: options.grace,
        };
        if running.functions.is_some() {
            let changes = running.reconcile(None).await?;
            if let Some((trigger, why)) = changes.failed.into_iter().next() {
                return Err(AppError::Start { trigger, why });
            }
            if let Some(settings) = &config.discovery {
                running.discovery =
                    Some(Discovery::start(settings, &running.state, &running.cancel));
            }
        }

        if let (Some(listener), Some(settings)) = (edge_listener, &edge_settings) {
            let edge = Edge::start(
                listener,
                settings,
                &config.streams,
                &running.kafka,
                running.state.clone(),
                running.cancel.clone(),
            )?;
            edge.ready(Duration::from_secs(10)).await;
            running.edge = Some(edge);
        }

        let poller = status::Poller {
            edge: running.edge.as_ref().map(Edge::view),
            kafka: running.kafka.clone(),
            declared: status::declared_topics(config),
            triggers: watched_views,
            functions: running.functions.clone(),
            state: running.state.clone(),
            data_dir: running
                .broker
                .as_ref()
                .and_then(|b| b.database())
                .and_then(|db| db.parent().map(std::path::Path::to_path_buf)),
        };
        poller.refresh().await;
        let _ = running.tasks.spawn(poller.run(running.cancel.clone()));

        if let Some(listener) = admin_listener {
            running.admin_addr = listener.local_addr().ok();
            let (state, cancel) = (running.state.clone(), running.cancel.clone());
            let _ = running.tasks.spawn(async move {
                if let Err(err) = admin::serve(listener, state, cancel).await {
                    warn!(error = %err, "Admin listener stopped.");
                }
            });
        }

        running.state.set_ready(true);
        info!(
            bootstrap = %bootstrap,
            admin = ?running.admin_addr.map(|a| format!("http://{a}")),
            public = ?running.edge_addr().map(|a| format!("http://{a}")),
            topics = config.topics.len(),
            "sluice is up."
        );
        Ok(running)
    }

    /// Waits for the next thing sluice must act on: the embedded broker stopping, a reload
    /// asked for through the admin API, or discovery finding a different set of functions.
    pub async fn next(&mut self) -> Event {
        let Self {
            broker,
            state,
            reloads,
            discovery,
            ..
        } = self;
        let failed = async {
            match broker.as_mut() {
                Some(broker) => broker.stopped().await.to_string(),
                None => std::future::pending().await,
            }
        };
        let discovered = async {
            match discovery.as_mut() {
                Some(discovery) => {
                    if discovery.updates.changed().await.is_err() {
                        // The discovery task ended; only a reload starts another.
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            reason = failed => {
                error!(error = %reason, "The embedded broker stopped; sluice stops too.");
                state.update_status(|status| {
                    status.broker.reachable = false;
                    status.broker.error = Some(reason.clone());
                });
                state.set_not_ready(reason.clone());
                Event::Failed(reason)
            }
            Some(ask) = reloads.recv() => Event::Reload(ask),
            () = discovered => Event::Discovered,
        }
    }

    /// Waits until the embedded broker stops by itself and returns the reason, for callers
    /// that act on nothing else (reload requests are answered as refused meanwhile).
    pub async fn failed(&mut self) -> String {
        loop {
            match self.next().await {
                Event::Failed(reason) => return reason,
                Event::Reload(ask) => drop(ask),
                Event::Discovered => {}
            }
        }
    }

    /// Applies the functions discovery read last: new ones start, removed ones are drained
    /// and stopped, changed ones restart on their group. Configured triggers are untouched.
    pub async fn apply_discovered(&mut self) -> Result<Changes, AppError> {
        let Some(discovery) = &mut self.discovery else {
            return Ok(Changes::default());
        };
        let Some(found) = discovery.updates.borrow_and_update().clone() else {
            return Ok(Changes::default());
        };
        self.discovered = found;
        self.reconcile(None).await
    }

    /// Applies a new config to what runs: an unchanged trigger keeps running untouched; a
    /// changed one, or one whose function changed, is drained, committed and started again
    /// on its group, so its offsets continue; a removed one is drained, committed and
    /// stopped; a new one starts. A function whose definition changed gets new instances,
    /// and its old ones stop once the triggers that used them have drained. A changed
    /// `discovery` section restarts discovery. Changes to the broker, Kafka or admin
    /// sections are only reported, in [`Changes::restart_needed`]: they need a restart.
    pub async fn reload(&mut self, config: Config) -> Result<Changes, AppError> {
        let old = &self.config;
        let restart_needed: Vec<String> = [
            ("data_dir", old.data_dir == config.data_dir),
            ("kafka", old.kafka == config.kafka),
            ("embedded", old.embedded == config.embedded),
            ("admin", old.admin == config.admin),
            ("ingress", old.ingress == config.ingress),
            ("streams", old.streams == config.streams),
        ]
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(section, _)| section.to_owned())
        .collect();
        if self.functions.is_none() {
            // Only the broker runs here: there are no triggers to change.
            return Ok(Changes {
                restart_needed,
                ..Changes::default()
            });
        }
        self.kafka.ensure_topics(&topic_specs(&config)).await?;

        // The sections that need a restart keep their running values.
        let mut kept = config;
        kept.data_dir = self.config.data_dir.clone();
        kept.kafka = self.config.kafka.clone();
        kept.embedded = self.config.embedded.clone();
        kept.admin = self.config.admin.clone();
        kept.ingress = self.config.ingress.clone();
        kept.streams = self.config.streams.clone();
        let functions = kept.functions.clone();
        let discovery_changed = self.config.discovery != kept.discovery;
        self.config = kept;
        if discovery_changed {
            if let Some(discovery) = self.discovery.take() {
                discovery.stop().await;
            }
            // A gateway that changed or went away no longer speaks for its functions; the
            // new one does from its first good read.
            self.discovered.clear();
            if let Some(settings) = &self.config.discovery {
                self.discovery = Some(Discovery::start(settings, &self.state, &self.cancel));
            }
        }
        let mut changes = self.reconcile(Some(&functions)).await?;
        changes.restart_needed = restart_needed;
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

    /// The public listener's address, when it runs.
    pub fn edge_addr(&self) -> Option<SocketAddr> {
        self.edge.as_ref().map(Edge::addr)
    }

    /// The admin listener's address, when it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The shared admin state (status report, readiness, metrics).
    pub fn state(&self) -> &Arc<AdminState> {
        &self.state
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
        if let Some(discovery) = self.discovery.take() {
            discovery.stop().await;
        }
        if let Some(edge) = self.edge.take()
            && tokio::time::timeout(grace, edge.stopped()).await.is_err()
        {
            warn!("The public listener's connections did not close within the grace period.");
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
