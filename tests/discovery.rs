//! Discovery from an OpenFaaS gateway, against the stand-in gateway
//! (`examples/openfaas/gateway.py`) and a real `sluice up`: nothing is consumed before the
//! first good read, a function that drops its topic or disappears has its trigger drained
//! and stopped, a new one starts, and a gateway that is down keeps the last map.

mod common;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use common::{
    Daemon, committed, function::Answer, function::Function, gateway::Gateway, http_get,
    produce_all, stderr, wait_until,
};
use nix::sys::signal::Signal;
use sluice::broker::free_local_addr;

const WAIT: Duration = Duration::from_secs(60);

/// Writes the gateway's function list atomically: (name, topic annotation, upstream URL).
fn write_functions(path: &Path, functions: &[(&str, &str, &str)]) {
    let list: Vec<serde_json::Value> = functions
        .iter()
        .map(|(name, topic, upstream)| {
            serde_json::json!({
                "name": name,
                "annotations": {"topic": topic},
                "upstream": upstream,
            })
        })
        .collect();
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, serde_json::to_vec_pretty(&list).unwrap()).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

fn values(function: &Function) -> BTreeMap<usize, usize> {
    let mut seen = BTreeMap::new();
    for r in function.received() {
        let n: usize = String::from_utf8(r.body.to_vec()).unwrap().parse().unwrap();
        *seen.entry(n).or_insert(0) += 1;
    }
    seen
}

fn records(range: std::ops::Range<usize>) -> Vec<common::TestRecord> {
    range
        .map(|n| {
            (
                Some(format!("k{n}").into_bytes()),
                n.to_string().into_bytes(),
                vec![],
            )
        })
        .collect()
}

fn status(admin: SocketAddr) -> serde_json::Value {
    let (_, body) = http_get(admin, "/api/status").unwrap();
    serde_json::from_str(&body).unwrap()
}

