//! Group commit: [`BatchWriter::write`] accepts an item like `push_wait`, then waits for the
//! verdict of the batch the item is written in. Every waiter of a batch shares one completion
//! (made by the first of them, set once when the batch settles or is given up), so an item costs
//! a reference count, not a channel, and concurrent writers still coalesce into one transaction.

use std::sync::Arc;

use super::BatchWriter;
use super::ledger::{Refused, Verdict};

/// Why [`BatchWriter::write`] did not return `Ok`: the item was refused (and comes back), or it
/// was accepted and its batch definitely did not commit.
///
/// ```
/// use lifecycle_runtime::db::WriteError;
///
/// let refused = WriteError::Closed {
///     name: "events".to_owned(),
///     item: 7,
/// };
/// assert!(!refused.was_accepted());
/// assert_eq!(refused.into_item(), Some(7));
///
/// let failed: WriteError<i64> = WriteError::Failed {
///     name: "events".to_owned(),
///     error: "relation \"events\" does not exist".into(),
/// };
/// assert!(failed.was_accepted());
/// assert_eq!(
///     failed.to_string(),
///     "batch writer `events` could not write the item: its batch failed every try; \
///      last error: relation \"events\" does not exist"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError<T> {
    /// Not accepted: the writer stopped accepting items (shutdown began, or its task is gone).
    #[error("batch writer `{name}` accepts no more items: shutdown began")]
    Closed {
        /// The writer's name.
        name: String,
        /// The item, not accepted.
        item: T,
    },
    /// Accepted, and every try of its batch returned an error (the writer's `retries`, fewer
    /// during shutdown). Counted as failed.
    #[error(
        "batch writer `{name}` could not write the item: its batch failed every try; last error: {error}"
    )]
    Failed {
        /// The writer's name.
        name: String,
        /// What the last try's write returned.
        error: Arc<str>,
    },
    /// Accepted, and never settled: the flush time or the shutdown budget ran out, or the writer
    /// task was cut off (aborted, its runtime dropped, a panic). Counted as not written. When the
    /// item's batch was being written at that moment, `cause` says its outcome is unknown: the
    /// commit may have reached the server.
    #[error("batch writer `{name}` did not write the item: {cause}")]
    NotWritten {
        /// The writer's name.
        name: String,
        /// Why, e.g. `the flush timeout of 5s ran out`.
        cause: Arc<str>,
    },
}

impl<T> WriteError<T> {
    /// The item, when it was not accepted (`Closed`); `None` when it was (it went into a batch).
    pub fn into_item(self) -> Option<T> {
        match self {
            WriteError::Closed { item, .. } => Some(item),
            WriteError::Failed { .. } | WriteError::NotWritten { .. } => None,
        }
    }

    /// Whether the writer had accepted the item (and counted it as failed or not written).
    pub fn was_accepted(&self) -> bool {
        !matches!(self, WriteError::Closed { .. })
    }
}

impl<T> BatchWriter<T>
where
    T: Send + Sync + 'static,
{
    /// Writes `item` and returns once its batch is committed: `Ok` means the batch's write
    /// function returned `Ok` (for a transaction, its commit did), so the item is as durable as
    /// the database makes a commit. Use it where a caller must not be told "done" before the
    /// data is stored (a handler answering 200); [`push`](Self::push) is the fire-and-forget
    /// form.
    ///
    /// Group commit: items of concurrent `write`s (and `push`es) still go into one batch, one
    /// transaction, and every waiter of a batch is told together. A `write` does not wait for the
    /// `interval`: it wakes an idle writer at once, and what arrives while a batch is being
    /// written forms the next one, so batches grow with the load. Waits for room like
    /// [`push_wait`](Self::push_wait) while `capacity` items are pending.
    ///
    /// Dropping the future before it returns does not withdraw an item already accepted: it is
    /// written like a pushed one, and only its verdict goes unheard. Dropped while it waits for
    /// room, the item was not accepted and is dropped with it.
    ///
    /// ```no_run
    /// use lifecycle_runtime::db::{BatchWriter, WriteError};
    ///
    /// # async fn handle(writer: &BatchWriter<i64>, id: i64) -> u16 {
    /// match writer.write(id).await {
    ///     Ok(()) => 200,                                // committed
    ///     Err(WriteError::Closed { .. }) => 503,        // shutting down: not accepted
    ///     Err(error) => {
    ///         eprintln!("{error}");                     // failed, or not written: the cause
    ///         500
    ///     }
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`WriteError::Closed`], with the item, once the writer stopped accepting (shutdown began,
    /// also during the wait for room); [`WriteError::Failed`] with the last error when every try
    /// of its batch failed; [`WriteError::NotWritten`] with the cause when the writer gave up on
    /// it at shutdown (the flush time ran out) or was cut off.
    pub async fn write(&self, item: T) -> Result<(), WriteError<T>> {
        let name = || self.inner.name.clone();
        let Some(room) = self.room().await else {
            return Err(WriteError::Closed { name: name(), item });
        };
        let done = match self.inner.ledger.accept_waited(room, item) {
            Ok(done) => done,
            Err(Refused::Closed(item) | Refused::Full(item)) => {
                return Err(WriteError::Closed { name: name(), item });
            }
        };
        // Start a batch now if the writer is idle; while it writes, the next one gathers.
        self.inner.wake.notify_one();
        match done.wait().await {
            Verdict::Written => Ok(()),
            Verdict::Failed(error) => Err(WriteError::Failed {
                name: name(),
                error: error.clone(),
            }),
            Verdict::NotWritten(cause) => Err(WriteError::NotWritten {
                name: name(),
                cause: cause.clone(),
            }),
        }
    }
}
