//! The `discovery` section.

use super::triggers::{RawTrigger, trigger};
use super::*;
use crate::config::discovery::{BasicAuth, OpenFaasDiscovery, Secret};

/// The section as written: one source of functions for now.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscovery {
    /// See [`OpenFaasDiscovery`].
    #[serde(default)]
    openfaas: Option<Value>,
}

/// `discovery.openfaas` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpenFaas {
    /// See [`OpenFaasDiscovery::gateway`].
    #[serde(deserialize_with = "de::url")]
    gateway: Url,
    /// See [`OpenFaasDiscovery::rebuild_interval`].
    #[serde(
        default = "default_rebuild_interval",
        deserialize_with = "de::duration"
    )]
    rebuild_interval: Duration,
    /// See [`OpenFaasDiscovery::timeout`].
    #[serde(default = "default_gateway_timeout", deserialize_with = "de::duration")]
    timeout: Duration,
    /// See [`OpenFaasDiscovery::topics`].
    #[serde(default, deserialize_with = "de::optional_string_list")]
    topics: Option<Vec<String>>,
    /// See [`OpenFaasDiscovery::topic_delimiter`].
    #[serde(default = "default_topic_delimiter")]
    topic_delimiter: String,
    /// See [`OpenFaasDiscovery::namespace`].
    #[serde(default)]
    namespace: Option<String>,
    /// See [`OpenFaasDiscovery::asynchronous`].
    #[serde(default)]
    asynchronous: bool,
    /// See [`OpenFaasDiscovery::basic_auth`].
    #[serde(default)]
    basic_auth: Option<Value>,
    /// See [`OpenFaasDiscovery::trigger`]; kept as YAML and read like a trigger.
    #[serde(default)]
    trigger: Option<Value>,
}

/// OpenFaaS's own default for the kafka-connector is 3 s; the gateway's function list
/// changes rarely, and 30 s keeps an idle gateway quiet.
fn default_rebuild_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_gateway_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The connector-sdk's default.
fn default_topic_delimiter() -> String {
    ",".to_owned()
}

/// `basic_auth` as written. The password has no plain form: it comes from the environment
/// or a file, so that it never sits in a config file that may be shared or logged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    /// The user name, written out.
    #[serde(default)]
    username: Option<String>,
    /// A file holding the user name (OpenFaaS's `basic-auth-user` secret).
    #[serde(default)]
    username_file: Option<PathBuf>,
    /// An environment variable holding the password.
    #[serde(default)]
    password_env: Option<String>,
    /// A file holding the password (OpenFaaS's `basic-auth-password` secret).
    #[serde(default)]
    password_file: Option<PathBuf>,
}

pub(super) fn discovery(report: &mut Report<'_>, value: &Value) -> Option<OpenFaasDiscovery> {
    let raw = super::section::<RawDiscovery>(report, Some(value), "discovery")?;
    let path = "discovery.openfaas";
    let value = raw.openfaas?;
    let raw = item::<RawOpenFaas>(report, &value, path, None)?;
    let key = |k: &str| join_key(path, k);
    check_url(report, &key("gateway"), &raw.gateway);
    if raw.gateway.cannot_be_a_base() || raw.gateway.host_str().is_none() {
        report.add(
            &key("gateway"),
            format!("not a gateway address: {}", raw.gateway),
        );
    }
    positive(report, &key("rebuild_interval"), raw.rebuild_interval);
    positive(report, &key("timeout"), raw.timeout);
    if let Some(topics) = &raw.topics {
        check_topics(report, &key("topics"), topics);
    }
    if raw.topic_delimiter.is_empty() {
        report.add(&key("topic_delimiter"), "must not be empty");
    }
    if let Some(namespace) = &raw.namespace
        && let Err(why) = check_name(namespace)
    {
        report.add(
            &key("namespace"),
            format!("invalid namespace {namespace:?}: {why}"),
        );
    }
    let basic_auth = match &raw.basic_auth {
        None | Some(Value::Null) => Some(None),
        Some(value) => basic_auth(report, value, &key("basic_auth")).map(Some),
    };
    let (template, dead_letter_set) = template(report, raw.trigger.as_ref(), &raw.gateway, path)?;
    Some(OpenFaasDiscovery {
        gateway: raw.gateway,
        rebuild_interval: raw.rebuild_interval,
        timeout: raw.timeout,
        topics: raw.topics,
        topic_delimiter: raw.topic_delimiter,
        namespace: raw.namespace,
        asynchronous: raw.asynchronous,
        basic_auth: basic_auth?,
        trigger: template,
        dead_letter_set,
    })
}

