//! Live reload under load: triggers are added, changed and removed, and a function's
//! command is changed, on a running sluice while records flow, and every record still
//! reaches every trigger that should see it. Then the three ways to reload a real `sluice up`:
//! SIGHUP, `sluice reload` (the admin API) and `--watch`.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::Duration,
};

use common::{InProcess, committed, function::Answer, function::Function, produce_all};
use sluice::app::Changes;

const RECORDS: usize = 600;
const WAIT: Duration = Duration::from_secs(60);

fn yaml(dir: &str, functions: &str, triggers: &str) -> String {
    format!(
        "data_dir: {dir}\nembedded:\n  listen: \"{{LISTEN}}\"\ntopics:\n  - name: in\n    partitions: 2\nfunctions:\n{functions}triggers:\n{triggers}"
    )
}

/// A `command` function running the test fixture, which logs each request with its pid;
/// `flags` go to python3 before the script.
fn command_function(log: &Path, flags: &str) -> String {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/function.py");
    format!(
        "  cmd:\n    command: [python3, {flags}{}]\n    env: {{LOG: {}}}\n    min: 1\n",
        fixture.display(),
        log.display()
    )
}

/// What the command function logged: (pid, record value) for each request.
fn command_log(log: &Path) -> Vec<(u64, usize)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).ok()?;
            // Start-up lines have no body.
            let body = entry["body"].as_str()?;
            Some((entry["pid"].as_u64()?, body.parse().ok()?))
        })
        .collect()
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
    let logs = tempfile::tempdir().unwrap();
    let cmd_log = logs.path().join("cmd.log");
    let cmd_trigger =
        "  - name: cmdt\n    topics: [in]\n    function: cmd\n    initial_offset: earliest\n";
    let base = format!(
        "{}{}{cmd_trigger}",
        trigger("steady", &steady.url(), ""),
        trigger("filtered", &filtered.url(), "")
    );
    let mut sluice = InProcess::start(&format!(
        "topics:\n  - name: in\n    partitions: 2\nfunctions:\n{}triggers:\n{base}",
        command_function(&cmd_log, "")
    ))
    .await;
    let dir = sluice.dir.path().display().to_string();
    let listen = sluice.bootstrap.clone();
    let mut functions = command_function(&cmd_log, "");
    let config = |functions: &str, triggers: &str| {
        let text = yaml(&dir, functions, triggers).replace("{LISTEN}", &listen);
        sluice::config::parse(&text, "reload.yaml").unwrap_or_else(|e| panic!("{e}"))
    };

    // Records flow in six batches; a reload follows each of the first five.
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
        if expect_restarted != ["cmdt"] {
            assert!(changes.functions.is_empty(), "{changes:?}");
        }
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
        .reload(config(&functions, &with_added))
        .await
        .unwrap();
    step(changes, &["added"], &[], &[]);
    produce(next).await;
    next += batch;

    // 2. Change a trigger's filter; no record has the key it drops, so all still pass.
    let filter = "    filters:\n      - not:\n          exact:\n            key: drop\n";
    let changed = format!(
        "{}{}{cmd_trigger}{}",
        trigger("steady", &steady.url(), ""),
        trigger("filtered", &filtered.url(), filter),
        trigger("added", &added.url(), "")
    );
    let changes = sluice
        .running_mut()
        .reload(config(&functions, &changed))
        .await
        .unwrap();
    step(changes, &[], &["filtered"], &[]);
    produce(next).await;
    next += batch;

    // 3. Remove a trigger once it has caught up: it is drained and committed.
    added.wait_for(next, WAIT).await;
    let removed = format!(
        "{}{}{cmd_trigger}",
        trigger("steady", &steady.url(), ""),
        trigger("filtered", &filtered.url(), filter)
    );
    let changes = sluice
        .running_mut()
        .reload(config(&functions, &removed))
        .await
        .unwrap();
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
    let changes = sluice
        .running_mut()
        .reload(config(&functions, &removed))
        .await
        .unwrap();
    step(changes, &[], &[], &[]);
    produce(next).await;
    next += batch;

    // 5. Change the command function's command (python3 -u): it gets a new instance, and
    //    its trigger restarts on its group once the old instance's deliveries are done.
    let old_pids = sluice.running().functions().unwrap().pids("cmd");
    assert_eq!(old_pids.len(), 1, "{old_pids:?}");
    functions = command_function(&cmd_log, "-u, ");
    let changes = sluice
        .running_mut()
        .reload(config(&functions, &removed))
        .await
        .unwrap();
    step(changes.clone(), &[], &["cmdt"], &[]);
    assert_eq!(changes.functions, ["cmd"]);
    let new_pids = sluice.running().functions().unwrap().pids("cmd");
    assert!(
        !new_pids.iter().any(|pid| old_pids.contains(pid)),
        "old {old_pids:?}, new {new_pids:?}"
    );
    let old_pid = u64::from(old_pids[0]);
    assert!(
        !Path::new(&format!("/proc/{old_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{old_pid}/stat"))
                .is_ok_and(|stat| stat.contains(") Z ")),
        "the old instance was stopped"
    );
    produce(next).await;
    next += batch;
    assert_eq!(next, RECORDS);

    steady.wait_for(RECORDS, WAIT).await;
    filtered.wait_for(RECORDS, WAIT).await;
    common::wait_until("the command function saw every record", WAIT, || {
        command_log(&cmd_log)
            .iter()
            .map(|(_, n)| *n)
            .collect::<BTreeSet<_>>()
            .len()
            == RECORDS
    });
    let log = command_log(&cmd_log);
    let by_old: usize = log.iter().filter(|(pid, _)| *pid == old_pid).count();
    let by_new = log.len() - by_old;
    let cmd_seen: BTreeMap<usize, usize> = log.iter().fold(BTreeMap::new(), |mut seen, (_, n)| {
        *seen.entry(*n).or_insert(0) += 1;
        seen
    });
    println!(
        "cmd: {} records, {} duplicates; {by_old} requests to the old instance, {by_new} to the new",
        cmd_seen.len(),
        duplicates(&cmd_seen)
    );
    assert!(by_new >= batch, "the new instance took the last batch");
    println!(
        "added: {} records, {} duplicates",
        seen(&added).len(),
        duplicates(&seen(&added))
    );
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
async fn sighup_and_sluice_reload_apply_a_changed_file_and_keep_the_running_config_when_it_has_errors()
 {
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

    // `sluice reload` goes through the admin API and prints what changed.
    let path_arg = path.to_str().unwrap();
    let second = Function::start(|_, _| Answer::ok()).await;
    let both = format!("{good}{}", trigger("t2", &second.url(), ""));
    std::fs::write(&path, &both).unwrap();
    let output = common::run(&["-c", path_arg, "reload"]);
    let printed = common::stdout(&output);
    println!("{printed}");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        printed.contains("t2") && printed.contains("started"),
        "{printed}"
    );
    assert!(printed.contains("unchanged"), "{printed}");
    wait_until("the status shows both triggers", WAIT, || {
        triggers() == ["t", "t2"]
    });
    second.wait_for(10, WAIT).await;

    // A broken file through the API: exit 64, every problem printed, nothing changes, and
    // the status keeps the refusal.
    std::fs::write(
        &path,
        format!("{both}    max_in_flight: 0\n    no_such_setting: 2\n"),
    )
    .unwrap();
    // The address given, the file is read by the running sluice alone.
    let admin_arg = admin.to_string();
    let output = common::run(&["-c", path_arg, "reload", "--admin", &admin_arg]);
    let problems = stderr(&output);
    println!("{problems}");
    assert_eq!(output.status.code(), Some(64), "{problems}");
    assert!(problems.contains("reload refused"), "{problems}");
    assert!(
        problems.contains("max_in_flight: must be at least 1"),
        "{problems}"
    );
    assert!(problems.contains("no_such_setting"), "{problems}");
    let (_, body) = http_get(admin, "/api/status").unwrap();
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["reload"]["outcome"], "refused", "{body}");
    assert_eq!(status["reload"]["cause"], "api", "{body}");
    assert_eq!(
        status["reload"]["problems"].as_array().unwrap().len(),
        2,
        "{body}"
    );
    assert_eq!(triggers(), ["t", "t2"]);
    produce_all(&broker.to_string(), "in", records(10)).await;
    function.wait_for(15, WAIT).await;
    second.wait_for(15, WAIT).await;
    let (_, metrics) = http_get(admin, "/metrics").unwrap();
    assert!(
        metrics.contains("sluice_reloads_total{outcome=\"refused\"} 2"),
        "{metrics}"
    );

    up.signal(Signal::SIGINT);
    let output = up.wait(WAIT);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("Reloaded."), "{log}");
    assert!(log.contains("Reload refused"), "{log}");
    assert!(log.contains("no_such_setting"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_reloads_a_changed_file_and_keeps_the_running_config_when_it_is_broken() {
    use common::{Daemon, http_get, stderr, wait_until};
    use nix::sys::signal::Signal;
    use sluice::broker::free_local_addr;

    let first = Function::start(|_, _| Answer::ok()).await;
    let second = Function::start(|_, _| Answer::ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let broker = free_local_addr().unwrap();
    let admin = free_local_addr().unwrap();
    let path = dir.path().join("sluice.yaml");
    let head = format!(
        "data_dir: {}\nembedded:\n  listen: \"{broker}\"\nadmin:\n  listen: \"{admin}\"\ntopics:\n  - name: in\n    partitions: 2\ntriggers:\n",
        dir.path().join("data").display()
    );
    let one = format!("{head}{}", trigger("one", &first.url(), ""));
    std::fs::write(&path, &one).unwrap();
    let up = Daemon::spawn(&["-c", path.to_str().unwrap(), "up", "--watch"], dir.path());
    wait_until("readyz answers 200", WAIT, || {
        matches!(http_get(admin, "/readyz"), Ok((200, _)))
    });
    let status = || {
        let (_, body) = http_get(admin, "/api/status").unwrap();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let triggers = || {
        status()["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let records = |from: usize| {
        (from..from + 5)
            .map(|n| (None, n.to_string().into_bytes(), vec![]))
            .collect()
    };
    produce_all(&broker.to_string(), "in", records(0)).await;
    first.wait_for(5, WAIT).await;

    // Saving the file is enough.
    let two = format!("{one}{}", trigger("two", &second.url(), ""));
    std::fs::write(&path, &two).unwrap();
    wait_until("the watched change applies", WAIT, || {
        triggers() == ["one", "two"]
    });
    assert_eq!(status()["reload"]["cause"], "watch");
    assert_eq!(status()["reload"]["outcome"], "applied");
    second.wait_for(5, WAIT).await;

    // A broken save changes nothing, and the status says why.
    std::fs::write(&path, format!("{two}  - name: three\n")).unwrap();
    wait_until("the broken save is refused", WAIT, || {
        status()["reload"]["outcome"] == "refused"
    });
    let problems = status()["reload"]["problems"].to_string();
    assert!(
        problems.contains("missing required key `topics`"),
        "{problems}"
    );
    assert_eq!(triggers(), ["one", "two"]);
    produce_all(&broker.to_string(), "in", records(5)).await;
    first.wait_for(10, WAIT).await;
    second.wait_for(10, WAIT).await;

    // Fixed again: the trigger removed from the file stops.
    std::fs::write(&path, &one).unwrap();
    wait_until("the fixed file applies", WAIT, || triggers() == ["one"]);
    produce_all(&broker.to_string(), "in", records(10)).await;
    first.wait_for(15, WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(second.count(), 10, "a stopped trigger delivers nothing");
    for function in [&first, &second] {
        let seen = seen(function);
        assert_eq!(duplicates(&seen), 0);
    }

    up.signal(Signal::SIGINT);
    let output = up.wait(WAIT);
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{log}");
    assert!(log.contains("The config file changed."), "{log}");
}
