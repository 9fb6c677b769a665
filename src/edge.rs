//! The public listener: ingress (`POST /topics/{topic}`), the streams, and static files,
//! separate from the admin listener.

pub mod publish;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{
        Path, Query, State,
        ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response, Sse, sse::KeepAlive},
    routing::{get, post},
};
use tokio::{net::TcpListener, sync::mpsc, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tower_http::services::ServeDir;
use tracing::{info, warn};

use crate::{
    admin::{AdminState, EdgeStatus, ErrorAnswer, StreamStatus},
    config::edge::Ingress as IngressConfig,
    config::edge::Stream as StreamConfig,
    ingress::{self, Ingress},
    kafka::{ClientError, Kafka},
    stream::{
        Hub,
        session::{self, Context, StartError},
    },
};
use publish::Publisher;

/// The largest message a WebSocket client may send; a publish is one record.
const WS_MESSAGE_LIMIT: usize = 1 << 20;

/// Why the public listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The address is taken or not allowed.
    #[error("cannot listen on {addr} for ingress and streams: {source}")]
    Listen {
        /// The address from `ingress.listen`.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The producer could not be made.
    #[error(transparent)]
    Kafka(#[from] ClientError),
}

/// What the handlers share.
#[derive(Debug)]
struct Shared {
    ingress: Ingress,
    publisher: Publisher,
    state: Arc<AdminState>,
    cancel: CancellationToken,
}

/// The public listener, bound and serving.
#[derive(Debug)]
pub struct Edge {
    view: EdgeView,
    tasks: JoinSet<()>,
}

/// What the status report reads of the public listener.
#[derive(Debug, Clone)]
pub struct EdgeView {
    addr: SocketAddr,
    shared: Arc<Shared>,
    hubs: Vec<Arc<Hub>>,
}

/// Binds the public listener first, so that a taken port fails before anything starts.
pub async fn bind(settings: &IngressConfig) -> Result<TcpListener, EdgeError> {
    TcpListener::bind(settings.listen)
        .await
        .map_err(|source| EdgeError::Listen {
            addr: settings.listen,
            source,
        })
}

impl Edge {
    /// Serves ingress, `streams` and static files on `listener` until `cancel`.
    pub fn start(
        listener: TcpListener,
        settings: &IngressConfig,
        streams: &[StreamConfig],
        kafka: &Kafka,
        state: Arc<AdminState>,
        cancel: CancellationToken,
    ) -> Result<Self, EdgeError> {
        let addr = listener.local_addr().unwrap_or(settings.listen);
        let publisher = Publisher::new(kafka)?;
        let ingress = Ingress::new(
            &settings.topics,
            settings.max_body,
            publisher.clone(),
            state.metrics(),
        );
        let shared = Arc::new(Shared {
            ingress,
            publisher,
            state: state.clone(),
            cancel: cancel.clone(),
        });
        let mut tasks = JoinSet::new();
        let mut router = Router::new().route("/topics/{topic}", post(produce));
        let mut hubs = Vec::new();
        for stream in streams {
            let hub = Hub::new(stream.clone(), kafka.clone(), state.metrics());
            let _ = tasks.spawn(hub.clone().run(cancel.clone()));
            let for_route = hub.clone();
            router = router.route(
                &stream.path,
                get(
                    move |state: State<Arc<Shared>>,
                          query: Query<HashMap<String, String>>,
                          headers: HeaderMap,
                          upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>| {
                        subscribe(for_route.clone(), state, query, headers, upgrade)
                    },
                ),
            );
            hubs.push(hub);
        }
        let router = match &settings.static_dir {
            Some(dir) => router.fallback_service(ServeDir::new(dir)),
            None => router,
        };
        let app = router.with_state(shared.clone());
        let serving = cancel.clone();
        let _ = tasks.spawn(async move {
            if let Err(err) = axum::serve(listener, app)
                .with_graceful_shutdown(serving.cancelled_owned())
                .await
            {
                warn!(error = %err, "The public listener stopped.");
            }
        });
        info!(
            listen = %addr,
            ingress = ?settings.topics.iter().map(|t| &t.name).collect::<Vec<_>>(),
            streams = ?streams.iter().map(|s| &s.path).collect::<Vec<_>>(),
            "Public listener is up."
        );
        Ok(Self {
            view: EdgeView { addr, shared, hubs },
            tasks,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.view.addr
    }

    /// Waits until every stream reads its topic, at most `limit`; a stream that does not
    /// yet answers its clients 503 until it does.
    pub async fn ready(&self, limit: Duration) {
        for hub in &self.view.hubs {
            if !hub.ready(limit).await {
                warn!(stream = %hub.settings().path, "The stream does not read its topic yet; its clients get 503 until it does.");
            }
        }
    }

    /// What the status report reads.
    pub fn view(&self) -> EdgeView {
        self.view.clone()
    }

    /// Waits for the listener and the streams to stop (after `cancel` fired).
    pub async fn stopped(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

impl EdgeView {
    /// Its figures for the status report.
    pub fn status(&self) -> EdgeStatus {
        EdgeStatus {
            listen: self.addr.to_string(),
            ingress: self.shared.ingress.status(),
            streams: self
                .hubs
                .iter()
                .map(|hub| {
                    let settings = hub.settings();
                    let metrics = hub.metrics();
                    StreamStatus {
                        path: settings.path.clone(),
                        topic: settings.topic.clone(),
                        publish: settings.publish,
                        clients: metrics.clients.get(),
                        messages_out: metrics.out.get(),
                        messages_in: metrics.messages_in.get(),
                        dropped_slow: metrics.dropped.get(),
                        resumed: metrics.recovered.get(),
                        not_recovered: metrics.not_recovered.get(),
                    }
                })
                .collect(),
        }
    }
}

fn refuse(status: StatusCode, error: String) -> Response {
    (status, axum::Json(ErrorAnswer { error })).into_response()
}

/// `POST /topics/{topic}`.
async fn produce(
    State(shared): State<Arc<Shared>>,
    Path(topic): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let unavailable = shared.state.broker_unavailable();
    shared
        .ingress
        .post(
            &topic,
            query.get("key").map(String::as_str),
            query.get("token").map(String::as_str),
            &headers,
            body,
            unavailable,
        )
        .await
}

/// Whether a browser on `origin` may open the stream: an allowed origin, or, without a
/// list, the page's own (the `Host` it asked).
fn origin_allowed(settings: &StreamConfig, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        // Not a browser: origins protect browser users from other sites' pages.
        return true;
    };
    match &settings.allowed_origins {
        Some(allowed) => allowed.iter().any(|a| a == "*" || a == origin),
        None => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            let origin_host = origin.split_once("://").map(|(_, rest)| rest);
            host.is_some() && origin_host == host
        }
    }
}

/// GET on a stream's path: a WebSocket upgrade, or SSE with `Accept: text/event-stream`.
async fn subscribe(
    hub: Arc<Hub>,
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let settings = hub.settings();
    let offered = ingress::bearer(&headers, query.get("token").map(String::as_str));
    if let Err(refusal) = ingress::authorize(&settings.subscribe_tokens, offered) {
        return refusal.into_response();
    }
    let may_publish = settings.publish
        && (settings.publish_tokens.is_empty()
            || offered.is_some_and(|t| settings.publish_tokens.iter().any(|k| k.matches(t))));
    let history = match query.get("history").map(|h| h.parse::<usize>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "history must be a number of records".to_owned(),
            );
        }
    };
    let wants_sse = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    let context = Context {
        hub: hub.clone(),
        publisher: may_publish.then(|| shared.publisher.clone()),
        cancel: shared.cancel.clone(),
    };
    match upgrade {
        Ok(upgrade) => {
            if !origin_allowed(settings, &headers) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "this origin may not open the stream".to_owned(),
                );
            }
            let since = query.get("since").map(String::as_str);
            let start = match session::start(&hub, since, history).await {
                Ok(start) => start,
                Err(err) => return start_error(err),
            };
            upgrade
                // Allocated up front for every connection; a publish larger than this is
                // read in more steps.
                .read_buffer_size(1024)
                .write_buffer_size(0)
                .max_message_size(WS_MESSAGE_LIMIT)
                .on_upgrade(move |socket| session::websocket(socket, start, context))
        }
        Err(_) if wants_sse => {
            // The browser's own resume header wins over the URL's.
            let since = headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .or(query.get("since").map(String::as_str));
            let start = match session::start(&hub, since, history).await {
                Ok(start) => start,
                Err(err) => return start_error(err),
            };
            let (events, stream) = mpsc::channel(16);
            let context = Context {
                publisher: None,
                ..context
            };
            drop(tokio::spawn(session::sse(events, start, context)));
            let mut stream = stream;
            let body = futures::stream::poll_fn(move |cx| stream.poll_recv(cx));
            Sse::new(body)
                .keep_alive(KeepAlive::default())
                .into_response()
        }
        Err(_) => refuse(
            StatusCode::BAD_REQUEST,
            "this is a stream: open it as a WebSocket, or with Accept: text/event-stream"
                .to_owned(),
        ),
    }
}

fn start_error(err: StartError) -> Response {
    match err {
        StartError::Bad(why) => refuse(StatusCode::BAD_REQUEST, why),
        StartError::Unavailable(why) => {
            let mut response = refuse(StatusCode::SERVICE_UNAVAILABLE, why);
            let _ = response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            response
        }
    }
}
