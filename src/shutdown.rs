//! Process signals: the first SIGINT or SIGTERM starts a graceful stop, a second one forces
//! the exit.

use tokio::signal::unix::{SignalKind, signal};
use tracing::warn;

/// Exit code of a stop forced by a second signal (128 + SIGINT, as shells report it).
pub const FORCED_EXIT_CODE: i32 = 130;

/// Waits for SIGINT or SIGTERM and returns its name.
pub async fn signalled() -> std::io::Result<&'static str> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    })
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
