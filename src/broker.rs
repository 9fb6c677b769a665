//! The embedded Kafka-compatible broker: `nisshi-broker` run in-process.
//!
//! Used when `kafka.bootstrap_servers` is unset. Storage is SQLite under the data directory
//! (durable), memory (gone at exit) or a PostgreSQL database that several brokers may share.
//! Any Kafka client can talk to it on its listen address.
//!
//! The broker's crates are vendored with sluice's patches (`vendor/README.md`). One of them
//! makes a panic in any broker task end the serve loop with that panic as its error, so a
//! broker that may have been left half-changed stops, and [`EmbeddedBroker::stopped`] says
//! why; sluice then stops too, with a non-zero exit, for a supervisor to restart it.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use nisshi_broker::{
    broker::Broker,
    coordinator::group::administrator::{Controller, GroupCoordinatorConfig},
};
use nisshi_storage::ArcDynStorage;
use tokio::{net::TcpStream, task::JoinHandle, time::Instant};
use tracing::{debug, info, warn};
use url::Url;

use crate::{
    backoff::Backoff,
    config::{EmbeddedConfig, Storage},
};

/// How long the broker may take to accept connections after it was built.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How often, and how far apart, a start on a SQLite file another broker still holds is
/// tried: ten seconds in all, long enough for a broker that just stopped to let go.
const LOCKED_ATTEMPTS: u32 = 50;
const LOCKED_BACKOFF: Backoff = Backoff::constant(Duration::from_millis(200));

/// How long an empty consumer group's first rebalance waits for more members to join.
/// Kafka's `group.initial.rebalance.delay.ms` is 3 s, which a member that rejoins a group after
/// a clean close would wait out every time; one broker on a laptop or a handful of replicas
/// join within a fraction of this.
const INITIAL_REBALANCE_DELAY: Duration = Duration::from_millis(300);

/// The file, under the data directory, that holds the broker's SQLite database.
pub const DATABASE_FILE: &str = "broker.db";

/// SQLite's result codes for a database another connection holds: `SQLITE_BUSY` and
/// `SQLITE_LOCKED`.
const SQLITE_BUSY: std::ffi::c_int = 5;
const SQLITE_LOCKED: std::ffi::c_int = 6;

/// Why the embedded broker could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The data directory could not be created or written.
    #[error("data directory {path} is not writable: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address from `embedded.listen`.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// The storage URL cannot be used.
    #[error("bad embedded broker storage: {0}")]
    StorageUrl(String),
    /// The broker refused to build, or its serve loop failed.
    #[error("embedded broker failed: {}", describe(.0))]
    Broker(#[source] Box<nisshi_broker::Error>),
    /// A broker task panicked; the broker stopped rather than serve from state the panic may
    /// have left half-changed.
    #[error("embedded broker stopped after a panic: {0}")]
    Panicked(String),
    /// The serve loop ended without an error, which it only does when asked to.
    #[error("embedded broker stopped by itself")]
    Ended,
    /// The broker did not accept connections in time.
    #[error("embedded broker did not accept connections on {0} within {READY_TIMEOUT:?}")]
    NotReady(SocketAddr),
}

impl BrokerError {
    /// Whether the broker failed only because another broker that just stopped on the same
    /// SQLite file still holds its lock.
    fn is_locked(&self) -> bool {
        match self {
            Self::Broker(err) => match err.as_ref() {
                nisshi_broker::Error::Storage(nisshi_storage::Error::LibSql(err)) => is_locked(err),
                _ => false,
            },
            _ => false,
        }
    }
}

fn is_locked(err: &libsql::Error) -> bool {
    matches!(
        err,
        libsql::Error::SqliteFailure(SQLITE_BUSY | SQLITE_LOCKED, _)
    )
}

/// nisshi's errors print as their `Debug`; a panic reads better as its message.
fn describe(err: &nisshi_broker::Error) -> String {
    match err {
        nisshi_broker::Error::Join(join) => join.to_string(),
        other => other.to_string(),
    }
}

/// A running embedded broker. Dropping it without [`EmbeddedBroker::shutdown`] stops it too.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    storage: Storage,
    database: Option<PathBuf>,
    /// The serve loop; `None` once it has been seen to end.
    task: Option<JoinHandle<Result<(), nisshi_broker::Error>>>,
}

