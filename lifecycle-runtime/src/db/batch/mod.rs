//! Batched writes that are not lost in silence: `push` buffers, up to a capacity; a tracked task
//! writes a batch when `max_batch` items wait or every `interval`, and writes what is left when
//! shutdown comes, before the pool closes. Every accepted item ends up written, failed (its writes
//! returned errors) or not written (time ran out, or the task was cut off), and the shutdown
//! report says how many of each. `write` waits for its item's verdict (group commit: the waiters
//! of a batch share one completion).
//!
//! The public handle and its builder are here, `write` and `WriteError` in `write.rs`;
//! `ledger.rs` keeps the buffer, the counts and the batches' verdicts under one lock, `run.rs` is
//! the writer task, `close.rs` its entry in the report, `copy/` writes rows with PostgreSQL's
//! `COPY`.

mod close;
#[cfg(feature = "postgres")]
pub(super) mod copy;
mod ledger;
mod run;
mod write;

use std::fmt::{self, Display};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use self::close::Accounts;
use self::ledger::{Ledger, Refused};
use self::run::Run;
pub use self::write::WriteError;
use super::{Database, Driver};
use crate::Shutdown;
use crate::workers::{OkFuture, TaskName, WorkerKind, WorkerMeta};

/// Items in a batch, unless [`BatchWriterBuilder::max_batch`] says otherwise.
const DEFAULT_MAX_BATCH: usize = 500;
/// How often what waits is written, unless [`BatchWriterBuilder::interval`] says otherwise.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// How long shutdown waits for the last writes, unless [`BatchWriterBuilder::flush_timeout`] says
/// otherwise.
const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a failed batch is tried again, unless [`BatchWriterBuilder::retries`] says otherwise.
const DEFAULT_RETRIES: u32 = 3;
/// The default capacity, in batches: ten times `max_batch` pending items.
const DEFAULT_CAPACITY_IN_BATCHES: usize = 10;

/// An item [`BatchWriter::push`] or [`BatchWriter::push_wait`] did not accept, handed back.
///
/// ```
/// use lifecycle_runtime::db::PushError;
///
/// let error = PushError::Full {
///     name: "events".to_owned(),
///     item: 7,
/// };
/// assert!(error.to_string().starts_with("batch writer `events` is full"));
/// assert_eq!(error.into_item(), 7);
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError<T> {
    /// The writer stopped accepting items: shutdown began (or its task is gone).
    #[error("batch writer `{name}` accepts no more items: shutdown began")]
    Closed {
        /// The writer's name.
        name: String,
        /// The item, not accepted.
        item: T,
    },
    /// `capacity` accepted items are waiting to be written.
    #[error(
        "batch writer `{name}` is full: its capacity of pending items is taken. Slow down, wait for room with `push_wait`, or raise its `capacity`"
    )]
    Full {
        /// The writer's name.
        name: String,
        /// The item, not accepted.
        item: T,
    },
}

impl<T> PushError<T> {
    /// The item that was not accepted.
    pub fn into_item(self) -> T {
        match self {
            PushError::Closed { item, .. } | PushError::Full { item, .. } => item,
        }
    }
}

/// What a writer did so far, counted together.
///
/// Every accepted item is in exactly one of the other four counts, so whenever you look
/// `accepted == written + failed + not_written + pending`. Once the writer's task has finished
/// (after shutdown), `pending` is 0.
///
/// ```no_run
/// # use lifecycle_runtime::db::BatchWriter;
/// # fn check(writer: &BatchWriter<i64>) {
/// let stats = writer.stats();
/// assert_eq!(
///     stats.accepted,
///     stats.written + stats.failed + stats.not_written + stats.pending
/// );
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BatchStats {
    /// Items `push`, `push_wait` or `write` accepted.
    pub accepted: u64,
    /// Items written.
    pub written: u64,
    /// Items whose writes returned errors on every try: logged and reported with the last error.
    pub failed: u64,
    /// Items never written because time ran out or the writer task was cut off (its stop timeout,
    /// the shutdown budget, its runtime dropped), including a batch whose write was under way
    /// then: whether that one reached the database is unknown. Logged and reported with the
    /// cause.
    pub not_written: u64,
    /// Items waiting to be written: in the buffer, or taken by the writer task and not settled
    /// yet. At most the writer's capacity.
    pub pending: u64,
}

