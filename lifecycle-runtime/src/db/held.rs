//! Who holds which connection: acquiring line, task, since when. Feeds leak detection, the
//! acquire-timeout error, the bounded close and the pool's metrics.

use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use slab::Slab;
use sqlx::Any;
use sqlx::pool::PoolConnection;
use tokio::time::Instant;

use super::{Database, Driver};
use crate::Coordinator;
use crate::TaskName;
use crate::snapshot::{HeldConnection, PoolSnapshot};
use crate::util::format_duration;
use crate::util::lock;
use crate::workers::Workers;

/// Where a connection was taken: a line of code (`acquire`), or a query run on the database
/// itself (`query.execute(&db)`), known by its SQL once the driver starts it.
#[derive(Clone, Debug)]
pub(crate) enum Site {
    Code(&'static Location<'static>),
    Query(Option<Arc<str>>),
}

impl Site {
    /// The most of a query's SQL a holder's description shows.
    const QUERY_CHARS: usize = 80;

    fn describe(&self) -> String {
        match self {
            Site::Code(site) => format!("{}:{}:{}", site.file(), site.line(), site.column()),
            Site::Query(None) => "a query on the database (not started)".to_owned(),
            Site::Query(Some(sql)) => {
                let mut text: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
                if let Some((cut, _)) = text.char_indices().nth(Site::QUERY_CHARS) {
                    text.truncate(cut);
                    text.push('…');
                }
                format!("query `{text}`")
            }
        }
    }
}

struct HeldEntry {
    site: Site,
    task: Option<TaskName>,
    since: Instant,
    /// Logged once as a probable leak.
    warned: bool,
}

/// Connections checked out through `Database::acquire`, and the pool's counters.
#[derive(Default)]
pub(crate) struct Held {
    entries: Mutex<Slab<HeldEntry>>,
    /// The workers of the coordinator the pool belongs to: asked whether a holder still runs.
    workers: OnceLock<Arc<Workers>>,
    waiters: AtomicUsize,
    acquires: AtomicU64,
    acquire_wait_micros: AtomicU64,
    acquire_wait_max_micros: AtomicU64,
    timeouts: AtomicU64,
    hold_micros: AtomicU64,
    hold_max_micros: AtomicU64,
    releases: AtomicU64,
    leaks: AtomicU64,
}

/// Counts a waiter until `done`.
pub(crate) struct Waiting<'a> {
    held: &'a Held,
    started: Instant,
}

impl Waiting<'_> {
    pub(crate) fn done(self) -> Duration {
        let waited = self.started.elapsed();
        self.held.waiters.fetch_sub(1, Ordering::Relaxed);
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        self.held.acquires.fetch_add(1, Ordering::Relaxed);
        self.held
            .acquire_wait_micros
            .fetch_add(micros, Ordering::Relaxed);
        self.held
            .acquire_wait_max_micros
            .fetch_max(micros, Ordering::Relaxed);
        waited
    }
}

