//! The `discovery` section: functions found on an OpenFaaS gateway, each bound to the topics
//! its `topic` annotation lists.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::{DeadLetter, Trigger};

/// Discovery of functions that subscribe to topics, from an OpenFaaS gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenFaasDiscovery {
    /// The gateway, e.g. `http://127.0.0.1:8080`.
    pub gateway: Url,
    /// How often the function list is read again (OpenFaaS's `rebuild_interval`).
    pub rebuild_interval: Duration,
    /// How long one read of the gateway may take.
    pub timeout: Duration,
    /// Only these topics are bound, when set (the kafka-connector's `topics`); otherwise
    /// every topic an annotation lists.
    pub topics: Option<Vec<String>>,
    /// What separates topics in a `topic` annotation.
    pub topic_delimiter: String,
    /// Only functions of this namespace, when set; otherwise every namespace the gateway
    /// lists.
    pub namespace: Option<String>,
    /// Deliver through `/async-function/` (the gateway queues the call and answers 202).
    pub asynchronous: bool,
    /// Credentials for the gateway's `/system` API.
    pub basic_auth: Option<BasicAuth>,
    /// The settings every discovered trigger gets; its name, topics, target and group are
    /// set per function.
    pub trigger: Trigger,
    /// Whether `trigger.dead_letter` was written; when not, each trigger dead-letters to
    /// `sluice.dlq.<its name>` like any other.
    pub dead_letter_set: bool,
}

impl OpenFaasDiscovery {
    /// The trigger for one discovered function: the template, named `name`, reading
    /// `topics`, delivering to `target`.
    pub fn trigger_for(&self, name: &str, topics: Vec<String>, target: super::Endpoint) -> Trigger {
        let mut trigger = self.trigger.clone();
        trigger.name = name.to_owned();
        trigger.topics = topics;
        trigger.target = super::Target::Url(target);
        if !self.dead_letter_set {
            trigger.dead_letter = DeadLetter::default_for(name);
        }
        trigger
    }
}

/// A user name and password for HTTP basic auth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The user name.
    pub username: Secret,
    /// The password: never written in the file itself.
    pub password: Secret,
}

/// A value read when it is used, so that a rotated secret file takes effect without a
/// restart.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// Written in the file (user names only).
    Text(String),
    /// The value of an environment variable.
    Env(String),
    /// The contents of a file, without the trailing line break.
    File(PathBuf),
}

impl Secret {
    /// The value, or why it cannot be read.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Self::Text(text) => Ok(text.clone()),
            Self::Env(name) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
            }
            Self::File(path) => std::fs::read_to_string(path)
                .map(|text| text.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|err| format!("cannot read {}: {err}", path.display())),
        }
    }
}

/// Never shows the value itself.
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(_) => f.write_str("Text(..)"),
            Self::Env(name) => write!(f, "Env({name:?})"),
            Self::File(path) => write!(f, "File({path:?})"),
        }
    }
}