impl EmbeddedBroker {
    /// Starts the broker and waits until it accepts connections.
    pub async fn start(config: &EmbeddedConfig, data_dir: &Path) -> Result<Self, BrokerError> {
        let addr = config.listen;
        let (storage_url, database) = match &config.storage {
            Storage::Sqlite => {
                let database = prepare_data_dir(data_dir)?.join(DATABASE_FILE);
                (sqlite_url(&database)?, Some(database))
            }
            Storage::Memory => (memory_url(), None),
            Storage::Postgres(url) => (url.connect_url().map_err(BrokerError::StorageUrl)?, None),
        };

        // The broker binds inside its serve loop and only logs a failure there, so the
        // address is checked here first to give the user a clear error.
        drop(
            std::net::TcpListener::bind(addr)
                .map_err(|source| BrokerError::Listen { addr, source })?,
        );

        // Kafka's `num.partitions`: the partitions of a topic a client names before it exists.
        nisshi_storage::set_auto_create_num_partitions(config.default_partitions);

        let advertised = advertised_addr(addr);
        let listener = tcp_url(addr)?;
        let advertised_listener = tcp_url(advertised)?;
        debug!(storage = %config.storage, %listener, %advertised_listener, "Building the embedded broker.");

        // A broker that just stopped on the same database may hold SQLite's write lock for a
        // moment longer; starting again after a pause is then the whole remedy.
        let mut attempts = 0;
        let this = loop {
            attempts += 1;
            let launched = launch(
                storage_url.clone(),
                listener.clone(),
                advertised_listener.clone(),
            )
            .await;
            let ready = match launched {
                Ok(task) => {
                    let mut this = Self {
                        addr: advertised,
                        storage: config.storage.clone(),
                        database: database.clone(),
                        task: Some(task),
                    };
                    this.wait_ready().await.map(|()| this)
                }
                Err(err) => Err(err),
            };
            match ready {
                Ok(this) => break this,
                Err(err) if err.is_locked() && attempts < LOCKED_ATTEMPTS => {
                    debug!(error = %err, "Broker database is locked; starting again.");
                    tokio::time::sleep(LOCKED_BACKOFF.delay(attempts)).await;
                }
                Err(err) => return Err(err),
            }
        };
        info!(
            listen = %addr,
            storage = %this.storage,
            database = %this.database.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            "Embedded broker is ready."
        );
        Ok(this)
    }

    async fn wait_ready(&mut self) -> Result<(), BrokerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.task.as_ref().is_some_and(JoinHandle::is_finished) {
                return Err(self.stopped().await);
            }
            if TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BrokerError::NotReady(self.addr));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The address clients use: `host:port`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The storage the broker runs on.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The SQLite database file, when storage is SQLite.
    pub fn database(&self) -> Option<&Path> {
        self.database.as_deref()
    }

    /// Resolves once the broker's serve loop has ended on its own, with the reason. It
    /// never ends while the broker serves.
    pub async fn stopped(&mut self) -> BrokerError {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let joined = task.await;
        self.task = None;
        outcome(joined)
    }

    /// Stops the broker. Every write it acknowledged is already stored, so stopping the
    /// serve loop loses nothing.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        if let Some(database) = &self.database {
            wait_unlocked(database).await;
        }
        info!("Embedded broker stopped.");
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Why a serve loop that ended did.
fn outcome(
    joined: Result<Result<(), nisshi_broker::Error>, tokio::task::JoinError>,
) -> BrokerError {
    match joined {
        Ok(Ok(())) => BrokerError::Ended,
        Ok(Err(nisshi_broker::Error::Join(join))) if join.is_panic() => {
            BrokerError::Panicked(join.to_string())
        }
        Ok(Err(err)) => BrokerError::Broker(Box::new(err)),
        Err(join) if join.is_panic() => BrokerError::Panicked(join.to_string()),
        Err(_) => BrokerError::Ended,
    }
}

/// Builds a broker and spawns its serve loop.
async fn launch(
    storage_url: Url,
    listener: Url,
    advertised_listener: Url,
) -> Result<JoinHandle<Result<(), nisshi_broker::Error>>, BrokerError> {
    let mut broker = Broker::<Controller<ArcDynStorage>, ArcDynStorage>::builder()
        .node_id(1)
        .cluster_id("sluice")
        .incarnation_id(uuid::Uuid::new_v4())
        .advertised_listener(advertised_listener)
        .storage(storage_url)
        .listener(listener)
        .schema_registry(None)
        .lake_house(None)
        .otlp_endpoint_url(None)
        .authentication(false)
        .silent(true)
        .group_coordinator(GroupCoordinatorConfig {
            initial_rebalance_delay: INITIAL_REBALANCE_DELAY,
            ..GroupCoordinatorConfig::default()
        })
        .build()
        .await
        .map_err(|err| BrokerError::Broker(Box::new(err)))?;
    Ok(tokio::spawn(
        async move { broker.serve(Instant::now()).await },
    ))
}

