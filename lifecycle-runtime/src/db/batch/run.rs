//! The writer task: writes a batch when `max_batch` items wait or every `interval`, and what is
//! left when told to stop, inside the time step 3 gives it. What it still holds when that time
//! runs out is counted as not written, by the task itself when it stops at its own deadline (just
//! before step 3 would cut it off), or by [`CutOff`], which lives in the task's future and so goes
//! wherever the future goes (aborted at its stop timeout anyway, its runtime dropped, a panic).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Inner;
use super::ledger::Settled;
use crate::db::{Database, Driver};
use crate::util::{after, format_duration};

/// The first pause before a failed batch is tried again; it doubles with each try, up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// How long before its stop due time the writer stops writing by itself: a twentieth of the flush
/// timeout, at most this. It then ends as a task that stopped when told (its report entry says
/// what was not written), rather than one cut off for ignoring shutdown.
const MAX_MARGIN: Duration = Duration::from_millis(50);

/// The writer's own deadline after the stop signal came: when it stops writing, and why then.
#[derive(Clone, Copy)]
struct Deadline {
    at: Instant,
    cut_by_budget: bool,
}

/// A batch's write did not end before the writer's deadline.
struct DeadlineReached(Deadline);

pub(super) struct Run<T, W, DB: Driver> {
    inner: Arc<Inner<T>>,
    database: Database<DB>,
    write: W,
    interval: Duration,
    retries: u32,
    /// Set once a batch failed every try after the stop signal: the database is likely down, so
    /// each later batch gets one try and the flush time reaches more of them.
    one_try_each: bool,
    /// Moved into the task's future with the rest: counts what the task holds when it goes.
    _cut_off: CutOff<T>,
}

impl<T, W, F, E, DB> Run<T, W, DB>
where
    T: Send + Sync + 'static,
    DB: Driver,
    W: Fn(Database<DB>, Arc<[T]>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + 'static,
{
    pub(super) fn new(
        inner: Arc<Inner<T>>,
        database: Database<DB>,
        write: W,
        interval: Duration,
        retries: u32,
    ) -> Run<T, W, DB> {
        Run {
            _cut_off: CutOff {
                inner: inner.clone(),
            },
            inner,
            database,
            write,
            interval,
            retries,
            one_try_each: false,
        }
    }

    pub(super) async fn run(mut self) {
        let inner = self.inner.clone();
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = inner.shutdown.triggered() => break,
                () = inner.wake.notified() => {}
                _ = ticks.tick() => {}
            }
            let items = inner.ledger.take();
            if let Err(DeadlineReached(deadline)) = self.write_all(items).await {
                // Told to stop during writes that outlived the flush time.
                inner
                    .ledger
                    .abandon(&out_of_time(&inner, deadline.cut_by_budget));
                return;
            }
        }
        // Accept nothing more, write everything accepted, inside the stop due time.
        let rest = inner.ledger.close_and_take();
        let count = rest.len();
        match self.write_all(rest).await {
            Ok(()) => tracing::info!(writer = %inner.name, items = count, "final flush done"),
            Err(DeadlineReached(deadline)) => {
                let not_written = inner
                    .ledger
                    .abandon(&out_of_time(&inner, deadline.cut_by_budget));
                let flush_timeout = format_duration(inner.flush_timeout);
                tracing::warn!(writer = %inner.name, items = count, not_written, %flush_timeout, "final flush out of time");
            }
        }
    }

    /// Writes `items` in batches of at most `batch`, each with its tries. Stops at a batch cut off
    /// by the deadline: that batch and the rest stay taken, for the caller to count.
    async fn write_all(&mut self, items: Vec<T>) -> Result<(), DeadlineReached> {
        let mut items = items.into_iter();
        loop {
            let batch: Arc<[T]> = items.by_ref().take(self.inner.batch).collect();
            if batch.is_empty() {
                return Ok(());
            }
            self.write_batch(batch).await?;
        }
    }

    /// Writes one batch; tries again after a failure (pausing 50 ms, then twice as long each
    /// time, up to 10 s), `retries` times, and then counts it as failed. After the stop signal every try must
    /// end by the writer's deadline, and another try is made only if the last one would still
    /// fit.
    async fn write_batch(&mut self, batch: Arc<[T]>) -> Result<(), DeadlineReached> {
        let ledger = &self.inner.ledger;
        let size = batch.len();
        ledger.writing(size);
        let mut pause = FIRST_PAUSE;
        let mut tries = 0;
        loop {
            let deadline = self.deadline();
            let started = Instant::now();
            let write = (self.write)(self.database.clone(), batch.clone());
            // The error is turned into text at once: `E` need not be `Send`.
            let outcome = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline.at, write)
                    .await
                    .map_err(|_| DeadlineReached(deadline))?,
                None => write.await,
            }
            .map_err(|error| error.to_string());
            let Err(message) = outcome else {
                ledger.settle(size, Settled::Written);
                return Ok(());
            };
            tracing::warn!(writer = %self.inner.name, attempt = tries, items = size, error = %message, "batch write failed");
            ledger.record_error(message, deadline.is_some());
            let allowed = if self.one_try_each { 0 } else { self.retries };
            if tries >= allowed {
                break;
            }
            if let Some(deadline) = self.deadline()
                && after(Instant::now(), pause.saturating_add(started.elapsed())) > deadline.at
            {
                tracing::warn!(writer = %self.inner.name, items = size, "no time left for another try before the flush time runs out");
                break;
            }
            tokio::time::sleep(pause).await;
            pause = pause.saturating_mul(2).min(MAX_PAUSE);
            tries += 1;
        }
        ledger.settle(size, Settled::Failed);
        if self.deadline().is_some() {
            self.one_try_each = true;
        }
        tracing::error!(
            writer = %self.inner.name,
            items = size,
            "accepted items could not be written; counted as failed"
        );
        Ok(())
    }

    /// When the writer stops writing, once it has been told to stop: a little before step 3
    /// would cut it off (its flush timeout from the stop signal, or from its stage's start with
    /// `stop_after`, capped by the budget).
    fn deadline(&self) -> Option<Deadline> {
        let flush_timeout = self.inner.flush_timeout;
        let due = self
            .inner
            .shutdown
            .coordinator()
            .stop_due(&self.inner.task, flush_timeout)?;
        let margin = (flush_timeout / 20).min(MAX_MARGIN);
        Some(Deadline {
            at: due.at.checked_sub(margin).unwrap_or(due.at),
            cut_by_budget: due.cut_by_budget,
        })
    }
}

