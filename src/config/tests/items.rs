//! Each item's checks: function kinds, triggers, names, sections and odd inputs.

use super::*;

#[test]
fn each_function_kind_rejects_the_keys_of_other_kinds() {
    let text = r#"
functions:
  web:
    url: http://h/
    concurrency: 3
  server:
    command: [s]
    group: g
  run:
    exec: [r]
    min: 1
  consume:
    job: [c]
    topics: [a]
    group: g
    timeout: 1s
  nothing:
    env: {A: b}
  empty:
"#;
    let found = problems(text);
    expect(
        &found,
        text,
        "functions.web.concurrency",
        "concurrency: 3",
        "unknown key `concurrency` for a url function",
    );
    expect(
        &found,
        text,
        "functions.server.group",
        "group: g",
        "for a command function",
    );
    expect(
        &found,
        text,
        "functions.run.min",
        "min: 1",
        "for an exec function",
    );
    expect(
        &found,
        text,
        "functions.consume.timeout",
        "timeout: 1s",
        "for a job function",
    );
    expect(&found, text, "functions.nothing", "nothing:", "has no kind");
    expect(
        &found,
        text,
        "functions.empty",
        "empty:",
        "expected a mapping",
    );
    assert_eq!(found.len(), 6, "{found:#?}");
}

#[test]
fn several_problems_in_one_item_are_all_found() {
    let text = r#"
functions:
  pool:
    command: server
    min: many
    concurrency: 0
    idle_timeout: soon
    readiness_path: health
    extra: 1
"#;
    let found = problems(text);
    expect(
        &found,
        text,
        "functions.pool.command",
        "command:",
        "expected a list",
    );
    expect(&found, text, "functions.pool.min", "min:", "invalid type");
    expect(
        &found,
        text,
        "functions.pool.concurrency",
        "concurrency:",
        "at least 1",
    );
    expect(
        &found,
        text,
        "functions.pool.idle_timeout",
        "idle_timeout:",
        "invalid duration",
    );
    expect(
        &found,
        text,
        "functions.pool.readiness_path",
        "readiness_path:",
        "must start with",
    );
    expect(
        &found,
        text,
        "functions.pool.extra",
        "extra:",
        "unknown key `extra`",
    );
    // `command` was dropped for being a string, so it is not reported again as missing.
    assert_eq!(found.len(), 6, "{found:#?}");
}

#[test]
fn triggers_need_exactly_one_target_and_valid_values() {
    let text = r#"
functions:
  worker:
    job: [w]
    topics: [a]
    group: g
triggers:
  - name: both
    topics: [a]
    function: worker
    url: http://h/
  - name: neither
    topics: [a]
  - name: to-job
    topics: ["bad topic"]
    function: worker
    max_in_flight: 0
  - name: Upper
    topics: []
    url: mailto:someone@example.com
  - topics: [a]
    url: http://h/
"#;
    let found = problems(text);
    expect(&found, text, "triggers[0]", "name: both", "not both");
    expect(
        &found,
        text,
        "triggers[1]",
        "name: neither",
        "missing `function` or `url`",
    );
    expect(
        &found,
        text,
        "triggers[2].function",
        "function: worker\n    max",
        "is a job",
    );
    expect(
        &found,
        text,
        "triggers[2].topics[0]",
        "bad topic",
        "invalid topic name",
    );
    expect(
        &found,
        text,
        "triggers[2].max_in_flight",
        "max_in_flight",
        "at least 1",
    );
    expect(
        &found,
        text,
        "triggers[3].name",
        "Upper",
        "invalid trigger name",
    );
    expect(
        &found,
        text,
        "triggers[3].topics",
        "topics: []",
        "at least one topic",
    );
    expect(&found, text, "triggers[3].url", "mailto", "must use http");
    expect(
        &found,
        text,
        "triggers[4]",
        "  - topics: [a]\n    url",
        "missing required key `name`",
    );
    assert_eq!(found.len(), 9, "{found:#?}");
}

#[test]
fn duplicate_mapping_keys_are_reported_and_the_first_kept() {
    let text = "functions:\n  a:\n    url: http://one/\n  a:\n    url: http://two/\nadmin: {}\nadmin: {}\n";
    let found = problems(text);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(
        (found[0].path.as_str(), found[0].line),
        ("functions.a", Some(4))
    );
    assert!(
        found[0].message.contains("already set at line 2"),
        "{found:#?}"
    );
    assert_eq!((found[1].path.as_str(), found[1].line), ("admin", Some(7)));
}

#[test]
fn names_follow_their_rules() {
    let long = "a".repeat(64);
    for bad in ["", "-lead", "UPPER", "dot.name", "spa ce", long.as_str()] {
        let found = problems(&format!("functions:\n  {bad:?}:\n    url: http://h/\n"));
        assert!(
            found[0].message.contains("invalid function name"),
            "{bad}: {found:#?}"
        );
    }
    ok("\u{feff}functions:\n  a_1-b:\n    url: http://h/\n  9lives:\n    url: http://h/\n");
    let long_topic = "t".repeat(250);
    for bad in [".", "..", "a/b", "", long_topic.as_str()] {
        let found = problems(&format!("topics:\n  - name: {bad:?}\n"));
        assert!(
            found[0].message.contains("invalid topic name"),
            "{bad}: {found:#?}"
        );
    }
    ok(&format!(
        "topics:\n  - name: A.b_c-9\n  - name: {}\n",
        "t".repeat(249)
    ));
}

