//! The `triggers` section: each trigger resolved to where it delivers and where its dead
//! letters go.

use super::*;

/// The most events a batch may hold (Lambda's largest Kafka batch).
const MAX_BATCH_EVENTS: usize = 10_000;

/// The smallest `max_bytes` of a batch: room for a few events.
const MIN_BATCH_BYTES: usize = 1024;

/// A trigger as written; [`Trigger`] is what it resolves to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrigger {
    /// See [`Trigger::name`]; required, but optional here so that the rest of the trigger is
    /// still checked when it is missing.
    #[serde(default)]
    name: Option<String>,
    /// See [`Trigger::topics`]; required, optional here for the same reason as `name`.
    #[serde(default, deserialize_with = "de::optional_string_list")]
    topics: Option<Vec<String>>,
    /// The function to deliver to; exclusive with `url`.
    #[serde(default)]
    function: Option<String>,
    /// The endpoint to deliver to; exclusive with `function`.
    #[serde(default, deserialize_with = "de::optional_url")]
    url: Option<Url>,
    /// See [`Trigger::group`].
    #[serde(default)]
    group: Option<String>,
    /// See [`Trigger::initial_offset`].
    #[serde(default)]
    initial_offset: Option<InitialOffset>,
    /// See [`Trigger::ordering`].
    #[serde(default)]
    ordering: Option<Ordering>,
    /// See [`Trigger::max_in_flight`].
    #[serde(default = "default_max_in_flight")]
    max_in_flight: usize,
    /// See [`Trigger::content_type`].
    #[serde(default = "default_content_type")]
    content_type: String,
    /// See [`Trigger::source`].
    #[serde(default)]
    source: Option<String>,
    /// See [`Trigger::event_type`].
    #[serde(default, rename = "type")]
    event_type: Option<String>,
    /// See [`Trigger::delivery`]; null counts as unset.
    #[serde(default)]
    delivery: Option<Delivery>,
    /// Kept as YAML because it takes three shapes; see [`dead_letter`].
    #[serde(default)]
    dead_letter: Option<Value>,
    /// See [`Trigger::reply`].
    #[serde(default)]
    reply: Option<Reply>,
    /// See [`Trigger::filters`]; kept as YAML, since each entry takes one of several shapes.
    #[serde(default)]
    filters: Option<Value>,
    /// Knative's older form of [`Trigger::filters`].
    #[serde(default)]
    filter: Option<Value>,
    /// See [`Trigger::log_response`].
    #[serde(default)]
    log_response: Option<LogResponse>,
}

fn default_max_in_flight() -> usize {
    64
}

fn default_content_type() -> String {
    "application/octet-stream".to_owned()
}

/// The mapping form of `dead_letter`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLetterSpec {
    /// See [`DeadLetter::Topic`].
    #[serde(default)]
    topic: Option<String>,
    /// See [`DeadLetter::Url`].
    #[serde(default, deserialize_with = "de::optional_url")]
    url: Option<Url>,
}

pub(super) fn triggers(
    report: &mut Report<'_>,
    value: &Value,
    declared: &BTreeSet<String>,
    functions: &BTreeMap<String, Function>,
) -> Vec<Trigger> {
    let mut triggers = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (index, value) in items(report, value, "triggers").iter().enumerate() {
        let path = join_index("triggers", index);
        let Some(raw) = item::<RawTrigger>(report, value, &path, None) else {
            continue;
        };
        let name_path = join_key(&path, "name");
        match &raw.name {
            Some(name) => {
                if let Err(why) = check_name(name) {
                    report.add(&name_path, format!("invalid trigger name {name:?}: {why}"));
                }
                duplicate(report, &mut seen, name, &name_path, "trigger");
            }
            None => required(report, &path, "name"),
        }
        if let Some(trigger) = trigger(report, raw, &path, declared, functions) {
            triggers.push(trigger);
        }
    }
    triggers
}

