//! Builds the typed [`Config`] from the YAML tree and checks what types alone cannot: ranges,
//! names, references between sections and duplicates.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::de::{self, Report};
use super::path::{join_index, join_key};
use super::yaml::{Document, Mapping, Value};

mod discovery;
mod edge;
mod filters;
mod triggers;
use super::{
    AdminConfig, CommandFunction, Config, DeadLetter, Delivery, EmbeddedConfig, Endpoint,
    ExecFunction, Function, FunctionKind, InitialOffset, JobFunction, KafkaConfig, LogResponse,
    Ordering, Problem, Reply, Target, TopicConfig, Trigger, UrlFunction,
};

/// `admin` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    /// See [`AdminConfig::listen`].
    #[serde(
        default = "super::default_admin_listen",
        deserialize_with = "de::socket_addr"
    )]
    listen: std::net::SocketAddr,
    /// See [`AdminConfig::token`]: `{env: NAME}` or `{file: PATH}`.
    #[serde(default)]
    token: Option<Value>,
}

/// The top level, with each section kept as YAML so that sections are checked independently.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    /// See [`Config::data_dir`].
    data_dir: Option<Value>,
    /// See [`Config::kafka`].
    kafka: Option<Value>,
    /// See [`Config::embedded`].
    embedded: Option<Value>,
    /// See [`Config::admin`].
    admin: Option<Value>,
    /// See [`Config::topics`].
    topics: Option<Value>,
    /// See [`Config::functions`].
    functions: Option<Value>,
    /// See [`Config::triggers`].
    triggers: Option<Value>,
    /// See [`Config::discovery`].
    discovery: Option<Value>,
    /// See [`Config::ingress`].
    ingress: Option<Value>,
    /// See [`Config::streams`].
    streams: Option<Value>,
}

/// Builds the configuration and returns it with every problem found; the configuration is
/// only meaningful when there are none.
pub(super) fn resolve(document: Document) -> (Config, Vec<Problem>) {
    let Document {
        root,
        positions,
        problems,
    } = document;
    let mut report = Report::new(&positions);
    report.problems = problems;
    let mut config = Config::default();
    match &root {
        None | Some(Value::Null) => {}
        Some(root @ Value::Object(_)) => {
            if let Some(sections) = de::deserialize::<Sections>(&mut report, root, "", None) {
                fill(&mut report, &mut config, sections);
            }
        }
        Some(other) => report.add(
            "",
            format!(
                "expected a mapping of settings at the top level, found {}",
                describe(other)
            ),
        ),
    }
    (config, report.problems)
}

fn fill(report: &mut Report<'_>, config: &mut Config, sections: Sections) {
    if let Some(value) = &sections.data_dir
        && let Some(dir) = de::deserialize::<PathBuf>(report, value, "data_dir", None)
    {
        if dir.as_os_str().is_empty() {
            report.add("data_dir", "must not be empty");
        }
        config.data_dir = dir;
    }
    if let Some(kafka) = section::<KafkaConfig>(report, sections.kafka.as_ref(), "kafka") {
        if kafka
            .bootstrap_servers
            .as_deref()
            .is_some_and(|servers| servers.trim().is_empty())
        {
            report.add(
                "kafka.bootstrap_servers",
                "must not be empty; leave it out to use the embedded broker",
            );
        }
        config.kafka = kafka;
    }
    if let Some(embedded) =
        section::<EmbeddedConfig>(report, sections.embedded.as_ref(), "embedded")
    {
        at_least_one(
            report,
            "embedded.default_partitions",
            i64::from(embedded.default_partitions),
        );
        config.embedded = embedded;
    }
    if let Some(raw) = section::<RawAdmin>(report, sections.admin.as_ref(), "admin") {
        let token = match &raw.token {
            None | Some(Value::Null) => None,
            Some(value) => edge::token(report, value, "admin.token"),
        };
        config.admin = AdminConfig {
            listen: raw.listen,
            token,
        };
    }
    if !config.admin.listen.ip().is_loopback() && config.admin.token.is_none() {
        report.add(
            "admin.listen",
            format!(
                "the admin listener on {} is reachable from other hosts: set admin.token ({{env: NAME}} or {{file: PATH}}), which seek, reload and redrive then need",
                config.admin.listen
            ),
        );
    }
    if let Some(value) = &sections.topics {
        config.topics = topics(report, value);
    }
    // Triggers may name any function written in the file, even one that failed to build, so
    // that a broken function is reported once rather than again by every trigger using it.
    let mut declared = BTreeSet::new();
    if let Some(value) = &sections.functions {
        config.functions = functions(report, value, &mut declared);
    }
    if let Some(value) = &sections.triggers {
        config.triggers = triggers::triggers(report, value, &declared, &config.functions);
    }
    let implicit = triggers::subscriptions(report, &config.functions, &config.triggers);
    config.triggers.extend(implicit);
    if let Some(value) = &sections.discovery {
        config.discovery = discovery::discovery(report, value);
    }
    if let Some(value) = &sections.ingress {
        config.ingress = edge::ingress(report, value);
    }
    if let Some(value) = &sections.streams {
        config.streams = edge::streams(report, value);
    }
}

