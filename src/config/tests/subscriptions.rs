//! Functions that list `topics` subscribe to them through an implicit trigger.

use super::*;

#[test]
fn a_function_with_topics_gets_a_trigger_of_its_name_with_the_defaults() {
    let config = ok(r#"
functions:
  hello:
    url: http://127.0.0.1:8081/
    topics: [orders, refunds]
  banner:
    exec: [figlet]
    topics: [faas-request]
  audit:
    command: [python3, audit.py]
  consume:
    job: [consumer]
    topics: [payments]
    group: payments
triggers:
  - name: explicit
    topics: [orders]
    function: audit
"#);
    let names: Vec<&str> = config.triggers.iter().map(|t| t.name.as_str()).collect();
    // A job's topics are what it reads itself, not a subscription.
    assert_eq!(names, ["explicit", "banner", "hello"]);
    let hello = &config.triggers[2];
    let written =
        ok("triggers: [{name: hello, topics: [orders, refunds], url: 'http://127.0.0.1:8081/'}]");
    assert_eq!(
        hello, &written.triggers[0],
        "the same as a trigger written with the defaults"
    );
    assert_eq!(hello.effective_group(), "sluice-hello");
    assert_eq!(hello.dead_letter, DeadLetter::default_for("hello"));
    assert_eq!(config.triggers[1].target, Target::Exec("banner".into()));
    assert_eq!(config.triggers[1].topics, ["faas-request"]);
}

#[test]
fn an_implicit_trigger_may_not_take_a_used_name_or_a_bad_topic() {
    let text = r#"
functions:
  hello:
    url: http://127.0.0.1:8081/
    topics: [orders]
  other:
    url: http://127.0.0.1:8082/
    topics: ["bad topic"]
triggers:
  - name: hello
    topics: [orders]
    url: http://127.0.0.1:8083/
"#;
    let found = problems(text);
    expect(
        &found,
        text,
        "functions.hello.topics",
        "topics: [orders]",
        "already named `hello`",
    );
    assert!(
        found
            .iter()
            .any(|p| p.path.starts_with("functions.other.topics")),
        "{found:#?}"
    );
    assert_eq!(found.len(), 2, "{found:#?}");
}
