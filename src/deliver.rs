//! The HTTP invoker and the retry policy: one attempt to deliver an event, and how long to
//! wait before the next.

pub mod conn;
pub mod pipeline;

use std::{
    future::{Future, poll_fn},
    pin::{Pin, pin},
    sync::Arc,
    task::Poll,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, StatusCode, Uri,
    body::Incoming,
    header::{HOST, HeaderMap, HeaderValue, RETRY_AFTER},
    http::uri::Authority,
};
use rand::Rng;
use tokio::time::{Instant, Sleep};

use crate::{
    config::{Backoff, Delivery},
    event::Event,
};
use conn::{Conn, ConnError, Pool};

/// How much of a failed response's body is kept as the reason.
pub const EXCERPT_LIMIT: usize = 1024;

/// How much of a body that is not kept is still read, so its connection can be used again.
const DRAIN_LIMIT: usize = 64 * 1024;

/// The largest reply body that is produced to a reply topic.
pub const REPLY_LIMIT: usize = 8 * 1024 * 1024;

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt {
    /// 2xx: delivered. The reply is there when the response had a body and one was wanted.
    Delivered {
        /// The response's status.
        status: StatusCode,
        /// Headers and body of the response, when there is something to reply with.
        reply: Option<(HeaderMap, Bytes)>,
    },
    /// A failure worth retrying: 404, 408, 409, 425, 429, 5xx or a timeout.
    Retry {
        /// Why.
        failure: Failure,
        /// What the function asked for with `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The function could not be reached at all: retried for as long as it takes.
    Unreachable {
        /// Why.
        failure: Failure,
    },
    /// Any other status: not retried.
    Reject {
        /// Why.
        failure: Failure,
    },
}

/// Why an attempt failed, as dead letters record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The HTTP status, or `timeout` / `unreachable`.
    pub code: String,
    /// A sentence for logs and dead letters.
    pub message: String,
    /// The first [`EXCERPT_LIMIT`] bytes of the response body.
    pub excerpt: Bytes,
}

impl Attempt {
    /// The label of this outcome in `sluice_delivery_attempts_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Delivered { .. } => "delivered",
            Self::Retry { .. } => "retry",
            Self::Unreachable { .. } => "unreachable",
            Self::Reject { .. } => "rejected",
        }
    }
}

/// How a status is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 2xx.
    Success,
    /// Retried with backoff.
    Retry,
    /// Dead-lettered at once.
    Reject,
}

/// Knative's retry rules: 404, 408, 409, 425, 429 and 5xx are retried; other non-2xx are not.
pub fn classify(status: StatusCode) -> Class {
    match status.as_u16() {
        200..=299 => Class::Success,
        404 | 408 | 409 | 425 | 429 | 500..=599 => Class::Retry,
        _ => Class::Reject,
    }
}

/// Sends events over HTTP/1.1 with pooled keep-alive connections, each driven by the task
/// whose request it carries ([`conn`]).
#[derive(Debug, Clone, Default)]
pub struct Invoker {
    pool: Arc<Pool>,
}

impl Invoker {
    /// An invoker with an empty connection pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// A session for one task's run of requests.
    pub fn session(&self) -> Session {
        Session {
            pool: self.pool.clone(),
            held: None,
            timer: None,
        }
    }

    /// POSTs the event once, in a session of its own.
    pub async fn attempt(
        &self,
        url: &Uri,
        event: &Event,
        timeout: Duration,
        want_reply: bool,
    ) -> Attempt {
        self.session()
            .attempt(url, event, timeout, want_reply)
            .await
    }
}

/// One task's requests: the task keeps its connection from one request to the next, and
/// the connection goes back to the pool when the session ends.
#[derive(Debug)]
pub struct Session {
    pool: Arc<Pool>,
    held: Option<Conn>,
    /// The timer of the requests' timeouts, kept from one request to the next. It is moved
    /// only when it fires before the running request's deadline, so a run of quick requests
    /// costs no timer registration each.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(conn) = self.held.take() {
            self.pool.checkin(conn);
        }
    }
}