/// A mapping section; null or absent means all defaults.
fn section<T: DeserializeOwned>(
    report: &mut Report<'_>,
    value: Option<&Value>,
    path: &str,
) -> Option<T> {
    match value? {
        value @ Value::Object(_) => de::deserialize(report, value, path, None),
        other => {
            report.add(
                path,
                format!("expected a mapping, found {}", describe(other)),
            );
            None
        }
    }
}

/// The items of a list section; null means empty.
fn items<'v>(report: &mut Report<'_>, value: &'v Value, path: &str) -> &'v [Value] {
    match value {
        Value::Array(items) => items,
        Value::Null => &[],
        other => {
            report.add(path, format!("expected a list, found {}", describe(other)));
            &[]
        }
    }
}

/// An item of a list or map that must itself be a mapping.
fn item<T: DeserializeOwned>(
    report: &mut Report<'_>,
    value: &Value,
    path: &str,
    label: Option<&str>,
) -> Option<T> {
    if value.is_object() {
        de::deserialize(report, value, path, label)
    } else {
        report.add(
            path,
            format!("expected a mapping, found {}", describe(value)),
        );
        None
    }
}

fn topics(report: &mut Report<'_>, value: &Value) -> Vec<TopicConfig> {
    let mut topics = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (index, value) in items(report, value, "topics").iter().enumerate() {
        let path = join_index("topics", index);
        let Some(topic) = item::<TopicConfig>(report, value, &path, None) else {
            continue;
        };
        let name_path = join_key(&path, "name");
        check_topic(report, &name_path, &topic.name);
        duplicate(report, &mut seen, &topic.name, &name_path, "topic");
        if let Some(partitions) = topic.partitions {
            at_least_one(
                report,
                &join_key(&path, "partitions"),
                i64::from(partitions),
            );
        }
        at_least_one(
            report,
            &join_key(&path, "replication_factor"),
            i64::from(topic.replication_factor),
        );
        topics.push(topic);
    }
    topics
}

fn functions(
    report: &mut Report<'_>,
    value: &Value,
    declared: &mut BTreeSet<String>,
) -> BTreeMap<String, Function> {
    let mut functions = BTreeMap::new();
    let map = match value {
        Value::Object(map) => map,
        Value::Null => return functions,
        other => {
            report.add(
                "functions",
                format!(
                    "expected a mapping of function names to functions, found {}",
                    describe(other)
                ),
            );
            return functions;
        }
    };
    for (key, value) in map {
        // Keys are always text: the YAML reader keeps every key's source spelling.
        let name = key.as_str();
        declared.insert(name.to_owned());
        let path = join_key("functions", name);
        if let Err(why) = check_name(name) {
            report.add(&path, format!("invalid function name {name:?}: {why}"));
        }
        if let Some(function) = function(report, name, value, &path) {
            functions.insert(name.to_owned(), function);
        }
    }
    functions
}

fn function(report: &mut Report<'_>, name: &str, value: &Value, path: &str) -> Option<Function> {
    let all = "`url`, `command`, `exec` or `job`";
    let Value::Object(map) = value else {
        report.add(
            path,
            format!(
                "expected a mapping with one of {all}, found {}",
                describe(value)
            ),
        );
        return None;
    };
    let kinds: Vec<FunctionKind> = FunctionKind::ALL
        .into_iter()
        .filter(|kind| map.contains_key(kind.as_str()))
        .collect();
    let kind = match kinds.as_slice() {
        [kind] => *kind,
        [] => {
            report.add(
                path,
                format!("function `{name}` has no kind: set one of {all}"),
            );
            return None;
        }
        many => {
            let keys: Vec<String> = many.iter().map(|k| format!("`{k}`")).collect();
            report.add(
                path,
                format!(
                    "function `{name}` sets more than one kind ({}): set only one of {all}",
                    keys.join(", ")
                ),
            );
            return None;
        }
    };
    let article = if kind == FunctionKind::Exec {
        "an"
    } else {
        "a"
    };
    let label = format!("{article} {kind} function");
    let label = Some(label.as_str());
    let key = |k: &str| join_key(path, k);
    match kind {
        FunctionKind::Url => {
            let function = de::deserialize::<UrlFunction>(report, value, path, label)?;
            check_url(report, &key("url"), &function.url);
            Some(Function::Url(function))
        }
        FunctionKind::Command => {
            let function = de::deserialize::<CommandFunction>(report, value, path, label)?;
            check_argv(report, &key("command"), &function.command);
            check_env(report, &key("env"), &function.env);
            at_least_one(report, &key("max"), to_i64(function.max));
            if function.max >= 1 && function.max < function.min {
                report.add(
                    &key("max"),
                    format!(
                        "max ({}) must not be less than min ({})",
                        function.max, function.min
                    ),
                );
            }
            at_least_one(report, &key("concurrency"), to_i64(function.concurrency));
            positive(report, &key("startup_timeout"), function.startup_timeout);
            if let Some(readiness) = &function.readiness_path
                && !readiness.starts_with('/')
            {
                report.add(
                    &key("readiness_path"),
                    format!("must start with \"/\", got {readiness:?}"),
                );
            }
            Some(Function::Command(function))
        }
        FunctionKind::Exec => {
            let function = de::deserialize::<ExecFunction>(report, value, path, label)?;
            check_argv(report, &key("exec"), &function.exec);
            check_env(report, &key("env"), &function.env);
            if let Some(concurrency) = function.concurrency {
                at_least_one(report, &key("concurrency"), to_i64(concurrency));
            }
            positive(report, &key("timeout"), function.timeout);
            Some(Function::Exec(function))
        }
        FunctionKind::Job => {
            let function = de::deserialize::<JobFunction>(report, value, path, label)?;
            check_argv(report, &key("job"), &function.job);
            check_env(report, &key("env"), &function.env);
            check_topics(report, &key("topics"), &function.topics);
            if function.group.trim().is_empty() {
                report.add(&key("group"), "must not be empty");
            }
            at_least_one(report, &key("max"), to_i64(function.max));
            positive(report, &key("poll_interval"), function.poll_interval);
            Some(Function::Job(function))
        }
    }
}

