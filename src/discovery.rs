//! Discovery of functions that subscribe to topics, from an OpenFaaS gateway: every
//! `rebuild_interval` the gateway's function list is read (`GET /system/functions`, per
//! namespace), and each function whose `topic` annotation lists topics gets a trigger that
//! delivers to `{gateway}/function/{name}.{namespace}` with sluice's guarantees.
//!
//! Nothing is handed over before the first successful read, so no topic is consumed for a
//! function that is not known yet (the kafka-connector lost records exactly there). A read
//! that fails keeps the last map, with a warning and `sluice_discovery_reads_total{outcome="error"}`.

use std::{collections::BTreeMap, sync::Arc};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, StatusCode, Uri, header};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    admin::{AdminState, DiscoveryStatus},
    config::{Endpoint, Trigger, discovery::OpenFaasDiscovery},
    metrics::OutcomeLabels,
};

/// The most of a gateway answer that is read.
const BODY_LIMIT: usize = 16 << 20;

/// Why the gateway's function list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// No answer, or the connection failed.
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// What was asked for.
        url: String,
        /// Why.
        reason: String,
    },
    /// An answer other than 200.
    #[error("{url} answered HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        /// What was asked for.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// An answer that is not the gateway's JSON.
    #[error("{url} answered with something other than the gateway's JSON: {reason}")]
    Body {
        /// What was asked for.
        url: String,
        /// Why it could not be read.
        reason: String,
    },
    /// The credentials could not be read.
    #[error("cannot read the gateway's credentials: {0}")]
    Credentials(String),
}

/// One function of the gateway's list; only what discovery uses.
#[derive(Debug, Clone, Deserialize)]
pub struct GatewayFunction {
    /// The function's name.
    pub name: String,
    /// Its namespace, when the gateway has namespaces.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Its annotations; `topic` lists the topics it subscribes to.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// What one read of the gateway found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    /// One trigger per function that subscribes to at least one topic.
    pub triggers: Vec<Trigger>,
    /// The functions behind them, as `name.namespace`.
    pub functions: Vec<String>,
    /// Annotations that could not be used, each a sentence.
    pub skipped: Vec<String>,
}

/// The triggers for the functions of a gateway's list.
pub fn triggers(settings: &OpenFaasDiscovery, functions: &[GatewayFunction]) -> Found {
    let mut found = Found::default();
    let base = settings.gateway.as_str().trim_end_matches('/');
    let route = if settings.asynchronous {
        "async-function"
    } else {
        "function"
    };
    for function in functions {
        let Some(annotation) = function.annotations.as_ref().and_then(|a| a.get("topic")) else {
            continue;
        };
        let qualified = match &function.namespace {
            Some(namespace) if !namespace.is_empty() => format!("{}.{namespace}", function.name),
            _ => function.name.clone(),
        };
        let mut topics: Vec<String> = Vec::new();
        for topic in annotation.split(settings.topic_delimiter.as_str()) {
            let topic = topic.trim();
            if topic.is_empty() || topics.iter().any(|t| t == topic) {
                continue;
            }
            if let Some(allowed) = &settings.topics
                && !allowed.iter().any(|t| t == topic)
            {
                continue;
            }
            if let Err(why) = check_topic(topic) {
                found.skipped.push(format!(
                    "function {qualified}: topic {topic:?} in its annotation {why}"
                ));
                continue;
            }
            topics.push(topic.to_owned());
        }
        if topics.is_empty() {
            continue;
        }
        if let Err(why) = check_function_name(&qualified) {
            found
                .skipped
                .push(format!("function {qualified:?}: its name {why}"));
            continue;
        }
        let target = url::Url::parse(&format!("{base}/{route}/{qualified}"))
            .map_err(|err| err.to_string())
            .and_then(Endpoint::parse);
        let target = match target {
            Ok(target) => target,
            Err(why) => {
                found
                    .skipped
                    .push(format!("function {qualified}: no URL to call it: {why}"));
                continue;
            }
        };
        let name = format!("openfaas-{qualified}");
        found
            .triggers
            .push(settings.trigger_for(&name, topics, target));
        found.functions.push(qualified);
    }
    found.triggers.sort_by(|a, b| a.name.cmp(&b.name));
    found.functions.sort();
    found
}