impl Session {
    /// POSTs the event once. `want_reply` keeps a non-empty 2xx body.
    pub async fn attempt(
        &mut self,
        url: &Uri,
        event: &Event,
        timeout: Duration,
        want_reply: bool,
    ) -> Attempt {
        let authority = match (url.scheme_str(), url.authority()) {
            (Some("http"), Some(authority)) => authority,
            _ => {
                return Attempt::Unreachable {
                    failure: failure(
                        "unreachable",
                        format!("cannot call {url}: only http:// URLs are supported"),
                    ),
                };
            }
        };
        let host = HeaderValue::from_str(host_header(authority)).ok();
        let target = origin_form(url);
        let build = || {
            let mut request = Request::builder().method(Method::POST).uri(target.clone());
            if let Some(headers) = request.headers_mut() {
                headers.reserve(event.headers.len() + 1);
                for (name, value) in &event.headers {
                    let _ = headers.append(name.clone(), value.clone());
                }
                if let Some(host) = &host
                    && !headers.contains_key(HOST)
                {
                    let _ = headers.insert(HOST, host.clone());
                }
            }
            request.body(Full::new(event.body.clone()))
        };
        // A timeout too long for the clock (a config may say "1000000y") never fires.
        let now = Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400));
        let mut timer = match self.timer.take() {
            // A timer set later than this deadline (a longer timeout before) is set again.
            Some(mut timer) if timer.deadline() > deadline => {
                timer.as_mut().reset(deadline);
                timer
            }
            Some(timer) => timer,
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        let attempt = {
            let mut exchange = pin!(self.exchange(authority, build, want_reply));
            poll_fn(|cx| {
                if let Poll::Ready(attempt) = exchange.as_mut().poll(cx) {
                    return Poll::Ready(Some(attempt));
                }
                // The timer fired at an earlier request's deadline: on to this one's.
                while timer.as_mut().poll(cx).is_ready() {
                    if Instant::now() >= deadline {
                        return Poll::Ready(None);
                    }
                    timer.as_mut().reset(deadline);
                }
                Poll::Pending
            })
            .await
        };
        self.timer = Some(timer);
        attempt.unwrap_or_else(|| Attempt::Retry {
            failure: failure("timeout", format!("no answer within {timeout:?}")),
            retry_after: None,
        })
    }

    /// A connection to `authority`: the one held since the last request, an idle pooled
    /// one, or a new one.
    async fn connection(&mut self, authority: &Authority) -> Result<Conn, ConnError> {
        if let Some(mut conn) = self.held.take() {
            if conn.authority() != authority {
                self.pool.checkin(conn);
            } else if !conn.closed() {
                return Ok(conn);
            }
        }
        match self.pool.checkout(authority) {
            Some(conn) => Ok(conn),
            None => Conn::connect(authority).await,
        }
    }

    async fn exchange(
        &mut self,
        authority: &Authority,
        build: impl Fn() -> Result<Request<Full<Bytes>>, hyper::http::Error>,
        want_reply: bool,
    ) -> Attempt {
        let mut request = None;
        let (mut conn, response) = loop {
            let mut conn = match self.connection(authority).await {
                Ok(conn) => conn,
                Err(err) => {
                    return Attempt::Unreachable {
                        failure: failure("unreachable", chain(&err)),
                    };
                }
            };
            let next = match request.take().map_or_else(&build, Ok) {
                Ok(next) => next,
                Err(err) => {
                    return Attempt::Reject {
                        failure: failure("request", format!("cannot build the request: {err}")),
                    };
                }
            };
            match conn.send(next).await {
                Ok(response) => break (conn, response),
                // A kept connection that the server had closed: the request was not written,
                // or written into a closed socket and never answered. It goes out again on
                // another connection (each kept one is tried once, then a new one).
                Err((_, Some(unsent))) if conn.reused => request = Some(unsent),
                Err((err, None)) if conn.reused && err.closed_unanswered() => {}
                Err((err, _)) => {
                    return Attempt::Retry {
                        failure: failure("error", format!("request failed: {}", chain(&err))),
                        retry_after: None,
                    };
                }
            }
        };
        let status = response.status();
        let attempt = match classify(status) {
            Class::Success => {
                let (parts, body) = response.into_parts();
                let limit = if want_reply { REPLY_LIMIT } else { 0 };
                match conn.read(read_limited(body, limit)).await {
                    Ok(Ok((_, true))) if want_reply => Attempt::Reject {
                        failure: failure(
                            &status.as_u16().to_string(),
                            format!("reply body larger than {REPLY_LIMIT} bytes"),
                        ),
                    },
                    Ok(Ok((body, _))) => Attempt::Delivered {
                        status,
                        reply: (want_reply && !body.is_empty()).then_some((parts.headers, body)),
                    },
                    Ok(Err(err)) => Attempt::Retry {
                        failure: failure("error", format!("reading the response: {err}")),
                        retry_after: None,
                    },
                    Err(err) => Attempt::Retry {
                        failure: failure("error", format!("reading the response: {}", chain(&err))),
                        retry_after: None,
                    },
                }
            }
            class => {
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let excerpt = conn
                    .read(read_limited(response.into_body(), EXCERPT_LIMIT))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|(b, _)| b)
                    .unwrap_or_default();
                let failure = Failure {
                    code: status.as_u16().to_string(),
                    message: format!("the function answered {status}"),
                    excerpt,
                };
                if class == Class::Retry {
                    Attempt::Retry {
                        failure,
                        retry_after,
                    }
                } else {
                    Attempt::Reject { failure }
                }
            }
        };
        if conn.reusable().await {
            conn.reused = true;
            self.held = Some(conn);
        }
        attempt
    }
}

