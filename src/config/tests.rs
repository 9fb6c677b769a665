use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use super::*;

const FULL: &str = r#"
data_dir: .sluice
kafka:
  bootstrap_servers: null
  client: {}
embedded:
  listen: 127.0.0.1:9092
  storage: sqlite
  default_partitions: 3
admin:
  listen: 127.0.0.1:9464
topics:
  - name: orders
    partitions: 4
    replication_factor: 1
    config: {}
  - name: payments
functions:
  hello:
    url: http://127.0.0.1:8081/
  audit:
    command: ["python3", "audit.py"]
    env: {}
    workdir: null
    min: 0
    max: 4
    concurrency: 8
    idle_timeout: 60s
    startup_timeout: 30s
    readiness_path: null
    socket_activation: false
  figlet:
    exec: ["figlet"]
    env: {}
    workdir: null
    concurrency: null
    timeout: 30s
  payments-consumer:
    job: ["./consume-payments.sh"]
    topics: [payments]
    group: payments-consumer
    env: {}
    workdir: null
    max: 4
    poll_interval: 500ms
    idle_timeout: 10s
triggers:
  - name: hello-orders
    topics: [orders]
    function: hello
    url: null
    group: null
    initial_offset: latest
    ordering: partition
    max_in_flight: 64
    content_type: application/octet-stream
    source: null
    type: null
    delivery:
      retry: 5
      backoff: exponential
      backoff_delay: 200ms
      backoff_max: 30s
      timeout: 30s
    dead_letter: {topic: sluice.dlq.hello-orders}
    reply: null
"#;

/// The config parsed from `text`, failing the test with the full report otherwise.
fn ok(text: &str) -> Config {
    parse(text, "test.yaml").unwrap_or_else(|error| panic!("unexpected error:\n{error}"))
}

/// The problems reported for `text`, failing the test when it is accepted.
fn problems(text: &str) -> Vec<Problem> {
    match parse(text, "test.yaml") {
        Ok(config) => panic!("accepted invalid config: {config:?}"),
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(other) => panic!("unexpected error: {other}"),
    }
}

/// The 1-based line where `needle` (which may span lines) first starts in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let start = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} is not in the text"));
    text[..start].matches('\n').count() + 1
}