/// What the handle, the writer task and the report entry share.
struct Inner<T> {
    name: String,
    /// The writer task's name, `batch-writer <name>` (its place in a stop order).
    task: TaskName,
    /// Shared with the report entry, which must not hold the coordinator (through `shutdown`):
    /// the coordinator holds the entry until shutdown.
    ledger: Arc<Ledger<T>>,
    /// Wakes the writer task when a full batch waits.
    wake: Notify,
    /// The batch size in force: `max_batch`, or the capacity when that is smaller.
    batch: usize,
    flush_timeout: Duration,
    shutdown: Shutdown,
}

/// Buffers items and writes them in batches, through a tracked task of the current coordinator.
///
/// At most `capacity` accepted items wait at a time: [`push`](Self::push) hands the item back
/// with [`PushError::Full`] when they do, [`push_wait`](Self::push_wait) and
/// [`write`](Self::write) wait for room. `push` and `push_wait` return once the item is in
/// memory; `write` returns once its batch is committed (or has definitely failed), for a caller
/// that must not answer before the data is in the database. At
/// shutdown the writer writes what is left within its `flush_timeout` (and the shutdown budget);
/// what it cannot write is counted and reported, never dropped in silence: the report's
/// `batch-writer <name>` resource entry gives accepted, written, failed and not written counts
/// and the cause.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use lifecycle_runtime::db::{BatchWriter, Database};
///
/// # async fn run(db: Database) -> Result<(), Box<dyn std::error::Error>> {
/// let events: BatchWriter<(i64, String)> = BatchWriter::builder("events", &db, |db: Database, rows: Arc<[(i64, String)]>| async move {
///     let mut transaction = db.pool().begin().await?;
///     for (id, body) in rows.iter() {
///         sqlx::query("INSERT INTO events (id, body) VALUES ($1, $2)")
///             .bind(*id)
///             .bind(body.as_str())
///             .execute(&mut *transaction)
///             .await?;
///     }
///     transaction.commit().await
/// })
/// .max_batch(500)
/// .interval(Duration::from_millis(200))
/// .capacity(20_000)
/// .spawn();
/// events.push((1, "hello".to_owned()))?;
/// events.push_wait((2, "waits for room".to_owned())).await?;
/// events.write((3, "committed on return".to_owned())).await?;
/// # Ok(())
/// # }
/// ```
pub struct BatchWriter<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for BatchWriter<T> {
    fn clone(&self) -> Self {
        BatchWriter {
            inner: self.inner.clone(),
        }
    }
}

impl<T> fmt::Debug for BatchWriter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchWriter")
            .field("name", &self.inner.name)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Configures a [`BatchWriter`]; made by [`BatchWriter::builder`], started by
/// [`spawn`](Self::spawn).
pub struct BatchWriterBuilder<T, W, DB: Driver = sqlx::Any> {
    name: String,
    database: Database<DB>,
    write: W,
    max_batch: usize,
    interval: Duration,
    flush_timeout: Duration,
    retries: u32,
    capacity: Option<usize>,
    stop_after: Vec<String>,
    _items: std::marker::PhantomData<fn(T)>,
}

impl<T, W, DB: Driver> fmt::Debug for BatchWriterBuilder<T, W, DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchWriterBuilder")
            .field("name", &self.name)
            .field("max_batch", &self.max_batch)
            .field("interval", &self.interval)
            .field("flush_timeout", &self.flush_timeout)
            .field("capacity", &self.capacity_in_force())
            .finish_non_exhaustive()
    }
}

