//! The `ingress` and `streams` sections.

use super::*;
use crate::config::edge::{Ingress, IngressTopic, Stream, Token, default_listen, default_max_body};

/// `ingress` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngress {
    /// See [`Ingress::listen`].
    #[serde(default = "default_listen", deserialize_with = "de::socket_addr")]
    listen: std::net::SocketAddr,
    /// See [`Ingress::max_body`].
    #[serde(default = "default_max_body", deserialize_with = "de::byte_size")]
    max_body: usize,
    /// See [`Ingress::topics`]; kept as YAML and read item by item.
    #[serde(default)]
    topics: Option<Value>,
    /// See [`Ingress::static_dir`].
    #[serde(default, rename = "static")]
    static_dir: Option<PathBuf>,
}

/// One of `ingress.topics` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngressTopic {
    /// See [`IngressTopic::name`].
    name: String,
    /// See [`IngressTopic::tokens`].
    #[serde(default)]
    tokens: Option<Value>,
}

/// One of `streams` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    /// See [`Stream::path`].
    path: String,
    /// See [`Stream::topic`].
    topic: String,
    /// See [`Stream::publish`].
    #[serde(default)]
    publish: bool,
    /// See [`Stream::subscribe_tokens`] and [`Stream::publish_tokens`].
    #[serde(default)]
    tokens: Option<Value>,
    /// See [`Stream::allowed_origins`].
    #[serde(default, deserialize_with = "de::optional_string_list")]
    allowed_origins: Option<Vec<String>>,
    /// See [`Stream::queue`].
    #[serde(default = "default_queue")]
    queue: usize,
    /// See [`Stream::max_history`].
    #[serde(default = "default_max_history")]
    max_history: usize,
}

/// A client a few seconds behind a busy chat still keeps up.
fn default_queue() -> usize {
    256
}

fn default_max_history() -> usize {
    1000
}

/// `streams[].tokens` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStreamTokens {
    /// See [`Stream::subscribe_tokens`].
    #[serde(default)]
    subscribe: Option<Value>,
    /// See [`Stream::publish_tokens`].
    #[serde(default)]
    publish: Option<Value>,
}

/// A token as written: `{env: NAME}` or `{file: PATH}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    /// An environment variable holding the token.
    #[serde(default)]
    env: Option<String>,
    /// A file holding the token.
    #[serde(default)]
    file: Option<PathBuf>,
}

pub(super) fn ingress(report: &mut Report<'_>, value: &Value) -> Option<Ingress> {
    let raw = super::section::<RawIngress>(report, Some(value), "ingress")?;
    if raw.max_body == 0 {
        report.add("ingress.max_body", "must be at least 1 byte");
    }
    if let Some(dir) = &raw.static_dir
        && !dir.is_dir()
    {
        report.add(
            "ingress.static",
            format!("{} is not a directory", dir.display()),
        );
    }
    let mut topics = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    if let Some(value) = &raw.topics {
        for (index, value) in items(report, value, "ingress.topics").iter().enumerate() {
            let path = join_index("ingress.topics", index);
            // A bare name is a topic open to anyone.
            let raw = match value {
                Value::String(name) => RawIngressTopic {
                    name: name.clone(),
                    tokens: None,
                },
                value => match item::<RawIngressTopic>(report, value, &path, None) {
                    Some(raw) => raw,
                    None => continue,
                },
            };
            let name_path = join_key(&path, "name");
            check_topic(report, &name_path, &raw.name);
            duplicate(report, &mut seen, &raw.name, &name_path, "ingress topic");
            let tokens = tokens(report, raw.tokens.as_ref(), &join_key(&path, "tokens"));
            topics.push(IngressTopic {
                name: raw.name,
                tokens,
            });
        }
    }
    Some(Ingress {
        listen: raw.listen,
        max_body: raw.max_body,
        topics,
        static_dir: raw.static_dir,
    })
}

