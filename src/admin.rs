//! The admin HTTP listener: `/healthz`, `/readyz`, `/metrics`, `/api/status`,
//! `POST /api/triggers/{name}/seek` and `POST /api/reload`.
//!
//! [`Status`] is also what `sluice status` reads back, so the CLI and the server share one
//! type.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use axum::{
    Json, Router,
    extract::{Path, Query, State, rejection::JsonRejection},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::edge::Token,
    dlq::{self, Matcher},
    event::EventSettings,
    function::{FunctionStatus, logbook::LogBook},
    ingress::{authorize, bearer},
    kafka::Kafka,
    metrics::Metrics,
    trigger::{Moved, SeekError, SeekTo, TriggerProbe},
};

mod console;

/// What `POST /api/triggers/{name}/seek` takes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SeekRequest {
    /// `earliest`, `latest`, an RFC 3339 time or `PARTITION:OFFSET[,...]`.
    pub to: String,
}

/// What a seek answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SeekAnswer {
    /// The trigger.
    pub trigger: String,
    /// Each partition of it that this sluice holds, where it was and where it goes on.
    pub moved: Vec<Moved>,
}

/// What a reload did, trigger by trigger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// Triggers that were not running before.
    pub started: Vec<String>,
    /// Triggers whose settings or function changed: drained, committed and started again
    /// on their group.
    pub restarted: Vec<String>,
    /// Triggers no longer wanted: drained, committed and stopped.
    pub stopped: Vec<String>,
    /// Triggers left running untouched.
    pub unchanged: Vec<String>,
    /// Triggers that could not start, with the reason.
    pub failed: Vec<(String, String)>,
    /// Functions added, removed or defined differently: their new instances start fresh,
    /// and the old ones were stopped once their triggers had drained.
    #[serde(default)]
    pub functions: Vec<String>,
    /// Config sections that changed but take effect only after a restart.
    pub restart_needed: Vec<String>,
}

/// What made sluice read its config again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadCause {
    /// SIGHUP.
    Signal,
    /// `POST /api/reload` (`sluice reload`).
    Api,
    /// `sluice up --watch` saw the file change.
    Watch,
}

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadOutcome {
    /// The new config runs.
    Applied,
    /// The new config has errors: nothing changed.
    Refused,
    /// The new config was valid, but applying it failed part way.
    Failed,
}

impl ReloadOutcome {
    /// The word used in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }
}

/// One reload, as `POST /api/reload` answers it and `/api/status` keeps the last one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// When it happened (RFC 3339, UTC).
    pub at: String,
    /// What asked for it.
    pub cause: ReloadCause,
    /// How it ended.
    pub outcome: ReloadOutcome,
    /// What changed, when it was applied (or applied in part).
    #[serde(default)]
    pub changes: Option<Changes>,
    /// Every problem in a refused config, one per line as `sluice validate` prints them.
    #[serde(default)]
    pub problems: Vec<String>,
    /// Why applying failed, when it did.
    #[serde(default)]
    pub error: Option<String>,
}

/// A request to reload, answered with its report.
pub type ReloadAsk = oneshot::Sender<ReloadReport>;

/// An error answer of the API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorAnswer {
    /// A sentence.
    pub error: String,
}

/// What `/api/status` reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// sluice's version.
    pub version: String,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// When this report was made (ms since the epoch), which rates are computed against.
    #[serde(default)]
    pub at_ms: Option<i64>,
    /// The broker sluice uses.
    pub broker: BrokerStatus,
    /// Declared topics and topics that triggers read.
    pub topics: Vec<TopicStatus>,
    /// Triggers and their delivery figures.
    #[serde(default)]
    pub triggers: Vec<TriggerStatus>,
    /// Functions and their instances.
    #[serde(default)]
    pub functions: Vec<FunctionStatus>,
    /// The last reload, if any.
    #[serde(default)]
    pub reload: Option<ReloadReport>,
    /// Discovery from an OpenFaaS gateway, when configured.
    #[serde(default)]
    pub discovery: Option<DiscoveryStatus>,
    /// The public listener: ingress topics and streams, when configured.
    #[serde(default)]
    pub edge: Option<EdgeStatus>,
}

