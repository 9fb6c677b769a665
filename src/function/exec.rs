//! `exec` functions: one process per event, with the event's data on stdin and its attributes
//! in the environment. Exit 0 delivers it and stdout is the reply; anything else is retried.

use std::{
    ffi::OsString,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use bytes::Bytes;
use hyper::header::CONTENT_TYPE;
use prometheus_client::metrics::{gauge::Gauge, histogram::Histogram};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    sync::Semaphore,
};
use tracing::info;

use super::logbook::LogBook;
use super::process::{self, Spawn};
use crate::{
    config::ExecFunction,
    event::{Event, Record, percent_decode},
    metrics::{FunctionLabels, Metrics},
};

/// How much of a failed run's standard error is kept.
const STDERR_KEPT: usize = 64 * 1024;

/// How one run of the program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    /// Exit 0.
    Exited {
        /// Standard output, up to the limit asked for.
        output: Bytes,
        /// Whether there was more than the limit.
        truncated: bool,
    },
    /// It could not start, exited with another status or a signal, or timed out.
    Failed {
        /// `spawn`, `exit <n>`, `signal`, `timeout`, `stopped` or `error`.
        code: String,
        /// A sentence for logs and dead letters.
        message: String,
        /// The end of its standard error.
        stderr: Bytes,
    },
}

/// Runs an `exec` function.
#[derive(Debug)]
pub struct ExecRunner {
    name: String,
    spec: ExecFunction,
    permits: Semaphore,
    runs: AtomicU64,
    duration: Histogram,
    in_flight: Gauge,
    logbook: Arc<LogBook>,
}

impl ExecRunner {
    /// A runner allowing the function's concurrency, keeping output lines in `logbook`.
    pub fn new(name: &str, spec: ExecFunction, metrics: &Metrics, logbook: Arc<LogBook>) -> Self {
        let labels = FunctionLabels {
            function: name.to_owned(),
        };
        Self {
            name: name.to_owned(),
            permits: Semaphore::new(spec.effective_concurrency()),
            spec,
            runs: AtomicU64::new(0),
            duration: metrics.exec_duration.get_or_create(&labels).clone(),
            in_flight: metrics.function_in_flight.get_or_create(&labels).clone(),
            logbook,
        }
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Processes running now.
    pub fn running(&self) -> usize {
        self.spec.effective_concurrency() - self.permits.available_permits()
    }

    /// Runs the program once for `event`, keeping up to `output_limit` bytes of its output.
    pub async fn run(&self, event: &Event, record: &Record, output_limit: usize) -> Run {
        let Ok(_permit) = self.permits.acquire().await else {
            return failed(
                "stopped",
                "the function is stopping".to_owned(),
                Bytes::new(),
            );
        };
        self.in_flight.inc();
        let started = Instant::now();
        let run = self.run_once(event, record, output_limit).await;
        self.in_flight.dec();
        self.duration.observe(started.elapsed().as_secs_f64());
        run
    }

    async fn run_once(&self, event: &Event, record: &Record, output_limit: usize) -> Run {
        let instance = self.runs.fetch_add(1, Ordering::Relaxed) + 1;
        let spawned = process::spawn(Spawn {
            function: &self.name,
            instance,
            argv: &self.spec.exec,
            env: &self.spec.env,
            extra: environment(event, record),
            workdir: self.spec.workdir.as_deref(),
            stdin: Stdio::piped(),
            log_output: false,
            logbook: &self.logbook,
        });
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                return failed(
                    "spawn",
                    format!("cannot start {:?}: {err}", self.spec.exec[0]),
                    Bytes::new(),
                );
            }
        };
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let body = event.body.clone();
        let write = async move {
            if let Some(mut stdin) = stdin {
                // A program that does not read its input closes the pipe early; that is
                // its business.
                let _ = stdin.write_all(&body).await;
                let _ = stdin.shutdown().await;
            }
        };
        let read = async move {
            match stdout {
                Some(stdout) => read_capped(stdout, output_limit).await,
                None => (Vec::new(), false),
            }
        };
        let read_errors = async move {
            match stderr {
                Some(stderr) => read_capped(stderr, STDERR_KEPT).await.0,
                None => Vec::new(),
            }
        };
        let run = async { tokio::join!(write, read, read_errors, child.wait()) };
        let timeout = self.spec.timeout;
        let ((), (output, truncated), errors, status) =
            match tokio::time::timeout(timeout, run).await {
                Ok(done) => done,
                Err(_) => {
                    let _ = process::kill(&mut child).await;
                    return failed(
                        "timeout",
                        format!("no exit within {timeout:?}; its process group was killed"),
                        Bytes::new(),
                    );
                }
            };
        // Whatever the program left running in its group goes with it.
        process::signal_group(child.id(), nix::sys::signal::Signal::SIGKILL);
        let status = match status {
            Ok(status) => status,
            Err(err) => {
                return failed(
                    "error",
                    format!("waiting for the process: {err}"),
                    Bytes::new(),
                );
            }
        };
        for line in String::from_utf8_lossy(&output).lines() {
            info!(function = %self.name, instance, stream = "stdout", "{line}");
            self.logbook.push(&self.name, instance, "stdout", line);
        }
        for line in String::from_utf8_lossy(&errors).lines() {
            info!(function = %self.name, instance, stream = "stderr", "{line}");
            self.logbook.push(&self.name, instance, "stderr", line);
        }
        if !status.success() {
            return failed(
                &status
                    .code()
                    .map_or_else(|| "signal".to_owned(), |c| format!("exit {c}")),
                format!(
                    "{:?} ended with {}",
                    self.spec.exec[0],
                    process::describe(status)
                ),
                Bytes::from(errors),
            );
        }
        Run::Exited {
            output: Bytes::from(output),
            truncated,
        }
    }
}

