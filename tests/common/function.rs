//! A real HTTP function for tests: records every request, tracks concurrency and answers
//! as the test says.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};

/// One request the function received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
    /// How many requests were in flight, this one included, when it arrived.
    pub concurrent: usize,
}

impl Received {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the function answers: status, extra headers, body, and how long it takes.
pub struct Answer {
    /// Status code.
    pub status: StatusCode,
    /// Extra response headers.
    pub headers: Vec<(&'static str, String)>,
    /// Response body.
    pub body: Bytes,
    /// Delay before answering.
    pub delay: Duration,
}

impl Answer {
    /// 200 with no body, at once.
    pub fn ok() -> Self {
        Self::status(StatusCode::OK)
    }

    /// A status with no body, at once.
    pub fn status(status: StatusCode) -> Self {
        Self {
            status,
            headers: vec![],
            body: Bytes::new(),
            delay: Duration::ZERO,
        }
    }

    /// The same answer after `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Behaviour = Box<dyn Fn(usize, &Received) -> Answer + Send + Sync>;

struct Inner {
    received: Mutex<Vec<Received>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    behaviour: Behaviour,
}

/// A running test function.
#[derive(Clone)]
pub struct Function {
    inner: Arc<Inner>,
    /// Where it listens.
    pub addr: SocketAddr,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Function {
    /// Starts a function on a free loopback port; `behaviour` gets the call number (0-based)
    /// and the request.
    pub async fn start(
        behaviour: impl Fn(usize, &Received) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, behaviour)
    }

    /// Starts a function on `listener`.
    pub fn serve(
        listener: tokio::net::TcpListener,
        behaviour: impl Fn(usize, &Received) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner {
            received: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            behaviour: Box::new(behaviour),
        });
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            inner,
            addr,
            task: Arc::new(task),
        }
    }

    /// The function's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    /// Requests so far.
    pub fn count(&self) -> usize {
        self.inner.received.lock().unwrap().len()
    }

    /// The most requests that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Stops listening (connections in progress are cut).
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Waits until at least `n` requests arrived, failing after `limit`.
    pub async fn wait_for(&self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} requests after {limit:?}",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let concurrent = inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _ = inner.max_in_flight.fetch_max(concurrent, Ordering::SeqCst);
    let received = Received {
        headers,
        body,
        at: Instant::now(),
        concurrent,
    };
    let answer = {
        let mut all = inner.received.lock().unwrap();
        let n = all.len();
        all.push(received.clone());
        (inner.behaviour)(n, &received)
    };
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let _ = inner.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut response = (answer.status, answer.body).into_response();
    for (name, value) in answer.headers {
        let _ = response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}
