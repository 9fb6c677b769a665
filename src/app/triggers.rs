//! The reconciliation of the triggers and functions that should run with those that do:
//! at start, on a reload and when discovery finds a different set of functions.

use std::collections::{BTreeMap, BTreeSet};

use rdkafka::producer::FutureProducer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{AppError, Changes, Running, output_topics, status::TriggerView};
use crate::{
    admin::AdminTrigger,
    config::{self, Function, Target},
    trigger::{self, Trigger, TriggerProbe},
};

/// A trigger's run, with what it was built from and the token that stops it alone.
#[derive(Debug)]
pub(super) struct RunningTrigger {
    pub(super) spec: config::Trigger,
    stop: CancellationToken,
    pub(super) handle: JoinHandle<()>,
    probe: TriggerProbe,
}

impl RunningTrigger {
    /// Runs `trigger`, built from `spec`, under its own token, a child of `cancel`: one
    /// trigger can be stopped alone.
    fn spawn(
        spec: &config::Trigger,
        trigger: Trigger,
        cancel: &CancellationToken,
        grace: std::time::Duration,
    ) -> Self {
        info!(trigger = %spec.name, topics = ?spec.topics, target = %trigger.probe().target(), group = %spec.effective_group(), "Trigger started.");
        let stop = cancel.child_token();
        let probe = trigger.probe();
        let handle = tokio::spawn(trigger.run(stop.clone(), grace));
        Self {
            spec: spec.clone(),
            stop,
            handle,
            probe,
        }
    }
}

/// A running trigger as the admin API acts on it.
fn admin_trigger(spec: &config::Trigger, probe: &TriggerProbe) -> AdminTrigger {
    AdminTrigger {
        probe: probe.clone(),
        dead_letters: match &spec.dead_letter {
            config::DeadLetter::Topic(topic) => Some(topic.clone()),
            config::DeadLetter::None | config::DeadLetter::Url(_) => None,
        },
        settings: crate::event::EventSettings::of(spec),
    }
}

/// The function a trigger delivers to through sluice's runtime, if any.
fn runtime_function(spec: &config::Trigger) -> Option<&str> {
    match &spec.target {
        Target::Command(name) | Target::Exec(name) => Some(name),
        Target::Url(_) => None,
    }
}

impl Running {
    /// The triggers that should run: the config's, then the discovered ones whose names the
    /// config does not already use.
    fn wanted(&self) -> Vec<config::Trigger> {
        let mut wanted = self.config.triggers.clone();
        for found in &self.discovered {
            if wanted.iter().any(|t| t.name == found.name) {
                warn!(trigger = %found.name, "A discovered function's trigger has the name of a configured trigger; the configured one runs.");
                continue;
            }
            wanted.push(found.clone());
        }
        wanted
    }

    /// Makes what runs match what is wanted. When `functions` is given, the function
    /// runtime is made to match it too: a trigger whose function changes restarts with the
    /// new instances, and the old instances stop after that trigger has drained.
    ///
    /// Triggers are stopped before anything starts, so that a changed trigger's new
    /// consumer never shares its group with the old one.
    pub(super) async fn reconcile(
        &mut self,
        functions: Option<&BTreeMap<String, Function>>,
    ) -> Result<Changes, AppError> {
        let Some(runtime) = self.functions.clone() else {
            return Ok(Changes::default());
        };
        let wanted = self.wanted();
        let mut changes = Changes::default();
        let changed_functions: BTreeSet<String> = functions
            .map(|functions| runtime.changed(functions))
            .unwrap_or_default();
        for (name, running) in &self.triggers {
            let function_changed =
                runtime_function(&running.spec).is_some_and(|f| changed_functions.contains(f));
            match wanted.iter().find(|t| &t.name == name) {
                Some(spec) if *spec == running.spec && !function_changed => {
                    changes.unchanged.push(name.clone());
                }
                Some(_) => changes.restarted.push(name.clone()),
                None => changes.stopped.push(name.clone()),
            }
        }
        let mut stopping = Vec::new();
        for name in changes.restarted.iter().chain(&changes.stopped) {
            if let Some(running) = self.triggers.remove(name) {
                running.stop.cancel();
                stopping.push((name.clone(), running.handle));
            }
        }
        for (name, handle) in stopping {
            if let Err(err) = handle.await {
                warn!(trigger = %name, error = %err, "A stopped trigger's task failed.");
            }
            info!(trigger = %name, "Trigger drained and stopped.");
        }

        if let Some(functions) = functions.filter(|_| !changed_functions.is_empty()) {
            match runtime.replace(functions, self.state.metrics()) {
                Ok(retired) => {
                    // Nothing delivers to the old instances any more: their triggers drained.
                    retired.stop().await;
                    changes.functions = changed_functions.into_iter().collect();
                    info!(functions = ?changes.functions, "Functions replaced.");
                }
                Err(err) => {
                    // The old functions keep running, and so do their triggers below.
                    warn!(error = %err, "Functions cannot be replaced; the running ones are kept.");
                    changes
                        .failed
                        .push(("functions".to_owned(), err.to_string()));
                }
            }
        }

        let mut wanted_new = wanted
            .iter()
            .filter(|spec| !self.triggers.contains_key(&spec.name))
            .peekable();
        if wanted_new.peek().is_some() {
            let topics = output_topics(&self.config, &wanted);
            self.kafka.ensure_topics(&topics).await?;
            let producer = match &self.producer {
                Some(producer) => producer.clone(),
                None => {
                    let made: FutureProducer = self.kafka.create(&[("linger.ms", "5")])?;
                    self.producer.insert(made).clone()
                }
            };
            let context = trigger::Context {
                kafka: &self.kafka,
                functions: &runtime,
                producer: &producer,
                metrics: self.state.metrics(),
            };
            let mut started = Vec::new();
            for spec in wanted_new {
                if !changes.restarted.contains(&spec.name) {
                    changes.started.push(spec.name.clone());
                }
                match Trigger::build(spec, &context) {
                    Ok(trigger) => started.push(RunningTrigger::spawn(
                        spec,
                        trigger,
                        &self.cancel,
                        self.grace,
                    )),
                    Err(err) => {
                        warn!(trigger = %spec.name, error = %err, "Trigger cannot start.");
                        changes.failed.push((spec.name.clone(), err.to_string()));
                    }
                }
            }
            for running in started {
                let _ = self.triggers.insert(running.spec.name.clone(), running);
            }
        }

        let mut views = Vec::with_capacity(self.triggers.len());
        for running in self.triggers.values() {
            views.push(TriggerView::new(
                &running.spec,
                running.probe.clone(),
                &self.kafka,
            )?);
        }
        self.state.set_triggers(
            self.triggers
                .iter()
                .map(|(name, t)| (name.clone(), admin_trigger(&t.spec, &t.probe)))
                .collect(),
        );
        let _ = self.views.send_replace(views);
        Ok(changes)
    }
}
