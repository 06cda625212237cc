//! Batched writes that are not lost at exit: `push` buffers; a tracked task writes a batch when
//! `max_batch` items wait or every `interval`, and writes what is left when shutdown comes, before
//! the pool closes.

use std::fmt::{self, Display};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::Database;
use crate::Shutdown;
use crate::util::lock;
use crate::workers::{TaskError, TaskName, WorkerKind, WorkerMeta};

/// `push` after shutdown began: the item was not accepted and is handed back.
#[derive(Debug, thiserror::Error)]
pub enum PushError<T> {
    /// The writer stopped accepting items (shutdown began).
    #[error("batch writer `{name}` accepts no more items: shutdown began")]
    Closed {
        /// The writer's name.
        name: String,
        /// The item, not written.
        item: T,
    },
}

impl<T> PushError<T> {
    /// The item that was not accepted.
    pub fn into_item(self) -> T {
        match self {
            PushError::Closed { item, .. } => item,
        }
    }
}

/// What a writer did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct BatchStats {
    /// Items `push` accepted.
    pub accepted: u64,
    /// Items written.
    pub written: u64,
    /// Accepted items that could not be written (after retries): logged and reported.
    pub failed: u64,
    /// Items waiting to be written.
    pub pending: u64,
}

struct Buffer<T> {
    items: Vec<T>,
    /// Set, under the lock, when the final flush takes the buffer: nothing is accepted after.
    closed: bool,
}

struct Inner<T> {
    name: String,
    buffer: Mutex<Buffer<T>>,
    wake: Notify,
    max_batch: usize,
    shutdown: Shutdown,
    accepted: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
}

/// Buffers items and writes them in batches, through a tracked task of the current coordinator.
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
/// .spawn();
/// events.push((1, "hello".to_owned()))?;
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

/// Configures a [`BatchWriter`].
pub struct BatchWriterBuilder<T, W> {
    name: String,
    database: Database,
    write: W,
    max_batch: usize,
    interval: Duration,
    flush_timeout: Duration,
    retries: u32,
    _items: std::marker::PhantomData<fn(T)>,
}

impl<T, W> fmt::Debug for BatchWriterBuilder<T, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchWriterBuilder")
            .field("name", &self.name)
            .field("max_batch", &self.max_batch)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl<T> BatchWriter<T>
where
    T: Send + Sync + 'static,
{
    /// A writer named `name` (in logs and reports) writing through `write`, which gets the
    /// database and a batch and writes it all or fails. Defaults: batches of 500, every second,
    /// 5s to flush at shutdown, 3 retries of a failed batch.
    pub fn builder<W, F, E>(
        name: impl Into<String>,
        database: &Database,
        write: W,
    ) -> BatchWriterBuilder<T, W>
    where
        W: Fn(Database, Arc<[T]>) -> F + Send + Sync + 'static,
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Display + 'static,
    {
        BatchWriterBuilder {
            name: name.into(),
            database: database.clone(),
            write,
            max_batch: 500,
            interval: Duration::from_secs(1),
            flush_timeout: Duration::from_secs(5),
            retries: 3,
            _items: std::marker::PhantomData,
        }
    }

    /// Buffers `item`. It is written within the interval (sooner when a batch fills up), or at
    /// shutdown; an item that cannot be written is counted, logged and reported, never dropped
    /// in silence.
    ///
    /// # Errors
    ///
    /// [`PushError::Closed`], with the item, once shutdown began.
    pub fn push(&self, item: T) -> Result<(), PushError<T>> {
        let inner = &self.inner;
        let mut buffer = lock(&inner.buffer);
        if buffer.closed || inner.shutdown.is_triggered() {
            return Err(PushError::Closed {
                name: inner.name.clone(),
                item,
            });
        }
        buffer.items.push(item);
        inner.accepted.fetch_add(1, Ordering::Relaxed);
        let full = buffer.items.len() >= inner.max_batch;
        drop(buffer);
        if full {
            inner.wake.notify_one();
        }
        Ok(())
    }
}

impl<T> BatchWriter<T> {
    /// Counts of what the writer did.
    pub fn stats(&self) -> BatchStats {
        BatchStats {
            accepted: self.inner.accepted.load(Ordering::Relaxed),
            written: self.inner.written.load(Ordering::Relaxed),
            failed: self.inner.failed.load(Ordering::Relaxed),
            pending: lock(&self.inner.buffer).items.len() as u64,
        }
    }
}