/// The broker's storage tasks outlive the serve loop for a moment and may still hold
/// SQLite's write lock; a broker started on the same file before they let go would fail
/// with "database is locked". Waits (bounded) until a write transaction can be taken.
async fn wait_unlocked(database: &Path) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match try_write_lock(database).await {
            Ok(()) => return,
            Err(err) if Instant::now() >= deadline => {
                warn!(error = %err, database = %database.display(), "Broker database is still locked.");
                return;
            }
            Err(err) => debug!(error = %err, "Broker database is still locked."),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn try_write_lock(database: &Path) -> Result<(), libsql::Error> {
    let db = libsql::Builder::new_local(database).build().await?;
    let connection = db.connect()?;
    let _ = connection.execute("BEGIN IMMEDIATE", ()).await?;
    let _ = connection.execute("ROLLBACK", ()).await?;
    Ok(())
}

/// Creates the data directory and proves it is writable.
fn prepare_data_dir(data_dir: &Path) -> Result<PathBuf, BrokerError> {
    let fail = |source| BrokerError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(fail)?;
    let dir = data_dir.canonicalize().map_err(fail)?;
    let probe = dir.join(".sluice-write-test");
    std::fs::write(&probe, b"").map_err(fail)?;
    let _ = std::fs::remove_file(&probe);
    Ok(dir)
}

/// The SQLite engine joins the URL's host and path onto the current directory. A path that
/// starts with two slashes survives that join as an absolute path, so the database can live
/// anywhere.
fn sqlite_url(database: &Path) -> Result<Url, BrokerError> {
    let text = format!("sqlite:///{}", database.display());
    let url = Url::parse(&text)
        .map_err(|err| BrokerError::StorageUrl(format!("bad database path {text}: {err}")))?;
    // The engine uses the URL's path as it is, escapes included, so a path that URLs escape
    // (a space, say) would put the database somewhere else.
    if url.path().strip_prefix('/') != Some(&database.display().to_string()) {
        return Err(BrokerError::DataDir {
            path: database.parent().unwrap_or(database).to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path has characters the embedded broker cannot use (such as spaces)",
            ),
        });
    }
    Ok(url)
}

fn memory_url() -> Url {
    Url::parse("memory://sluice/").expect("a constant URL parses")
}

fn tcp_url(addr: SocketAddr) -> Result<Url, BrokerError> {
    Url::parse(&format!("tcp://{addr}"))
        .map_err(|err| BrokerError::StorageUrl(format!("bad listen address {addr}: {err}")))
}

/// Clients cannot connect to an unspecified address, so a broker that listens on all
/// interfaces advertises loopback.
fn advertised_addr(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

/// Finds a free loopback port, for tests and benchmarks that start their own broker.
pub fn free_local_addr() -> io::Result<SocketAddr> {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mirrors how the SQLite engine turns the URL into a file path, so that a change in the
    /// URL shape that would put the database somewhere else fails here.
    fn engine_path(url: &Url, cwd: &Path) -> PathBuf {
        let mut path = cwd.to_path_buf();
        if let Some(domain) = url.domain() {
            path.push(domain);
        }
        match url.path().strip_prefix('/') {
            Some(relative) => path.push(relative),
            None => path.push(url.path()),
        }
        path
    }

    #[test]
    fn sqlite_url_keeps_absolute_paths() {
        let db = Path::new("/tmp/some-dir/data.d/broker.db");
        let url = sqlite_url(db).unwrap();
        assert_eq!(url.scheme(), "sqlite");
        assert_eq!(engine_path(&url, Path::new("/work/main")), db);
    }

    #[test]
    fn paths_that_urls_escape_are_refused() {
        let err = sqlite_url(Path::new("/tmp/some dir/broker.db")).unwrap_err();
        assert!(err.to_string().contains("/tmp/some dir"), "{err}");
    }

    #[test]
    fn unspecified_listen_advertises_loopback() {
        let any: SocketAddr = "0.0.0.0:9092".parse().unwrap();
        assert_eq!(advertised_addr(any).to_string(), "127.0.0.1:9092");
        let local: SocketAddr = "127.0.0.2:9000".parse().unwrap();
        assert_eq!(advertised_addr(local), local);
    }

    #[test]
    fn a_locked_database_is_told_by_its_kind() {
        let locked = BrokerError::Broker(Box::new(nisshi_broker::Error::Storage(
            nisshi_storage::Error::LibSql(std::sync::Arc::new(libsql::Error::SqliteFailure(
                SQLITE_BUSY,
                "database is locked".into(),
            ))),
        )));
        assert!(locked.is_locked());
        let other = BrokerError::Broker(Box::new(nisshi_broker::Error::Message(
            "database is locked".into(),
        )));
        assert!(!other.is_locked(), "a message is not a kind");
    }
}
