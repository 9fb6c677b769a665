//! sluice connects Apache Kafka topics to functions.
//!
//! The modules, in the order data flows through them:
//! - [`config`]: the YAML file, validated into typed settings; everything else is built from it.
//! - [`broker`]: the embedded Kafka-compatible broker (`nisshi`), used when no cluster is set.
//! - [`kafka`]: librdkafka clients and topic administration shared by every command.
//! - [`trigger`]: a trigger's consumer group (`consumer.rs`), ordering lanes (`lanes.rs`),
//!   offset watermark (`offsets.rs`) and the state its tasks share (`state.rs`).
//! - [`event`]: record → CloudEvent (Knative KafkaSource's HTTP binary mode).
//! - [`filter`]: Knative's trigger filters and CloudEvents SQL, deciding which events go on.
//! - [`deliver`]: where events go (`destination.rs`), the HTTP invoker (`http.rs`,
//!   `conn.rs`), the retry policy (`retry.rs`), and dead letters and replies
//!   (`pipeline.rs`).
//! - [`function`]: the function runtime: `command` instances scaled from zero, `exec` runs
//!   per event, `job` programs woken by lag.
//! - [`dlq`]: dead letters read back with their reasons, and redriven to their source topic.
//! - [`backoff`]: the waits between tries that delivery, the runtime and the broker share.
//! - [`discovery`]: functions that subscribe to topics, read from an OpenFaaS gateway.
//! - [`edge`]: the public listener: [`ingress`] (HTTP into topics, `ingress/parse.rs`
//!   reads CloudEvents and plain bodies), [`stream`] (topics out to browsers over WebSocket
//!   and SSE: a hub per stream, `stream/session.rs` per client), and static files.
//! - [`app`]: a running sluice; owns the broker, topics, admin listener, triggers, discovery
//!   and the status poller, and reconciles what runs with a reloaded config
//!   (`app/triggers.rs`).
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`, `/api/status` and the API that seeks and
//!   reloads.
//! - [`metrics`]: the Prometheus metrics, registered once.
//! - [`shutdown`]: signals, graceful and forced stops.
//! - [`cli`]: the command line (`up`, `broker`, `produce`, `consume`, `topics`, `status`,
//!   `validate`, `reload`, `triggers`, `filter`, `connector`).

pub mod admin;
pub mod app;
pub mod backoff;
pub mod broker;
pub mod cli;
pub mod config;
pub mod deliver;
pub mod discovery;
pub mod dlq;
pub mod edge;
pub mod event;
pub mod filter;
pub mod function;
pub mod ingress;
pub mod kafka;
pub mod metrics;
pub mod shutdown;
pub mod stream;
pub mod trigger;

/// jemalloc: thread caches that take frees from other threads without contention. Records are
/// copied on one worker and freed on whichever finishes their delivery.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
