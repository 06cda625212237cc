//! The server's side (PostgreSQL): this application's sessions from `pg_stat_activity`, the
//! leaked ones among them, terminating them, and how full the server is.

use std::time::Duration;

use sqlx::{AnyConnection, Row};

use super::{Backend, Database, DbError};

/// One server session of an application.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct Session {
    /// The backend's process id (what `pg_terminate_backend` takes).
    pub pid: i32,
    /// Its `application_name`.
    pub application_name: String,
    /// `active`, `idle`, `idle in transaction`, ...
    pub state: String,
    /// Since the session connected.
    #[serde(rename = "connected_secs", serialize_with = "crate::util::secs")]
    pub connected: Duration,
    /// Since it entered its current state.
    #[serde(rename = "in_state_secs", serialize_with = "crate::util::secs")]
    pub in_state: Duration,
    /// Since its open transaction began, if it has one.
    #[serde(
        rename = "in_transaction_secs",
        serialize_with = "crate::util::opt_secs"
    )]
    pub in_transaction: Option<Duration>,
    /// Its current or last query, shortened.
    pub query: String,
    /// Idle in a transaction, or idle longer than the threshold asked about.
    pub leaked: bool,
}

/// How full the server is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ServerHealth {
    /// `max_connections`.
    pub max_connections: i64,
    /// Slots only superusers (and reserved roles) may use.
    pub reserved: i64,
    /// Client sessions open now.
    pub in_use: i64,
    /// Client sessions by application, busiest first.
    pub by_application: Vec<(String, i64)>,
}

impl ServerHealth {
    /// Slots ordinary users can still take.
    pub fn free(&self) -> i64 {
        (self.max_connections - self.reserved - self.in_use).max(0)
    }
}

/// Rows of `pg_stat_activity` for `application`, every duration in seconds (the `Any` driver
/// carries no timestamps). `$2` is the idle threshold in seconds.
const SESSIONS: &str = "
SELECT pid::int4 AS pid,
       COALESCE(application_name, '') AS application_name,
       COALESCE(state, '') AS state,
       COALESCE(EXTRACT(EPOCH FROM (now() - backend_start)), 0)::float8 AS connected,
       COALESCE(EXTRACT(EPOCH FROM (now() - state_change)), 0)::float8 AS in_state,
       EXTRACT(EPOCH FROM (now() - xact_start))::float8 AS in_transaction,
       LEFT(COALESCE(query, ''), 200) AS query,
       (state IN ('idle in transaction', 'idle in transaction (aborted)')
        OR (state = 'idle' AND state_change < now() - make_interval(secs => $2))) AS leaked
FROM pg_stat_activity
WHERE application_name = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'
ORDER BY backend_start";

