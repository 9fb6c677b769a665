//! Delivery: one record's way to the function and its outcome. This file holds the words
//! the layers share: what one attempt came to ([`Attempt`]) and why it failed ([`Failure`]).
//!
//! - [`destination`]: where a trigger's events go (a URL, a `command` pool, an `exec`
//!   runner), and each runner's result as an [`Attempt`].
//! - [`http`]: the HTTP invoker: sessions over pooled keep-alive connections ([`conn`]).
//! - [`retry`]: Knative's retry rules, `Retry-After` and the wait before each retry.
//! - [`pipeline`]: attempts with backoff until delivered, dead-lettered or dropped.

pub mod conn;
pub mod destination;
pub mod http;
pub mod pipeline;
pub mod retry;

use std::time::Duration;

use bytes::Bytes;
use hyper::{StatusCode, header::HeaderMap};

use crate::metrics::AttemptOutcome;

pub use destination::Destination;
pub use http::{Invoker, Session};

/// How much of a failed response's body is kept as the reason.
pub const EXCERPT_LIMIT: usize = 1024;

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
    /// The kind of this outcome in `sluice_delivery_attempts_total`.
    pub fn outcome(&self) -> AttemptOutcome {
        match self {
            Self::Delivered { .. } => AttemptOutcome::Delivered,
            Self::Retry { .. } => AttemptOutcome::Retry,
            Self::Unreachable { .. } => AttemptOutcome::Unreachable,
            Self::Reject { .. } => AttemptOutcome::Rejected,
        }
    }
}

impl Failure {
    /// A failure without a response body.
    pub fn new(code: &str, message: String) -> Self {
        Self {
            code: code.to_owned(),
            message,
            excerpt: Bytes::new(),
        }
    }
}