impl<T, W, F, E> BatchWriterBuilder<T, W>
where
    T: Send + Sync + 'static,
    W: Fn(Database, Arc<[T]>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + 'static,
{
    /// Write a batch as soon as this many items wait.
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }

    /// Write what waits at least this often.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long shutdown waits for the last writes (the writer task's stop timeout).
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// How often a failed batch is tried again before its items count as failed.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Starts the writer task on the current coordinator. Must be called inside a tokio runtime.
    pub fn spawn(self) -> BatchWriter<T> {
        let coordinator = crate::Coordinator::current();
        let inner = Arc::new(Inner {
            name: self.name.clone(),
            buffer: Mutex::new(Buffer {
                items: Vec::new(),
                closed: false,
            }),
            wake: Notify::new(),
            max_batch: self.max_batch,
            shutdown: coordinator.shutdown_signal(),
            accepted: AtomicU64::new(0),
            written: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let task = TaskName::from(format!("batch-writer {}", self.name));
        let run = Run {
            inner: inner.clone(),
            database: self.database,
            write: self.write,
            interval: self.interval,
            retries: self.retries,
            task: task.clone(),
            last_error: None,
        };
        let meta = WorkerMeta::new(task, WorkerKind::Task, self.flush_timeout, None);
        let _task = coordinator.spawn_worker(meta, run.run());
        BatchWriter { inner }
    }
}

struct Run<T, W> {
    inner: Arc<Inner<T>>,
    database: Database,
    write: W,
    interval: Duration,
    retries: u32,
    task: TaskName,
    last_error: Option<String>,
}

impl<T, W, F, E> Run<T, W>
where
    T: Send + Sync + 'static,
    W: Fn(Database, Arc<[T]>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Display + 'static,
{
    async fn run(mut self) -> Result<(), TaskError> {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = self.inner.shutdown.triggered() => break,
                () = self.inner.wake.notified() => {}
                _ = ticks.tick() => {}
            }
            let batch = take(&self.inner, false);
            self.write_all(batch).await;
        }
        // Shutdown: accept nothing more, write everything accepted.
        let rest = take(&self.inner, true);
        let count = rest.len();
        self.write_all(rest).await;
        tracing::info!(writer = %self.inner.name, items = count, "final flush done");
        let failed = self.inner.failed.load(Ordering::Relaxed);
        if failed == 0 {
            Ok(())
        } else {
            Err(TaskError::Failed {
                task: self.task.clone(),
                message: format!(
                    "{failed} accepted item(s) could not be written: {}",
                    self.last_error.as_deref().unwrap_or("unknown error")
                ),
            })
        }
    }

    /// Writes `items` in batches of `max_batch`, each with its retries.
    async fn write_all(&mut self, mut items: Vec<T>) {
        while !items.is_empty() {
            let rest = items.split_off(items.len().min(self.inner.max_batch));
            let batch: Arc<[T]> = items.into();
            self.write_batch(batch).await;
            items = rest;
        }
    }

    async fn write_batch(&mut self, batch: Arc<[T]>) {
        let size = batch.len() as u64;
        let mut pause = Duration::from_millis(50);
        for attempt in 0..=self.retries {
            // The error is turned into text at once: `E` need not be `Send`.
            let outcome = (self.write)(self.database.clone(), batch.clone())
                .await
                .map_err(|error| error.to_string());
            let Err(message) = outcome else {
                self.inner.written.fetch_add(size, Ordering::Relaxed);
                return;
            };
            tracing::warn!(writer = %self.inner.name, attempt, items = size, error = %message, "batch write failed");
            self.last_error = Some(message);
            if attempt < self.retries {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
        self.inner.failed.fetch_add(size, Ordering::Relaxed);
        tracing::error!(
            writer = %self.inner.name,
            items = size,
            error = self.last_error.as_deref().unwrap_or_default(),
            "accepted items could not be written; counted as failed"
        );
    }
}

/// Takes what waits; with `close`, also stops `push` from accepting more (under the same lock,
/// so no accepted item can miss the last flush).
fn take<T>(inner: &Inner<T>, close: bool) -> Vec<T> {
    let mut buffer = lock(&inner.buffer);
    if close {
        buffer.closed = true;
    }
    std::mem::take(&mut buffer.items)
}
