//! `sluice connector openfaas`: a drop-in for the OpenFaaS kafka-connector. It reads the
//! connector's own environment variables, builds the equivalent config (discovery from the
//! gateway, one trigger per subscribed function) and runs it, so that a deployment switches
//! by changing its image and command.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::{CliError, parse_duration, serve};
use crate::{app::RunOptions, config};

/// Connector subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ConnectorCommand {
    /// The OpenFaaS kafka-connector, configured by its environment variables:
    /// `gateway_url`, `topics`, `broker_hosts` (or `broker_host`), `rebuild_interval`,
    /// `upstream_timeout`, `print_response`, `print_response_body`, `content_type`,
    /// `asynchronous_invocation`, `initial_offset`, `topic_delimiter`, `basic_auth` and
    /// `secret_mount_path`, with the connector's defaults.
    Openfaas(OpenFaasArgs),
}

/// Arguments of `sluice connector openfaas`; the rest comes from the environment.
#[derive(Debug, Clone, Args)]
pub struct OpenFaasArgs {
    /// Address of the admin endpoints.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub admin_listen: SocketAddr,
    /// Print the config built from the environment, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// How long a graceful stop may take before it is forced.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub grace: Duration,
}

// The connector's variables, with the defaults of its current release and Helm chart.
// `group`, `max_bytes`, `print_request_body` and `log_sessions` have no counterpart: each
// function gets a consumer group of its own (`sluice-openfaas-<function>.<namespace>`).
const GATEWAY_URL: (&str, &str) = ("gateway_url", "http://gateway.openfaas:8080");
const TOPICS: (&str, &str) = ("topics", "faas-request");
/// `broker_host` is the name releases before 2023 used; `broker_hosts` wins when both are set.
const BROKER_HOSTS: (&str, &str) = ("broker_hosts", "kf-kafka:9092");
const BROKER_HOST: &str = "broker_host";
const REBUILD_INTERVAL: (&str, &str) = ("rebuild_interval", "30s");
const UPSTREAM_TIMEOUT: (&str, &str) = ("upstream_timeout", "2m");
const PRINT_RESPONSE: (&str, &str) = ("print_response", "true");
const PRINT_RESPONSE_BODY: (&str, &str) = ("print_response_body", "false");
const CONTENT_TYPE: (&str, &str) = ("content_type", "text/plain");
const ASYNC: (&str, &str) = ("asynchronous_invocation", "false");
const INITIAL_OFFSET: (&str, &str) = ("initial_offset", "oldest");
const TOPIC_DELIMITER: (&str, &str) = ("topic_delimiter", ",");
const BASIC_AUTH: (&str, &str) = ("basic_auth", "true");
const SECRET_MOUNT_PATH: (&str, &str) = ("secret_mount_path", "/var/secrets");

/// Runs `sluice connector ...`.
pub async fn run(command: &ConnectorCommand) -> Result<(), CliError> {
    let ConnectorCommand::Openfaas(args) = command;
    let text = openfaas_config(&|name| std::env::var(name).ok(), args.admin_listen)?;
    if args.print_config {
        print!("{text}");
        return Ok(());
    }
    let config = config::parse(&text, "the connector's environment")?;
    let options = RunOptions {
        admin: true,
        triggers: true,
        grace: args.grace,
    };
    serve(&config, options, args.grace, None).await
}