/// The public listener as last seen.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EdgeStatus {
    /// Its address.
    pub listen: String,
    /// Topics open to `POST /topics/{name}`.
    pub ingress: Vec<IngressStatus>,
    /// Streams.
    pub streams: Vec<StreamStatus>,
}

/// One ingress topic's figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IngressStatus {
    /// The topic.
    pub topic: String,
    /// Whether producing needs a token.
    pub tokens: bool,
    /// Events stored.
    pub stored: u64,
    /// Events refused: malformed, too large, or without a valid token.
    pub refused: u64,
    /// Events answered 503 because the broker did not store them.
    pub unavailable: u64,
}

/// One stream's figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StreamStatus {
    /// The path.
    pub path: String,
    /// The topic.
    pub topic: String,
    /// Whether clients may publish.
    pub publish: bool,
    /// Clients connected now.
    pub clients: i64,
    /// Records sent to clients.
    pub messages_out: u64,
    /// Messages clients published.
    pub messages_in: u64,
    /// Clients closed for falling behind.
    pub dropped_slow: u64,
    /// Clients that resumed from a position still held.
    pub resumed: u64,
    /// Clients told that their position was no longer held.
    pub not_recovered: u64,
}

/// Discovery from an OpenFaaS gateway as last seen.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DiscoveryStatus {
    /// The gateway's URL.
    pub gateway: String,
    /// When the function list was last read successfully (RFC 3339), if ever.
    pub last_read: Option<String>,
    /// Why the last read failed, when it did; the last good map is kept meanwhile.
    pub error: Option<String>,
    /// The functions seen with a topic annotation, at the last good read.
    pub functions: Vec<String>,
}

/// One trigger as last seen.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TriggerStatus {
    /// Name.
    pub name: String,
    /// Topics it reads.
    pub topics: Vec<String>,
    /// The function's URL.
    pub target: String,
    /// Consumer group.
    pub group: String,
    /// Records after the group's committed offsets.
    pub lag: i64,
    /// Deliveries running.
    pub in_flight: usize,
    /// Records received and waiting to start.
    pub waiting: usize,
    /// Events delivered.
    pub delivered: u64,
    /// Events waiting for their next attempt.
    pub retrying: i64,
    /// Events dead-lettered.
    pub dead_lettered: u64,
    /// Events dropped (`dead_letter: none`).
    pub dropped: u64,
    /// Events the trigger's filters did not let through.
    #[serde(default)]
    pub filtered: u64,
    /// The function it delivers to, when it names one.
    #[serde(default)]
    pub function: Option<String>,
    /// Whether its partitions are paused because it is full.
    #[serde(default)]
    pub paused: bool,
    /// Where its dead letters go.
    #[serde(default)]
    pub dead_letter: DeadLetterStatus,
    /// Where replies go, if anywhere.
    #[serde(default)]
    pub reply: Option<String>,
    /// Each partition it reads: committed offset, high watermark and lag.
    #[serde(default)]
    pub partitions: Vec<PartitionStatus>,
    /// Its settings, as the console's detail panel shows them.
    #[serde(default)]
    pub config: serde_json::Value,
}

/// Where a trigger's dead letters go.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DeadLetterStatus {
    /// Nowhere: they are dropped.
    #[default]
    None,
    /// To a topic.
    Topic {
        /// The topic.
        topic: String,
    },
    /// To a URL.
    Url {
        /// The URL.
        url: String,
    },
}

/// One partition a trigger reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PartitionStatus {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The group's committed offset, when it has one.
    pub committed: Option<i64>,
    /// The next offset to be written.
    pub high: i64,
    /// Records after the committed offset.
    pub lag: i64,
}

/// The broker as last seen.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BrokerStatus {
    /// `embedded` or `external`.
    pub mode: String,
    /// Bootstrap servers.
    pub bootstrap: String,
    /// Storage of the embedded broker (`sqlite` or `memory`).
    pub storage: Option<String>,
    /// The embedded broker's database file, when durable.
    pub database: Option<String>,
    /// Whether the last look at the broker succeeded.
    pub reachable: bool,
    /// Why it did not, when it did not.
    pub error: Option<String>,
    /// The filesystem of the embedded broker's data directory, when it stores there.
    #[serde(default)]
    pub disk: Option<DiskStatus>,
}

