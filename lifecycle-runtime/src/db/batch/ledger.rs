//! The writer's ledger: the buffer `push` fills, the room left in it, and the counts that account
//! for every accepted item. Buffer and counts share one lock, so
//! `accepted = written + failed + not_written + pending` holds whenever anyone looks, and an item
//! is counted in the same critical section that moves it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, SemaphorePermit, SetOnce, TryAcquireError};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::BatchStats;
use crate::util::lock;

/// Why the ledger did not take an item; the item comes back.
pub(super) enum Refused<T> {
    /// `capacity` items are pending.
    Full(T),
    /// The buffer is closed: the final flush took it, or the writer task is gone.
    Closed(T),
}

/// How a batch's write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Settled {
    Written,
    /// Every try returned an error.
    Failed,
}

/// How a batch ended, as a waiting [`write`](super::BatchWriter::write) hears it.
#[derive(Clone, Debug)]
pub(super) enum Verdict {
    /// The batch's write returned `Ok`: committed.
    Written,
    /// Every try failed; the last error.
    Failed(Arc<str>),
    /// Never settled: why (time ran out, the task was cut off).
    NotWritten(Arc<str>),
}

/// The verdict of one batch, shared by everyone who waits for an item in it: one allocation per
/// batch that has a waiter, none for batches of `push`ed items only.
pub(super) type Done = Arc<SetOnce<Verdict>>;

/// What the report says about a writer: its counts, why items were not written, the last error
/// a write returned.
#[derive(Clone, Debug)]
pub(super) struct Account {
    pub(super) stats: BatchStats,
    pub(super) cause: Option<String>,
    pub(super) last_error: Option<String>,
}

pub(super) struct Ledger<T> {
    state: Mutex<State<T>>,
    /// The batch size in force: the writer cuts what it takes into batches of this many, from
    /// the first item, so an item's place in the buffer says which batch it will be in.
    batch: usize,
    /// One permit per item that may still be accepted (`capacity - pending`): `push` takes one
    /// without waiting, `push_wait` waits for one, a settled batch gives its permits back. Closed
    /// with the buffer, so nobody waits for room that will never come.
    room: Semaphore,
    /// Cancelled once the writer task is gone (its final flush done, or its future dropped) and
    /// every item it held is counted.
    finished: CancellationToken,
}

struct State<T> {
    items: Vec<T>,
    /// One slot per batch-to-be of `items` (the `k`th holds items `k × batch ..`): the verdict its
    /// waiters wait for, made by the first waiting `write` of that batch. Shorter than the number
    /// of batches when the last ones have no waiter.
    buffered_done: Vec<Option<Done>>,
    /// One slot per batch taken and not settled, in the order the writer writes them.
    taken_done: VecDeque<Option<Done>>,
    /// Set when the final flush takes the buffer or the writer task is gone: nothing is accepted
    /// after.
    closed: bool,
    accepted: u64,
    written: u64,
    failed: u64,
    not_written: u64,
    /// Taken from the buffer by the writer and not settled yet.
    taken: u64,
    /// Of `taken`, the batch whose write is under way.
    writing: u64,
    /// Why items were not written (the first time any were not).
    cause: Option<String>,
    last_error: Option<String>,
    /// The last error a write returned after the writer was told to stop: the likely reason the
    /// final flush ran out of time.
    last_error_in_shutdown: Option<String>,
}

impl<T> State<T> {
    fn stats(&self) -> BatchStats {
        BatchStats {
            accepted: self.accepted,
            written: self.written,
            failed: self.failed,
            not_written: self.not_written,
            pending: self.items.len() as u64 + self.taken,
        }
    }
}

