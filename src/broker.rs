//! The embedded Kafka-compatible broker: `tansu-broker` run in-process.
//!
//! Used when `kafka.bootstrap_servers` is unset. Storage is SQLite under the data directory
//! (durable) or memory (gone at exit). Any Kafka client can talk to it on its listen address.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use tansu_broker::{broker::Broker, coordinator::group::administrator::Controller};
use tansu_storage::StorageContainer;
use tokio::{net::TcpStream, task::JoinHandle, time::Instant};
use tracing::{debug, info, warn};
use url::Url;

use crate::config::{EmbeddedConfig, Storage};

/// How long the broker may take to accept connections after it was built.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// The file, under the data directory, that holds the broker's SQLite database.
pub const DATABASE_FILE: &str = "broker.db";

/// Why the embedded broker could not start.
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
    /// tansu refused to build or serve.
    #[error("embedded broker failed: {0}")]
    Tansu(String),
    /// The broker did not accept connections in time.
    #[error("embedded broker did not accept connections on {0} within {READY_TIMEOUT:?}")]
    NotReady(SocketAddr),
}

/// A running embedded broker. Dropping it without [`EmbeddedBroker::shutdown`] stops it too.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    storage: Storage,
    database: Option<PathBuf>,
    task: JoinHandle<Result<(), String>>,
}

impl EmbeddedBroker {
    /// Starts the broker and waits until it accepts connections.
    pub async fn start(config: &EmbeddedConfig, data_dir: &Path) -> Result<Self, BrokerError> {
        let addr = config.listen;
        let (storage_url, database) = match config.storage {
            Storage::Sqlite => {
                let database = prepare_data_dir(data_dir)?.join(DATABASE_FILE);
                (sqlite_url(&database)?, Some(database))
            }
            Storage::Memory => (memory_url(), None),
        };

        // tansu binds inside its serve loop and only logs a failure there, so the address is
        // checked here first to give the user a clear error.
        drop(
            std::net::TcpListener::bind(addr)
                .map_err(|source| BrokerError::Listen { addr, source })?,
        );

        let advertised = advertised_addr(addr);
        let listener = tcp_url(addr)?;
        let advertised_listener = tcp_url(advertised)?;
        debug!(%storage_url, %listener, %advertised_listener, "Building the embedded broker.");

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
                        storage: config.storage,
                        database: database.clone(),
                        task,
                    };
                    this.wait_ready().await.map(|()| this)
                }
                Err(err) => Err(err),
            };
            match ready {
                Ok(this) => break this,
                Err(BrokerError::Tansu(reason))
                    if reason.contains("database is locked") && attempts < 50 =>
                {
                    debug!(reason, "Broker database is locked; starting again.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(err) => return Err(err),
            }
        };
        info!(
            listen = %addr,
            storage = this.storage.as_str(),
            database = %this.database.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
            "Embedded broker is ready."
        );
        Ok(this)
    }

    async fn wait_ready(&mut self) -> Result<(), BrokerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.task.is_finished() {
                let outcome = (&mut self.task).await;
                let reason = match outcome {
                    Ok(Ok(())) => "it stopped before accepting connections".to_owned(),
                    Ok(Err(err)) => err,
                    Err(err) => err.to_string(),
                };
                return Err(BrokerError::Tansu(reason));
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
    pub fn storage(&self) -> Storage {
        self.storage
    }

    /// The SQLite database file, when storage is durable.
    pub fn database(&self) -> Option<&Path> {
        self.database.as_deref()
    }

    /// Whether the broker's serve loop has ended on its own (an error).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the broker. Every write it acknowledged is already in SQLite, so stopping the
    /// serve loop loses nothing.
    pub async fn shutdown(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        if let Some(database) = &self.database {
            wait_unlocked(database).await;
        }
        info!("Embedded broker stopped.");
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Builds a tansu broker and spawns its serve loop.
async fn launch(
    storage_url: Url,
    listener: Url,
    advertised_listener: Url,
) -> Result<JoinHandle<Result<(), String>>, BrokerError> {
    let mut broker = Broker::<Controller<StorageContainer>, StorageContainer>::builder()
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
        .build()
        .await
        .map_err(|err| BrokerError::Tansu(err.to_string()))?;
    Ok(tokio::spawn(async move {
        broker
            .serve(Instant::now())
            .await
            .map_err(|err| err.to_string())
    }))
}

/// tansu's storage tasks outlive the serve loop for a moment and may still hold SQLite's write
/// lock; a broker started on the same file before they let go would fail with "database is
/// locked". Waits (bounded) until a write transaction can be taken.
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

/// tansu's SQLite engine joins the URL's host and path onto the current directory. A path
/// that starts with two slashes survives that join as an absolute path, so the database can
/// live anywhere.
fn sqlite_url(database: &Path) -> Result<Url, BrokerError> {
    let text = format!("sqlite:///{}", database.display());
    let url = Url::parse(&text)
        .map_err(|err| BrokerError::Tansu(format!("bad database path {text}: {err}")))?;
    // tansu uses the URL's path as it is, escapes included, so a path that URLs escape (a
    // space, say) would put the database somewhere else.
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
        .map_err(|err| BrokerError::Tansu(format!("bad listen address {addr}: {err}")))
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

    /// Mirrors how tansu's SQLite engine turns the URL into a file path, so that a change in
    /// the URL shape that would put the database somewhere else fails here.
    fn tansu_path(url: &Url, cwd: &Path) -> PathBuf {
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
        assert_eq!(tansu_path(&url, Path::new("/work/main")), db);
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
}