/// Kafka's rules for a topic name.
fn check_topic(name: &str) -> Result<(), &'static str> {
    if name.len() > 249 || name == "." || name == ".." {
        return Err("is not a valid topic name");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("may contain only letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// OpenFaaS names are DNS labels; the trigger and its consumer group are named after them.
fn check_function_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 200 {
        return Err("must be 1 to 200 characters long");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("may contain only letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// Reads one gateway's function list.
#[derive(Debug, Clone)]
pub struct Gateway {
    settings: OpenFaasDiscovery,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Gateway {
    /// A reader of the gateway `settings` names.
    pub fn new(settings: OpenFaasDiscovery) -> Self {
        Self {
            settings,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// The settings this reader follows.
    pub fn settings(&self) -> &OpenFaasDiscovery {
        &self.settings
    }

    /// Reads every function the settings cover and builds their triggers.
    pub async fn read(&self) -> Result<Found, DiscoveryError> {
        let namespaces = match &self.settings.namespace {
            Some(namespace) => vec![Some(namespace.clone())],
            None => match self.get::<Vec<String>>("system/namespaces").await {
                Ok(list) if !list.is_empty() => list.into_iter().map(Some).collect(),
                Ok(_) => vec![None],
                // A gateway without namespaces (faasd, older gateways) has no such route.
                Err(DiscoveryError::Status {
                    status: 404 | 405 | 501,
                    ..
                }) => {
                    vec![None]
                }
                Err(err) => return Err(err),
            },
        };
        let mut functions = Vec::new();
        for namespace in namespaces {
            let path = match &namespace {
                Some(namespace) => format!("system/functions?namespace={namespace}"),
                None => "system/functions".to_owned(),
            };
            let mut list: Vec<GatewayFunction> = self.get(&path).await?;
            for function in &mut list {
                if function.namespace.as_deref().is_none_or(str::is_empty) {
                    function.namespace.clone_from(&namespace);
                }
            }
            functions.extend(list);
        }
        Ok(triggers(&self.settings, &functions))
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, DiscoveryError> {
        let url = format!(
            "{}/{path}",
            self.settings.gateway.as_str().trim_end_matches('/')
        );
        let unreachable = |reason: String| DiscoveryError::Unreachable {
            url: url.clone(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|err| unreachable(format!("{err}")))?;
        let mut request = Request::get(uri).header(header::ACCEPT, "application/json");
        if let Some(auth) = &self.settings.basic_auth {
            let user = auth.username.read().map_err(DiscoveryError::Credentials)?;
            let password = auth.password.read().map_err(DiscoveryError::Credentials)?;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request = request.header(header::AUTHORIZATION, format!("Basic {token}"));
        }
        let request = request
            .body(Empty::new())
            .map_err(|err| unreachable(err.to_string()))?;
        let response = tokio::time::timeout(self.settings.timeout, async {
            let response = self.client.request(request).await.map_err(|err| {
                let mut reason = err.to_string();
                if let Some(source) = std::error::Error::source(&err) {
                    reason = format!("{reason}: {source}");
                }
                unreachable(reason)
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), BODY_LIMIT)
                .collect()
                .await
                .map_err(|err| unreachable(err.to_string()))?
                .to_bytes();
            Ok::<_, DiscoveryError>((status, body))
        })
        .await
        .map_err(|_| {
            unreachable(format!(
                "no answer within {}",
                humantime::format_duration(self.settings.timeout)
            ))
        })??;
        let (status, body) = response;
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&body);
            let excerpt: String = text.trim().chars().take(200).collect();
            return Err(DiscoveryError::Status {
                url,
                status: status.as_u16(),
                body: excerpt,
            });
        }
        serde_json::from_slice(&body).map_err(|err| DiscoveryError::Body {
            url,
            reason: err.to_string(),
        })
    }
}

/// The discovered triggers, `None` until the first successful read.
pub type Updates = watch::Receiver<Option<Vec<Trigger>>>;

/// Reads the gateway now and every `rebuild_interval` until `cancel`, handing each new set
/// of triggers to `updates`; a failed read keeps the last set.
pub async fn run(
    gateway: Gateway,
    state: Arc<AdminState>,
    updates: watch::Sender<Option<Vec<Trigger>>>,
    cancel: CancellationToken,
) {
    let settings = gateway.settings().clone();
    let outcome = |outcome: &str| {
        state
            .metrics()
            .discovery_reads
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    };
    let mut last_skipped: Vec<String> = Vec::new();
    loop {
        match gateway.read().await {
            Ok(found) => {
                outcome("ok");
                if found.skipped != last_skipped {
                    for why in &found.skipped {
                        warn!(gateway = %settings.gateway, reason = %why, "A function's topic annotation is ignored.");
                    }
                    last_skipped = found.skipped.clone();
                }
                state
                    .metrics()
                    .discovered_triggers
                    .set(i64::try_from(found.triggers.len()).unwrap_or(i64::MAX));
                let now =
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
                state.update_status(|status| {
                    status.discovery = Some(DiscoveryStatus {
                        gateway: settings.gateway.to_string(),
                        last_read: Some(now),
                        error: None,
                        functions: found.functions.clone(),
                    });
                });
                let _ = updates.send_if_modified(|current| {
                    if current.as_ref() == Some(&found.triggers) {
                        return false;
                    }
                    info!(gateway = %settings.gateway, functions = ?found.functions, "Functions read from the OpenFaaS gateway changed.");
                    *current = Some(found.triggers);
                    true
                });
            }
            Err(err) => {
                outcome("error");
                warn!(gateway = %settings.gateway, error = %err, "Cannot read the OpenFaaS gateway's functions; the last map is kept.");
                state.update_status(|status| {
                    let discovery = status.discovery.get_or_insert_with(|| DiscoveryStatus {
                        gateway: settings.gateway.to_string(),
                        ..DiscoveryStatus::default()
                    });
                    discovery.error = Some(err.to_string());
                });
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(settings.rebuild_interval) => {}
        }
    }
}

#[cfg(test)]
mod tests;