/// This application's sessions, seen from `connection`, with `leaked` set for those idle in a
/// transaction or idle longer than `idle_threshold`.
///
/// # Errors
///
/// The query's error (the server must be PostgreSQL).
pub async fn list_sessions(
    connection: &mut AnyConnection,
    application: &str,
    idle_threshold: Duration,
) -> Result<Vec<Session>, DbError> {
    let rows = sqlx::query(SESSIONS)
        .bind(application)
        .bind(idle_threshold.as_secs_f64())
        .fetch_all(connection)
        .await?;
    rows.iter()
        .map(|row| {
            let seconds = |column: &str| -> Result<Duration, sqlx::Error> {
                Ok(Duration::from_secs_f64(
                    row.try_get::<f64, _>(column)?.max(0.0),
                ))
            };
            Ok(Session {
                pid: row.try_get("pid")?,
                application_name: row.try_get("application_name")?,
                state: row.try_get("state")?,
                connected: seconds("connected")?,
                in_state: seconds("in_state")?,
                in_transaction: row
                    .try_get::<Option<f64>, _>("in_transaction")?
                    .map(|secs| Duration::from_secs_f64(secs.max(0.0))),
                query: row.try_get("query")?,
                leaked: row.try_get("leaked")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(DbError::from)
}

/// How long terminating one session may take to complete.
const TERMINATE_WAIT_MS: i64 = 2000;

/// Terminates the given sessions and waits (up to 2s each) until they are gone; returns those
/// the server confirmed.
///
/// # Errors
///
/// The query's error.
pub async fn terminate(
    connection: &mut AnyConnection,
    sessions: Vec<Session>,
) -> Result<Vec<Session>, DbError> {
    let mut terminated = Vec::new();
    for session in sessions {
        // PostgreSQL 14+ can wait until the backend is gone; older servers only signal it.
        let waited: Result<bool, sqlx::Error> =
            sqlx::query_scalar("SELECT pg_terminate_backend($1, $2::int8)")
                .bind(session.pid)
                .bind(TERMINATE_WAIT_MS)
                .fetch_one(&mut *connection)
                .await;
        let done = match waited {
            Ok(done) => done,
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42883") => {
                sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                    .bind(session.pid)
                    .fetch_one(&mut *connection)
                    .await?
            }
            Err(error) => return Err(error.into()),
        };
        if done {
            tracing::warn!(pid = session.pid, state = %session.state, application = %session.application_name, "terminated database session");
            terminated.push(session);
        }
    }
    Ok(terminated)
}

/// `max_connections`, reserved slots and client sessions by application.
///
/// # Errors
///
/// The query's error.
pub async fn server_health(connection: &mut AnyConnection) -> Result<ServerHealth, DbError> {
    let max_connections: String = sqlx::query_scalar("SELECT current_setting('max_connections')")
        .fetch_one(&mut *connection)
        .await?;
    // `reserved_connections` exists from PostgreSQL 16; `missing_ok` keeps older servers happy.
    let reserved: String = sqlx::query_scalar(
        "SELECT (current_setting('superuser_reserved_connections')::int
                 + COALESCE(NULLIF(current_setting('reserved_connections', true), ''), '0')::int)::text",
    )
    .fetch_one(&mut *connection)
    .await?;
    let rows = sqlx::query(
        "SELECT COALESCE(NULLIF(application_name, ''), '(none)') AS application, count(*)::int8 AS sessions
         FROM pg_stat_activity WHERE backend_type = 'client backend'
         GROUP BY 1 ORDER BY 2 DESC, 1",
    )
    .fetch_all(&mut *connection)
    .await?;
    let mut by_application = Vec::new();
    for row in &rows {
        by_application.push((
            row.try_get::<String, _>("application")?,
            row.try_get::<i64, _>("sessions")?,
        ));
    }
    let parse = |value: &str, name: &str| {
        value
            .trim()
            .parse::<i64>()
            .map_err(|_| DbError::Configuration(format!("the server reported {name} = {value:?}")))
    };
    Ok(ServerHealth {
        max_connections: parse(&max_connections, "max_connections")?,
        reserved: parse(&reserved, "reserved connections")?,
        in_use: by_application.iter().map(|(_, count)| count).sum(),
        by_application,
    })
}

/// Server-side sessions, on the default `Database` (sqlx's `Any` driver, live on PostgreSQL).
/// With a `Database<Postgres>`, run [`list_sessions`] and [`terminate`] on a connection opened
/// with `AnyConnection::connect` to the same URL (they are what the diagnosis tool uses).
impl Database {
    fn require_postgres(&self, what: &'static str) -> Result<(), DbError> {
        match self.backend() {
            Backend::Postgres => Ok(()),
            other => Err(DbError::NotPostgres(what, other)),
        }
    }

    /// This application's sessions on the server (by `application_name`), with state and age;
    /// `leaked` marks those idle in a transaction or idle longer than `idle_threshold`. Pick a
    /// threshold above the pool's idle timeout (5 min by default), or the pool's own idle
    /// connections count.
    ///
    /// # Errors
    ///
    /// [`DbError::NotPostgres`] on SQLite, or the query's error.
    pub async fn sessions(&self, idle_threshold: Duration) -> Result<Vec<Session>, DbError> {
        self.require_postgres("sessions")?;
        let mut connection = self.acquire().await?;
        list_sessions(&mut connection, self.name(), idle_threshold).await
    }

    /// Terminates this application's leaked sessions (see [`sessions`](Self::sessions)) and
    /// returns them; never the caller's own.
    ///
    /// # Errors
    ///
    /// [`DbError::NotPostgres`] on SQLite, or the query's error.
    pub async fn terminate_leaked(
        &self,
        idle_threshold: Duration,
    ) -> Result<Vec<Session>, DbError> {
        self.require_postgres("terminate_leaked")?;
        let mut connection = self.acquire().await?;
        let leaked = list_sessions(&mut connection, self.name(), idle_threshold)
            .await?
            .into_iter()
            .filter(|session| session.leaked)
            .collect();
        terminate(&mut connection, leaked).await
    }

    /// Emergency: terminates every session of this application but the one running this.
    ///
    /// # Errors
    ///
    /// [`DbError::NotPostgres`] on SQLite, or the query's error.
    pub async fn terminate_all_sessions(&self) -> Result<Vec<Session>, DbError> {
        self.require_postgres("terminate_all_sessions")?;
        let mut connection = self.acquire().await?;
        // Every session goes, leaked or not: the threshold does not matter here.
        let all = list_sessions(&mut connection, self.name(), Duration::from_secs(3600)).await?;
        terminate(&mut connection, all).await
    }
}
