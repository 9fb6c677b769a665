use super::*;
use crate::config::{self, DeadLetter, Ordering, Target};

fn settings(extra: &str) -> OpenFaasDiscovery {
    let text = format!("discovery:\n  openfaas:\n    gateway: http://127.0.0.1:8080/\n{extra}");
    config::parse(&text, "test.yaml")
        .unwrap_or_else(|e| panic!("{e}"))
        .discovery
        .expect("a discovery section")
}

fn function(name: &str, namespace: Option<&str>, topic: Option<&str>) -> GatewayFunction {
    GatewayFunction {
        name: name.to_owned(),
        namespace: namespace.map(str::to_owned),
        annotations: topic.map(|t| BTreeMap::from([("topic".to_owned(), t.to_owned())])),
    }
}

fn url(trigger: &Trigger) -> String {
    match &trigger.target {
        Target::Url(endpoint) => endpoint.to_string(),
        other => panic!("not a URL target: {other:?}"),
    }
}

#[test]
fn each_annotated_function_gets_a_trigger_to_its_gateway_route() {
    let found = triggers(
        &settings(""),
        &[
            function("figlet", Some("openfaas-fn"), Some("faas-request")),
            function("plain", Some("openfaas-fn"), None),
            function("multi", Some("dev"), Some(" a, b ,,a")),
        ],
    );
    assert!(found.skipped.is_empty(), "{:?}", found.skipped);
    assert_eq!(found.functions, ["figlet.openfaas-fn", "multi.dev"]);
    let [figlet, multi] = &found.triggers[..] else {
        panic!("{:?}", found.triggers)
    };
    assert_eq!(figlet.name, "openfaas-figlet.openfaas-fn");
    assert_eq!(figlet.topics, ["faas-request"]);
    assert_eq!(
        url(figlet),
        "http://127.0.0.1:8080/function/figlet.openfaas-fn"
    );
    assert_eq!(
        figlet.effective_group(),
        "sluice-openfaas-figlet.openfaas-fn"
    );
    assert_eq!(
        figlet.dead_letter,
        DeadLetter::Topic("sluice.dlq.openfaas-figlet.openfaas-fn".to_owned())
    );
    // Trimmed, empty entries and repeats dropped.
    assert_eq!(multi.topics, ["a", "b"]);
    assert_eq!(url(multi), "http://127.0.0.1:8080/function/multi.dev");
}

#[test]
fn the_template_allow_list_delimiter_and_async_route_apply() {
    let settings = settings(
        "    topics: [a, c]\n    topic_delimiter: \";\"\n    asynchronous: true\n    trigger:\n      ordering: unordered\n      dead_letter: {topic: all-dead}\n      delivery: {retry: 2}\n",
    );
    let found = triggers(
        &settings,
        &[
            function("one", None, Some("a;b;c")),
            function("two", None, Some("b")),
        ],
    );
    let [one] = &found.triggers[..] else {
        panic!("{:?}", found.triggers)
    };
    assert_eq!(one.name, "openfaas-one");
    assert_eq!(one.topics, ["a", "c"]);
    assert_eq!(url(one), "http://127.0.0.1:8080/async-function/one");
    assert_eq!(one.ordering, Ordering::Unordered);
    assert_eq!(one.delivery.retry, 2);
    assert_eq!(one.dead_letter, DeadLetter::Topic("all-dead".to_owned()));
}

#[test]
fn unusable_annotations_are_skipped_with_a_reason() {
    let found = triggers(
        &settings(""),
        &[
            function("bad", None, Some("no spaces allowed,ok")),
            function("worse", None, Some("a/b")),
        ],
    );
    assert_eq!(found.functions, ["bad"]);
    assert_eq!(found.triggers[0].topics, ["ok"]);
    assert_eq!(found.skipped.len(), 2, "{:?}", found.skipped);
    assert!(found.skipped[1].contains("worse"), "{:?}", found.skipped);
}

#[test]
fn discovery_settings_are_checked_and_secrets_never_come_from_the_file() {
    let text = "discovery:\n  openfaas:\n    gateway: ftp://gw\n    rebuild_interval: 0s\n    basic_auth:\n      username: admin\n      password: hunter2\n    trigger:\n      name: x\n      group: g\n      max_in_flight: 0\n";
    let err = config::parse(text, "d.yaml").unwrap_err().to_string();
    for expected in [
        "discovery.openfaas.gateway: the URL must use http",
        "rebuild_interval: must be longer than zero",
        "a password is never read from the config file",
        "missing `password_env` or `password_file`",
        "trigger.name: `name` is set by discovery",
        "trigger.group: `group` is set by discovery",
        "max_in_flight: must be at least 1",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
    assert!(!err.contains("hunter2"), "{err}");

    let missing = "discovery:\n  openfaas:\n    gateway: http://gw:8080\n    basic_auth:\n      username_file: /nonexistent/user\n      password_env: SLUICE_TEST_UNSET_PASSWORD\n";
    let err = config::parse(missing, "d.yaml").unwrap_err().to_string();
    assert!(
        err.contains("username_file: cannot read /nonexistent/user"),
        "{err}"
    );
    assert!(
        err.contains("password_env: environment variable SLUICE_TEST_UNSET_PASSWORD is not set"),
        "{err}"
    );
}

#[test]
fn secret_files_are_read_again_each_time() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "first\n").unwrap();
    let text = format!(
        "discovery:\n  openfaas:\n    gateway: http://gw:8080\n    basic_auth:\n      username: admin\n      password_file: {}\n",
        file.display()
    );
    let settings = config::parse(&text, "d.yaml").unwrap().discovery.unwrap();
    let auth = settings.basic_auth.unwrap();
    assert_eq!(auth.password.read().unwrap(), "first");
    std::fs::write(&file, "rotated").unwrap();
    assert_eq!(auth.password.read().unwrap(), "rotated");
    assert!(!format!("{auth:?}").contains("rotated"));
}