impl<T> BatchWriter<T>
where
    T: Send + Sync + 'static,
{
    /// A writer named `name` (in logs and reports) writing through `write`, which gets the
    /// database and a batch and writes it all or fails. Defaults: batches of 500, every second,
    /// room for 10 batches (5,000 pending items), 5s to flush at shutdown, 3 retries of a failed
    /// batch.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use lifecycle_runtime::db::{BatchWriter, Database};
    ///
    /// # async fn run(db: Database) {
    /// let ids: BatchWriter<i64> = BatchWriter::builder("ids", &db, |db: Database, ids: Arc<[i64]>| async move {
    ///     for id in ids.iter() {
    ///         sqlx::query("INSERT INTO ids (id) VALUES ($1)").bind(*id).execute(db.pool()).await?;
    ///     }
    ///     Ok::<(), sqlx::Error>(())
    /// })
    /// .spawn();
    /// # }
    /// ```
    pub fn builder<W, F, E, DB>(
        name: impl Into<String>,
        database: &Database<DB>,
        write: W,
    ) -> BatchWriterBuilder<T, W, DB>
    where
        DB: Driver,
        W: Fn(Database<DB>, Arc<[T]>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + 'static,
    {
        BatchWriterBuilder {
            name: name.into(),
            database: database.clone(),
            write,
            max_batch: DEFAULT_MAX_BATCH,
            interval: DEFAULT_INTERVAL,
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
            retries: DEFAULT_RETRIES,
            capacity: None,
            stop_after: Vec::new(),
            _items: std::marker::PhantomData,
        }
    }

    /// Accepts `item` if there is room, without waiting: fire and forget. It is written within
    /// the interval (sooner when a batch fills up), or at shutdown; an item that cannot be written
    /// is counted, logged and reported, never dropped in silence.
    ///
    /// What `Ok` promises, exactly: the item is in this process's memory, counted as accepted,
    /// and will end up counted as written, failed (every try of its batch returned an error) or
    /// not written (the flush time ran out, or the writer task was cut off). It is **not**
    /// durable: a crash, a SIGKILL or a power cut before its batch commits loses it, with no
    /// count left to say so, and `Ok` says nothing about whether its batch will succeed. To
    /// answer only once the item is committed, use [`write`](Self::write).
    ///
    /// ```no_run
    /// use lifecycle_runtime::db::{BatchWriter, PushError};
    ///
    /// # fn record(writer: &BatchWriter<i64>) {
    /// match writer.push(42) {
    ///     Ok(()) => {}
    ///     Err(PushError::Full { item, .. }) => eprintln!("busy: {item} not recorded, try later"),
    ///     Err(error) => eprintln!("{error}"),
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// With the item handed back: [`PushError::Full`] while `capacity` items are pending,
    /// [`PushError::Closed`] once shutdown began.
    pub fn push(&self, item: T) -> Result<(), PushError<T>> {
        if self.inner.shutdown.is_triggered() {
            return Err(self.closed(item));
        }
        let accepted = self.inner.ledger.try_accept(item);
        self.answer(accepted)
    }

    /// Accepts `item`, waiting for room while `capacity` items are pending: back-pressure for a
    /// producer faster than the database. Waiters get room in the order they came. Shutdown ends
    /// the wait at once, with the item handed back. `Ok` promises what [`push`](Self::push)'s
    /// does: accepted into memory, not durable.
    ///
    /// Cancel-safe in the sense that matters: if this future is dropped while it waits, the item
    /// was not accepted and is dropped with it; nothing is counted.
    ///
    /// ```no_run
    /// use lifecycle_runtime::db::BatchWriter;
    ///
    /// # async fn produce(writer: BatchWriter<i64>) {
    /// let mut n = 0;
    /// while writer.push_wait(n).await.is_ok() {
    ///     n += 1;
    /// }
    /// // Shutdown began: everything accepted is written, or counted and reported.
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`PushError::Closed`], with the item, once shutdown began (also when it begins during the
    /// wait).
    pub async fn push_wait(&self, item: T) -> Result<(), PushError<T>> {
        match self.room().await {
            Some(room) => {
                let accepted = self.inner.ledger.accept(room, item);
                self.answer(accepted)
            }
            None => Err(self.closed(item)),
        }
    }

    /// Waits for room for one item; `None` once shutdown began (also during the wait) or the
    /// buffer closed.
    async fn room(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let inner = &self.inner;
        if inner.shutdown.is_triggered() {
            return None;
        }
        let room = tokio::select! {
            biased;
            () = inner.shutdown.triggered() => None,
            room = inner.ledger.room() => room,
        };
        room.filter(|_| !inner.shutdown.is_triggered())
    }

    /// Wakes the writer when a batch is full, and turns a refusal into the error.
    fn answer(&self, accepted: Result<usize, Refused<T>>) -> Result<(), PushError<T>> {
        match accepted {
            Ok(waiting) => {
                if waiting >= self.inner.batch {
                    self.inner.wake.notify_one();
                }
                Ok(())
            }
            Err(Refused::Full(item)) => Err(PushError::Full {
                name: self.inner.name.clone(),
                item,
            }),
            Err(Refused::Closed(item)) => Err(self.closed(item)),
        }
    }

    fn closed(&self, item: T) -> PushError<T> {
        PushError::Closed {
            name: self.inner.name.clone(),
            item,
        }
    }
}

impl<T> BatchWriter<T> {
    /// Counts of what the writer did, taken together: see [`BatchStats`].
    ///
    /// ```no_run
    /// # use lifecycle_runtime::db::BatchWriter;
    /// # fn show(writer: &BatchWriter<i64>) {
    /// let stats = writer.stats();
    /// println!("{} of {} written, {} waiting", stats.written, stats.accepted, stats.pending);
    /// # }
    /// ```
    pub fn stats(&self) -> BatchStats {
        self.inner.ledger.stats()
    }
}

impl<T, W, DB: Driver> BatchWriterBuilder<T, W, DB> {
    /// The capacity in force: the one set, or ten batches.
    fn capacity_in_force(&self) -> usize {
        self.capacity
            .unwrap_or_else(|| self.max_batch.saturating_mul(DEFAULT_CAPACITY_IN_BATCHES))
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS)
    }
}

