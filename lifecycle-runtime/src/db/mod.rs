//! The database layer: a sqlx pool with bounded start-up that names the real cause of a failure,
//! an embedded SQLite fallback, a bounded close that names connections still held, leak
//! detection, metrics, server-side session management and a batch writer.
//!
//! sqlx does the database work (pool, pre-ping, reaping, backoff); this module configures it and
//! adds lifecycle around it. [`Database`] goes through sqlx's `Any` driver, so a query written
//! once runs on PostgreSQL and on the SQLite fallback alike (write parameters as `$1`, `$2`, ...
//! and stick to common column types); `Database<Postgres>` and `Database<Sqlite>`
//! ([`Database::connect_typed`]) are sqlx's typed pools, for `sqlx::query!` and each database's
//! own types. Run queries on `&db`: the connection is tracked like one from
//! [`Database::acquire`].
//!
//! ```no_run
//! use lifecycle_runtime::db::{Database, DatabaseOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // DATABASE_URL, or embedded SQLite when it is unset.
//! let options = DatabaseOptions::from_env("orders")?
//!     .fallback_sqlite(std::env::temp_dir().join("orders-fallback.sqlite"));
//! let db = Database::connect(options).await?;
//! sqlx::query("SELECT 1").execute(&db).await?;
//! let mut connection = db.acquire().await?;
//! sqlx::query("SELECT 1").execute(&mut *connection).await?;
//! # Ok(())
//! # }
//! ```

mod batch;
mod connect;
#[cfg(feature = "postgres")]
pub mod diagnose;
mod driver;
mod error;
mod executor;
mod held;
mod options;
mod sessions;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, Weak};
use std::time::Duration;

use sqlx::Any;
use sqlx::pool::{Pool, PoolOptions};

/// The sqlx this layer is built on: query with it, and the versions always match.
pub use sqlx;

pub use self::batch::WriteError;
#[cfg(feature = "postgres")]
pub use self::batch::copy::{CopyEncoder, CopyError, CopyField, CopyRow, CopyValue, copy_rows};
pub use self::batch::{BatchStats, BatchWriter, BatchWriterBuilder, PushError};
pub use self::connect::ConnectCause;
pub use self::driver::Driver;
pub use self::error::{Backend, DbError};
pub use self::held::DbConnection;
pub use self::options::DatabaseOptions;
pub use self::sessions::{ServerHealth, Session, list_sessions, server_health, terminate};
pub use crate::snapshot::HeldConnection;

use self::held::{Held, Site};
use self::options::sqlite_url;
use crate::resources::{Close, CloseError};
use crate::snapshot::PoolSnapshot;
use crate::util::format_duration;
use crate::util::lock;

/// Installs sqlx's `Any` drivers once per process.
fn install_drivers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

/// What a [`Database`] shares between its clones. Public in name only (its module is private):
/// the hidden methods of [`Driver`] mention it.
pub struct DbInner<DB: sqlx::Database> {
    name: String,
    backend: Backend,
    url: String,
    pool: Pool<DB>,
    options: DatabaseOptions,
    /// Why the primary was not used, when this is the SQLite fallback.
    fallback_reason: Option<String>,
    held: Held,
    closing: AtomicBool,
}

impl<DB: sqlx::Database> fmt::Debug for DbInner<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbInner")
            .field("name", &self.name)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// A pool of database connections, registered with the coordinator, which closes it (bounded)