fn failed(code: &str, message: String, stderr: Bytes) -> Run {
    Run::Failed {
        code: code.to_owned(),
        message,
        stderr,
    }
}

/// The content type of a program's output: text when it is UTF-8.
pub fn output_type(output: &[u8]) -> &'static str {
    if std::str::from_utf8(output).is_ok() {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// Reads at most `limit` bytes, then drains the rest so the writer is not blocked; the flag
/// says whether anything was left out.
async fn read_capped(mut stream: impl AsyncRead + Unpin, limit: usize) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut truncated = false;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(out.len());
                if n > room {
                    truncated = true;
                }
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (out, truncated)
}

/// The environment of one run: the event's attributes as `CE_*`, its trace context as
/// `TRACEPARENT` and `TRACESTATE`, the record's coordinates as `KAFKA_*` and each record
/// header as `KAFKA_HEADER_<NAME>`. A value that is not UTF-8 (or
/// holds a NUL byte) is base64-encoded, and `SLUICE_BASE64` lists the variables so encoded.
pub fn environment(event: &Event, record: &Record) -> Vec<(String, OsString)> {
    let mut env = Vec::with_capacity(12 + record.headers.len());
    let mut encoded: Vec<String> = Vec::new();
    let mut put =
        |env: &mut Vec<(String, OsString)>, name: String, value: &[u8]| match std::str::from_utf8(
            value,
        ) {
            Ok(text) if !text.contains('\0') => env.push((name, OsString::from(text))),
            _ => {
                env.push((name.clone(), OsString::from(BASE64.encode(value))));
                encoded.push(name);
            }
        };
    for (variable, attribute) in [
        ("CE_ID", "ce-id"),
        ("CE_SOURCE", "ce-source"),
        ("CE_TYPE", "ce-type"),
        ("CE_SUBJECT", "ce-subject"),
        ("CE_TIME", "ce-time"),
        ("CE_SPECVERSION", "ce-specversion"),
    ] {
        if let Some((_, value)) = event.headers.iter().find(|(n, _)| n.as_str() == attribute) {
            let value = percent_decode(value.to_str().unwrap_or_default());
            put(&mut env, variable.to_owned(), &value);
        }
    }
    if let Some((_, value)) = event.headers.iter().find(|(n, _)| *n == CONTENT_TYPE) {
        put(&mut env, "CE_DATACONTENTTYPE".to_owned(), value.as_bytes());
    }
    for (name, value) in event.trace() {
        put(&mut env, name.to_ascii_uppercase(), value.as_bytes());
    }
    put(&mut env, "KAFKA_TOPIC".to_owned(), record.topic.as_bytes());
    put(
        &mut env,
        "KAFKA_PARTITION".to_owned(),
        record.partition.to_string().as_bytes(),
    );
    put(
        &mut env,
        "KAFKA_OFFSET".to_owned(),
        record.offset.to_string().as_bytes(),
    );
    if let Some(key) = &record.key {
        put(&mut env, "KAFKA_KEY".to_owned(), key);
    }
    for (name, value) in &record.headers {
        let variable = format!("KAFKA_HEADER_{}", variable_suffix(name));
        put(&mut env, variable, value.as_deref().unwrap_or_default());
    }
    if !encoded.is_empty() {
        env.push((
            "SLUICE_BASE64".to_owned(),
            OsString::from(encoded.join(",")),
        ));
    }
    env
}

/// A header name as an environment variable suffix: upper case, anything but `A-Z0-9` as `_`.
pub fn variable_suffix(name: &str) -> String {
    name.chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9') => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventSettings, from_record};

    fn record() -> Record {
        Record {
            topic: "names".into(),
            partition: 2,
            offset: 7,
            timestamp: Some(1_700_000_000_000),
            key: Some(Bytes::from_static(b"\xffkey")),
            value: Some(Bytes::from_static(b"world")),
            headers: vec![
                ("trace-id".into(), Some(Bytes::from_static(b"abc"))),
                ("bin".into(), Some(Bytes::from_static(b"a\0b"))),
            ],
        }
    }

    #[test]
    fn environment_carries_attributes_coordinates_and_headers() {
        let record = record();
        let event = from_record(
            &record,
            &EventSettings {
                trigger: "t".into(),
                source: None,
                event_type: None,
                content_type: "text/plain".into(),
            },
        );
        let env: std::collections::BTreeMap<String, String> = environment(&event, &record)
            .into_iter()
            .map(|(k, v)| (k, v.into_string().unwrap()))
            .collect();
        assert_eq!(env["CE_ID"], "partition:2/offset:7");
        assert_eq!(env["CE_SOURCE"], "/sluice/t#names");
        assert_eq!(env["CE_TYPE"], "dev.knative.kafka.event");
        assert_eq!(env["CE_SUBJECT"], "partition:2#7");
        assert_eq!(env["CE_TIME"], "2023-11-14T22:13:20.000Z");
        assert_eq!(env["CE_SPECVERSION"], "1.0");
        assert_eq!(env["CE_DATACONTENTTYPE"], "text/plain");
        assert_eq!(env["KAFKA_TOPIC"], "names");
        assert_eq!(env["KAFKA_PARTITION"], "2");
        assert_eq!(env["KAFKA_OFFSET"], "7");
        assert_eq!(env["KAFKA_KEY"], BASE64.encode(b"\xffkey"));
        assert_eq!(env["KAFKA_HEADER_TRACE_ID"], "abc");
        assert_eq!(env["KAFKA_HEADER_BIN"], BASE64.encode(b"a\0b"));
        assert_eq!(env["SLUICE_BASE64"], "KAFKA_KEY,KAFKA_HEADER_BIN");
    }
}
