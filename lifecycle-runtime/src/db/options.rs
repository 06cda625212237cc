//! [`DatabaseOptions`]: what a [`Database`](super::Database) connects to and its limits, and the
//! URL as the driver gets it.

use std::path::PathBuf;
use std::time::Duration;

use super::{Backend, DbError, connect};

/// Settings of a [`Database`](super::Database). Defaults: connect timeout 5s, start-up budget 10s, max 5
/// connections, acquire timeout 5s, idle timeout 5 min, max lifetime 30 min (with jitter),
/// pre-ping before use, leak threshold 30s, close timeout 5s, `application_name` = the service.
#[derive(Clone, Debug)]
pub struct DatabaseOptions {
    pub(super) url: String,
    pub(super) service: String,
    pub(super) connect_timeout: Duration,
    pub(super) startup_budget: Duration,
    pub(super) max_connections: u32,
    pub(super) acquire_timeout: Duration,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) max_lifetime: Option<Duration>,
    pub(super) test_before_acquire: bool,
    pub(super) statement_timeout: Option<Duration>,
    pub(super) leak_threshold: Duration,
    pub(super) close_timeout: Duration,
    pub(super) fallback_sqlite: Option<PathBuf>,
}

/// Where embedded SQLite lives when nothing is configured.
const DEFAULT_SQLITE_FILE: &str = "lifecycle.sqlite";

impl DatabaseOptions {
    /// Options for `url` (`postgres://...` or `sqlite://...`), for the service named `service`
    /// (its `application_name` on the server, and the pool's name in reports).
    pub fn new(url: impl Into<String>, service: impl Into<String>) -> DatabaseOptions {
        DatabaseOptions {
            url: url.into(),
            service: service.into(),
            connect_timeout: Duration::from_secs(5),
            startup_budget: Duration::from_secs(10),
            max_connections: 5,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(5 * 60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            test_before_acquire: true,
            statement_timeout: None,
            leak_threshold: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
            fallback_sqlite: None,
        }
    }

    /// Embedded SQLite at `path` (created if missing).
    pub fn sqlite(path: impl Into<PathBuf>, service: impl Into<String>) -> DatabaseOptions {
        DatabaseOptions::new(sqlite_url(&path.into()), service)
    }

    /// `DATABASE_URL` if set, else embedded SQLite in `lifecycle.sqlite` under the system's
    /// temporary directory.
    ///
    /// # Errors
    ///
    /// When `DATABASE_URL` is set but is not a `postgres://`, `postgresql://` or `sqlite:` URL;
    /// the error names the variable.
    pub fn from_env(service: impl Into<String>) -> Result<DatabaseOptions, DbError> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => {
                let url = url.trim().to_owned();
                if !(url.starts_with("postgres://")
                    || url.starts_with("postgresql://")
                    || url.starts_with("sqlite:"))
                {
                    return Err(DbError::Configuration(format!(
                        "DATABASE_URL={:?} is not a database URL: write postgres://user:password@host:5432/name or sqlite://path",
                        connect::redact(&url)
                    )));
                }
                Ok(DatabaseOptions::new(url, service))
            }
            _ => Ok(DatabaseOptions::sqlite(
                std::env::temp_dir().join(DEFAULT_SQLITE_FILE),
                service,
            )),
        }
    }

    /// The limit for one connection attempt (sqlx's PostgreSQL driver has none of its own).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long `connect` keeps trying before it gives up (or falls back).
    pub fn startup_budget(mut self, budget: Duration) -> Self {
        self.startup_budget = budget;
        self
    }

    /// The most connections the pool opens.
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long `acquire` waits for a free connection.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Idle connections older than this are closed (`None`: never).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Connections are recycled after about this long (each a little earlier, at random, so they
    /// do not all reconnect at once). `None`: never.
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Whether a connection is pinged before it is handed out (on by default: a connection the
    /// server closed is replaced instead of failing the next query).
    pub fn test_before_acquire(mut self, test: bool) -> Self {
        self.test_before_acquire = test;
        self
    }

    /// PostgreSQL's `statement_timeout` for every connection.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = Some(timeout);
        self
    }

    /// A connection held longer than this is logged as a probable leak.
    pub fn leak_threshold(mut self, threshold: Duration) -> Self {
        self.leak_threshold = threshold;
        self
    }

    /// How long closing the pool may wait for connections still checked out.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// When the primary cannot be reached within the start-up budget, open embedded SQLite at
    /// `path` instead (and say so in logs and `snapshot()`).
    pub fn fallback_sqlite(mut self, path: impl Into<PathBuf>) -> Self {
        self.fallback_sqlite = Some(path.into());
        self
    }

    pub(super) fn backend(&self) -> Backend {
        if self.url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }

    /// The URL as sqlx gets it: `application_name` added for PostgreSQL.
    pub(super) fn driver_url(&self) -> String {
        if self.backend() == Backend::Postgres && !self.url.contains("application_name=") {
            let separator = if self.url.contains('?') { '&' } else { '?' };
            format!(
                "{}{separator}application_name={}",
                self.url,
                encode(&self.service)
            )
        } else {
            self.url.clone()
        }
    }
}

pub(super) fn sqlite_url(path: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Percent-encodes what a URL query value cannot hold.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
