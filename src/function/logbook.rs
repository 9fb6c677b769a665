//! The recent output lines of every function instance, kept for `sluice logs` (through the
//! admin API) besides sluice's own log.

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard},
};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Lines kept for `sluice logs` without `-f`.
const KEPT: usize = 2000;

/// One line a function instance printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// When sluice read it (RFC 3339, UTC).
    pub time: String,
    /// The function.
    pub function: String,
    /// The instance, numbered from 1 per function.
    pub instance: u64,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The line, without its line break.
    pub text: String,
}

/// The recent lines, and the lines as they come.
#[derive(Debug)]
pub struct LogBook {
    recent: Mutex<VecDeque<LogLine>>,
    live: broadcast::Sender<LogLine>,
}

impl Default for LogBook {
    fn default() -> Self {
        Self {
            recent: Mutex::new(VecDeque::with_capacity(64)),
            // A follower that falls this far behind is told it missed lines.
            live: broadcast::channel(1024).0,
        }
    }
}

impl LogBook {
    fn lock(&self) -> MutexGuard<'_, VecDeque<LogLine>> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a line and hands it to the followers.
    pub fn push(&self, function: &str, instance: u64, stream: &str, text: &str) {
        let line = LogLine {
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            function: function.to_owned(),
            instance,
            stream: stream.to_owned(),
            text: text.to_owned(),
        };
        {
            let mut recent = self.lock();
            if recent.len() == KEPT {
                let _ = recent.pop_front();
            }
            recent.push_back(line.clone());
        }
        // Nobody following is not an error.
        let _ = self.live.send(line);
    }

    /// The last `count` lines of `function` (or of every function), oldest first.
    pub fn recent(&self, function: Option<&str>, count: usize) -> Vec<LogLine> {
        let recent = self.lock();
        let mut lines: Vec<LogLine> = recent
            .iter()
            .rev()
            .filter(|l| function.is_none_or(|f| l.function == f))
            .take(count)
            .cloned()
            .collect();
        lines.reverse();
        lines
    }

    /// The lines from now on.
    pub fn follow(&self) -> broadcast::Receiver<LogLine> {
        self.live.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_lines_are_kept_per_function_and_followers_get_new_ones() {
        let book = LogBook::default();
        for n in 0..KEPT + 5 {
            book.push(
                if n % 2 == 0 { "a" } else { "b" },
                1,
                "stdout",
                &format!("line {n}"),
            );
        }
        let a = book.recent(Some("a"), 3);
        assert_eq!(
            a.iter().map(|l| l.text.clone()).collect::<Vec<_>>(),
            [KEPT, KEPT + 2, KEPT + 4].map(|n| format!("line {n}"))
        );
        assert_eq!(book.recent(None, usize::MAX).len(), KEPT);
        let mut follower = book.follow();
        book.push("c", 2, "stderr", "now");
        let line = follower.try_recv().unwrap();
        assert_eq!(
            (
                line.function.as_str(),
                line.instance,
                line.stream.as_str(),
                line.text.as_str()
            ),
            ("c", 2, "stderr", "now")
        );
    }
}