/// The request target of `url` on the wire: its path and query.
fn origin_form(url: &Uri) -> Uri {
    url.path_and_query()
        .map_or(Uri::from_static("/"), |path| Uri::from(path.clone()))
}

/// The `Host` header for `authority`: without user information, and without the port when
/// it is HTTP's default.
fn host_header(authority: &Authority) -> &str {
    let text = authority.as_str();
    let text = text.rsplit_once('@').map_or(text, |(_, host)| host);
    text.strip_suffix(":80").unwrap_or(text)
}

fn failure(code: &str, message: String) -> Failure {
    Failure {
        code: code.to_owned(),
        message,
        excerpt: Bytes::new(),
    }
}

/// The error and its sources, one sentence.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads the body to its end (so the connection can be used again), keeping at most
/// `limit` bytes; the flag says whether there was more. Reading stops once past `limit` or
/// [`DRAIN_LIMIT`], whichever is larger: a body that long, or endless, is not drained, and
/// its connection is closed rather than kept.
async fn read_limited(mut body: Incoming, limit: usize) -> Result<(Bytes, bool), hyper::Error> {
    let mut out = Vec::new();
    let mut read = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            read += data.len();
            let room = limit.saturating_sub(out.len());
            out.extend_from_slice(&data[..data.len().min(room)]);
            if read > limit.max(DRAIN_LIMIT) {
                return Ok((Bytes::from(out), true));
            }
        }
    }
    Ok((Bytes::from(out), read > limit))
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The wait before retry number `retry` (1 for the first retry), without jitter: exponential
/// or linear in `backoff_delay`, capped at `backoff_max`.
pub fn backoff(delivery: &Delivery, retry: u32) -> Duration {
    let n = retry.max(1);
    let delay = match delivery.backoff {
        Backoff::Exponential => {
            let factor = 2u32.checked_pow(n - 1).unwrap_or(u32::MAX);
            delivery.backoff_delay.checked_mul(factor)
        }
        Backoff::Linear => delivery.backoff_delay.checked_mul(n),
    };
    delay
        .unwrap_or(delivery.backoff_max)
        .min(delivery.backoff_max)
}

