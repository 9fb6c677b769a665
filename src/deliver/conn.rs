//! HTTP/1.1 keep-alive connections that the delivering task drives itself.
//!
//! A pooled client runs each connection as a task of its own, so every request and every
//! response passes between two tasks, often on two threads. Here the task that sends a
//! request also polls its connection: the request is written, and the response read, by the
//! one task the event belongs to. Idle connections wait in a pool per host and port.

use std::{
    collections::HashMap,
    future::{Future, poll_fn},
    io,
    pin::{Pin, pin},
    sync::Mutex,
    task::Poll,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::FutureExt;
use http_body_util::Full;
use hyper::{
    Request, Response,
    body::Incoming,
    client::conn::http1::{self, Connection, SendRequest},
    http::uri::Authority,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long a connection may wait in the pool before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many idle connections are kept per host and port.
const MAX_IDLE_PER_HOST: usize = 256;

type Driver = Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// One HTTP/1.1 connection: the sending half and the state machine that drives its socket.
pub struct Conn {
    authority: Authority,
    sender: SendRequest<Full<Bytes>>,
    /// `None` once the connection has ended: a finished driver is not polled again.
    driver: Option<Pin<Box<Driver>>>,
    /// Whether it came from the pool (and so may have been closed by the server meanwhile).
    pub reused: bool,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("reused", &self.reused)
            .finish_non_exhaustive()
    }
}

/// Why a connection could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// No connection could be made.
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        /// Host and port.
        authority: String,
        /// The cause.
        source: io::Error,
    },
    /// The connection closed, or failed, before the exchange was complete.
    #[error("the connection closed before the response was complete{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Closed(Option<hyper::Error>),
}

impl ConnError {
    /// Whether the connection closed under a request without an answer: the server closed
    /// it (or reset it) before it read the request, or it never wrote a byte of response.
    pub fn closed_unanswered(&self) -> bool {
        let Self::Closed(err) = self else {
            return false;
        };
        let Some(err) = err else {
            return true;
        };
        if err.is_incomplete_message() {
            return true;
        }
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<io::Error>() {
                return matches!(
                    io.kind(),
                    io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                );
            }
            source = cause.source();
        }
        false
    }
}

impl Conn {
    /// Connects to `authority` (host and port of an `http` URL).
    pub async fn connect(authority: &Authority) -> Result<Self, ConnError> {
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let connect_error = |source| ConnError::Connect {
            authority: authority.to_string(),
            source,
        };
        let stream =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => return Err(connect_error(err)),
                Err(_) => {
                    return Err(connect_error(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no connection within {CONNECT_TIMEOUT:?}"),
                    )));
                }
            };
        let _ = stream.set_nodelay(true);
        let (sender, driver) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| connect_error(io::Error::other(err)))?;
        Ok(Self {
            authority: authority.clone(),
            sender,
            driver: Some(Box::pin(driver)),
            reused: false,
        })
    }

    /// Host and port.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Sends `request` and waits for the response head, driving the connection meanwhile.
    /// A request that was not written at all comes back in `Err`, to be sent on another
    /// connection.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, (ConnError, Option<Request<Full<Bytes>>>)> {
        let Self { sender, driver, .. } = self;
        match drive(driver, sender.try_send_request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(mut err)) => {
                let unsent = err.take_message();
                Err((ConnError::Closed(Some(err.into_error())), unsent))
            }
            Err(err) => Err((err, None)),
        }
    }

    /// Runs `future` (reading a response body) while driving the connection.
    pub async fn read<F: Future>(&mut self, future: F) -> Result<F::Output, ConnError> {
        drive(&mut self.driver, future).await
    }

    /// Whether the connection can take another request once the last exchange is done;
    /// drives it to that point.
    pub async fn reusable(&mut self) -> bool {
        let Self { sender, driver, .. } = self;
        matches!(drive(driver, sender.ready()).await, Ok(Ok(())))
    }

    /// Whether the server closed the connection while it was idle.
    pub fn closed(&mut self) -> bool {
        let ended = match &mut self.driver {
            Some(driver) => driver.as_mut().now_or_never().is_some(),
            None => true,
        };
        if ended {
            self.driver = None;
        }
        ended || self.sender.is_closed()
    }
}

/// Polls `future` and the connection's driver together until `future` is done. `Err` when
/// the connection ends first.
async fn drive<F: Future>(
    driver: &mut Option<Pin<Box<Driver>>>,
    future: F,
) -> Result<F::Output, ConnError> {
    let mut future = pin!(future);
    poll_fn(|cx| {
        if let Poll::Ready(out) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        let Some(running) = driver else {
            return Poll::Ready(Err(ConnError::Closed(None)));
        };
        match running.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(ended) => {
                *driver = None;
                // The connection's last act may have completed the future.
                if let Poll::Ready(out) = future.as_mut().poll(cx) {
                    return Poll::Ready(Ok(out));
                }
                Poll::Ready(Err(ConnError::Closed(ended.err())))
            }
        }
    })
    .await
}

/// Idle connections by host and port.
#[derive(Debug, Default)]
pub struct Pool {
    idle: Mutex<Idle>,
}

#[derive(Debug, Default)]
struct Idle {
    /// Per host and port, oldest first.
    hosts: HashMap<Authority, Vec<(Conn, Instant)>>,
    /// When connections past [`IDLE_TIMEOUT`] were last closed.
    swept: Option<Instant>,
}

impl Idle {
    /// Closes every connection idle for longer than [`IDLE_TIMEOUT`].
    fn sweep(&mut self, now: Instant) {
        self.swept = Some(now);
        self.hosts.retain(|_, conns| {
            conns.retain(|(_, since)| now.duration_since(*since) < IDLE_TIMEOUT);
            !conns.is_empty()
        });
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle connection to `authority` that is still open, if there is one.
    pub fn checkout(&self, authority: &Authority) -> Option<Conn> {
        let mut idle = self.lock();
        let conns = idle.hosts.get_mut(authority)?;
        while let Some((mut conn, since)) = conns.pop() {
            if since.elapsed() < IDLE_TIMEOUT && !conn.closed() {
                return Some(conn);
            }
        }
        None
    }

    /// Puts a connection back for the next request to its host. Now and then closes the
    /// connections idle for longer than [`IDLE_TIMEOUT`], of every host.
    pub fn checkin(&self, mut conn: Conn) {
        let now = Instant::now();
        let mut idle = self.lock();
        if idle
            .swept
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            idle.sweep(now);
        }
        conn.reused = true;
        let conns = idle.hosts.entry(conn.authority.clone()).or_default();
        if conns.len() < MAX_IDLE_PER_HOST {
            conns.push((conn, now));
        }
    }
}
