//! The Grafana dashboard (`deploy/grafana/sluice.json`) queries only metrics that a running
//! sluice exports.

mod common;

use std::collections::BTreeSet;

use common::{InProcess, function::Answer, function::Function};

/// The metric names in a PromQL expression: `sluice_` followed by name characters.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("sluice_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_queries_is_exported() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/sluice.json"),
    )
    .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr} queries no sluice metric");
            queried.extend(names);
        }
    }

    // A sluice with a trigger, a function, ingress and a stream, so every family has a
    // series or at least its type line.
    let function = Function::start(|_, _| Answer::ok()).await;
    let public = sluice::broker::free_local_addr().unwrap();
    let sluice = InProcess::start(&format!(
        "topics:\n  - name: in\ningress:\n  listen: \"{public}\"\n  topics: [in]\nstreams:\n  - path: /s\n    topic: in\nfunctions:\n  echo:\n    exec: [cat]\n  server:\n    command: [python3, -m, http.server]\n    min: 0\ntriggers:\n  - name: t\n    topics: [in]\n    url: {}\n  - name: e\n    topics: [in]\n    function: echo\n",
        function.url()
    ))
    .await;
    let exported = sluice.state().metrics().encode();
    let declared: BTreeSet<&str> = exported
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut missing = Vec::new();
    for name in &queried {
        // A histogram's series and a counter's `_total` belong to the family they name.
        let family = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        if !declared.contains(family) && !declared.contains(name.as_str()) {
            missing.push(name.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}\n{exported}"
    );
    println!("{} metrics queried, all exported", queried.len());
    sluice.stop().await;
}
