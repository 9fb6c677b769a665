//! The public listener: `ingress` (HTTP into topics, static files) and `streams` (topics out
//! to browsers over WebSocket and SSE).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// HTTP into topics, on the public listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingress {
    /// Address of the public listener, which also serves the streams and static files.
    pub listen: SocketAddr,
    /// The largest request body taken, in bytes.
    pub max_body: usize,
    /// The topics that may be produced over HTTP; none unless listed.
    pub topics: Vec<IngressTopic>,
    /// A directory of files served at `/`.
    pub static_dir: Option<PathBuf>,
}

impl Default for Ingress {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_body: default_max_body(),
            topics: Vec::new(),
            static_dir: None,
        }
    }
}

/// The public listener's address when none is set.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 8080))
}

/// 1 MiB, Kafka's default largest message.
pub fn default_max_body() -> usize {
    1 << 20
}

/// A topic open to `POST /topics/{name}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressTopic {
    /// The topic.
    pub name: String,
    /// Bearer tokens that may produce; empty means anyone may.
    pub tokens: Vec<Token>,
}

/// A path on the public listener bound to a topic, for browsers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// The path, such as `/chat/stream`.
    pub path: String,
    /// The topic it reads, and that clients publish to.
    pub topic: String,
    /// Whether clients may publish to the topic.
    pub publish: bool,
    /// Bearer tokens that may subscribe; empty means anyone may.
    pub subscribe_tokens: Vec<Token>,
    /// Bearer tokens that may publish; empty means any subscriber may.
    pub publish_tokens: Vec<Token>,
    /// Origins a browser may open the WebSocket from; `None` means the page's own origin
    /// only, and `*` any origin.
    pub allowed_origins: Option<Vec<String>>,
    /// Messages queued for one client before it counts as too slow and is closed.
    pub queue: usize,
    /// The most records `?history=N` goes back, per partition.
    pub max_history: usize,
}

/// A bearer token, read from the environment or a file when the config is loaded. Its value
/// is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// Where it came from, for messages.
    pub origin: String,
    value: String,
}

impl Token {
    /// A token with `value`, read from `origin`.
    pub fn new(origin: String, value: String) -> Self {
        Self { origin, value }
    }

    /// The token itself, for a client to send as `Authorization: Bearer`.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether `offered` is this token, compared in time that does not depend on where
    /// they differ.
    pub fn matches(&self, offered: &[u8]) -> bool {
        let expected = self.value.as_bytes();
        if expected.len() != offered.len() {
            return false;
        }
        expected
            .iter()
            .zip(offered)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.origin)
    }
}