/// The filesystem the embedded broker stores on.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DiskStatus {
    /// The data directory.
    pub path: String,
    /// Bytes available to sluice.
    pub free_bytes: u64,
    /// The filesystem's size.
    pub total_bytes: u64,
    /// Whether it is full: fewer than [`DISK_FULL_BELOW`] bytes available.
    pub full: bool,
}

/// The embedded broker's filesystem counts as full below this many available bytes: SQLite
/// needs room for its write-ahead log before a write can succeed.
pub const DISK_FULL_BELOW: u64 = 1 << 20;

impl DiskStatus {
    /// One sentence for logs and `/readyz`.
    pub fn describe(&self) -> String {
        format!(
            "the embedded broker's disk is full: {} bytes free of {} on the filesystem of {}",
            self.free_bytes, self.total_bytes, self.path
        )
    }
}

/// One topic as last seen.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TopicStatus {
    /// Name.
    pub name: String,
    /// Partitions on the broker (0 when the topic is missing).
    pub partitions: usize,
    /// Records retained.
    pub records: i64,
    /// Records ever written: the sum of the high watermarks, whose change is the rate in.
    #[serde(default)]
    pub high: i64,
}

/// Shared state behind the admin routes.
#[derive(Debug)]
pub struct AdminState {
    metrics: Arc<Metrics>,
    status: RwLock<Status>,
    ready: AtomicBool,
    /// Why the process is not ready, when it was marked so with a reason.
    not_ready: RwLock<Option<String>>,
    started: Instant,
    /// The running triggers, by name.
    triggers: RwLock<BTreeMap<String, AdminTrigger>>,
    /// Where reload requests go, when this process can reload.
    reloads: RwLock<Option<mpsc::Sender<ReloadAsk>>>,
    /// The Kafka client dead letters are read and redriven with.
    kafka: RwLock<Option<Kafka>>,
    /// The function instances' recent output.
    logbook: RwLock<Option<Arc<LogBook>>>,
    /// The token mutating calls need, when set.
    token: Option<Token>,
}

/// A running trigger as the admin API acts on it.
#[derive(Debug, Clone)]
pub struct AdminTrigger {
    /// Its probe (counts, seek).
    pub probe: TriggerProbe,
    /// Its dead-letter topic, when its dead letters go to one.
    pub dead_letters: Option<String>,
    /// How it makes events of records, which a redrive's `where` is evaluated over.
    pub settings: EventSettings,
}

impl AdminState {
    /// State for a process that started now and is not ready yet.
    pub fn new(metrics: Arc<Metrics>, status: Status) -> Self {
        Self {
            metrics,
            status: RwLock::new(status),
            ready: AtomicBool::new(false),
            not_ready: RwLock::new(None),
            started: Instant::now(),
            triggers: RwLock::default(),
            reloads: RwLock::default(),
            kafka: RwLock::default(),
            logbook: RwLock::default(),
            token: None,
        }
    }

    /// Mutating calls (seek, reload, redrive) need `token` from now on.
    pub fn with_token(mut self, token: Option<Token>) -> Self {
        self.token = token;
        self
    }

    /// The Kafka client for dead letters.
    pub fn set_kafka(&self, kafka: Kafka) {
        *self.kafka.write().unwrap_or_else(|e| e.into_inner()) = Some(kafka);
    }

    /// Where the function instances' output is kept.
    pub fn set_logbook(&self, logbook: Arc<LogBook>) {
        *self.logbook.write().unwrap_or_else(|e| e.into_inner()) = Some(logbook);
    }