/// Asserts one problem at `path` on the line containing `needle`, mentioning `words`.
fn expect(found: &[Problem], text: &str, path: &str, needle: &str, words: &str) {
    let line = line_of(text, needle);
    let hit = found
        .iter()
        .any(|p| p.path == path && p.line == Some(line) && p.message.contains(words));
    assert!(
        hit,
        "no problem at {path} (line {line}) mentioning {words:?}; got:\n{found:#?}"
    );
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn full_example_resolves_every_value() {
    let config = ok(FULL);
    assert_eq!(config.data_dir, PathBuf::from(".sluice"));
    assert!(config.is_embedded());
    assert!(config.kafka.client.is_empty());
    assert_eq!(config.embedded, EmbeddedConfig::default());
    assert_eq!(
        config.embedded.listen,
        "127.0.0.1:9092".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.embedded.storage, Storage::Sqlite);
    assert_eq!(
        config.admin.listen,
        "127.0.0.1:9464".parse::<SocketAddr>().unwrap()
    );

    assert_eq!(config.topics.len(), 2);
    assert_eq!(config.topic_partitions(&config.topics[0]), 4);
    assert_eq!(config.topics[1].partitions, None);
    assert_eq!(config.topic_partitions(&config.topics[1]), 3);
    assert_eq!(config.topics[1].replication_factor, 1);

    let url = Url::parse("http://127.0.0.1:8081/").unwrap();
    assert_eq!(
        config.functions["hello"],
        Function::Url(UrlFunction {
            url: url.clone(),
            topics: Vec::new()
        })
    );
    let Function::Command(audit) = &config.functions["audit"] else {
        panic!("audit is not a command function");
    };
    assert_eq!(audit.command, ["python3", "audit.py"]);
    assert_eq!((audit.min, audit.max, audit.concurrency), (0, 4, 8));
    assert_eq!(
        (audit.idle_timeout, audit.startup_timeout),
        (secs(60), secs(30))
    );
    assert_eq!(audit.readiness_path, None);
    assert!(!audit.socket_activation && audit.env.is_empty() && audit.workdir.is_none());
    let Function::Exec(figlet) = &config.functions["figlet"] else {
        panic!("figlet is not an exec function");
    };
    assert_eq!(figlet.exec, ["figlet"]);
    assert_eq!((figlet.concurrency, figlet.timeout), (None, secs(30)));
    assert!(figlet.effective_concurrency() >= 1);
    let Function::Job(job) = &config.functions["payments-consumer"] else {
        panic!("payments-consumer is not a job");
    };
    assert_eq!(
        config.functions["payments-consumer"].kind(),
        FunctionKind::Job
    );
    assert_eq!(
        (job.topics.as_slice(), job.group.as_str()),
        (&["payments".to_owned()][..], "payments-consumer")
    );
    assert_eq!(
        (job.max, job.poll_interval, job.idle_timeout),
        (4, Duration::from_millis(500), secs(10))
    );

    let [trigger] = config.triggers.as_slice() else {
        panic!("expected one trigger");
    };
    let defaults =
        ok("triggers: [{name: hello-orders, topics: [orders], url: 'http://127.0.0.1:8081/'}]");
    assert_eq!(
        trigger,
        &Trigger {
            target: Target::Url(Endpoint::parse(url.clone()).unwrap()),
            ..defaults.triggers[0].clone()
        },
        "the written-out defaults must equal the implicit ones"
    );
    assert_eq!(trigger.effective_group(), "sluice-hello-orders");
    assert_eq!(trigger.initial_offset, InitialOffset::Latest);
    assert_eq!(trigger.ordering, Ordering::Partition);
    assert_eq!(trigger.max_in_flight, 64);
    assert_eq!(trigger.content_type, "application/octet-stream");
    assert_eq!(
        (&trigger.source, &trigger.event_type, &trigger.reply),
        (&None, &None, &None)
    );
    assert_eq!(trigger.delivery, Delivery::default());
    assert_eq!(trigger.delivery.retry, 5);
    assert_eq!(trigger.delivery.backoff, Backoff::Exponential);
    assert_eq!(trigger.delivery.backoff_delay, Duration::from_millis(200));
    assert_eq!(
        (trigger.delivery.backoff_max, trigger.delivery.timeout),
        (secs(30), secs(30))
    );
    assert_eq!(trigger.dead_letter, DeadLetter::default_for("hello-orders"));
    assert_eq!(
        defaults.triggers[0].target,
        Target::Url(Endpoint::parse(url).unwrap())
    );
}

#[test]
fn empty_documents_and_null_sections_give_the_default_config() {
    for text in [
        "",
        "{}",
        "# only a comment\n",
        "---\n",
        "~\n",
        "kafka:\nembedded:\nadmin:\ntopics:\nfunctions:\ntriggers:\n",
    ] {
        assert_eq!(ok(text), Config::default(), "for {text:?}");
    }
    let config = Config::default();
    assert!(config.is_embedded());
    assert_eq!(config.data_dir, PathBuf::from(".sluice"));
    assert_eq!(config.embedded.default_partitions, 3);
    assert_eq!(config.admin.listen.port(), 9464);
    assert!(config.topics.is_empty() && config.functions.is_empty() && config.triggers.is_empty());
}

#[test]
fn all_mistakes_are_reported_together_with_their_lines() {
    let text = r#"
color: blue
topics:
  - name: orders
  - name: orders   # again
functions:
  hello:
    url: http://127.0.0.1:8081/
  both:
    url: http://127.0.0.1:8082/
    command: [server]
  pool:
    command: [server]
    min: 3
    max: 2
triggers:
  - name: first
    topics: [orders]
    function: hello
    ordering: random
    delivery:
      timeout: 3x
      jitter: true
  - name: first   # again
    topics: [orders]
    function: missing-fn
"#;
    let found = problems(text);
    expect(&found, text, "color", "color: blue", "unknown key `color`");
    expect(
        &found,
        text,
        "topics[1].name",
        "orders   # again",
        "duplicate topic",
    );
    expect(
        &found,
        text,
        "functions.both",
        "  both:",
        "more than one kind",
    );
    expect(
        &found,
        text,
        "functions.pool.max",
        "max: 2",
        "must not be less than min",
    );
    expect(
        &found,
        text,
        "triggers[0].ordering",
        "random",
        "unknown value \"random\"",
    );
    expect(
        &found,
        text,
        "triggers[0].delivery.timeout",
        "3x",
        "invalid duration \"3x\"",
    );
    expect(
        &found,
        text,
        "triggers[0].delivery.jitter",
        "jitter",
        "unknown key `jitter`",
    );
    expect(
        &found,
        text,
        "triggers[1].name",
        "first   # again",
        "duplicate trigger name `first`",
    );
    expect(
        &found,
        text,
        "triggers[1].function",
        "missing-fn",
        "unknown function `missing-fn`",
    );
    assert_eq!(found.len(), 9, "unexpected extra problems: {found:#?}");
    // Reported in file order, with columns pointing at the key.
    assert!(found.windows(2).all(|w| w[0].line <= w[1].line));
    let timeout = found.iter().find(|p| p.path.ends_with("timeout")).unwrap();
    assert_eq!(timeout.column, Some(7));
}

#[test]
fn a_syntax_error_is_one_problem_with_a_line() {
    let found = problems("triggers:\n  - name: a\n    topics: [orders\n");
    let [problem] = found.as_slice() else {
        panic!("expected one problem, got {found:#?}");
    };
    assert!(
        problem.message.starts_with("YAML syntax error"),
        "{problem}"
    );
    assert_eq!(problem.line, Some(4));
}

#[test]
fn dead_letter_takes_every_documented_form() {
    let text = |dead_letter: &str| {
        format!("triggers:\n  - name: t\n    topics: [a]\n    url: http://h/\n{dead_letter}")
    };
    let dead_letter = |dl: &str| ok(&text(dl)).triggers[0].dead_letter.clone();
    assert_eq!(
        dead_letter(""),
        DeadLetter::Topic("sluice.dlq.t".to_owned())
    );
    assert_eq!(dead_letter("    dead_letter: none\n"), DeadLetter::None);
    assert_eq!(
        dead_letter("    dead_letter: {topic: failed}\n"),
        DeadLetter::Topic("failed".to_owned())
    );
    assert_eq!(
        dead_letter("    dead_letter:\n      url: http://dlq.example/x\n"),
        DeadLetter::Url(Endpoint::parse(Url::parse("http://dlq.example/x").unwrap()).unwrap())
    );
    for (bad, words) in [
        ("    dead_letter: nothing\n", "expected `none`"),
        ("    dead_letter: {}\n", "found an empty mapping"),
        (
            "    dead_letter: {topic: a, url: 'http://h/'}\n",
            "not both",
        ),
        (
            "    dead_letter: {url: 'ftp://h/'}\n",
            "must use http, not `ftp`",
        ),
        (
            "    dead_letter: {url: 'https://h/'}\n",
            "https is not supported",
        ),
        (
            "    dead_letter: {topic: a, queue: b}\n",
            "unknown key `queue`",
        ),
    ] {
        let found = problems(&text(bad));
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(
            found[0].path.starts_with("triggers[0].dead_letter"),
            "{found:#?}"
        );
        assert!(found[0].message.contains(words), "{found:#?}");
        assert_eq!(found[0].line, Some(5));
    }
}

#[test]
fn scalar_properties_become_strings() {
    let config = ok(r#"
kafka:
  bootstrap_servers: broker:9092
  client: {linger.ms: 5, enable.idempotence: true, acks: all, ratio: 0.5}
topics:
  - name: events
    config:
      retention.ms: 86400000
      cleanup.policy: compact
functions:
  server:
    command: [sleep, 5]
    env: {PORT: 8080, DEBUG: false}
"#);
    assert!(!config.is_embedded());
    let strings = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        config.kafka.client,
        strings(&[
            ("linger.ms", "5"),
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("ratio", "0.5")
        ])
    );
    assert_eq!(
        config.topics[0].config,
        strings(&[("retention.ms", "86400000"), ("cleanup.policy", "compact")])
    );
    let Function::Command(server) = &config.functions["server"] else {
        panic!("server is not a command function");
    };
    assert_eq!(server.command, ["sleep", "5"]);
    assert_eq!(server.env, strings(&[("PORT", "8080"), ("DEBUG", "false")]));

    let found = problems("kafka:\n  client:\n    nested: {a: 1}\n    empty:\n");
    let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["kafka.client.nested", "kafka.client.empty"]);
}

