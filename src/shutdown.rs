//! Process signals: the first SIGINT or SIGTERM starts a graceful stop, a second one forces
//! the exit.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing::warn;

/// Exit code of a stop forced by a second signal (128 + SIGINT, as shells report it).
pub const FORCED_EXIT_CODE: i32 = 130;

/// SIGINT and SIGTERM, caught from the moment this is created: a signal that arrives
/// before [`Signals::recv`] is called is not lost, and does not kill the process.
#[derive(Debug)]
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    /// Starts catching SIGINT and SIGTERM.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for SIGINT or SIGTERM and returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// Waits for SIGINT or SIGTERM and returns its name.
pub async fn signalled() -> std::io::Result<&'static str> {
    Ok(Signals::new()?.recv().await)
}

/// From now on, another SIGINT or SIGTERM exits the process at once.
pub fn force_exit_on_next_signal() {
    drop(tokio::spawn(async {
        if let Ok(name) = signalled().await {
            warn!(
                signal = name,
                "Second signal: exiting without finishing the shutdown."
            );
            std::process::exit(FORCED_EXIT_CODE);
        }
    }));
}