    fn trigger(&self, name: &str) -> Option<AdminTrigger> {
        self.triggers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Whether a mutating call may go on.
    fn may_change(&self, headers: &HeaderMap) -> Result<(), crate::ingress::Refusal> {
        authorize(self.token.as_slice(), bearer(headers, None))
    }

    /// Lets `POST /api/reload` ask for reloads on `requests`.
    pub fn accept_reloads(&self, requests: mpsc::Sender<ReloadAsk>) {
        *self.reloads.write().unwrap_or_else(|e| e.into_inner()) = Some(requests);
    }

    /// Keeps `report` as the last reload in the status, and counts it.
    pub fn record_reload(&self, report: &ReloadReport) {
        self.metrics
            .reloads
            .get_or_create(&crate::metrics::OutcomeLabels {
                outcome: report.outcome.as_str().to_owned(),
            })
            .inc();
        self.update_status(|status| status.reload = Some(report.clone()));
    }

    /// The running triggers that the API may act on.
    pub fn set_triggers(&self, triggers: BTreeMap<String, AdminTrigger>) {
        *self.triggers.write().unwrap_or_else(|e| e.into_inner()) = triggers;
    }

    /// Marks the process ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Marks the process not ready for good, with the reason `/readyz` gives.
    pub fn set_not_ready(&self, reason: String) {
        *self.not_ready.write().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        self.set_ready(false);
    }

    /// Whether `/readyz` answers 200: the process has started, is not stopping, and the
    /// broker answered its last look. A broker that cannot serve never looks ready.
    pub fn readiness(&self) -> Result<(), String> {
        if !self.ready.load(Ordering::Acquire) {
            let reason = self.not_ready.read().unwrap_or_else(|e| e.into_inner());
            return Err(reason
                .clone()
                .unwrap_or_else(|| "starting or stopping".to_owned()));
        }
        let status = self.status.read().unwrap_or_else(|e| e.into_inner());
        if !status.broker.reachable {
            return Err(match &status.broker.error {
                Some(error) => format!("the broker does not answer: {error}"),
                None => "the broker does not answer".to_owned(),
            });
        }
        if let Some(disk) = status.broker.disk.as_ref().filter(|d| d.full) {
            return Err(disk.describe());
        }
        Ok(())
    }

    /// Why the broker cannot take records now (it did not answer its last look, or its
    /// disk is full), or `None`.
    pub fn broker_unavailable(&self) -> Option<String> {
        let status = self.status.read().unwrap_or_else(|e| e.into_inner());
        if !status.broker.reachable {
            return Some("the broker does not answer".to_owned());
        }
        status
            .broker
            .disk
            .as_ref()
            .filter(|d| d.full)
            .map(DiskStatus::describe)
    }

    /// Changes the status report in place.
    pub fn update_status(&self, change: impl FnOnce(&mut Status)) {
        // A panic while holding the lock cannot leave the report half-written in a way that
        // matters, so a poisoned lock is used as it is.
        let mut status = self.status.write().unwrap_or_else(|e| e.into_inner());
        change(&mut status);
    }

    /// The current status report.
    pub fn status(&self) -> Status {
        let mut status = self
            .status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        status.uptime_seconds = self.started.elapsed().as_secs();
        status.at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_millis()).ok());
        status
    }

    /// The metrics this process exports.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The admin routes.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/status", get(status))
        .route("/api/triggers/{name}/seek", post(seek))
        .route("/api/triggers/{name}/dead-letters", get(dead_letters))
        .route("/api/triggers/{name}/redrive", post(redrive))
        .route("/api/reload", post(reload))
        .route("/api/logs", get(logs))
        .merge(console::routes())
        .with_state(state)
}

/// Serves the admin routes until `cancel` fires.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    match state.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics().encode(),
    )
        .into_response()
}

async fn status(State(state): State<Arc<AdminState>>) -> Json<Status> {
    Json(state.status())
}

fn error(status: StatusCode, error: String) -> Response {
    (status, Json(ErrorAnswer { error })).into_response()
}

async fn seek(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Json<SeekRequest>, JsonRejection>,
) -> Response {
    if let Err(refused) = state.may_change(&headers) {
        return refused.into_response();
    }
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let to: SeekTo = match request.to.parse() {
        Ok(to) => to,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let Some(AdminTrigger { probe, .. }) = state.trigger(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no trigger named {name:?} runs here"),
        );
    };
    match probe.seek(to).await {
        Ok(moved) => Json(SeekAnswer {
            trigger: name,
            moved,
        })
        .into_response(),
        Err(err @ SeekError::Unassigned) => error(StatusCode::CONFLICT, err.to_string()),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

/// Reads the config again and applies it: 200 with the changes, 422 with every problem
/// when the new config has errors (nothing changes), 500 when applying it failed part way.
async fn reload(State(state): State<Arc<AdminState>>) -> Response {
    let requests = state
        .reloads
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let Some(requests) = requests else {
        return error(
            StatusCode::CONFLICT,
            "this sluice has no config file to reload".to_owned(),
        );
    };
    let (ask, answer) = oneshot::channel();
    let stopping = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "sluice is stopping".to_owned(),
        )
    };
    if requests.send(ask).await.is_err() {
        return stopping();
    }
    let Ok(report) = answer.await else {
        return stopping();
    };
    let status = match report.outcome {
        ReloadOutcome::Applied => StatusCode::OK,
        ReloadOutcome::Refused => StatusCode::UNPROCESSABLE_ENTITY,
        ReloadOutcome::Failed => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(report)).into_response()
}