/// Reports a required key that is absent, unless it was dropped after a problem already reported.
fn required(report: &mut Report<'_>, path: &str, key: &str) {
    if !report.was_removed(&join_key(path, key)) {
        report.add(path, format!("missing required key `{key}`"));
    }
}

/// Reports the second and later uses of a name, pointing back at the first.
fn duplicate(
    report: &mut Report<'_>,
    seen: &mut HashMap<String, String>,
    name: &str,
    path: &str,
    what: &str,
) {
    if let Some(first) = seen.get(name) {
        let first = match report.position(first) {
            Some(pos) => format!("line {}", pos.line),
            None => first.clone(),
        };
        report.add(
            path,
            format!("duplicate {what} name `{name}`; it is already used at {first}"),
        );
    } else {
        seen.insert(name.to_owned(), path.to_owned());
    }
}

/// Function and trigger names end up in process names, consumer groups and topic names.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err("may contain only lowercase letters a-z, digits, '-' and '_'");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must start with a letter or a digit");
    }
    Ok(())
}

/// Kafka's own rules, checked here so that a bad name fails at start-up, not at first use.
fn check_topic(report: &mut Report<'_>, path: &str, name: &str) {
    let why = if name.is_empty() || name.len() > 249 {
        "must be 1 to 249 characters long"
    } else if name == "." || name == ".." {
        "cannot be \".\" or \"..\""
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        "may contain only letters, digits, '.', '_' and '-'"
    } else {
        return;
    };
    report.add(path, format!("invalid topic name {name:?}: {why}"));
}

fn check_topics(report: &mut Report<'_>, path: &str, topics: &[String]) {
    if topics.is_empty() {
        report.add(path, "must list at least one topic");
    }
    for (index, topic) in topics.iter().enumerate() {
        check_topic(report, &join_index(path, index), topic);
    }
}

/// Functions are called over plain HTTP; an `https` URL is refused here, since it could
/// never be called.
fn check_url(report: &mut Report<'_>, path: &str, url: &Url) {
    match url.scheme() {
        "http" => {}
        "https" => report.add(
            path,
            format!(
                "https is not supported: sluice calls functions over plain http (put a TLS proxy in front of a function that needs it): {url}"
            ),
        ),
        scheme => report.add(
            path,
            format!("the URL must use http, not `{scheme}`: {url}"),
        ),
    }
}

fn check_argv(report: &mut Report<'_>, path: &str, argv: &[String]) {
    match argv.first() {
        None => report.add(path, "must name a program to run"),
        Some(program) if program.trim().is_empty() => {
            report.add(&join_index(path, 0), "the program name must not be empty");
        }
        Some(_) => {}
    }
}

/// Names the operating system would refuse, caught before any process is started.
fn check_env(report: &mut Report<'_>, path: &str, env: &BTreeMap<String, String>) {
    for (name, value) in env {
        let key = join_key(path, name);
        if name.is_empty() || name.contains(['=', '\0']) {
            report.add(&key, format!("invalid environment variable name {name:?}"));
        } else if value.contains('\0') {
            report.add(&key, "environment values cannot contain NUL characters");
        }
    }
}

fn at_least_one(report: &mut Report<'_>, path: &str, value: i64) {
    if value < 1 {
        report.add(path, format!("must be at least 1, got {value}"));
    }
}

fn positive(report: &mut Report<'_>, path: &str, value: Duration) {
    if value.is_zero() {
        report.add(path, "must be longer than zero");
    }
}

fn to_i64(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