/// The config the connector's environment describes, as YAML (JSON is YAML), checked as any
/// config file is.
pub fn openfaas_config(
    env: &dyn Fn(&str) -> Option<String>,
    admin: SocketAddr,
) -> Result<String, CliError> {
    let mut problems = Vec::new();
    let var = |(name, default): (&str, &str)| {
        env(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    let mut flag = |(name, default): (&str, &str)| {
        let text = var((name, default));
        // Go's strconv.ParseBool, which the connector uses.
        match text.as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
            "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
            other => {
                problems.push(format!("{name}: expected true or false, got {other:?}"));
                false
            }
        }
    };
    let print_response = flag(PRINT_RESPONSE);
    let print_body = flag(PRINT_RESPONSE_BODY);
    let asynchronous = flag(ASYNC);
    let basic_auth = flag(BASIC_AUTH);
    let initial_offset = match var(INITIAL_OFFSET).as_str() {
        "oldest" => "earliest",
        "newest" => "latest",
        other => {
            problems.push(format!(
                "{}: expected oldest or newest, got {other:?}",
                INITIAL_OFFSET.0
            ));
            "earliest"
        }
    };
    let brokers = env(BROKER_HOST)
        .filter(|v| !v.trim().is_empty() && env(BROKER_HOSTS.0).is_none())
        .unwrap_or_else(|| var(BROKER_HOSTS));
    let topics: Vec<String> = var(TOPICS)
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if topics.is_empty() {
        problems.push("topics: set it to the topics to listen to, separated by commas".to_owned());
    }
    let mut durations = Map::new();
    for (key, (name, default)) in [
        ("rebuild_interval", REBUILD_INTERVAL),
        ("timeout", UPSTREAM_TIMEOUT),
    ] {
        let text = var((name, default));
        match parse_duration(&text) {
            Ok(_) => {
                let _ = durations.insert(key.to_owned(), Value::from(text));
            }
            Err(why) => problems.push(format!("{name}: {why}")),
        }
    }
    if !problems.is_empty() {
        return Err(CliError::Usage(format!(
            "the connector's environment has {} problem{}:\n  {}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            problems.join("\n  ")
        )));
    }
    let log_response = match (print_response, print_body) {
        (_, true) => "body",
        (true, false) => "status",
        (false, false) => "none",
    };
    let mut openfaas = json!({
        "gateway": var(GATEWAY_URL),
        "rebuild_interval": durations["rebuild_interval"],
        "topics": topics,
        "topic_delimiter": var(TOPIC_DELIMITER),
        "asynchronous": asynchronous,
        "trigger": {
            "initial_offset": initial_offset,
            "content_type": var(CONTENT_TYPE),
            "log_response": log_response,
            "delivery": {"timeout": durations["timeout"]},
        },
    });
    if basic_auth {
        let dir = var(SECRET_MOUNT_PATH);
        let dir = std::path::Path::new(&dir);
        openfaas["basic_auth"] = json!({
            "username_file": dir.join("basic-auth-user"),
            "password_file": dir.join("basic-auth-password"),
        });
    }
    let document = json!({
        "kafka": {"bootstrap_servers": brokers.trim()},
        "admin": {"listen": admin.to_string()},
        "discovery": {"openfaas": openfaas},
    });
    // Pretty JSON is YAML, and reads well when printed.
    serde_json::to_string_pretty(&document)
        .map(|mut text| {
            text.push('\n');
            text
        })
        .map_err(|err| CliError::Failed(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn build(vars: &[(&str, &str)]) -> Result<config::Config, String> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let admin = "127.0.0.1:9464".parse().unwrap();
        let text =
            openfaas_config(&|name| vars.get(name).cloned(), admin).map_err(|e| e.to_string())?;
        config::parse(&text, "env").map_err(|e| e.to_string())
    }

    #[test]
    fn the_connector_defaults_become_a_discovery_config() {
        let config = build(&[("basic_auth", "false")]).unwrap();
        assert_eq!(
            config.kafka.bootstrap_servers.as_deref(),
            Some("kf-kafka:9092")
        );
        let discovery = config.discovery.unwrap();
        assert_eq!(discovery.gateway.as_str(), "http://gateway.openfaas:8080/");
        assert_eq!(discovery.rebuild_interval, Duration::from_secs(30));
        assert_eq!(
            discovery.topics.as_deref(),
            Some(&["faas-request".to_owned()][..])
        );
        assert_eq!(discovery.trigger.delivery.timeout, Duration::from_secs(120));
        assert_eq!(discovery.trigger.content_type, "text/plain");
        assert_eq!(discovery.trigger.log_response, config::LogResponse::Status);
        assert_eq!(
            discovery.trigger.initial_offset,
            config::InitialOffset::Earliest
        );
        assert!(!discovery.asynchronous && discovery.basic_auth.is_none());
        // Basic auth is on by default, with the secrets where the chart mounts them.
        let err = build(&[]).unwrap_err();
        assert!(
            err.contains("cannot read /var/secrets/basic-auth-user"),
            "{err}"
        );
        // The name older releases used for the brokers.
        let config = build(&[("basic_auth", "0"), ("broker_host", "old:9092")]).unwrap();
        assert_eq!(config.kafka.bootstrap_servers.as_deref(), Some("old:9092"));
        let config = build(&[
            ("basic_auth", "0"),
            ("broker_host", "old:9092"),
            ("broker_hosts", "new:9092"),
        ])
        .unwrap();
        assert_eq!(config.kafka.bootstrap_servers.as_deref(), Some("new:9092"));
    }

    #[test]
    fn every_variable_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("basic-auth-user"), "admin\n").unwrap();
        std::fs::write(dir.path().join("basic-auth-password"), "pw\n").unwrap();
        let config = build(&[
            ("topics", "a, b"),
            ("gateway_url", "http://127.0.0.1:31112"),
            ("broker_hosts", "127.0.0.1:19092"),
            ("initial_offset", "newest"),
            ("rebuild_interval", "10s"),
            ("upstream_timeout", "1m30s"),
            ("print_response", "false"),
            ("print_response_body", "true"),
            ("content_type", "application/json"),
            ("asynchronous_invocation", "true"),
            ("topic_delimiter", ";"),
            ("basic_auth", "true"),
            ("secret_mount_path", dir.path().to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(
            config.kafka.bootstrap_servers.as_deref(),
            Some("127.0.0.1:19092")
        );
        let discovery = config.discovery.unwrap();
        assert_eq!(discovery.gateway.as_str(), "http://127.0.0.1:31112/");
        assert_eq!(discovery.rebuild_interval, Duration::from_secs(10));
        assert_eq!(discovery.trigger.delivery.timeout, Duration::from_secs(90));
        assert_eq!(discovery.trigger.log_response, config::LogResponse::Body);
        assert_eq!(discovery.trigger.content_type, "application/json");
        assert!(discovery.asynchronous);
        assert_eq!(discovery.topic_delimiter, ";");
        assert_eq!(
            discovery.topics.as_deref(),
            Some(&["a".to_owned(), "b".to_owned()][..])
        );
        assert_eq!(
            discovery.trigger.initial_offset,
            config::InitialOffset::Latest
        );
        let auth = discovery.basic_auth.unwrap();
        assert_eq!(auth.username.read().unwrap(), "admin");
        assert_eq!(auth.password.read().unwrap(), "pw");
    }

    #[test]
    fn bad_variables_are_all_reported() {
        let err = build(&[
            ("topics", " , "),
            ("print_response", "yes"),
            ("rebuild_interval", "soon"),
        ])
        .unwrap_err();
        assert!(err.contains("topics: set it"), "{err}");
        assert!(
            err.contains("print_response: expected true or false, got \"yes\""),
            "{err}"
        );
        assert!(err.contains("rebuild_interval: invalid duration"), "{err}");
        assert!(err.contains("3 problems"), "{err}");
        let err = build(&[
            ("basic_auth", "true"),
            ("secret_mount_path", "/nonexistent"),
        ])
        .unwrap_err();
        assert!(
            err.contains("cannot read /nonexistent/basic-auth-user"),
            "{err}"
        );
    }
}