#[test]
fn client_properties_may_come_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("password");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let text = format!(
        "kafka:\n  bootstrap_servers: k:9092\n  client:\n    sasl.password: {{file: {}}}\n    sasl.username: {{env: SLUICE_TEST_NOT_SET_ANYWHERE}}\n",
        secret.display()
    );
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, r#"kafka.client["sasl.username"]"#);
    assert!(
        found[0]
            .message
            .contains("environment variable SLUICE_TEST_NOT_SET_ANYWHERE is not set"),
        "{found:?}"
    );
    let text = text.replace("{env: SLUICE_TEST_NOT_SET_ANYWHERE}", "alice");
    let config = parse(&text, "test.yaml").unwrap();
    assert_eq!(config.kafka.client["sasl.password"], "s3cret");
    assert_eq!(config.kafka.client["sasl.username"], "alice");
    let found = problems("kafka:\n  client:\n    sasl.password: {vault: x}\n");
    assert!(
        found[0].message.contains("expected env or file"),
        "{found:?}"
    );
}

#[test]
fn a_missing_file_is_a_read_error() {
    let path = Path::new("/nonexistent/sluice-config-test/sluice.yaml");
    match load(path) {
        Err(ConfigError::Read { path: reported, .. }) => assert_eq!(reported, path),
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn load_reads_a_file_and_names_it_in_messages() {
    let dir = std::env::temp_dir().join(format!("sluice-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sluice.yaml");
    std::fs::write(&file, "data_dir: /var/lib/sluice\n").unwrap();
    assert_eq!(
        load(&file).unwrap().data_dir,
        PathBuf::from("/var/lib/sluice")
    );
    std::fs::write(&file, "data_dir: /x\ntypo: 1\n").unwrap();
    let message = load(&file).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    let origin = file.display().to_string();
    assert!(
        message.starts_with(&format!("{origin}: 1 problem\n")),
        "{message}"
    );
    assert!(
        message.contains(&format!("\n  {origin}:2:1: typo: unknown key `typo`")),
        "{message}"
    );
}

#[test]
fn display_lists_each_problem_on_its_own_line() {
    let error = parse(
        "triggers:\n  - name: t\n    topics: [a]\n    url: http://h/\n    delivery:\n      timeout: 3x\n    ordering: sideways\n",
        "sluice.yaml",
    )
    .unwrap_err();
    let message = error.to_string();
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines.len(), 3, "{message}");
    assert_eq!(lines[0], "sluice.yaml: 2 problems");
    assert!(
        lines[1].starts_with(
            "  sluice.yaml:6:7: triggers[0].delivery.timeout: invalid duration \"3x\": "
        ),
        "{message}"
    );
    assert!(
        lines[2].starts_with("  sluice.yaml:7:5: triggers[0].ordering: unknown value"),
        "{message}"
    );
    let ConfigError::Invalid { origin, problems } = error else {
        panic!("expected Invalid");
    };
    assert_eq!(origin, "sluice.yaml");
    assert_eq!(problems[0].path, "triggers[0].delivery.timeout");
}

mod edge;
mod filters;
mod items;
mod storage;
mod subscriptions;