pub(super) fn trigger(
    report: &mut Report<'_>,
    raw: RawTrigger,
    path: &str,
    declared: &BTreeSet<String>,
    functions: &BTreeMap<String, Function>,
) -> Option<Trigger> {
    let key = |k: &str| join_key(path, k);
    match &raw.topics {
        Some(topics) => check_topics(report, &key("topics"), topics),
        None => required(report, path, "topics"),
    }
    if raw.group.as_deref().is_some_and(|g| g.trim().is_empty()) {
        report.add(
            &key("group"),
            "must not be empty; leave it out for the default",
        );
    }
    at_least_one(report, &key("max_in_flight"), to_i64(raw.max_in_flight));
    if raw.content_type.trim().is_empty() {
        report.add(&key("content_type"), "must not be empty");
    }
    let delivery = raw.delivery.unwrap_or_default();
    if delivery.backoff_delay > delivery.backoff_max {
        report.add(
            &join_key(&key("delivery"), "backoff_delay"),
            format!(
                "backoff_delay ({}) must not be longer than backoff_max ({})",
                humantime::format_duration(delivery.backoff_delay),
                humantime::format_duration(delivery.backoff_max)
            ),
        );
    }
    positive(
        report,
        &join_key(&key("delivery"), "timeout"),
        delivery.timeout,
    );
    if let Some(batch) = &delivery.batch {
        let batch_key = join_key(&key("delivery"), "batch");
        at_least_one(
            report,
            &join_key(&batch_key, "max_events"),
            to_i64(batch.max_events),
        );
        if batch.max_events > MAX_BATCH_EVENTS {
            report.add(
                &join_key(&batch_key, "max_events"),
                format!("must be at most {MAX_BATCH_EVENTS}"),
            );
        }
        if batch.max_bytes < MIN_BATCH_BYTES {
            report.add(
                &join_key(&batch_key, "max_bytes"),
                format!("must be at least {MIN_BATCH_BYTES} bytes"),
            );
        }
    }
    let name = raw.name.as_deref().unwrap_or_default();
    let dead_letter = dead_letter(report, raw.dead_letter.as_ref(), &key("dead_letter"), name);
    let filters = super::filters::filters(report, raw.filters.as_ref(), raw.filter.as_ref(), path);
    if let Some(reply) = &raw.reply {
        check_topic(report, &join_key(&key("reply"), "topic"), &reply.topic);
    }
    let target = match (raw.function, raw.url) {
        (Some(function), None) => {
            let function_path = key("function");
            match functions.get(&function) {
                Some(Function::Url(f)) => match Endpoint::parse(f.url.clone()) {
                    Ok(endpoint) if f.url.scheme() == "http" => Target::Url(endpoint),
                    // Reported at the function.
                    Ok(_) => return None,
                    Err(why) => {
                        report.add(&function_path, why);
                        return None;
                    }
                },
                Some(Function::Command(_)) => Target::Command(function),
                Some(Function::Exec(_)) if delivery.batch.is_some() => {
                    report.add(
                        &join_key(&key("delivery"), "batch"),
                        format!(
                            "function `{function}` is an exec function, which takes one event \
                             at a time on its standard input; batches go to url and command \
                             functions"
                        ),
                    );
                    return None;
                }
                Some(Function::Exec(_)) => Target::Exec(function),
                Some(Function::Job(_)) => {
                    report.add(
                        &function_path,
                        format!(
                            "function `{function}` is a job, which reads its topics itself; \
                             triggers can only deliver to url, command or exec functions"
                        ),
                    );
                    return None;
                }
                // A function whose own definition had a problem is declared but absent: that
                // problem is reported already.
                None if declared.contains(&function) => return None,
                None => {
                    let known: Vec<&str> = declared.iter().map(String::as_str).collect();
                    let hint = if known.is_empty() {
                        "no functions are defined".to_owned()
                    } else {
                        format!("defined functions: {}", known.join(", "))
                    };
                    report.add(
                        &function_path,
                        format!("unknown function `{function}` ({hint})"),
                    );
                    return None;
                }
            }
        }
        (None, Some(url)) => Target::Url(endpoint(report, &key("url"), &url)?),
        (Some(_), Some(_)) => {
            report.add(path, "set either `function` or `url`, not both");
            return None;
        }
        (None, None) => {
            if !report.was_removed(&key("function")) && !report.was_removed(&key("url")) {
                report.add(
                    path,
                    "missing `function` or `url`: a trigger needs somewhere to deliver",
                );
            }
            return None;
        }
    };
    Some(Trigger {
        name: raw.name?,
        topics: raw.topics?,
        target,
        group: raw.group,
        initial_offset: raw.initial_offset.unwrap_or_default(),
        ordering: raw.ordering.unwrap_or_default(),
        max_in_flight: raw.max_in_flight,
        content_type: raw.content_type,
        source: raw.source,
        event_type: raw.event_type,
        delivery,
        dead_letter: dead_letter?,
        reply: raw.reply,
        filters,
        log_response: raw.log_response.unwrap_or_default(),
    })
}