#[test]
fn section_values_are_checked() {
    let text = r#"
data_dir: ""
kafka:
  bootstrap_servers: " "
embedded:
  listen: localhost
  storage: disk
  default_partitions: 0
admin: [1]
topics:
  - name: a
    partitions: 0
    replication_factor: 0
  - just-a-name
"#;
    let found = problems(text);
    expect(&found, text, "data_dir", "data_dir", "must not be empty");
    expect(
        &found,
        text,
        "kafka.bootstrap_servers",
        "bootstrap_servers",
        "must not be empty",
    );
    expect(
        &found,
        text,
        "embedded.listen",
        "localhost",
        "invalid address",
    );
    expect(
        &found,
        text,
        "embedded.storage",
        "disk",
        "expected one of: sqlite, memory",
    );
    expect(
        &found,
        text,
        "embedded.default_partitions",
        "default_partitions",
        "at least 1",
    );
    expect(
        &found,
        text,
        "admin",
        "admin",
        "expected a mapping, found a list",
    );
    expect(
        &found,
        text,
        "topics[0].partitions",
        "    partitions: 0",
        "at least 1",
    );
    expect(
        &found,
        text,
        "topics[0].replication_factor",
        "replication_factor",
        "at least 1",
    );
    expect(
        &found,
        text,
        "topics[1]",
        "just-a-name",
        "expected a mapping",
    );
    assert_eq!(found.len(), 9, "{found:#?}");
}

#[test]
fn odd_inputs_are_reported_without_panicking() {
    let deep_lists = "[".repeat(5000);
    let deep_maps = (0..300)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect::<String>();
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n\
                b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n\
                d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n\
                f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
    let cases = [
        "- a\n- b\n",
        "just text",
        "42",
        "key:\n\t- x\n",
        "a: b: c",
        "? [complex, key]\n: value\n",
        "functions: [a, b]\n",
        "functions: {a: [1], b: 5, c: ~}\n",
        "triggers: {a: 1}\n",
        "triggers: [[], ~, {}, {name: x, topics: [[1]]}]\n",
        "topics: 7\n",
        "kafka: {client: [1, 2]}\n",
        "&x a: *y\n",
        "functions: !!str 5\n",
        "\u{0}\u{1}\u{2}",
        "data_dir: x\u{0}\nbogus: 1\n",
        "{{{{}}}}",
        deep_lists.as_str(),
        deep_maps.as_str(),
        bomb,
        "a: 1\n---\nb: 2\n",
    ];
    for text in cases {
        let result = parse(text, "odd.yaml");
        let Err(ConfigError::Invalid { problems, .. }) = result else {
            panic!("accepted {text:?}: {result:?}");
        };
        assert!(!problems.is_empty());
        assert!(
            problems.iter().all(|p| !p.message.contains('\n')),
            "{problems:#?}"
        );
    }
}

#[test]
fn an_item_missing_a_required_key_is_still_checked() {
    let text = "functions:\n  c:\n    job: [x]\n    topics: []\n    max: 0\n  d:\n    job: 5\n    group: ''\n    topics: [a]\n";
    let found = problems(text);
    expect(
        &found,
        text,
        "functions.c",
        "  c:",
        "missing required key `group`",
    );
    expect(
        &found,
        text,
        "functions.c.topics",
        "topics: []",
        "at least one topic",
    );
    expect(&found, text, "functions.c.max", "max: 0", "at least 1");
    expect(&found, text, "functions.d.job", "job: 5", "expected a list");
    expect(
        &found,
        text,
        "functions.d.group",
        "group: ''",
        "must not be empty",
    );
    assert_eq!(found.len(), 5, "{found:#?}");

    let text = "triggers:\n  - name: a\n    topics: [x]\n    url: http://h/\n    reply: {}\n    delivery: {backoff_delay: 1m, backoff_max: 1s, timeout: 0s}\n";
    let found = problems(text);
    expect(
        &found,
        text,
        "triggers[0].reply",
        "reply",
        "missing required key `topic`",
    );
    expect(
        &found,
        text,
        "triggers[0].delivery.backoff_delay",
        "delivery",
        "must not be longer than backoff_max",
    );
    expect(
        &found,
        text,
        "triggers[0].delivery.timeout",
        "delivery",
        "longer than zero",
    );
    assert_eq!(found.len(), 3, "{found:#?}");
}

#[test]
fn an_https_function_url_is_refused_with_the_reason() {
    let text = "triggers:\n  - name: t\n    topics: [a]\n    url: https://fn.example/\n";
    let found = problems(text);
    expect(
        &found,
        text,
        "triggers[0].url",
        "https://fn.example/",
        "https is not supported",
    );
}