/// after every task stopped. Cheap to clone.
///
/// `Database` (that is, `Database<sqlx::Any>`) takes a PostgreSQL or an SQLite URL and can fall
/// back to embedded SQLite; its queries go through sqlx's `Any` driver. `Database<Postgres>` and
/// `Database<Sqlite>` are typed: [`pool`](Self::pool) is sqlx's `PgPool` / `SqlitePool`, so
/// `sqlx::query!`, PostgreSQL's own types, `COPY` and `LISTEN` work unchanged; they have no
/// fallback. Every other guarantee (bounded start-up naming the real cause, bounded close naming
/// holders, leak detection, one pool per URL) holds for each form.
///
/// ```no_run
/// # #[cfg(feature = "postgres")]
/// # async fn run() -> Result<(), lifecycle_runtime::db::DbError> {
/// use lifecycle_runtime::db::{Database, DatabaseOptions, sqlx::Postgres};
///
/// let db = Database::<Postgres>::connect_typed(DatabaseOptions::from_env("orders")?).await?;
/// // `&db` is an executor: the connection is tracked like one from `acquire`.
/// let (n,): (i64,) = sqlx::query_as("SELECT $1::int8 + 1").bind(41_i64).fetch_one(&db).await?;
/// assert_eq!(n, 42);
/// # Ok(())
/// # }
/// ```
pub struct Database<DB: Driver = Any> {
    inner: Arc<DbInner<DB>>,
}

