//! Where a trigger's events go, and each function runner's result as an [`Attempt`]: the
//! function runtime knows nothing of attempts, and delivery turns what it reports into one.

use std::{sync::Arc, time::Duration};

use hyper::{
    StatusCode, Uri,
    header::{CONTENT_TYPE, HeaderMap, HeaderValue},
};

use super::{Attempt, EXCERPT_LIMIT, Failure, REPLY_LIMIT, Session};
use crate::{
    config::Target,
    event::{Event, Record},
    function::{
        Functions, Runner,
        command::CommandPool,
        exec::{self, ExecRunner, Run},
    },
};

/// Where a trigger's events go.
#[derive(Debug, Clone)]
pub enum Destination {
    /// A URL: a `url` function or a trigger's own `url`.
    Url(Uri),
    /// A `command` function's instances.
    Command(Arc<CommandPool>),
    /// An `exec` function.
    Exec(Arc<ExecRunner>),
}

impl From<Runner> for Destination {
    fn from(runner: Runner) -> Self {
        match runner {
            Runner::Command(pool) => Self::Command(pool),
            Runner::Exec(runner) => Self::Exec(runner),
        }
    }
}

impl Destination {
    /// Where events for `target` go; `None` when its function is not among `functions`.
    pub fn build(target: &Target, functions: &Functions) -> Option<Self> {
        match target {
            Target::Url(endpoint) => Some(Self::Url(endpoint.uri().clone())),
            Target::Command(name) | Target::Exec(name) => functions.runner(name).map(Self::from),
        }
    }

    /// One attempt to hand `event` to the function.
    pub async fn attempt(
        &self,
        session: &mut Session,
        event: &Event,
        record: &Record,
        timeout: Duration,
        want_reply: bool,
    ) -> Attempt {
        match self {
            Self::Url(url) => session.attempt(url, event, timeout, want_reply).await,
            Self::Command(pool) => match pool.acquire().await {
                Ok(lease) => {
                    session
                        .attempt(&lease.url, event, timeout, want_reply)
                        .await
                }
                Err(why) => Attempt::Retry {
                    failure: Failure::new(why.code(), why.to_string()),
                    retry_after: None,
                },
            },
            Self::Exec(runner) => {
                from_run(runner.run(event, record, REPLY_LIMIT).await, want_reply)
            }
        }
    }

    /// One attempt to hand a batch request to the function; an `exec` function takes one
    /// event at a time, which the config checks, so it refuses.
    pub async fn attempt_batch(
        &self,
        session: &mut Session,
        request: &Event,
        timeout: Duration,
    ) -> Attempt {
        match self {
            Self::Url(url) => session.attempt(url, request, timeout, true).await,
            Self::Command(pool) => match pool.acquire().await {
                Ok(lease) => session.attempt(&lease.url, request, timeout, true).await,
                Err(why) => Attempt::Retry {
                    failure: Failure::new(why.code(), why.to_string()),
                    retry_after: None,
                },
            },
            Self::Exec(_) => Attempt::Reject {
                failure: Failure::new("batch", "exec functions take one event at a time".into()),
            },
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url(url) => write!(f, "{url}"),
            Self::Command(pool) => write!(f, "function:{}", pool.name()),
            Self::Exec(runner) => write!(f, "function:{}", runner.name()),
        }
    }
}

/// An `exec` run as an attempt: exit 0 delivers, with the output as the reply; any other
/// end is retried, with the end of its standard error as the excerpt.
fn from_run(run: Run, want_reply: bool) -> Attempt {
    match run {
        Run::Failed {
            code,
            message,
            stderr,
        } => Attempt::Retry {
            failure: Failure {
                code,
                message,
                excerpt: stderr.slice(stderr.len().saturating_sub(EXCERPT_LIMIT)..),
            },
            retry_after: None,
        },
        Run::Exited {
            truncated: true, ..
        } if want_reply => Attempt::Reject {
            failure: Failure::new("200", format!("reply larger than {REPLY_LIMIT} bytes")),
        },
        Run::Exited { output, .. } => Attempt::Delivered {
            status: StatusCode::OK,
            reply: (want_reply && !output.is_empty()).then(|| {
                let mut headers = HeaderMap::new();
                let _ = headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(exec::output_type(&output)),
                );
                (headers, output)
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn a_run_becomes_an_attempt() {
        let failed = from_run(
            Run::Failed {
                code: "exit 3".into(),
                message: "failed".into(),
                stderr: Bytes::from(vec![b'e'; EXCERPT_LIMIT + 10]),
            },
            false,
        );
        match failed {
            Attempt::Retry { failure, .. } => {
                assert_eq!(failure.code, "exit 3");
                assert_eq!(failure.excerpt.len(), EXCERPT_LIMIT);
            }
            other => panic!("{other:?}"),
        }
        let long = Run::Exited {
            output: Bytes::from_static(b"x"),
            truncated: true,
        };
        assert!(matches!(
            from_run(long.clone(), true),
            Attempt::Reject { .. }
        ));
        assert!(matches!(
            from_run(long, false),
            Attempt::Delivered { reply: None, .. }
        ));
        let text = from_run(
            Run::Exited {
                output: Bytes::from_static(b"hello"),
                truncated: false,
            },
            true,
        );
        match text {
            Attempt::Delivered {
                reply: Some((headers, body)),
                ..
            } => {
                assert_eq!(headers[CONTENT_TYPE], "text/plain; charset=utf-8");
                assert_eq!(body, "hello");
            }
            other => panic!("{other:?}"),
        }
    }
}