impl<T, W, F, E, DB> BatchWriterBuilder<T, W, DB>
where
    T: Send + Sync + 'static,
    DB: Driver,
    W: Fn(Database<DB>, Arc<[T]>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + 'static,
{
    /// Write a batch as soon as this many items wait (at least 1; 0 counts as 1). Default 500.
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }

    /// Write what waits at least this often (at least every millisecond). Default 1s.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long shutdown waits for the last writes: the writer task's stop timeout, counted from
    /// when it is told to stop (at the stop signal, or when its stage starts with
    /// [`stop_after`](Self::stop_after)) and capped by the shutdown budget. What is not written
    /// by then counts as not written. Default 5s.
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// How often a failed batch is tried again before its items count as failed. Default 3.
    /// During shutdown a retry is made only if it can end before the flush time runs out, and
    /// once a batch has failed every try, later batches get one try each.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Stop only after every worker named here has ended (or was cut off at its stop
    /// timeout): the writer keeps accepting items until then, so a request still finishing
    /// after the drain is written rather than refused (see
    /// [`Coordinator::stop_after`](crate::Coordinator::stop_after); the writer's task is named
    /// `batch-writer <name>`). Its flush time runs from then. Default: none, the writer stops
    /// with everything else.
    ///
    /// # Panics
    ///
    /// [`spawn`](Self::spawn) panics when the order would be a cycle (the writer's task already
    /// stops before one of these), naming the cycle. Declare it with
    /// [`Coordinator::stop_after`](crate::Coordinator::stop_after) first to handle that as an
    /// error.
    pub fn stop_after<I>(mut self, after: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.stop_after
            .extend(after.into_iter().map(|name| name.as_ref().to_owned()));
        self
    }

    /// The most accepted items that may wait to be written at a time, in the buffer or in the
    /// batch being written; past it, [`push`](BatchWriter::push) answers
    /// [`PushError::Full`] and [`push_wait`](BatchWriter::push_wait) waits. Default: ten
    /// batches (`10 × max_batch`). At least 1: 0 counts as 1. A capacity below `max_batch` is
    /// allowed and makes the batches that small.
    ///
    /// Choose it from what shutdown can write: items still pending when the flush time runs out
    /// are counted as not written.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity.max(1));
        self
    }

    /// Starts the writer task on the current coordinator, and registers the writer's report
    /// entry (a resource named `batch-writer <name>`, closed before the database it writes to).
    /// Must be called inside a tokio runtime.
    ///
    /// # Panics
    ///
    /// When [`stop_after`](Self::stop_after) names a cycle; see there.
    #[track_caller]
    pub fn spawn(self) -> BatchWriter<T> {
        let coordinator = crate::Coordinator::current();
        let capacity = self.capacity_in_force();
        let task = TaskName::from(format!("batch-writer {}", self.name));
        if !self.stop_after.is_empty()
            && let Err(error) = coordinator.stop_after(task.as_str(), &self.stop_after)
        {
            panic!("cannot start batch writer `{}`: {error}", self.name);
        }
        let inner = Arc::new(Inner {
            name: self.name.clone(),
            task: task.clone(),
            ledger: Arc::new(Ledger::new(capacity, self.max_batch.min(capacity))),
            wake: Notify::new(),
            batch: self.max_batch.min(capacity),
            flush_timeout: self.flush_timeout,
            shutdown: Shutdown::for_name(coordinator.clone(), task.as_str()),
        });
        let run = Run::new(
            inner.clone(),
            self.database,
            self.write,
            self.interval,
            self.retries,
        );
        let meta = WorkerMeta::new(task, WorkerKind::Task, self.flush_timeout, None);
        let _task = coordinator.spawn_worker(meta, OkFuture::new(run.run()));
        let _entry = coordinator.manage(Accounts {
            name: inner.name.clone(),
            ledger: inner.ledger.clone(),
        });
        BatchWriter { inner }
    }
}
