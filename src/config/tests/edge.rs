//! The `ingress` and `streams` sections.

use super::*;

#[test]
fn ingress_and_streams_are_read_with_their_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "  t0k3n \n").unwrap();
    let config = ok(&format!(
        "ingress:\n  max_body: 64KiB\n  static: {}\n  topics:\n    - hits\n    - name: secret\n      tokens: [{{file: {}}}]\nstreams:\n  - path: /chat/stream\n    topic: chat\n    publish: true\n  - path: /news\n    topic: news\n    allowed_origins: [\"https://news.example\", \"*\"]\n    queue: 8\n    max_history: 5\n",
        dir.path().display(),
        token.display()
    ));
    let ingress = config.ingress.clone().unwrap();
    assert_eq!(
        ingress.listen,
        "127.0.0.1:8080".parse::<std::net::SocketAddr>().unwrap()
    );
    assert_eq!(ingress.max_body, 64 << 10);
    assert_eq!(ingress.static_dir.as_deref(), Some(dir.path()));
    assert_eq!(ingress.topics[0].name, "hits");
    assert!(ingress.topics[0].tokens.is_empty());
    assert!(ingress.topics[1].tokens[0].matches(b"t0k3n"));
    assert!(!ingress.topics[1].tokens[0].matches(b"t0k3n "));
    assert!(!format!("{:?}", ingress.topics[1].tokens).contains("t0k3n"));
    let [chat, news] = &config.streams[..] else {
        panic!("{:?}", config.streams)
    };
    assert!(chat.publish && chat.allowed_origins.is_none());
    assert_eq!((chat.queue, chat.max_history), (256, 1000));
    assert!(!news.publish);
    assert_eq!((news.queue, news.max_history), (8, 5));
    assert_eq!(config.edge().unwrap().max_body, 64 << 10);

    // Streams alone run the public listener on its default address.
    let config = ok("streams:\n  - path: /s\n    topic: t\n");
    assert_eq!(
        config.edge().unwrap().listen,
        "127.0.0.1:8080".parse::<std::net::SocketAddr>().unwrap()
    );
    assert_eq!(config.edge().unwrap().max_body, 1 << 20);
    assert!(ok("topics: []").edge().is_none());
}

#[test]
fn bad_ingress_and_streams_are_all_reported() {
    let text = "ingress:\n  listen: nowhere\n  max_body: 2 parsecs\n  static: /nonexistent/dir\n  topics:\n    - bad topic\n    - name: hits\n      tokens: [plain-text-token, {env: SLUICE_TEST_UNSET_TOKEN}]\n    - hits\nstreams:\n  - path: chat\n    topic: chat\n  - path: /topics/x\n    topic: x\n  - path: /a\n    topic: a\n    queue: 0\n    allowed_origins: [\"example.com\"]\n    tokens: {publish: [{env: SLUICE_TEST_UNSET_TOKEN}]}\n  - path: /a\n    topic: a\n";
    let problems: Vec<String> = problems(text).iter().map(|p| p.to_string()).collect();
    let all = problems.join("\n");
    for expected in [
        "ingress.listen: invalid address \"nowhere\"",
        "ingress.max_body: invalid size \"2 parsecs\"",
        "ingress.static: /nonexistent/dir is not a directory",
        "invalid topic name \"bad topic\"",
        "a token is never read from the config file itself",
        "environment variable SLUICE_TEST_UNSET_TOKEN is not set",
        "duplicate ingress topic name `hits`",
        "invalid stream path \"chat\"",
        "invalid stream path \"/topics/x\": is taken by the ingress",
        "streams[2].queue: must be at least 1",
        "invalid origin \"example.com\"",
        "duplicate stream path name `/a`",
    ] {
        assert!(all.contains(expected), "{expected:?} not in:\n{all}");
    }
}