fn trigger_names(admin: SocketAddr) -> Vec<String> {
    status(admin)["triggers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discovered_functions_follow_the_gateway_and_nothing_is_consumed_before_its_first_read() {
    let echo = Function::start(|_, _| Answer::ok()).await;
    let other = Function::start(|_, _| Answer::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let broker = free_local_addr().unwrap();
    let admin = free_local_addr().unwrap();
    let gateway_addr = free_local_addr().unwrap();
    let functions: PathBuf = dir.path().join("functions.json");
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\nembedded:\n  listen: \"{broker}\"\nadmin:\n  listen: \"{admin}\"\ntopics:\n  - name: faas-request\n    partitions: 2\ndiscovery:\n  openfaas:\n    gateway: http://{gateway_addr}\n    rebuild_interval: 1s\n    trigger:\n      initial_offset: earliest\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let up = Daemon::spawn(&["-c", config.to_str().unwrap(), "up"], dir.path());
    wait_until("readyz answers 200", WAIT, || {
        matches!(http_get(admin, "/readyz"), Ok((200, _)))
    });

    // The gateway is down: records wait in the topic, and no group reads them.
    produce_all(&broker.to_string(), "faas-request", records(0..50)).await;
    wait_until("a failed read is reported", WAIT, || {
        status(admin)["discovery"]["error"].is_string()
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(trigger_names(admin).is_empty());
    let (_, metrics) = http_get(admin, "/metrics").unwrap();
    assert!(
        metrics.contains("sluice_discovery_reads_total{outcome=\"error\"}"),
        "{metrics}"
    );
    let group = "sluice-openfaas-echo.openfaas-fn";
    assert!(
        committed(&broker.to_string(), group, "faas-request")
            .await
            .values()
            .all(|o| *o < 0),
        "nothing is committed before the first read"
    );

    // The first good read starts the function's trigger, which reads from the start.
    write_functions(&functions, &[("echo", "faas-request", &echo.url())]);
    let gateway = Gateway::start(dir.path(), gateway_addr, &functions, &[]);
    wait_until("the discovered trigger runs", WAIT, || {
        trigger_names(admin) == ["openfaas-echo.openfaas-fn"]
    });
    echo.wait_for(50, WAIT).await;
    let discovery = &status(admin)["discovery"];
    assert!(discovery["error"].is_null(), "{discovery}");
    assert_eq!(discovery["functions"][0], "echo.openfaas-fn", "{discovery}");

    // A second function subscribes; the first drops the topic.
    write_functions(
        &functions,
        &[
            ("echo", "elsewhere", &echo.url()),
            ("other", "faas-request", &other.url()),
        ],
    );
    wait_until("the map follows the gateway", WAIT, || {
        trigger_names(admin) == ["openfaas-echo.openfaas-fn", "openfaas-other.openfaas-fn"]
            && status(admin)["triggers"][0]["topics"][0] == "elsewhere"
    });
    produce_all(&broker.to_string(), "faas-request", records(50..100)).await;
    other.wait_for(100, WAIT).await;
    // The dropped subscription was drained and committed: its group stands where echo
    // stopped, at the 50 records it took.
    let echo_offsets = committed(&broker.to_string(), group, "faas-request").await;
    assert_eq!(echo_offsets.values().sum::<i64>(), 50, "{echo_offsets:?}");
    assert_eq!(
        echo.count(),
        50,
        "a dropped subscription delivers nothing more"
    );

    // The gateway goes down: the last map is kept. Calls through the gateway fail meanwhile,
    // and are retried until it is back.
    gateway.kill();
    wait_until("the failed read is reported", WAIT, || {
        status(admin)["discovery"]["error"].is_string()
    });
    produce_all(&broker.to_string(), "faas-request", records(100..150)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        trigger_names(admin),
        ["openfaas-echo.openfaas-fn", "openfaas-other.openfaas-fn"]
    );
    let gateway = Gateway::start(dir.path(), gateway_addr, &functions, &[]);
    other.wait_for(150, WAIT).await;
    wait_until("the good read is reported", WAIT, || {
        status(admin)["discovery"]["error"].is_null()
    });

    // `other` is removed: its trigger is drained, committed and stopped.
    write_functions(&functions, &[("echo", "elsewhere", &echo.url())]);
    wait_until("the removed function's trigger stops", WAIT, || {
        trigger_names(admin) == ["openfaas-echo.openfaas-fn"]
    });
    drop(gateway);
    let other_offsets = committed(
        &broker.to_string(),
        "sluice-openfaas-other.openfaas-fn",
        "faas-request",
    )
    .await;
    assert_eq!(
        other_offsets.values().sum::<i64>(),
        150,
        "{other_offsets:?}"
    );

    for (name, function, expected) in [("echo", &echo, 50), ("other", &other, 150)] {
        let seen = values(function);
        let missing: Vec<usize> = (0..expected).filter(|n| !seen.contains_key(n)).collect();
        assert!(missing.is_empty(), "{name} lost {missing:?}");
        let duplicates: usize = seen.values().map(|c| c - 1).sum();
        println!("{name}: {} records, {duplicates} duplicates", seen.len());
    }

    up.signal(Signal::SIGINT);
    let output = up.wait(WAIT);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(
        log.contains("Cannot read the OpenFaaS gateway's functions"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_api_wants_the_configured_credentials() {
    let echo = Function::start(|_, _| Answer::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let broker = free_local_addr().unwrap();
    let admin = free_local_addr().unwrap();
    let gateway_addr = free_local_addr().unwrap();
    let functions = dir.path().join("functions.json");
    write_functions(&functions, &[("echo", "in", &echo.url())]);
    let password = dir.path().join("basic-auth-password");
    std::fs::write(&password, "wrong\n").unwrap();
    let gateway_password = dir.path().join("gateway-password");
    std::fs::write(&gateway_password, "s3cret\n").unwrap();
    let _gateway = Gateway::start(
        dir.path(),
        gateway_addr,
        &functions,
        &[
            "--user",
            "admin",
            "--password-file",
            gateway_password.to_str().unwrap(),
        ],
    );
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\nembedded:\n  listen: \"{broker}\"\nadmin:\n  listen: \"{admin}\"\ntopics:\n  - name: in\ndiscovery:\n  openfaas:\n    gateway: http://{gateway_addr}\n    rebuild_interval: 1s\n    basic_auth:\n      username: admin\n      password_file: {}\n    trigger:\n      initial_offset: earliest\n",
            dir.path().join("data").display(),
            password.display()
        ),
    )
    .unwrap();
    let up = Daemon::spawn(&["-c", config.to_str().unwrap(), "up"], dir.path());
    wait_until("the refusal is reported", WAIT, || {
        http_get(admin, "/api/status").is_ok_and(|(_, body)| body.contains("HTTP 401"))
    });
    assert!(trigger_names(admin).is_empty());
    // The secret file is read at every read: rotating it is enough.
    std::fs::write(&password, "s3cret\n").unwrap();
    wait_until("the discovered trigger runs", WAIT, || {
        trigger_names(admin) == ["openfaas-echo.openfaas-fn"]
    });
    produce_all(&broker.to_string(), "in", records(0..5)).await;
    echo.wait_for(5, WAIT).await;
    up.signal(Signal::SIGINT);
    let output = up.wait(WAIT);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(
        !log.contains("s3cret"),
        "the password is never logged: {log}"
    );
}

/// `sluice connector openfaas` as a deployment of the kafka-connector would run it: only its
/// environment changes, against a broker of its own (`sluice broker` here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_connector_drop_in_runs_from_the_kafka_connector_environment() {
    let echo = Function::start(|_, received| {
        let mut answer = Answer::ok();
        answer.body = format!("echo {}", String::from_utf8_lossy(&received.body)).into();
        answer
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (_broker, broker) = common::spawn_broker(dir.path());
    let output = common::run(&[
        "-b",
        &broker.to_string(),
        "topics",
        "create",
        "faas-request",
        "--partitions",
        "2",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let gateway_addr = free_local_addr().unwrap();
    let functions = dir.path().join("functions.json");
    write_functions(&functions, &[("echo", "faas-request", &echo.url())]);
    let _gateway = Gateway::start(dir.path(), gateway_addr, &functions, &[]);
    let admin = free_local_addr().unwrap();
    let gateway_url = format!("http://{gateway_addr}");
    let broker_host = broker.to_string();
    let connector = Daemon::spawn_with_env(
        &[
            "connector",
            "openfaas",
            "--admin-listen",
            &admin.to_string(),
        ],
        dir.path(),
        &[
            ("gateway_url", &gateway_url),
            ("broker_host", &broker_host),
            ("topics", "faas-request"),
            ("rebuild_interval", "1s"),
            ("upstream_timeout", "5s"),
            ("print_response_body", "true"),
            ("basic_auth", "false"),
        ],
    );
    wait_until("the discovered trigger runs", WAIT, || {
        http_get(admin, "/api/status")
            .is_ok_and(|(_, body)| body.contains("openfaas-echo.openfaas-fn"))
    });
    produce_all(&broker_host, "faas-request", records(0..20)).await;
    echo.wait_for(20, WAIT).await;
    let seen = values(&echo);
    assert_eq!(seen.len(), 20, "{seen:?}");
    // The connector's print_response_body: each answer is logged.
    connector.signal(Signal::SIGINT);
    let output = connector.wait(WAIT);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("Function answered"), "{log}");
    assert!(log.contains("echo 7"), "{log}");
    let offsets = committed(
        &broker_host,
        "sluice-openfaas-echo.openfaas-fn",
        "faas-request",
    )
    .await;
    assert_eq!(offsets.values().sum::<i64>(), 20, "{offsets:?}");

    // A bad environment is refused with every problem and exit 64.
    let output = common::sluice()
        .args(["connector", "openfaas"])
        .env("print_response", "maybe")
        .env("upstream_timeout", "later")
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(64), "{err}");
    assert!(
        err.contains("print_response: expected true or false"),
        "{err}"
    );
    assert!(err.contains("upstream_timeout: invalid duration"), "{err}");
}