/// `?count=N` of the dead-letter calls.
#[derive(Debug, Deserialize)]
struct CountQuery {
    #[serde(default = "default_count")]
    count: usize,
}

fn default_count() -> usize {
    20
}

/// An error answer: its status and its sentence.
#[derive(Debug)]
struct Refused(StatusCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

/// The trigger and its dead-letter topic, or why there is none.
fn dead_letter_topic(
    state: &AdminState,
    name: &str,
) -> Result<(AdminTrigger, String, Kafka), Refused> {
    let Some(trigger) = state.trigger(name) else {
        return Err(Refused(
            StatusCode::NOT_FOUND,
            format!("no trigger named {name:?} runs here"),
        ));
    };
    let Some(topic) = trigger.dead_letters.clone() else {
        return Err(Refused(
            StatusCode::CONFLICT,
            format!("trigger {name} does not send its dead letters to a topic"),
        ));
    };
    let kafka = state
        .kafka
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let Some(kafka) = kafka else {
        return Err(Refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "no Kafka client yet".to_owned(),
        ));
    };
    Ok((trigger, topic, kafka))
}

/// The last dead letters of a trigger, newest last.
async fn dead_letters(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Query(query): Query<CountQuery>,
) -> Response {
    let (_, topic, kafka) = match dead_letter_topic(&state, &name) {
        Ok(found) => found,
        Err(refused) => return refused.into_response(),
    };
    match dlq::list(&kafka, &topic, query.count.min(1000)).await {
        Ok(letters) => Json(serde_json::json!({
            "trigger": name,
            "topic": topic,
            "dead_letters": letters.iter().map(dlq::DeadLetter::to_json).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

/// What `POST /api/triggers/{name}/redrive` takes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RedriveRequest {
    /// The most dead letters to produce back.
    #[serde(default = "default_count")]
    pub count: usize,
    /// `ATTRIBUTE=VALUE` or a CESQL expression the dead letters must match.
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
}

/// Produces dead letters back to their source topic.
async fn redrive(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Json<RedriveRequest>, JsonRejection>,
) -> Response {
    if let Err(refused) = state.may_change(&headers) {
        return refused.into_response();
    }
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let matcher = match request
        .filter
        .as_deref()
        .filter(|w| !w.trim().is_empty())
        .map(Matcher::parse)
    {
        None => None,
        Some(Ok(matcher)) => Some(matcher),
        Some(Err(why)) => return error(StatusCode::BAD_REQUEST, why),
    };
    let (trigger, topic, kafka) = match dead_letter_topic(&state, &name) {
        Ok(found) => found,
        Err(refused) => return refused.into_response(),
    };
    match dlq::redrive(
        &kafka,
        &name,
        &topic,
        request.count,
        matcher.as_ref(),
        &trigger.settings,
    )
    .await
    {
        Ok(done) => Json(done).into_response(),
        Err(err) => error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

/// `?function=F&follow=true&tail=N` of `/api/logs`.
#[derive(Debug, Deserialize)]
struct LogsQuery {
    #[serde(default)]
    function: Option<String>,
    #[serde(default)]
    follow: bool,
    #[serde(default = "default_tail")]
    tail: usize,
}

fn default_tail() -> usize {
    100
}

/// The function instances' output lines, one JSON object a line; with `follow`, the
/// answer goes on with new lines until the client leaves.
async fn logs(State(state): State<Arc<AdminState>>, Query(query): Query<LogsQuery>) -> Response {
    let book = state
        .logbook
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let Some(book) = book else {
        return error(
            StatusCode::CONFLICT,
            "this sluice runs no functions".to_owned(),
        );
    };
    let line = |l: &crate::function::logbook::LogLine| {
        let mut text = serde_json::to_vec(l).unwrap_or_default();
        text.push(b'\n');
        bytes::Bytes::from(text)
    };
    // Subscribed before the recent lines are read, so nothing falls between them.
    let live = query.follow.then(|| book.follow());
    let recent: Vec<bytes::Bytes> = book
        .recent(query.function.as_deref(), query.tail)
        .iter()
        .map(line)
        .collect();
    let head = futures::stream::iter(recent.into_iter().map(Ok::<_, std::convert::Infallible>));
    let body = match live {
        None => axum::body::Body::from_stream(head),
        Some(receiver) => {
            let function = query.function.clone();
            let tail = futures::stream::unfold(receiver, move |mut receiver| {
                let function = function.clone();
                async move {
                    loop {
                        match receiver.recv().await {
                            Ok(l) if function.as_deref().is_none_or(|f| f == l.function) => {
                                return Some((Ok(line(&l)), receiver));
                            }
                            Ok(_) => continue,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                                let note = format!("{{\"missed\":{missed}}}\n");
                                return Some((Ok(bytes::Bytes::from(note)), receiver));
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            });
            axum::body::Body::from_stream(futures::StreamExt::chain(head, tail))
        }
    };
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let code = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (code, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readiness_follows_state() {
        let state = Arc::new(AdminState::new(Arc::default(), Status::default()));
        state.update_status(|s| s.broker.reachable = true);
        let (code, body) = get(router(state.clone()), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "not ready: starting or stopping\n");
        state.set_ready(true);
        let (code, body) = get(router(state.clone()), "/readyz").await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, "ready\n"));
        let (code, body) = get(router(state), "/healthz").await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, "ok\n"));
    }

    #[tokio::test]
    async fn a_broker_that_does_not_answer_is_not_ready() {
        let state = Arc::new(AdminState::new(Arc::default(), Status::default()));
        state.set_ready(true);
        state.update_status(|s| {
            s.broker.reachable = false;
            s.broker.error = Some("timed out".into());
        });
        let (code, body) = get(router(state.clone()), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "not ready: the broker does not answer: timed out\n");
        state.update_status(|s| s.broker.reachable = true);
        let (code, _) = get(router(state.clone()), "/readyz").await;
        assert_eq!(code, StatusCode::OK);
        state.set_not_ready("embedded broker stopped after a panic: boom".into());
        let (code, body) = get(router(state), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "not ready: embedded broker stopped after a panic: boom\n"
        );
    }

    #[tokio::test]
    async fn a_full_disk_is_not_ready_and_refuses_records() {
        let state = Arc::new(AdminState::new(Arc::default(), Status::default()));
        state.set_ready(true);
        let disk = |free_bytes| DiskStatus {
            path: "/data".into(),
            free_bytes,
            total_bytes: 8 << 20,
            full: free_bytes < DISK_FULL_BELOW,
        };
        state.update_status(|s| {
            s.broker.reachable = true;
            s.broker.disk = Some(disk(4096));
        });
        let (code, body) = get(router(state.clone()), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            "not ready: the embedded broker's disk is full: 4096 bytes free of 8388608 on the \
             filesystem of /data\n"
        );
        assert_eq!(
            state.broker_unavailable().as_deref(),
            Some(
                "the embedded broker's disk is full: 4096 bytes free of 8388608 on the \
                 filesystem of /data"
            )
        );
        state.update_status(|s| s.broker.disk = Some(disk(2 << 20)));
        let (code, _) = get(router(state.clone()), "/readyz").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(state.broker_unavailable(), None);
    }

    #[tokio::test]
    async fn status_and_metrics_render() {
        let state = Arc::new(AdminState::new(Arc::default(), Status::default()));
        state.update_status(|s| {
            s.broker.mode = "embedded".into();
            s.topics.push(TopicStatus {
                name: "orders".into(),
                partitions: 4,
                records: 7,
                high: 7,
            });
        });
        state.metrics().broker_up.set(1);
        let (code, body) = get(router(state.clone()), "/api/status").await;
        assert_eq!(code, StatusCode::OK);
        let status: Status = serde_json::from_str(&body).unwrap();
        assert_eq!(status.broker.mode, "embedded");
        assert_eq!(status.topics[0].records, 7);
        let (code, body) = get(router(state), "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("sluice_broker_up 1"), "{body}");
    }
}