/// `dead_letter` is the word `none`, `{topic: T}` or `{url: U}`; absent means a topic named
/// after the trigger.
fn dead_letter(
    report: &mut Report<'_>,
    value: Option<&Value>,
    path: &str,
    trigger: &str,
) -> Option<DeadLetter> {
    let shapes = "`none`, `{topic: NAME}` or `{url: URL}`";
    let value = match value {
        None => return Some(DeadLetter::default_for(trigger)),
        Some(Value::String(word)) if word == "none" => return Some(DeadLetter::None),
        Some(value @ Value::Object(_)) => value,
        Some(other) => {
            let found = match other {
                Value::String(word) => format!("{word:?}"),
                other => describe(other).to_owned(),
            };
            report.add(path, format!("expected {shapes}, found {found}"));
            return None;
        }
    };
    let spec = de::deserialize::<DeadLetterSpec>(report, value, path, None)?;
    match (spec.topic, spec.url) {
        (Some(topic), None) => {
            check_topic(report, &join_key(path, "topic"), &topic);
            Some(DeadLetter::Topic(topic))
        }
        (None, Some(url)) => endpoint(report, &join_key(path, "url"), &url).map(DeadLetter::Url),
        (Some(_), Some(_)) => {
            report.add(path, "set either `topic` or `url`, not both");
            None
        }
        (None, None) => {
            let removed = report.was_removed(&join_key(path, "topic"))
                || report.was_removed(&join_key(path, "url"));
            if !removed {
                report.add(path, format!("expected {shapes}, found an empty mapping"));
            }
            None
        }
    }
}

/// A trigger's or dead letter's URL, checked like a function's and parsed for the client.
fn endpoint(report: &mut Report<'_>, path: &str, url: &Url) -> Option<Endpoint> {
    let errors = report.problems.len();
    check_url(report, path, url);
    if report.problems.len() > errors {
        return None;
    }
    match Endpoint::parse(url.clone()) {
        Ok(endpoint) => Some(endpoint),
        Err(why) => {
            report.add(path, why);
            None
        }
    }
}

/// The implicit trigger of each `url`, `command` or `exec` function that lists `topics`: it
/// is named after the function and has every trigger default (group `sluice-<function>`,
/// reading from the latest offset, partition order, 64 in flight, dead letters to
/// `sluice.dlq.<function>`).
pub(super) fn subscriptions(
    report: &mut Report<'_>,
    functions: &BTreeMap<String, Function>,
    triggers: &[Trigger],
) -> Vec<Trigger> {
    let mut implicit = Vec::new();
    for (name, function) in functions {
        let topics = function.subscriptions();
        if topics.is_empty() {
            continue;
        }
        let path = join_key(&join_key("functions", name), "topics");
        check_topics(report, &path, topics);
        if triggers.iter().any(|t| t.name == *name) {
            report.add(
                &path,
                format!(
                    "a trigger is already named `{name}`, the name of this function's implicit trigger; rename one of them"
                ),
            );
            continue;
        }
        let target = match function {
            Function::Url(f) => match Endpoint::parse(f.url.clone()) {
                Ok(endpoint) if f.url.scheme() == "http" => Target::Url(endpoint),
                // Reported at the function.
                Ok(_) => continue,
                Err(why) => {
                    report.add(&path, why);
                    continue;
                }
            },
            Function::Command(_) => Target::Command(name.clone()),
            Function::Exec(_) => Target::Exec(name.clone()),
            Function::Job(_) => continue,
        };
        implicit.push(Trigger {
            name: name.clone(),
            topics: topics.to_vec(),
            target,
            group: None,
            initial_offset: InitialOffset::default(),
            ordering: Ordering::default(),
            max_in_flight: default_max_in_flight(),
            content_type: default_content_type(),
            source: None,
            event_type: None,
            delivery: Delivery::default(),
            dead_letter: DeadLetter::default_for(name),
            reply: None,
            filters: crate::filter::Filters::default(),
            log_response: LogResponse::default(),
        });
    }
    implicit
}
