//! Dead letters: `sluice dlq list` shows each with its reason and source, `sluice dlq
//! redrive` produces them back once (its position is committed only after the broker stored
//! the record), and the admin API offers both, a token guarding the redrive.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{
    Daemon, function::Answer, function::Function, http_get, http_request, produce_all, wait_until,
};
use hyper::StatusCode;
use nix::sys::signal::Signal;
use sluice::broker::free_local_addr;

const WAIT: Duration = Duration::from_secs(60);

fn run(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["-c", config.to_str().unwrap()];
    all.extend_from_slice(args);
    let output = common::run(&all);
    (
        output.status.code().unwrap_or(-1),
        common::stdout(&output),
        common::stderr(&output),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_listed_and_redriven_once() {
    // Keys starting with `bad-` are refused (400: dead-lettered at once) until `healed`.
    let healed = Arc::new(AtomicBool::new(false));
    let function = {
        let healed = healed.clone();
        Function::start(move |_, received| {
            let bad = received
                .header("ce-key")
                .is_some_and(|k| k.starts_with("bad-"));
            if bad && !healed.load(Ordering::SeqCst) {
                let mut answer = Answer::status(StatusCode::BAD_REQUEST);
                answer.body = "no bad ones".into();
                answer
            } else {
                Answer::ok()
            }
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let broker = free_local_addr().unwrap();
    let admin = free_local_addr().unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "adm1n\n").unwrap();
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\nembedded:\n  listen: \"{broker}\"\nadmin:\n  listen: \"{admin}\"\n  token: {{file: {}}}\ntopics:\n  - name: orders\n    partitions: 2\ntriggers:\n  - name: t\n    topics: [orders]\n    url: {}\n    initial_offset: earliest\n",
            dir.path().join("data").display(),
            token.display(),
            function.url()
        ),
    )
    .unwrap();
    let up = Daemon::spawn(&["-c", config.to_str().unwrap(), "up"], dir.path());
    wait_until("readyz answers 200", WAIT, || {
        matches!(http_get(admin, "/readyz"), Ok((200, _)))
    });
    let records: Vec<common::TestRecord> = (0..10)
        .map(|n| {
            let key = if n % 5 < 3 {
                format!("bad-{n}")
            } else {
                format!("good-{n}")
            };
            (
                Some(key.into_bytes()),
                format!("value {n}").into_bytes(),
                vec![("trace".to_owned(), b"t".to_vec())],
            )
        })
        .collect();
    produce_all(&broker.to_string(), "orders", records).await;
    function.wait_for(10, WAIT).await;
    wait_until("six dead letters", WAIT, || {
        http_get(admin, "/api/status").is_ok_and(|(_, body)| body.contains("\"dead_lettered\":6"))
    });

    // Listed, with the original record, the reason and where it came from.
    let (code, out, err) = run(&config, &["dlq", "list", "t", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let letters: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 6, "{out}");
    for letter in &letters {
        assert!(
            letter["key"].as_str().unwrap().starts_with("bad-"),
            "{letter}"
        );
        assert_eq!(
            letter["headers"]["trace"], "t",
            "the original headers stay: {letter}"
        );
        assert!(letter["headers"].get("sluice-error").is_none(), "{letter}");
        let reason = &letter["reason"];
        assert_eq!(reason["code"], "400", "{letter}");
        assert_eq!(reason["attempts"], 1, "{letter}");
        assert_eq!(reason["excerpt"], "no bad ones", "{letter}");
        assert_eq!(reason["source_topic"], "orders", "{letter}");
        assert!(reason["source_offset"].is_i64(), "{letter}");
    }
    let (code, text, _) = run(&config, &["dlq", "list", "t", "--count", "2"]);
    assert_eq!(code, 0);
    println!("{text}");
    assert_eq!(text.matches("dead letter ").count(), 2, "{text}");
    assert!(text.contains("reason: 400"), "{text}");

    // The admin API lists them for the console.
    let (code, body) = http_get(admin, "/api/triggers/t/dead-letters?count=3").unwrap();
    assert_eq!(code, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listed["topic"], "sluice.dlq.t");
    assert_eq!(listed["dead_letters"].as_array().unwrap().len(), 3);

    // A redrive through the API wants the admin token.
    let redrive = |headers: Vec<(&'static str, &'static str)>| {
        let body = br#"{"count": 2}"#.to_vec();
        move || {
            http_request(
                admin,
                "POST",
                "/api/triggers/t/redrive",
                &[headers.as_slice(), &[("content-type", "application/json")]].concat(),
                &body,
            )
            .unwrap()
        }
    };
    let refused = tokio::task::spawn_blocking(redrive(vec![])).await.unwrap();
    assert_eq!(refused.status, 401, "{refused:?}");
    let refused = tokio::task::spawn_blocking(redrive(vec![("authorization", "Bearer wrong")]))
        .await
        .unwrap();
    assert_eq!(refused.status, 403, "{refused:?}");

    // Healed, the function takes them: two through the API, then the rest with the CLI,
    // then nothing, however often it runs.
    healed.store(true, Ordering::SeqCst);
    let done = tokio::task::spawn_blocking(redrive(vec![("authorization", "Bearer adm1n")]))
        .await
        .unwrap();
    assert_eq!(done.status, 200, "{done:?}");
    assert_eq!(done.json()["redriven"], 2);
    let (code, out, err) = run(&config, &["-b", &broker.to_string(), "dlq", "redrive", "t"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("redrove 4 dead letters"), "{out}");
    let (code, out, _) = run(&config, &["-b", &broker.to_string(), "dlq", "redrive", "t"]);
    assert_eq!(code, 0);
    assert!(out.contains("redrove 0 dead letters"), "{out}");
    function.wait_for(16, WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received = function.received();
    assert_eq!(received.len(), 16, "each dead letter came back once");
    let redriven: Vec<_> = received[10..].iter().collect();
    let mut keys: Vec<String> = redriven
        .iter()
        .map(|r| r.header("ce-key").unwrap().to_owned())
        .collect();
    keys.sort();
    assert_eq!(keys, ["bad-0", "bad-1", "bad-2", "bad-5", "bad-6", "bad-7"]);
    for r in &redriven {
        // The original record, its reason replaced by a count.
        assert_eq!(r.header("ce-kafkaheadertrace"), Some("t"));
        assert_eq!(r.header("ce-kafkaheadersluiceredrivecount"), Some("1"));
        assert_eq!(r.header("ce-kafkaheaderknativeerrorcode"), None);
        assert!(std::str::from_utf8(&r.body).unwrap().starts_with("value "));
    }

    // A dead letter whose source the broker refuses is not passed over: nothing is committed
    // past it, and the next redrive meets it again.
    produce_all(
        &broker.to_string(),
        "sluice.dlq.t",
        vec![(
            Some(b"orphan".to_vec()),
            b"x".to_vec(),
            vec![
                ("sluice-source-topic".to_owned(), b"not a topic!".to_vec()),
                ("sluice-error".to_owned(), b"made up".to_vec()),
            ],
        )],
    )
    .await;
    for _ in 0..2 {
        let (code, _, err) = run(&config, &["-b", &broker.to_string(), "dlq", "redrive", "t"]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("nothing past it was committed"), "{err}");
    }

    // `--where` takes only what matches (CESQL over the event as delivered); what it passes
    // over counts as handled.
    let (code, out, err) = run(
        &config,
        &["dlq", "redrive", "t", "--where", "key = 'nothing'"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("redrove 0 dead letters") && out.contains("1 passed over"),
        "{out}"
    );
    let (code, _, err) = run(&config, &["dlq", "redrive", "t", "--where", "key = = 1"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("invalid CESQL expression"), "{err}");
    up.signal(Signal::SIGINT);
    let output = up.wait(WAIT);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
}