impl<DB: Driver> Clone for Database<DB> {
    fn clone(&self) -> Self {
        Database {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<DB: Driver> fmt::Debug for Database<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field("name", &self.inner.name)
            .field("backend", &self.inner.backend)
            .field("url", &self.inner.url)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Connects (or returns the pool already open for this URL in this process) and registers
    /// the pool with the current coordinator: the default form, on sqlx's `Any` driver, which
    /// takes a PostgreSQL or an SQLite URL. For a typed pool, see
    /// [`connect_typed`](Database::connect_typed).
    ///
    /// Start-up is bounded: each connection attempt by the connect timeout, all of them by the
    /// start-up budget. A failure names the real cause and the likely fixes; with
    /// [`DatabaseOptions::fallback_sqlite`], embedded SQLite is opened instead.
    ///
    /// # Errors
    ///
    /// [`DbError::Unreachable`] (with its [`ConnectCause`]), [`DbError::FallbackFailed`],
    /// [`DbError::Configuration`], [`DbError::ShutdownDuringStartup`] when tasks are told to stop
    /// before it is done.
    pub async fn connect(options: DatabaseOptions) -> Result<Database, DbError> {
        Database::connect_typed(options).await
    }
}

impl<DB: Driver> Database<DB> {
    /// Connects with the driver `DB`: `Database::<Postgres>::connect_typed(options)` gives a
    /// database whose [`pool`](Self::pool) is sqlx's `PgPool` (`sqlx::query!` works on it and on
    /// `&db`). Everything [`Database::connect`] promises holds, except the SQLite fallback: a
    /// typed database refuses [`DatabaseOptions::fallback_sqlite`] (a `PgPool` cannot be an
    /// SQLite one), and a URL of the other backend is a configuration error naming both.
    ///
    /// ```no_run
    /// # #[cfg(feature = "postgres")]
    /// # async fn run() -> Result<(), lifecycle_runtime::db::DbError> {
    /// use lifecycle_runtime::db::{Database, DatabaseOptions, sqlx::Postgres};
    ///
    /// let db = Database::<Postgres>::connect_typed(DatabaseOptions::from_env("orders")?).await?;
    /// let pool: &sqlx::PgPool = db.pool();
    /// # let _ = pool;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Database::connect`].
    pub async fn connect_typed(options: DatabaseOptions) -> Result<Database<DB>, DbError> {
        let shutdown = crate::shutdown_signal();
        if shutdown.is_triggered() {
            return Err(DbError::ShutdownDuringStartup {
                service: options.service.clone(),
                waited: Duration::ZERO,
            });
        }
        let started = tokio::time::Instant::now();
        let service = options.service.clone();
        tokio::select! {
            biased;
            connected = Self::connect_now(options) => connected,
            () = shutdown.triggered() => Err(DbError::ShutdownDuringStartup {
                service,
                waited: started.elapsed(),
            }),
        }
    }

    async fn connect_now(options: DatabaseOptions) -> Result<Database<DB>, DbError> {
        install_drivers();
        if options.fallback_sqlite.is_some() && !DB::can_fall_back() {
            return Err(DbError::Configuration(format!(
                "`fallback_sqlite` is set for `{}`, but a typed database (`Database<Postgres>`, \
                 `Database<Sqlite>`) cannot fall back to another backend; remove the option, or \
                 use the default `Database` (sqlx's Any driver), which can",
                options.service
            )));
        }
        let key = options.url.clone();
        if let Some(existing) = existing_pool::<DB>(&key) {
            return Ok(existing);
        }
        let database = match Self::open(&options, None).await {
            Ok(database) => database,
            Err(primary) => {
                let Some(path) = options.fallback_sqlite.clone() else {
                    return Err(primary);
                };
                tracing::warn!(pool = %options.service, error = %primary, fallback = %path.display(), "primary database unreachable; falling back to embedded SQLite");
                let mut fallback = options.clone();
                fallback.url = sqlite_url(&path);
                match Self::open(&fallback, Some(primary.to_string())).await {
                    Ok(database) => database,
                    Err(error) => {
                        return Err(DbError::FallbackFailed {
                            primary: Box::new(primary),
                            path: path.display().to_string(),
                            fallback: error.to_string(),
                        });
                    }
                }
            }
        };
        {
            let mut pools = lock(DB::pools());
            let pools = pools.get_or_insert_with(HashMap::new);
            if let Some(existing) = pools.get(&key).and_then(Weak::upgrade) {
                // Another caller connected meanwhile: keep one pool per URL (this one has opened
                // no connection yet: it is lazy).
                return Ok(Database { inner: existing });
            }
            pools.insert(key, Arc::downgrade(&database.inner));
        }
        let coordinator = crate::Coordinator::current();
        database
            .inner
            .held
            .watch_workers(coordinator.workers_shared());
        coordinator.add_pool_stats(Arc::downgrade(&database.inner) as Weak<dyn crate::snapshot::PoolStats>);
        let _managed = coordinator.manage(database.clone());
        held::spawn_leak_checker(&coordinator, &database);
        Ok(database)
    }

    async fn open(
        options: &DatabaseOptions,
        fallback_reason: Option<String>,
    ) -> Result<Database<DB>, DbError> {
        let url = options.driver_url();
        let redacted = connect::redact(&options.url);
        let backend = DB::backend_for(&options.url, &redacted)?;
        if backend == Backend::Postgres {
            for parameter in connect::ignored_parameters(&options.url) {
                tracing::warn!(url = %redacted, "database URL parameter {parameter} is ignored by sqlx");
            }
        }
        let connect_options: <DB::Connection as sqlx::Connection>::Options =
            url.parse().map_err(|error| {
                DbError::Configuration(format!("the database URL {redacted} is invalid: {error}"))
            })?;
        let probe = connect::probe::<DB>(
            &connect_options,
            options.connect_timeout,
            options.startup_budget,
        )
        .await;
        if let Err(cause) = probe.result {
            return Err(DbError::Unreachable {
                url: redacted,
                cause,
                attempts: probe.attempts,
                waited: probe.waited,
            });
        }
        let statement_timeout = options.statement_timeout;
        let lifetime = options.max_lifetime;
        let mut pool_options = PoolOptions::<DB>::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .idle_timeout(options.idle_timeout)
            .max_lifetime(lifetime)
            .test_before_acquire(options.test_before_acquire)
            .before_acquire(move |connection, meta| {
                // Retire each connection at its own point of the last tenth of the max
                // lifetime, so they do not all reconnect at the same moment.
                let address = std::ptr::from_ref(connection) as usize as u64;
                let retire = lifetime.map(|lifetime| retire_at(lifetime, address));
                Box::pin(async move { Ok(retire.is_none_or(|retire| meta.age < retire)) })
            });
        if backend == Backend::Postgres
            && let Some(timeout) = statement_timeout
        {
            pool_options = pool_options.after_connect(move |connection, _| {
                // A number we formatted ourselves: no user input reaches this statement.
                let set = format!("SET statement_timeout = {}", timeout.as_millis());
                DB::run_on(connection, set)
            });
        }
        let pool = pool_options.connect_lazy_with(connect_options);
        match &fallback_reason {
            Some(reason) => {
                tracing::warn!(pool = %options.service, backend = %backend, url = %redacted, %reason, "database live on the fallback")
            }
            None => {
                tracing::info!(pool = %options.service, backend = %backend, url = %redacted, "database connected")
            }
        }
        Ok(Database {
            inner: Arc::new(DbInner {
                name: options.service.clone(),
                backend,
                url: redacted,
                pool,
                options: options.clone(),
                fallback_reason,
                held: Held::default(),
                closing: AtomicBool::new(false),
            }),
        })
    }

    /// The pool's name (the service's): in reports, logs and `application_name`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Which database is live.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// Why the primary is not used, when this is the SQLite fallback.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.inner.fallback_reason.as_deref()
    }

    /// sqlx's own pool (`AnyPool`, `PgPool` or `SqlitePool`), for what needs the pool itself
    /// (a library that takes a `PgPool`, `PgListener::connect_with`). Queries run on it bypass
    /// this layer: their connections are not listed among the holders, and a pool timeout is
    /// sqlx's bare `PoolTimedOut`. Run queries on `&db` instead (`query.execute(&db)`: tracked,
    /// by task and SQL), or hold a connection with [`acquire`](Self::acquire) (tracked by the
    /// calling line).
    pub fn pool(&self) -> &Pool<DB> {
        &self.inner.pool
    }

    /// Takes a connection, recording where (the caller's line) and by which task. Held longer
    /// than the leak threshold, it is logged as a probable leak with that site.
    ///
    /// # Errors
    ///
    /// [`DbError::AcquireTimedOut`] naming the oldest holders, [`DbError::Closed`] during
    /// shutdown, or the driver's error.
    #[track_caller]
    pub fn acquire(
        &self,
    ) -> impl Future<Output = Result<DbConnection<DB>, DbError>> + Send + 'static {
        let site = std::panic::Location::caller();
        let task = crate::workers::current_task_name();
        let database = self.clone();
        async move { database.acquire_at(Site::Code(site), task).await }
    }