impl Held {
    pub(crate) fn start_waiting(&self) -> Waiting<'_> {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        Waiting {
            held: self,
            started: Instant::now(),
        }
    }

    /// Holders are looked up among these workers from now on.
    pub(crate) fn watch_workers(&self, workers: Arc<Workers>) {
        let _ = self.workers.set(workers);
    }

    pub(crate) fn count_timeout(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count(&self) -> usize {
        lock(&self.entries).len()
    }

    pub(crate) fn insert(&self, site: Site, task: Option<TaskName>) -> usize {
        lock(&self.entries).insert(HeldEntry {
            site,
            task,
            since: Instant::now(),
            warned: false,
        })
    }

    /// The SQL a connection taken for a query runs, once the driver has it.
    pub(crate) fn set_query(&self, key: usize, sql: &str) {
        if let Some(entry) = lock(&self.entries).get_mut(key) {
            entry.site = Site::Query(Some(Arc::from(sql)));
        }
    }

    fn remove(&self, key: usize) -> Option<HeldEntry> {
        let entry = lock(&self.entries).try_remove(key)?;
        let micros = u64::try_from(entry.since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.releases.fetch_add(1, Ordering::Relaxed);
        self.hold_micros.fetch_add(micros, Ordering::Relaxed);
        self.hold_max_micros.fetch_max(micros, Ordering::Relaxed);
        Some(entry)
    }

    /// Every connection checked out through `acquire`, oldest first.
    pub(crate) fn list(&self) -> Vec<HeldConnection> {
        let mut held: Vec<(Instant, Site, Option<TaskName>)> = lock(&self.entries)
            .iter()
            .map(|(_, entry)| (entry.since, entry.site.clone(), entry.task.clone()))
            .collect();
        held.sort_by_key(|(since, _, _)| *since);
        // Asked once the lock is released (the registry takes its own locks), in one walk for
        // every holder.
        let ended = match self.workers.get() {
            Some(workers) => workers.ended_of(
                held.iter()
                    .filter_map(|(_, _, task)| task.as_ref().map(|name| name.as_str())),
            ),
            None => std::collections::HashSet::new(),
        };
        held.iter()
            .map(|(since, site, task)| {
                let mut connection = held_connection(site, task.clone(), since.elapsed());
                connection.task_ended = task
                    .as_ref()
                    .is_some_and(|name| ended.contains(name.as_str()));
                connection
            })
            .collect()
    }

    /// "acquired at src/jobs.rs:41:22 by task `ingest`, held for 12.3s", oldest first.
    fn descriptions(&self, limit: usize) -> Vec<String> {
        self.list()
            .iter()
            .take(limit)
            .map(HeldConnection::describe)
            .collect()
    }

    pub(crate) fn describe_oldest(&self, limit: usize) -> String {
        let held = self.descriptions(limit);
        if held.is_empty() {
            "none is held through `acquire` or queries on the database (they may be taken by queries on `pool()` directly)"
                .to_owned()
        } else {
            format!("oldest held: {}", held.join("; "))
        }
    }

    pub(crate) fn describe_all(&self) -> String {
        let held = self.descriptions(usize::MAX);
        match held.len() {
            0 => "connections were still checked out, none of them through `acquire` or queries on the database".to_owned(),
            count => format!(
                "{count} connection(s) still checked out: {}",
                held.join("; ")
            ),
        }
    }

    /// Logs, once each, connections held longer than `threshold`.
    fn check_leaks(&self, pool: &str, threshold: Duration) {
        let mut suspects = Vec::new();
        for (_, entry) in lock(&self.entries).iter_mut() {
            if !entry.warned && entry.since.elapsed() >= threshold {
                entry.warned = true;
                suspects.push((
                    entry.site.clone(),
                    entry.task.clone(),
                    entry.since.elapsed(),
                ));
            }
        }
        for (site, task, held_for) in suspects {
            self.leaks.fetch_add(1, Ordering::Relaxed);
            #[cfg(feature = "metrics")]
            crate::metrics::events::pool_leak_suspected(pool);
            let held = held_connection(&site, task, held_for);
            tracing::warn!(
                pool,
                held = %held.describe(),
                "probable connection leak: held longer than {}",
                format_duration(threshold)
            );
        }
    }

    pub(crate) fn snapshot(&self) -> PoolSnapshot {
        let acquires = self.acquires.load(Ordering::Relaxed);
        let releases = self.releases.load(Ordering::Relaxed);
        let average =
            |total: u64, count: u64| Duration::from_micros(total.checked_div(count).unwrap_or(0));
        PoolSnapshot {
            in_use: self.count(),
            waiters: self.waiters.load(Ordering::Relaxed),
            acquires,
            acquire_timeouts: self.timeouts.load(Ordering::Relaxed),
            acquire_wait_avg: average(self.acquire_wait_micros.load(Ordering::Relaxed), acquires),
            acquire_wait_max: Duration::from_micros(
                self.acquire_wait_max_micros.load(Ordering::Relaxed),
            ),
            hold_avg: average(self.hold_micros.load(Ordering::Relaxed), releases),
            hold_max: Duration::from_micros(self.hold_max_micros.load(Ordering::Relaxed)),
            suspected_leaks: self.leaks.load(Ordering::Relaxed),
            ..PoolSnapshot::default()
        }
    }
}

fn held_connection(site: &Site, task: Option<TaskName>, held_for: Duration) -> HeldConnection {
    HeldConnection {
        site: site.describe(),
        by_query: matches!(site, Site::Query(_)),
        task: task.map(|name| name.to_string()),
        task_ended: false,
        held_for,
    }
}

/// Checks for leaks every half threshold (at least every 50ms, at most every 5s) until shutdown.
pub(crate) fn spawn_leak_checker<DB: Driver>(coordinator: &Coordinator, database: &Database<DB>) {
    let threshold = database.inner().options.leak_threshold;
    let period = (threshold / 2).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let weak = std::sync::Arc::downgrade(&database.inner);
    let shutdown = coordinator.shutdown_signal();
    let name = format!("db-leak-check {}", database.name());
    let _checker = coordinator.spawn(name, async move {
        while shutdown.sleep(period).await {
            let Some(inner) = weak.upgrade() else { break };
            inner.held.check_leaks(&inner.name, threshold);
        }
    });
}

/// A connection from [`Database::acquire`]. Dereferences to the driver's connection (sqlx's
/// `AnyConnection`, `PgConnection` or `SqliteConnection`: `query.execute(&mut *connection)`);
/// returned to the pool when dropped.
pub struct DbConnection<DB: Driver = Any> {
    connection: Option<PoolConnection<DB>>,
    database: Database<DB>,
    key: usize,
}

impl<DB: Driver> std::fmt::Debug for DbConnection<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConnection")
            .field("pool", &self.database.name())
            .finish_non_exhaustive()
    }
}