/// What the waiters of every unsettled batch hear when the writer gives up on them because of
/// `why`: the batch being written is of unknown outcome, the others were not written. Takes the
/// verdicts out of `state` (they are set after the lock is released).
fn waiter_verdicts<T>(state: &mut State<T>, why: &str) -> Vec<(Done, Verdict)> {
    let mut waited = state
        .taken_done
        .drain(..)
        .chain(state.buffered_done.drain(..))
        .enumerate()
        .filter_map(|(at, done)| Some((at, done?)))
        .peekable();
    if waited.peek().is_none() {
        return Vec::new();
    }
    let last_error = match &state.last_error_in_shutdown {
        Some(error) => format!("; the last write failed with: {error}"),
        None => String::new(),
    };
    let not_written: Arc<str> = Arc::from(format!("{why}{last_error}"));
    let writing = state.writing > 0;
    waited
        .map(|(at, done)| {
            let cause = if at == 0 && writing {
                Arc::from(format!(
                    "{why}; its batch was being written when the write was cut off, so it may or \
                     may not be in the database{last_error}"
                ))
            } else {
                not_written.clone()
            };
            (done, Verdict::NotWritten(cause))
        })
        .collect()
}

impl<T> Ledger<T> {
    /// A ledger with room for `capacity` pending items (at least 1, at most
    /// [`Semaphore::MAX_PERMITS`]; the builder clamps it), whose writer writes batches of `batch`.
    pub(super) fn new(capacity: usize, batch: usize) -> Ledger<T> {
        Ledger {
            batch: batch.max(1),
            state: Mutex::new(State {
                items: Vec::new(),
                buffered_done: Vec::new(),
                taken_done: VecDeque::new(),
                closed: false,
                accepted: 0,
                written: 0,
                failed: 0,
                not_written: 0,
                taken: 0,
                writing: 0,
                cause: None,
                last_error: None,
                last_error_in_shutdown: None,
            }),
            room: Semaphore::new(capacity.clamp(1, Semaphore::MAX_PERMITS)),
            finished: CancellationToken::new(),
        }
    }

    /// Accepts `item` if there is room for it now; returns how many items wait in the buffer
    /// now.
    pub(super) fn try_accept(&self, item: T) -> Result<usize, Refused<T>> {
        match self.room.try_acquire() {
            Ok(permit) => self.accept(permit, item),
            Err(TryAcquireError::NoPermits) => Err(Refused::Full(item)),
            Err(TryAcquireError::Closed) => Err(Refused::Closed(item)),
        }
    }