    async fn acquire_at(
        &self,
        site: Site,
        task: Option<crate::workers::TaskName>,
    ) -> Result<DbConnection<DB>, DbError> {
        let inner = &self.inner;
        if inner.pool.is_closed() {
            return Err(DbError::Closed(inner.name.clone()));
        }
        let waiting = inner.held.start_waiting();
        let result = inner.pool.acquire().await;
        #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
        let waited = waiting.done();
        // Feature `metrics`: the acquire's wait, and whether it timed out.
        #[cfg(feature = "metrics")]
        crate::metrics::events::pool_acquired(
            &inner.name,
            waited,
            matches!(result, Err(sqlx::Error::PoolTimedOut)),
        );
        match result {
            Ok(connection) => Ok(DbConnection::new(self.clone(), connection, site, task)),
            Err(sqlx::Error::PoolTimedOut) => {
                inner.held.count_timeout();
                Err(DbError::AcquireTimedOut {
                    waited: inner.options.acquire_timeout,
                    in_use: inner.held.count(),
                    max: inner.options.max_connections,
                    holders: inner.held.describe_oldest(3),
                })
            }
            Err(sqlx::Error::PoolClosed) => Err(DbError::Closed(inner.name.clone())),
            Err(error) => Err(DbError::Query(error)),
        }
    }

    /// Connections checked out through [`acquire`](Self::acquire) right now, oldest first: where,
    /// by which task, for how long.
    pub fn held(&self) -> Vec<HeldConnection> {
        self.inner.held.list()
    }

    /// Metrics of the pool, as `snapshot()` shows them.
    pub fn stats(&self) -> PoolSnapshot {
        crate::snapshot::PoolStats::pool_snapshot(&*self.inner)
    }

    pub(crate) fn inner(&self) -> &DbInner<DB> {
        &self.inner
    }
}

