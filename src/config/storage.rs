//! Where the embedded broker keeps records: `embedded.storage`.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use url::Url;

/// Where the embedded broker keeps records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Storage {
    /// In a SQLite database under `data_dir`.
    #[default]
    Sqlite,
    /// In memory; lost on exit.
    Memory,
    /// In a PostgreSQL database, which several brokers may share.
    Postgres(PostgresUrl),
}

impl Storage {
    /// The kind of storage: `sqlite`, `memory` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Storage::Sqlite => "sqlite",
            Storage::Memory => "memory",
            Storage::Postgres(_) => "postgres",
        }
    }
}

impl std::str::FromStr for Storage {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "sqlite" => Ok(Storage::Sqlite),
            "memory" => Ok(Storage::Memory),
            url if url.contains("://") => PostgresUrl::parse(url).map(Storage::Postgres),
            other => Err(format!(
                "unknown value {other:?}, expected one of: sqlite, memory, a postgres:// URL"
            )),
        }
    }
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::Postgres(url) => url.fmt(f),
            other => f.write_str(other.kind()),
        }
    }
}

impl<'de> Deserialize<'de> for Storage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(D::Error::custom)
    }
}

/// A PostgreSQL database for the broker's storage, as `postgres://user@host:port/db`.
///
/// Several brokers on one database serve the same topics and groups. The password may be in
/// the URL or, better, in the `PGPASSWORD` environment variable, which is used when the URL
/// has none. It is never shown: the URL prints without it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PostgresUrl(Url);

impl PostgresUrl {
    /// Checks that `text` is a `postgres://` (or `postgresql://`) URL with a host.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text).map_err(|err| format!("not a URL: {err}"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "unknown storage {:?}, expected sqlite, memory or a postgres:// URL",
                redacted(&url)
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("a postgres:// URL needs a host".to_owned());
        }
        Ok(Self(url))
    }

    /// The URL the broker connects with: the scheme the engine knows, and the password from
    /// `PGPASSWORD` when the URL has none.
    pub fn connect_url(&self) -> Result<Url, String> {
        let mut url = self.0.clone();
        let bad = |what: &str| format!("{what} in {self}");
        if url.scheme() == "postgresql" {
            url.set_scheme("postgres")
                .map_err(|()| bad("cannot use the scheme"))?;
        }
        if url.password().is_none()
            && let Ok(password) = std::env::var("PGPASSWORD")
        {
            url.set_password(Some(&password))
                .map_err(|()| bad("cannot set the password"))?;
        }
        Ok(url)
    }
}

fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("****"));
    }
    url.to_string()
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redacted(&self.0))
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}
