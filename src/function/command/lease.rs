//! An event's way onto an instance: the wait for a slot, the lease that holds it, and why
//! none may be had. The wait and the lease are drop guards, so an event that is cancelled or
//! panics still gives back what it held.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use hyper::Uri;

use super::{CommandPool, MAX_WAITING, Phase, State};

/// One event's hold on an instance; dropping it gives the slot back.
#[derive(Debug)]
pub struct Lease {
    pool: Arc<CommandPool>,
    id: u64,
    /// The instance's URL.
    pub url: Uri,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        if let Some(instance) = state.instances.iter_mut().find(|i| i.id == self.id) {
            instance.in_flight -= 1;
            instance.idle_since = Instant::now();
        }
        self.pool.publish(&state);
        drop(state);
        self.pool.changed.notify_waiters();
    }
}

/// Counts an event as waiting for as long as it waits, however the wait ends: dropped, it
/// takes the lock to count the event out; [`Waiting::end`] does so under a lock already held.
struct Waiting<'a> {
    pool: &'a CommandPool,
    counted: bool,
}

impl<'a> Waiting<'a> {
    /// Counts an event in.
    fn start(pool: &'a CommandPool, state: &mut State) -> Self {
        state.waiting += 1;
        Self {
            pool,
            counted: true,
        }
    }

    /// Counts the event out, under the lock the caller holds.
    fn end(mut self, state: &mut State) {
        state.waiting -= 1;
        self.counted = false;
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.pool.lock().waiting -= 1;
        }
    }
}

/// Why no instance took an event. Each is retried by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// The pool is shutting down.
    #[error("the function is stopping")]
    Stopped,
    /// Too many events wait already.
    #[error("{MAX_WAITING} events are waiting for an instance")]
    Busy,
    /// An instance failed to start, and none is left starting.
    #[error("{0}")]
    StartFailed(String),
    /// No instance became ready in time.
    #[error("no instance of {function} was ready within {timeout:?}")]
    NotReady {
        /// The function's name.
        function: String,
        /// Its `startup_timeout`.
        timeout: Duration,
    },
}

impl Unavailable {
    /// A short code, as dead letters record it.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Busy => "busy",
            Self::StartFailed(_) | Self::NotReady { .. } => "start",
        }
    }
}

impl CommandPool {
    /// A slot on a ready instance: at once when one has room, else after an instance starts.
    /// Fails when no instance becomes ready within `startup_timeout` or a start fails.
    pub async fn acquire(self: &Arc<Self>) -> Result<Lease, Unavailable> {
        let deadline = tokio::time::Instant::now() + self.spec.startup_timeout;
        let mut waiting: Option<(Waiting<'_>, u64)> = None;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            let _ = notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.closed {
                    return Err(Unavailable::Stopped);
                }
                let concurrency = self.spec.concurrency;
                if let Some(instance) = state
                    .instances
                    .iter_mut()
                    .filter(|i| i.phase == Phase::Ready && i.in_flight < concurrency)
                    .min_by_key(|i| i.in_flight)
                {
                    instance.in_flight += 1;
                    let lease = Lease {
                        pool: self.clone(),
                        id: instance.id,
                        url: instance.url.clone().unwrap_or_default(),
                    };
                    if let Some((guard, _)) = waiting.take() {
                        guard.end(&mut state);
                    }
                    self.scale(&mut state);
                    self.publish(&state);
                    return Ok(lease);
                }
                match &waiting {
                    None => {
                        if state.waiting >= MAX_WAITING {
                            return Err(Unavailable::Busy);
                        }
                        if state.count(Phase::Ready) == 0 && state.cold_since.is_none() {
                            state.cold_since = Some(Instant::now());
                        }
                        let failures = state.start_failures;
                        waiting = Some((Waiting::start(self, &mut state), failures));
                    }
                    Some((_, failures)) => {
                        if state.start_failures > *failures && state.live() == 0 {
                            let why = state.last_failure.clone().unwrap_or_default();
                            return Err(Unavailable::StartFailed(why));
                        }
                    }
                }
                self.scale(&mut state);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Unavailable::NotReady {
                    function: self.name.clone(),
                    timeout: self.spec.startup_timeout,
                });
            }
        }
    }
}