    /// Waits for room for one more item; `None` once the buffer is closed. Waiters are served in
    /// the order they came.
    pub(super) async fn room(&self) -> Option<SemaphorePermit<'_>> {
        self.room.acquire().await.ok()
    }

    /// Accepts `item` into the room `permit` holds; returns how many items wait in the buffer
    /// now.
    pub(super) fn accept(&self, permit: SemaphorePermit<'_>, item: T) -> Result<usize, Refused<T>> {
        let mut state = lock(&self.state);
        if state.closed {
            // The permit goes back after the lock (it is a parameter, dropped last).
            return Err(Refused::Closed(item));
        }
        state.items.push(item);
        state.accepted += 1;
        // The room is taken until the item is settled.
        permit.forget();
        Ok(state.items.len())
    }

    /// Accepts `item` into the room `permit` holds, and returns the verdict of the batch it
    /// will be written in.
    pub(super) fn accept_waited(
        &self,
        permit: SemaphorePermit<'_>,
        item: T,
    ) -> Result<Done, Refused<T>> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(Refused::Closed(item));
        }
        let batch = state.items.len() / self.batch;
        state.items.push(item);
        state.accepted += 1;
        permit.forget();
        if state.buffered_done.len() <= batch {
            state.buffered_done.resize(batch + 1, None);
        }
        let done = state.buffered_done[batch].get_or_insert_with(Done::default);
        Ok(done.clone())
    }

    /// Takes what waits in the buffer; it stays pending (taken) until settled.
    pub(super) fn take(&self) -> Vec<T> {
        let mut state = lock(&self.state);
        Self::take_locked(&mut state, self.batch)
    }

    /// Takes the buffer, and the verdicts of its batches with it.
    fn take_locked(state: &mut State<T>, batch: usize) -> Vec<T> {
        let items = std::mem::take(&mut state.items);
        state.taken += items.len() as u64;
        let batches = items.len().div_ceil(batch);
        let done = std::mem::take(&mut state.buffered_done);
        let waited = done.len();
        state.taken_done.extend(done);
        state
            .taken_done
            .extend(std::iter::repeat_n(None, batches.saturating_sub(waited)));
        items
    }

    /// Closes the buffer and takes what waits in it: under the lock `accept` takes, so no
    /// accepted item can miss the last flush.
    pub(super) fn close_and_take(&self) -> Vec<T> {
        let mut state = lock(&self.state);
        state.closed = true;
        let items = Self::take_locked(&mut state, self.batch);
        drop(state);
        // Those waiting for room wake up to a refusal.
        self.room.close();
        items
    }

    /// A batch of `size` taken items is being written.
    pub(super) fn writing(&self, size: usize) {
        lock(&self.state).writing = size as u64;
    }

    /// The first batch of `size` taken items (batches settle in the order they were taken) is
    /// done with; its room is free again, and its waiters hear how it went (a failure with the
    /// last error [`record_error`](Self::record_error) recorded).
    pub(super) fn settle(&self, size: usize, how: Settled) {
        let mut state = lock(&self.state);
        let settled = (size as u64).min(state.taken);
        state.taken -= settled;
        state.writing = 0;
        let done = state.taken_done.pop_front().flatten();
        let verdict = match how {
            Settled::Written => {
                state.written += settled;
                Verdict::Written
            }
            Settled::Failed => {
                state.failed += settled;
                let error = state.last_error.as_deref().unwrap_or("no error recorded");
                Verdict::Failed(Arc::from(error))
            }
        };
        drop(state);
        if let Some(done) = done {
            let _ = done.set(verdict);
        }
        // As many as `accept` took for these items, so the permits never exceed the capacity.
        // (`settled` is at most `size`, a `usize`: the conversion cannot fail.)
        self.room
            .add_permits(usize::try_from(settled).unwrap_or(size));
    }

    /// A write returned `message`; `in_shutdown` when the writer had been told to stop.
    pub(super) fn record_error(&self, message: String, in_shutdown: bool) {
        let mut state = lock(&self.state);
        if in_shutdown {
            state.last_error_in_shutdown = Some(message.clone());
        }
        state.last_error = Some(message);
    }

    /// The writer task is going away: every item it still holds (taken, or waiting in the
    /// buffer) counts as not written because of `why`, and the buffer closes. Returns how many
    /// were counted. The cause also says how many were being written (their outcome is unknown:
    /// the write was cut off) and the last error a write returned during shutdown.
    pub(super) fn abandon(&self, why: &str) -> u64 {
        let mut state = lock(&self.state);
        state.closed = true;
        let buffered = std::mem::take(&mut state.items);
        let count = state.taken + buffered.len() as u64;
        let verdicts = waiter_verdicts(&mut state, why);
        if count > 0 {
            let mut cause = why.to_owned();
            if state.writing > 0 {
                cause.push_str(&format!(
                    "; outcome unknown for the {} being written: the write was cut off",
                    state.writing
                ));
            }
            if let Some(error) = &state.last_error_in_shutdown {
                cause.push_str(&format!("; the last write failed with: {error}"));
            }
            state.not_written += count;
            state.taken = 0;
            state.writing = 0;
            state.cause.get_or_insert(cause);
        }
        drop(state);
        self.room.close();
        for (done, verdict) in verdicts {
            let _ = done.set(verdict);
        }
        // The items are dropped outside the lock: their destructors are not ours.
        drop(buffered);
        count
    }

    /// Counts of what the writer did, taken together.
    pub(super) fn stats(&self) -> BatchStats {
        lock(&self.state).stats()
    }

    /// The counts with the words that explain them.
    pub(super) fn account(&self) -> Account {
        let state = lock(&self.state);
        Account {
            stats: state.stats(),
            cause: state.cause.clone(),
            last_error: state.last_error.clone(),
        }
    }

    /// The writer task is gone and everything it held is counted.
    pub(super) fn finish(&self) {
        self.finished.cancel();
    }

    /// Whether [`finish`](Self::finish) was called.
    pub(super) fn is_finished(&self) -> bool {
        self.finished.is_cancelled()
    }

    /// Resolves once [`finish`](Self::finish) was called.
    pub(super) fn finished(&self) -> WaitForCancellationFuture<'_> {
        self.finished.cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(done: &Done) -> Option<String> {
        done.get().map(|verdict| match verdict {
            Verdict::Written => "written".to_owned(),
            Verdict::Failed(error) => format!("failed: {error}"),
            Verdict::NotWritten(cause) => format!("not written: {cause}"),
        })
    }

    /// Seven items in batches of three, taken at once: each waiter hears its own batch's fate.
    #[test]
    fn each_waiter_hears_the_verdict_of_its_own_batch() {
        let ledger = Ledger::new(100, 3);
        let waits: Vec<Option<Done>> = (0..7)
            .map(|n| {
                let room = ledger.room.try_acquire().unwrap();
                // Items 1 and 4 are pushed: nobody waits for them.
                if n == 1 || n == 4 {
                    ledger.accept(room, n).ok().map(|_| None).unwrap()
                } else {
                    Some(ledger.accept_waited(room, n).ok().unwrap())
                }
            })
            .collect();
        let waits: Vec<Done> = waits.into_iter().flatten().collect();
        // One completion per batch: 0 and 2 share one, 3 and 5 another.
        assert!(Arc::ptr_eq(&waits[0], &waits[1]));
        assert!(Arc::ptr_eq(&waits[2], &waits[3]));
        assert!(!Arc::ptr_eq(&waits[1], &waits[2]));
        assert_eq!(ledger.take(), (0..7).collect::<Vec<_>>());
        ledger.writing(3);
        ledger.settle(3, Settled::Written);
        ledger.writing(3);
        ledger.record_error("check failed".to_owned(), false);
        ledger.settle(3, Settled::Failed);
        ledger.writing(1);
        ledger.abandon("the flush timeout of 5s ran out");
        let heard: Vec<Option<String>> = waits.iter().map(verdict).collect();
        let written = Some("written".to_owned());
        let failed = Some("failed: check failed".to_owned());
        let cut = Some(
            "not written: the flush timeout of 5s ran out; its batch was being written when the \
             write was cut off, so it may or may not be in the database"
                .to_owned(),
        );
        assert_eq!(
            heard,
            [written.clone(), written, failed.clone(), failed, cut]
        );
        let stats = ledger.stats();
        assert_eq!(
            (
                stats.accepted,
                stats.written,
                stats.failed,
                stats.not_written
            ),
            (7, 3, 3, 1)
        );
    }

    /// Items still in the buffer when the writer gives up hear why, with the last error of the
    /// shutdown; a batch of pushed items only makes no completion at all.
    #[test]
    fn buffered_waiters_hear_why_they_were_not_written() {
        let ledger = Ledger::new(100, 2);
        for n in 0..3 {
            ledger.try_accept(n).ok().unwrap();
        }
        let room = ledger.room.try_acquire().unwrap();
        let done = ledger.accept_waited(room, 3).ok().unwrap();
        // Batches 0..2 and 2..4: the waiter is in the second.
        assert_eq!(lock(&ledger.state).buffered_done.len(), 2);
        assert!(lock(&ledger.state).buffered_done[0].is_none());
        ledger.record_error("connection refused".to_owned(), true);
        ledger.abandon("the shutdown budget ran out");
        assert_eq!(
            verdict(&done).as_deref(),
            Some(
                "not written: the shutdown budget ran out; the last write failed with: \
                 connection refused"
            )
        );
        assert!(lock(&ledger.state).taken_done.is_empty());
        let room = ledger.room.try_acquire();
        assert!(room.is_err(), "the buffer closed");
    }
}