impl<DB: Driver> DbConnection<DB> {
    pub(crate) fn new(
        database: Database<DB>,
        connection: PoolConnection<DB>,
        site: Site,
        task: Option<TaskName>,
    ) -> DbConnection<DB> {
        let key = database.inner().held.insert(site, task);
        DbConnection {
            connection: Some(connection),
            database,
            key,
        }
    }

    /// Records the SQL of the query this connection was taken for.
    pub(crate) fn running(&self, sql: &str) {
        self.holder().running(sql);
    }

    /// A handle to this connection's holder entry.
    pub(crate) fn holder(&self) -> Holder<DB> {
        Holder {
            database: self.database.clone(),
            key: self.key,
        }
    }
}

/// Updates one connection's holder entry while the connection itself is borrowed elsewhere.
pub(crate) struct Holder<DB: Driver> {
    database: Database<DB>,
    key: usize,
}

impl<DB: Driver> Holder<DB> {
    pub(crate) fn running(&self, sql: &str) {
        self.database.inner().held.set_query(self.key, sql);
    }
}

impl<DB: Driver> Deref for DbConnection<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        // Present until drop.
        self.connection
            .as_deref()
            .expect("connection present until drop")
    }
}

impl<DB: Driver> DerefMut for DbConnection<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.connection
            .as_deref_mut()
            .expect("connection present until drop")
    }
}

impl<DB: Driver> Drop for DbConnection<DB> {
    fn drop(&mut self) {
        drop(self.connection.take());
        let entry = self.database.inner().held.remove(self.key);
        // Feature `metrics`: how long the connection was held.
        #[cfg(feature = "metrics")]
        if let Some(entry) = &entry {
            crate::metrics::events::pool_released(self.database.name(), entry.since.elapsed());
        }
        if let Some(entry) = entry
            && entry.warned
        {
            tracing::info!(
                pool = %self.database.name(),
                "connection reported as a probable leak came back after {} ({})",
                format_duration(entry.since.elapsed()),
                entry.site.describe()
            );
        }
    }
}