/// Why items were not written when the writer ran out of time.
fn out_of_time<T>(inner: &Inner<T>, cut_by_budget: bool) -> String {
    if cut_by_budget {
        "the shutdown budget ran out".to_owned()
    } else {
        format!(
            "the flush timeout of {} ran out",
            format_duration(inner.flush_timeout)
        )
    }
}

/// Counts, when the writer task's future goes (it ended, was cut off at its stop timeout, or its
/// runtime dropped it), every item the task still holds as not written, with the reason, closes
/// the buffer, and tells the writer's report entry that the counts are final.
struct CutOff<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Drop for CutOff<T> {
    fn drop(&mut self) {
        let inner = &self.inner;
        let why = reason(inner);
        inner.ledger.abandon(&why);
        inner.ledger.finish();
        let account = inner.ledger.account();
        let stats = account.stats;
        if stats.failed > 0 || stats.not_written > 0 {
            tracing::error!(
                writer = %inner.name,
                accepted = stats.accepted,
                written = stats.written,
                failed = stats.failed,
                not_written = stats.not_written,
                cause = account.cause.as_deref().unwrap_or_default(),
                last_error = account.last_error.as_deref().unwrap_or_default(),
                "batch writer finished with accepted items not written"
            );
        }
    }
}

/// Why a writer task that still holds items is going away now.
fn reason<T>(inner: &Inner<T>) -> String {
    if std::thread::panicking() {
        return "the writer task panicked".to_owned();
    }
    match inner
        .shutdown
        .coordinator()
        .stop_due(&inner.task, inner.flush_timeout)
    {
        Some(due) if Instant::now() >= due.at => out_of_time(inner, due.cut_by_budget),
        Some(_) => "the writer task was dropped before its final flush finished".to_owned(),
        None => "the writer task was dropped before shutdown told it to flush".to_owned(),
    }
}
