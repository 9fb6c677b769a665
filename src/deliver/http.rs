//! The HTTP invoker: a delivery task's session sends events over HTTP/1.1 on keep-alive
//! connections it drives itself ([`super::conn`]), with one timeout timer for its run of
//! requests.

#[cfg(test)]
mod tests;

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
    Method, Request, Uri,
    body::Incoming,
    header::{HOST, HeaderValue, RETRY_AFTER},
    http::uri::Authority,
};
use tokio::time::{Instant, Sleep};

use super::{
    Attempt, EXCERPT_LIMIT, Failure, REPLY_LIMIT,
    conn::{Conn, ConnError, Pool},
    retry::{Class, classify, parse_retry_after},
};
use crate::event::Event;

/// How much of a body that is not kept is still read, so its connection can be used again.
const DRAIN_LIMIT: usize = 64 * 1024;

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
    Failure::new(code, message)
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
