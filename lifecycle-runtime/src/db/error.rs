//! The words of the database layer: which backend is live ([`Backend`]) and what went wrong
//! ([`DbError`], each variant naming what it was doing and the fix).

use std::fmt;
use std::time::Duration;

use super::ConnectCause;
use crate::util::format_duration;

/// Which database a [`Database`](super::Database) talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// Embedded SQLite.
    Sqlite,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        })
    }
}

/// What went wrong with the database. Every variant names what it was doing and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The database could not be reached within the start-up budget.
    #[error(
        "cannot reach the database at {url} after {attempts} attempt(s) in {}: {cause}. Likely fix: {}",
        format_duration(*.waited),
        .cause.fixes()
    )]
    Unreachable {
        /// The URL, password redacted.
        url: String,
        /// The last cause seen.
        cause: ConnectCause,
        /// How many connections were tried.
        attempts: u32,
        /// How long it tried.
        waited: Duration,
    },
    /// The primary was unreachable and so was the SQLite fallback.
    #[error(
        "the primary database failed ({primary}) and the SQLite fallback at {path} failed too: {fallback}"
    )]
    FallbackFailed {
        /// Why the primary failed.
        primary: Box<DbError>,
        /// The fallback's path.
        path: String,
        /// Why the fallback failed.
        fallback: String,
    },
    /// No connection became free within the acquire timeout.
    #[error(
        "no connection became free within {} ({in_use} of {max} in use); {holders}. Likely fix: return connections sooner (hold them only for the query), or raise max_connections",
        format_duration(*.waited)
    )]
    AcquireTimedOut {
        /// How long it waited.
        waited: Duration,
        /// Connections checked out.
        in_use: usize,
        /// The pool's size limit.
        max: u32,
        /// Who holds the oldest ones.
        holders: String,
    },
    /// The URL or an option is invalid.
    #[error("{0}")]
    Configuration(String),
    /// Shutdown told tasks to stop while the database was still starting up: connecting was
    /// given up, so a program stopped during start-up (a crash-looping pod, an operator's
    /// Ctrl-C) ends at once instead of after the start-up budget.
    #[error(
        "gave up connecting to `{service}` after {}: shutdown began while the database was starting up",
        format_duration(*.waited)
    )]
    ShutdownDuringStartup {
        /// The service name the pool was for.
        service: String,
        /// How long it had tried.
        waited: Duration,
    },
    /// The pool was closed (shutdown under way).
    #[error("the database pool `{0}` is closed: shutdown is under way")]
    Closed(String),
    /// An operation needs PostgreSQL.
    #[error("`{0}` needs PostgreSQL; this database is {1}")]
    NotPostgres(&'static str, Backend),
    /// A query failed.
    #[error(transparent)]
    Query(#[from] sqlx::Error),
}