/// The age at which the connection at `address` is retired: a point of the last tenth of
/// `lifetime` that is stable per connection (a connection does not move while open) and spread
/// across connections, so they do not all reconnect at the same moment.
fn retire_at(lifetime: Duration, address: u64) -> Duration {
    // Fibonacci hashing spreads addresses that differ in any bit over [0, 1).
    let mixed = address.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let jitter = (mixed >> 11) as f64 / (1u64 << 53) as f64;
    lifetime.mul_f64(1.0 - 0.1 * jitter)
}

fn existing_pool<DB: Driver>(url: &str) -> Option<Database<DB>> {
    let pools = lock(DB::pools());
    let inner = pools.as_ref()?.get(url)?.upgrade()?;
    if inner.pool.is_closed() {
        return None;
    }
    Some(Database { inner })
}

impl<DB: sqlx::Database> crate::snapshot::PoolStats for DbInner<DB> {
    fn pool_snapshot(&self) -> PoolSnapshot {
        let mut snapshot = self.held.snapshot();
        snapshot.name = self.name.clone();
        snapshot.backend = self.backend.to_string();
        snapshot.fallback_reason = self.fallback_reason.clone();
        snapshot.size = self.pool.size();
        snapshot.idle = self.pool.num_idle();
        snapshot.max_connections = self.options.max_connections;
        snapshot.closed = self.pool.is_closed();
        snapshot.held = self.held.list();
        snapshot
    }
}

/// Closes the pool, waiting at most the close timeout for connections still checked out. At the
/// deadline those are named (acquiring line, task, held for how long) in the error, and the
/// pool is left closed: they close as they come back.
impl<DB: Driver> Close for Database<DB> {
    async fn close(&self) -> Result<(), CloseError> {
        let inner = &self.inner;
        inner.closing.store(true, Ordering::Release);
        let limit = inner.options.close_timeout;
        if tokio::time::timeout(limit, inner.pool.close())
            .await
            .is_ok()
        {
            tracing::info!(pool = %inner.name, "database pool closed");
            return Ok(());
        }
        let holders = inner.held.describe_all();
        Err(format!(
            "pool `{}` did not close within {}: {}; it is closed to new work and they close as they are returned",
            inner.name,
            format_duration(limit),
            holders
        )
        .into())
    }

    /// Who still holds connections, when the budget cut the close short (or skipped it).
    fn unclosed_detail(&self) -> Option<String> {
        let held = &self.inner.held;
        (held.count() > 0).then(|| held.describe_all())
    }

    fn close_timeout(&self) -> Duration {
        // Our own deadline fires first, so the holders are named before the coordinator gives up.
        self.inner
            .options
            .close_timeout
            .saturating_add(Duration::from_millis(500))
    }

    fn close_name(&self) -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Owned(format!("database {}", self.inner.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_retire_spread_over_the_last_tenth_of_their_lifetime() {
        let lifetime = Duration::from_secs(30 * 60);
        // Addresses as an allocator hands them out: one page, or a few bytes, apart.
        for stride in [8u64, 64, 4096, 1 << 20] {
            let retire: Vec<Duration> = (0..64)
                .map(|index| retire_at(lifetime, 0x5555_0000_0000 + index * stride))
                .collect();
            for &age in &retire {
                assert!(
                    age > lifetime.mul_f64(0.9) && age <= lifetime,
                    "stride {stride}: {age:?} is outside the last tenth"
                );
            }
            let earliest = retire.iter().min().unwrap();
            let latest = retire.iter().max().unwrap();
            assert!(
                *latest - *earliest > Duration::from_secs(120),
                "stride {stride}: retirements within {:?}, not spread over the 3 min window",
                *latest - *earliest
            );
            let mut distinct = retire.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(
                distinct.len(),
                retire.len(),
                "stride {stride}: two retire together"
            );
        }
        assert_eq!(
            retire_at(lifetime, 0xdead_beef),
            retire_at(lifetime, 0xdead_beef),
            "stable per connection"
        );
    }
}
