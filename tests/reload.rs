//! Live reload under load: triggers are added, changed and removed on a running sluice
//! while records flow, and every record still reaches every trigger that should see it.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::{InProcess, committed, function::Answer, function::Function, produce_all};
use sluice::app::Changes;

const RECORDS: usize = 600;
const WAIT: Duration = Duration::from_secs(60);

fn yaml(dir: &str, triggers: &str) -> String {
    format!(
        "data_dir: {dir}\nembedded:\n  listen: \"{{LISTEN}}\"\ntopics:\n  - name: in\n    partitions: 2\ntriggers:\n{triggers}"
    )
}

fn trigger(name: &str, url: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    topics: [in]\n    url: {url}\n    initial_offset: earliest\n{extra}"
    )
}

/// How many times each record value reached `function`.
fn seen(function: &Function) -> BTreeMap<usize, usize> {
    let mut seen = BTreeMap::new();
    for r in function.received() {
        let n: usize = String::from_utf8(r.body.to_vec()).unwrap().parse().unwrap();
        *seen.entry(n).or_insert(0) += 1;
    }
    seen
}

fn duplicates(seen: &BTreeMap<usize, usize>) -> usize {
    seen.values().map(|c| c - 1).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_under_load_lose_nothing_and_leave_unchanged_triggers_running() {
    let steady = Function::start(|_, _| Answer::ok()).await;
    let filtered = Function::start(|_, _| Answer::ok()).await;
    let added = Function::start(|_, _| Answer::ok()).await;
    let base = format!(
        "{}{}",
        trigger("steady", &steady.url(), ""),
        trigger("filtered", &filtered.url(), "")
    );
    let mut sluice = InProcess::start(&format!(
        "topics:\n  - name: in\n    partitions: 2\ntriggers:\n{base}"
    ))
    .await;
    let dir = sluice.dir.path().display().to_string();
    let listen = sluice.bootstrap.clone();
    let config = |triggers: &str| {
        let text = yaml(&dir, triggers).replace("{LISTEN}", &listen);
        sluice::config::parse(&text, "reload.yaml").unwrap_or_else(|e| panic!("{e}"))
    };

    // Records flow in six batches; a reload follows each of the first four.
    let batch = RECORDS / 6;
    let bootstrap = sluice.bootstrap.clone();
    let produce = |from: usize| {
        let bootstrap = bootstrap.clone();
        async move {
            let records = (from..from + batch)
                .map(|n| {
                    (
                        Some(format!("k{n}").into_bytes()),
                        n.to_string().into_bytes(),
                        vec![],
                    )
                })
                .collect();
            produce_all(&bootstrap, "in", records).await;
        }
    };
    let mut next = 0;
    let step = |changes: Changes,
                expect_started: &[&str],
                expect_restarted: &[&str],
                expect_stopped: &[&str]| {
        println!("reload: {changes:?}");
        assert_eq!(changes.started, expect_started);
        assert_eq!(changes.restarted, expect_restarted);
        assert_eq!(changes.stopped, expect_stopped);
        assert!(
            changes.unchanged.contains(&"steady".to_owned()),
            "{changes:?}"
        );
        assert!(changes.failed.is_empty(), "{changes:?}");
        assert!(changes.restart_needed.is_empty(), "{changes:?}");
    };

    produce(next).await;
    next += batch;
    // 1. Add a trigger.
    let with_added = format!("{base}{}", trigger("added", &added.url(), ""));
    let changes = sluice
        .running_mut()
        .reload(config(&with_added))
        .await
        .unwrap();
    step(changes, &["added"], &[], &[]);
    produce(next).await;
    next += batch;

    // 2. Change a trigger's filter; no record has the key it drops, so all still pass.
    let filter = "    filters:\n      - not:\n          exact:\n            key: drop\n";
    let changed = format!(
        "{}{}{}",
        trigger("steady", &steady.url(), ""),
        trigger("filtered", &filtered.url(), filter),
        trigger("added", &added.url(), "")
    );
    let changes = sluice.running_mut().reload(config(&changed)).await.unwrap();
    step(changes, &[], &["filtered"], &[]);
    produce(next).await;
    next += batch;

    // 3. Remove a trigger once it has caught up: it is drained and committed.
    added.wait_for(next, WAIT).await;
    let removed = format!(
        "{}{}",
        trigger("steady", &steady.url(), ""),
        trigger("filtered", &filtered.url(), filter)
    );
    let changes = sluice.running_mut().reload(config(&removed)).await.unwrap();
    step(changes, &[], &[], &["added"]);
    let offsets = committed(&sluice.bootstrap, "sluice-added", "in").await;
    let total: i64 = offsets.values().sum();
    let added_seen = seen(&added);
    assert_eq!(total as usize, added_seen.len(), "committed {offsets:?}");
    assert_eq!(
        added_seen.len(),
        next,
        "the removed trigger saw every record before it"
    );
    let after_removal = added.count();
    produce(next).await;
    next += batch;

    // 4. The same config again changes nothing.
    let changes = sluice.running_mut().reload(config(&removed)).await.unwrap();
    step(changes, &[], &[], &[]);
    produce(next).await;
    next += batch;
    produce(next).await;
    next += batch;
    assert_eq!(next, RECORDS);

    steady.wait_for(RECORDS, WAIT).await;
    filtered.wait_for(RECORDS, WAIT).await;
    for (name, function) in [("steady", &steady), ("filtered", &filtered)] {
        let seen = seen(function);
        let missing: Vec<usize> = (0..RECORDS).filter(|n| !seen.contains_key(n)).collect();
        assert!(missing.is_empty(), "{name} lost {missing:?}");
        println!(
            "{name}: {} records, {} duplicates",
            seen.len(),
            duplicates(&seen)
        );
    }
    // The unchanged trigger was never restarted, so nothing reached it twice.
    assert_eq!(duplicates(&seen(&steady)), 0);
    // The removed trigger took nothing after it stopped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(added.count(), after_removal);
    sluice.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_applies_a_changed_file_and_keeps_the_running_config_when_it_has_errors() {
    use common::{Daemon, http_get, stderr, wait_until};
    use nix::sys::signal::Signal;
    use sluice::broker::free_local_addr;

    let function = Function::start(|_, _| Answer::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let broker = free_local_addr().unwrap();
    let admin = free_local_addr().unwrap();
    let path = dir.path().join("sluice.yaml");
    let head = format!(
        "data_dir: {}\nembedded:\n  listen: \"{broker}\"\nadmin:\n  listen: \"{admin}\"\ntopics:\n  - name: in\n    partitions: 2\n",
        dir.path().join("data").display()
    );
    std::fs::write(&path, &head).unwrap();
    let up = Daemon::spawn(&["-c", path.to_str().unwrap(), "up"], dir.path());
    wait_until("readyz answers 200", WAIT, || {
        matches!(http_get(admin, "/readyz"), Ok((200, _)))
    });
    let triggers = || {
        let (_, body) = http_get(admin, "/api/status").unwrap();
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        status["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(triggers().is_empty());

    // A trigger added to the file starts on SIGHUP.
    let good = format!("{head}triggers:\n{}", trigger("t", &function.url(), ""));
    std::fs::write(&path, &good).unwrap();
    up.signal(Signal::SIGHUP);
    wait_until("the new trigger runs", WAIT, || triggers() == ["t"]);
    let records = |from: usize| {
        (from..from + 5)
            .map(|n| (None, n.to_string().into_bytes(), vec![]))
            .collect()
    };
    produce_all(&broker.to_string(), "in", records(0)).await;
    function.wait_for(5, WAIT).await;

    // A file with errors changes nothing: the trigger goes on delivering.
    std::fs::write(&path, format!("{good}    no_such_setting: 1\n")).unwrap();
    up.signal(Signal::SIGHUP);
    produce_all(&broker.to_string(), "in", records(5)).await;
    function.wait_for(10, WAIT).await;
    assert_eq!(triggers(), ["t"]);
    let received = seen(&function);
    assert_eq!(
        received.keys().copied().collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );

    up.signal(Signal::SIGINT);
    let output = up.wait(WAIT);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("Reloaded."), "{log}");
    assert!(log.contains("Reload refused"), "{log}");
    assert!(log.contains("no_such_setting"), "{log}");
}