fn basic_auth(report: &mut Report<'_>, value: &Value, path: &str) -> Option<BasicAuth> {
    if let Value::Object(map) = value
        && map.contains_key("password")
    {
        report.add(
            &join_key(path, "password"),
            "a password is never read from the config file: use `password_env` (an environment variable) or `password_file`",
        );
        let mut rest = map.clone();
        let _ = rest.remove("password");
        return basic_auth(report, &Value::Object(rest), path);
    }
    let raw = item::<RawBasicAuth>(report, value, path, None)?;
    let username = match (raw.username, raw.username_file) {
        (Some(name), None) => Some(Secret::Text(name)),
        (None, Some(file)) => checked(report, Secret::File(file), path, "username_file"),
        (Some(_), Some(_)) => {
            report.add(path, "set either `username` or `username_file`, not both");
            None
        }
        (None, None) => {
            report.add(path, "missing `username` or `username_file`");
            None
        }
    };
    let password = match (raw.password_env, raw.password_file) {
        (Some(name), None) => checked(report, Secret::Env(name), path, "password_env"),
        (None, Some(file)) => checked(report, Secret::File(file), path, "password_file"),
        (Some(_), Some(_)) => {
            report.add(
                path,
                "set either `password_env` or `password_file`, not both",
            );
            None
        }
        (None, None) => {
            report.add(path, "missing `password_env` or `password_file`");
            None
        }
    };
    Some(BasicAuth {
        username: username?,
        password: password?,
    })
}

/// A secret that can be read now. It is checked at load, so that a missing one fails at
/// start rather than at the first read; it is read again at every read of the gateway.
fn checked(report: &mut Report<'_>, secret: Secret, path: &str, key: &str) -> Option<Secret> {
    match secret.read() {
        Ok(_) => Some(secret),
        Err(why) => {
            report.add(&join_key(path, key), why);
            None
        }
    }
}

/// The `trigger` template: any trigger setting but those discovery sets per function.
fn template(
    report: &mut Report<'_>,
    value: Option<&Value>,
    gateway: &Url,
    path: &str,
) -> Option<(Trigger, bool)> {
    let path = join_key(path, "trigger");
    let mut map = match value {
        None | Some(Value::Null) => Mapping::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(other) => {
            report.add(
                &path,
                format!("expected a mapping, found {}", describe(other)),
            );
            return None;
        }
    };
    for key in ["name", "topics", "function", "url", "group"] {
        if map.remove(key).is_some() {
            report.add(
                &join_key(&path, key),
                format!("`{key}` is set by discovery for each function; leave it out"),
            );
        }
    }
    let dead_letter_set = map.contains_key("dead_letter");
    // Stand-ins for what each function sets; they are replaced before the trigger runs.
    let _ = map.insert("name".to_owned(), Value::from("openfaas"));
    let _ = map.insert("topics".to_owned(), Value::from(vec!["openfaas"]));
    let _ = map.insert("url".to_owned(), Value::from(gateway.as_str()));
    let raw = de::deserialize::<RawTrigger>(report, &Value::Object(map), &path, None)?;
    let template = trigger(report, raw, &path, &BTreeSet::new(), &BTreeMap::new())?;
    Some((template, dead_letter_set))
}