/// [`backoff`] with jitter: between 80% and 120% of it, never above `backoff_max`. A
/// `Retry-After` from the function replaces the computed delay, capped the same way.
pub fn retry_delay(delivery: &Delivery, retry: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(asked) = retry_after {
        return asked.min(delivery.backoff_max);
    }
    let base = backoff(delivery, retry);
    let factor = rand::rng().random_range(0.8..=1.2);
    base.mul_f64(factor).min(delivery.backoff_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(backoff: Backoff) -> Delivery {
        Delivery {
            retry: 5,
            backoff,
            backoff_delay: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn classifies_statuses_like_knative() {
        for code in [200, 201, 202, 204, 299] {
            assert_eq!(
                classify(StatusCode::from_u16(code).unwrap()),
                Class::Success
            );
        }
        for code in [404, 408, 409, 425, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify(StatusCode::from_u16(code).unwrap()), Class::Retry);
        }
        for code in [100, 301, 304, 400, 401, 403, 405, 410, 413, 422] {
            assert_eq!(classify(StatusCode::from_u16(code).unwrap()), Class::Reject);
        }
    }

    #[test]
    fn exponential_and_linear_backoff_are_capped() {
        let d = delivery(Backoff::Exponential);
        let got: Vec<u64> = (1..=10)
            .map(|n| backoff(&d, n).as_millis() as u64)
            .collect();
        assert_eq!(
            got,
            [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]
        );
        assert_eq!(backoff(&d, u32::MAX), Duration::from_secs(30));
        let d = delivery(Backoff::Linear);
        let got: Vec<u64> = (1..=4).map(|n| backoff(&d, n).as_millis() as u64).collect();
        assert_eq!(got, [200, 400, 600, 800]);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let d = delivery(Backoff::Exponential);
        for retry in 1..=12 {
            let base = backoff(&d, retry);
            for _ in 0..50 {
                let got = retry_delay(&d, retry, None);
                assert!(
                    got >= base.mul_f64(0.8) && got <= base.mul_f64(1.2),
                    "{got:?}"
                );
                assert!(got <= d.backoff_max);
            }
        }
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let d = delivery(Backoff::Exponential);
        assert_eq!(
            retry_delay(&d, 1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_delay(&d, 1, Some(Duration::from_secs(3600))),
            Duration::from_secs(30)
        );
    }

    /// A function on 127.0.0.1 that answers its `n`th request (on one keep-alive connection)
    /// after `delays[n]`, and never answers those past the list.
    async fn slow_function(delays: Vec<Duration>) -> Uri {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            for delay in delays {
                // One request: headers, then a body of its Content-Length.
                loop {
                    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if buf.len() >= end + 4 + length {
                            drop(buf.drain(..end + 4 + length));
                            break;
                        }
                    }
                    let mut chunk = [0u8; 4096];
                    let n = stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the client closed the connection");
                    buf.extend_from_slice(&chunk[..n]);
                }
                tokio::time::sleep(delay).await;
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await
                    .unwrap();
            }
            // Holds the connection open, unanswered.
            tokio::time::sleep(Duration::from_secs(60)).await;
        }));
        format!("http://{addr}/").parse().unwrap()
    }

    fn event() -> Event {
        Event {
            id: "partition:0/offset:0".into(),
            headers: Vec::new(),
            body: Bytes::from_static(b"x"),
        }
    }

    #[tokio::test]
    async fn each_request_of_a_session_gets_its_whole_timeout() {
        // The session's timer is first set for the quick request's deadline (t = 2 s). The
        // second request starts at 1.5 s and is answered at 2.5 s, within its own 2 s: it
        // must not be cut off at the first deadline. The third is never answered.
        let timeout = Duration::from_secs(2);
        let url = slow_function(vec![Duration::ZERO, Duration::from_secs(1)]).await;
        let mut session = Invoker::new().session();
        let quick = session.attempt(&url, &event(), timeout, false).await;
        assert!(matches!(quick, Attempt::Delivered { .. }), "{quick:?}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let slow = session.attempt(&url, &event(), timeout, false).await;
        assert!(matches!(slow, Attempt::Delivered { .. }), "{slow:?}");
        let started = std::time::Instant::now();
        let never = session.attempt(&url, &event(), timeout, false).await;
        match never {
            Attempt::Retry { failure, .. } => assert_eq!(failure.code, "timeout"),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(started.elapsed() >= timeout, "cut off early");
    }

    /// A function that answers every request 200 with a chunked body that does not end (it
    /// stops writing after 64 MiB, or when the client goes). Counts its connections.
    async fn endless_function() -> (Uri, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        drop(tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let _ = counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(tokio::spawn(async move {
                    let mut head = [0u8; 4096];
                    let _ = stream.read(&mut head).await;
                    let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                    let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, "x".repeat(16 * 1024));
                    for _ in 0..4096 {
                        out.extend_from_slice(chunk.as_bytes());
                        if stream.write_all(&out).await.is_err() {
                            return;
                        }
                        out.clear();
                    }
                }));
            }
        }));
        (format!("http://{addr}/").parse().unwrap(), connections)
    }

    #[tokio::test]
    async fn an_endless_response_body_is_not_read_to_the_timeout() {
        // The timeout is far longer than the test: reading the body to its end would end
        // the attempt as a timeout, not as delivered or rejected.
        let timeout = Duration::from_secs(600);
        let (url, connections) = endless_function().await;
        let mut session = Invoker::new().session();
        let plain = session.attempt(&url, &event(), timeout, false).await;
        assert!(
            matches!(plain, Attempt::Delivered { reply: None, .. }),
            "{plain:?}"
        );
        // A reply is wanted: the body is over the reply limit, so the event is rejected.
        let reply = session.attempt(&url, &event(), timeout, true).await;
        match reply {
            Attempt::Reject { failure } => {
                assert!(failure.message.contains("larger than"), "{failure:?}");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        // A body not read to its end closes its connection: each attempt had a new one.
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