pub(super) fn streams(report: &mut Report<'_>, value: &Value) -> Vec<Stream> {
    let mut streams = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (index, value) in items(report, value, "streams").iter().enumerate() {
        let path = join_index("streams", index);
        let Some(raw) = item::<RawStream>(report, value, &path, None) else {
            continue;
        };
        let key = |k: &str| join_key(&path, k);
        check_path(report, &key("path"), &raw.path);
        duplicate(report, &mut seen, &raw.path, &key("path"), "stream path");
        check_topic(report, &key("topic"), &raw.topic);
        at_least_one(report, &key("queue"), to_i64(raw.queue));
        if let Some(origins) = &raw.allowed_origins {
            for (i, origin) in origins.iter().enumerate() {
                check_origin(report, &join_index(&key("allowed_origins"), i), origin);
            }
        }
        let (subscribe_tokens, publish_tokens) = match &raw.tokens {
            None | Some(Value::Null) => (Vec::new(), Vec::new()),
            Some(value) => {
                let tokens_path = key("tokens");
                match item::<RawStreamTokens>(report, value, &tokens_path, None) {
                    Some(spec) => (
                        tokens(
                            report,
                            spec.subscribe.as_ref(),
                            &join_key(&tokens_path, "subscribe"),
                        ),
                        tokens(
                            report,
                            spec.publish.as_ref(),
                            &join_key(&tokens_path, "publish"),
                        ),
                    ),
                    None => (Vec::new(), Vec::new()),
                }
            }
        };
        if !publish_tokens.is_empty() && !raw.publish {
            report.add(
                &key("tokens"),
                "publish tokens are set, but `publish` is not true",
            );
        }
        streams.push(Stream {
            path: raw.path,
            topic: raw.topic,
            publish: raw.publish,
            subscribe_tokens,
            publish_tokens,
            allowed_origins: raw.allowed_origins,
            queue: raw.queue,
            max_history: raw.max_history,
        });
    }
    streams
}

/// A stream's path: absolute, plain, and clear of the ingress's own routes.
fn check_path(report: &mut Report<'_>, path: &str, value: &str) {
    let why = if !value.starts_with('/') || value.len() < 2 {
        "must start with \"/\" and name something, such as \"/chat/stream\""
    } else if value.ends_with('/') {
        "must not end with \"/\""
    } else if value == "/topics" || value.starts_with("/topics/") {
        "is taken by the ingress (`/topics/{name}`)"
    } else if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
        || value.contains("//")
        || value.split('/').any(|part| part == "." || part == "..")
    {
        "may contain only letters, digits, '-', '_', '.' and single '/'"
    } else {
        return;
    };
    report.add(path, format!("invalid stream path {value:?}: {why}"));
}

/// `*`, or an origin as browsers send it: `scheme://host[:port]`.
fn check_origin(report: &mut Report<'_>, path: &str, origin: &str) {
    if origin == "*" {
        return;
    }
    let valid = Url::parse(origin).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some()
            && url.path() == "/"
            && !origin.ends_with('/')
            && url.query().is_none()
    });
    if !valid {
        report.add(
            path,
            format!("invalid origin {origin:?}: expected \"*\" or scheme://host[:port], such as \"https://chat.example.com\""),
        );
    }
}

/// A list of tokens, each read now from where it is kept; one written in the file itself
/// is refused.
pub(super) fn tokens(report: &mut Report<'_>, value: Option<&Value>, path: &str) -> Vec<Token> {
    let Some(value) = value else {
        return Vec::new();
    };
    let mut tokens = Vec::new();
    for (index, value) in items(report, value, path).iter().enumerate() {
        if let Some(token) = token(report, value, &join_index(path, index)) {
            tokens.push(token);
        }
    }
    tokens
}

/// One token: `{env: NAME}` or `{file: PATH}`, read now.
pub(super) fn token(report: &mut Report<'_>, value: &Value, path: &str) -> Option<Token> {
    if let Value::String(_) | Value::Number(_) = value {
        report.add(
            path,
            "a token is never read from the config file itself: use `{env: NAME}` or `{file: PATH}`",
        );
        return None;
    }
    let raw = item::<RawToken>(report, value, path, None)?;
    let (origin, read) = match (raw.env, raw.file) {
        (Some(name), None) => (
            format!("environment variable {name}"),
            std::env::var(&name).map_err(|_| format!("environment variable {name} is not set")),
        ),
        (None, Some(file)) => (
            format!("file {}", file.display()),
            std::fs::read_to_string(&file)
                .map_err(|err| format!("cannot read {}: {err}", file.display())),
        ),
        _ => {
            report.add(path, "expected `{env: NAME}` or `{file: PATH}`");
            return None;
        }
    };
    match read.map(|text| text.trim().to_owned()) {
        Ok(text) if text.is_empty() => {
            report.add(path, format!("the {origin} is empty"));
            None
        }
        Ok(text) => Some(Token::new(origin, text)),
        Err(why) => {
            report.add(path, why);
            None
        }
    }
}
