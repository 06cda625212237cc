//! The registry of live workers (tasks, threads, `main`): O(1) insert and remove, sharded by OS
//! thread, never locked across an `.await`, never more than one shard locked at a time.
//!
//! A task enters the registry lazily: when its first poll returns `Pending`, into the shard of
//! the thread that polled it. A task that finishes on its first poll never takes a lock. Until its
//! first poll ends a task is only counted: "unpolled" is the sum of `spawned` minus the sum of
//! `first_polls` over the shards, so "nothing left to wait for" still covers it. Every counter is
//! bumped on the calling thread's own shard, so counting never contends. Threads enter the
//! registry when they start. Each shard sits on its own cache lines.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use slab::Slab;
use tokio::time::Instant;

use crate::coordinator::lock;
use crate::snapshot::StateCell;
use crate::task::TaskName;

/// What kind of worker a registry entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum WorkerKind {
    Task,
    Thread,
    Main,
}

/// How the coordinator can stop a worker that ignores the shutdown signal.
#[derive(Debug)]
pub(crate) enum Control {
    /// A task, woken through its waker to notice it was aborted.
    Task(Waker),
    /// OS threads cannot be aborted: one that does not stop is reported as leaked.
    Thread,
}

/// What shutdown decided about a worker that did not stop in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    None,
    Aborted,
    Leaked,
    /// A task awaiting the shutdown report: not waited for, since it waits for shutdown.
    AwaitsReport,
}

impl Verdict {
    /// Whether shutdown no longer waits for the worker.
    fn settled(self) -> bool {
        matches!(self, Verdict::Leaked | Verdict::AwaitsReport)
    }
}

/// One live task or thread.
#[derive(Debug)]
pub(crate) struct WorkerEntry {
    pub(crate) name: TaskName,
    pub(crate) kind: WorkerKind,
    pub(crate) stop_timeout: Duration,
    pub(crate) started: Instant,
    pub(crate) control: Control,
    pub(crate) state: Option<std::sync::Arc<StateCell>>,
    pub(crate) verdict: Verdict,
    /// Whether the shutdown budget, not the worker's own stop timeout, set its deadline.
    pub(crate) cut_by_budget: bool,
    /// The tokio task, for naming who holds what (a database connection, say).
    pub(crate) task_id: Option<tokio::task::Id>,
}

impl WorkerEntry {
    pub(crate) fn new(
        name: TaskName,
        kind: WorkerKind,
        stop_timeout: Duration,
        control: Control,
    ) -> WorkerEntry {
        WorkerEntry {
            name,
            kind,
            stop_timeout,
            started: Instant::now(),
            control,
            state: None,
            verdict: Verdict::None,
            cut_by_budget: false,
            task_id: None,
        }
    }
}

/// How a worker ended, as seen by its own guard.
#[derive(Debug)]
pub(crate) enum Ended {
    Completed,
    Failed(String),
    Panicked(String),
    /// Ran past its group's per-task limit and was cancelled.
    TimedOut(Duration),
    /// Shutdown began while it waited for a permit of this group.
    NotStarted(String),
    /// Dropped before completion: aborted by shutdown, by its handle, or by the runtime.
    Cancelled,
}

impl Ended {
    fn is_cancelled(&self) -> bool {
        matches!(self, Ended::Cancelled | Ended::NotStarted(_))
    }
}

#[derive(Debug, Default)]
struct Entries {
    slab: Slab<WorkerEntry>,
    /// Entries shutdown no longer waits for: given up on (threads that would not stop, tasks stuck
    /// in sync code) or awaiting the report.
    leaked: usize,
}

/// One shard, alone on its cache lines so shards do not slow each other down. The counters are
/// monotonic atomics, bumped only on the calling thread's shard and summed when read.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    entries: Mutex<Entries>,
    spawned: AtomicU64,
    /// Workers whose first poll ended (registered or finished); threads count at start.
    first_polls: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
}

/// Totals over every shard.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Totals {
    pub(crate) spawned: u64,
    pub(crate) completed: u64,
    pub(crate) cancelled: u64,
}

#[derive(Debug)]
pub(crate) struct WorkerRegistry {
    shards: Box<[Shard]>,
    /// `shards.len() - 1`; the length is a power of two.
    mask: usize,
    shift: u32,
}

/// Gives each OS thread a stable shard index, assigned on first use.
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|index| *index)
}

impl WorkerRegistry {
    pub(crate) fn new() -> WorkerRegistry {
        let cores = std::thread::available_parallelism().map_or(4, usize::from);
        let count = (cores * 2).next_power_of_two().clamp(4, 64);
        WorkerRegistry {
            shards: (0..count).map(|_| Shard::default()).collect(),
            mask: count - 1,
            shift: count.trailing_zeros(),
        }
    }

    fn entries(&self, index: usize) -> MutexGuard<'_, Entries> {
        lock(&self.shards[index].entries)
    }

    fn split(&self, key: usize) -> (usize, usize) {
        (key & self.mask, key >> self.shift)
    }

    /// The calling thread's shard.
    pub(crate) fn local_shard(&self) -> usize {
        thread_index() & self.mask
    }

    fn local(&self) -> &Shard {
        &self.shards[self.local_shard()]
    }

    /// A task was spawned.
    pub(crate) fn task_spawned(&self) {
        self.local().spawned.fetch_add(1, Ordering::Release);
    }

    /// A task's first poll ended (it registered, or finished).
    pub(crate) fn first_poll_done(&self) {
        self.local().first_polls.fetch_add(1, Ordering::SeqCst);
    }

    /// A task ended in its first poll (it never registered): both counts on one shard.
    pub(crate) fn ended_in_first_poll(&self, ended: &Ended) {
        let shard = self.local();
        if ended.is_cancelled() {
            shard.cancelled.fetch_add(1, Ordering::Relaxed);
        } else {
            shard.completed.fetch_add(1, Ordering::Relaxed);
        }
        shard.first_polls.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a worker's end.
    pub(crate) fn count_end(&self, ended: &Ended) {
        let shard = self.local();
        if ended.is_cancelled() {
            shard.cancelled.fetch_add(1, Ordering::Relaxed);
        } else {
            shard.completed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Tasks spawned whose first poll has not ended. Summing `first_polls` before `spawned` never
    /// undercounts: both only grow.
    pub(crate) fn unpolled(&self) -> u64 {
        let polled: u64 = self
            .shards
            .iter()
            .map(|shard| shard.first_polls.load(Ordering::SeqCst))
            .sum();
        let spawned: u64 = self
            .shards
            .iter()
            .map(|shard| shard.spawned.load(Ordering::Acquire))
            .sum();
        spawned.saturating_sub(polled)
    }

    /// Inserts into the calling thread's shard and returns the key.
    pub(crate) fn insert(&self, entry: WorkerEntry) -> usize {
        let index = self.local_shard();
        let slot = self.entries(index).slab.insert(entry);
        (slot << self.shift) | index
    }

    /// Counts a thread as spawned (threads register when they start, so their "first poll" is
    /// over at once).
    pub(crate) fn thread_spawned(&self) {
        let shard = self.local();
        shard.spawned.fetch_add(1, Ordering::Release);
        shard.first_polls.fetch_add(1, Ordering::SeqCst);
    }

    /// Replaces the waker a registered task is woken through.
    pub(crate) fn set_waker(&self, key: usize, waker: Waker) {
        let (index, slot) = self.split(key);
        if let Some(entry) = self.entries(index).slab.get_mut(slot) {
            entry.control = Control::Task(waker);
        }
    }

    /// Whether shutdown aborted this registered task.
    pub(crate) fn is_aborted(&self, key: usize) -> bool {
        let (index, slot) = self.split(key);
        self.entries(index)
            .slab
            .get(slot)
            .is_some_and(|entry| entry.verdict == Verdict::Aborted)
    }

    /// Removes a registered worker, calling `f` on its entry while the shard is still locked (so
    /// nobody sees it gone before `f` is done). Returns what `f` returned and whether the shard
    /// has nothing left to wait for.
    pub(crate) fn remove_with<R>(
        &self,
        key: usize,
        ended: &Ended,
        f: impl FnOnce(&WorkerEntry) -> R,
    ) -> Option<(R, bool)> {
        let (index, slot) = self.split(key);
        let mut entries = self.entries(index);
        let entry = entries.slab.try_remove(slot)?;
        if entry.verdict.settled() {
            entries.leaked -= 1;
        }
        let result = f(&entry);
        let settled = entries.slab.len() == entries.leaked;
        drop(entries);
        self.count_end(ended);
        Some((result, settled))
    }

    /// True when every remaining entry has been given up on and no more than `ignored_unpolled`
    /// spawned tasks are still in their first poll: nothing left to wait for.
    pub(crate) fn settled(&self, ignored_unpolled: u64) -> bool {
        let entries_settled = (0..self.shards.len()).all(|index| {
            let entries = self.entries(index);
            entries.slab.len() == entries.leaked
        });
        entries_settled && self.unpolled() <= ignored_unpolled
    }

    /// Calls `f` on every live entry, one shard locked at a time.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&WorkerEntry)) {
        for index in 0..self.shards.len() {
            for (_, entry) in self.entries(index).slab.iter() {
                f(entry);
            }
        }
    }

    /// Calls `f` on every live entry; `f` returns true when it marked the entry as no longer
    /// waited for (leaked, or awaiting the report).
    pub(crate) fn for_each_mut(&self, mut f: impl FnMut(&mut WorkerEntry) -> bool) {
        for index in 0..self.shards.len() {
            let mut entries = self.entries(index);
            let mut leaked = 0;
            for (_, entry) in entries.slab.iter_mut() {
                if f(entry) {
                    leaked += 1;
                }
            }
            entries.leaked += leaked;
        }
    }

    pub(crate) fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for shard in self.shards.iter() {
            totals.spawned += shard.spawned.load(Ordering::Relaxed);
            totals.completed += shard.completed.load(Ordering::Relaxed);
            totals.cancelled += shard.cancelled.load(Ordering::Relaxed);
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &'static str) -> WorkerEntry {
        WorkerEntry::new(
            name.into(),
            WorkerKind::Thread,
            Duration::from_secs(1),
            Control::Thread,
        )
    }

    #[test]
    fn keys_find_their_shard_from_any_thread() {
        let registry = std::sync::Arc::new(WorkerRegistry::new());
        let key = registry.insert(entry("here"));
        let remote = registry.clone();
        let other_key = std::thread::spawn(move || remote.insert(entry("there")))
            .join()
            .unwrap();
        let mut names = Vec::new();
        registry.for_each(|entry| names.push(entry.name.to_string()));
        names.sort();
        assert_eq!(names, ["here", "there"]);
        assert!(!registry.settled(0));
        let (removed, _) = registry
            .remove_with(other_key, &Ended::Completed, |entry| entry.name.to_string())
            .unwrap();
        assert_eq!(removed, "there");
        registry
            .remove_with(key, &Ended::Cancelled, |_| ())
            .unwrap();
        assert!(registry.settled(0));
        let totals = registry.totals();
        assert_eq!((totals.completed, totals.cancelled), (1, 1));
        assert!(
            registry
                .remove_with(key, &Ended::Completed, |_| ())
                .is_none(),
            "removed once"
        );
    }

    #[test]
    fn unpolled_tasks_keep_the_registry_unsettled() {
        let registry = std::sync::Arc::new(WorkerRegistry::new());
        registry.task_spawned();
        assert!(!registry.settled(0));
        assert!(registry.settled(1), "unless they are given up on");
        assert_eq!(registry.unpolled(), 1);
        // The first poll ends on another thread: the sums still add up.
        let remote = registry.clone();
        std::thread::spawn(move || {
            remote.first_poll_done();
            remote.count_end(&Ended::Completed);
        })
        .join()
        .unwrap();
        assert!(registry.settled(0));
        let totals = registry.totals();
        assert_eq!((totals.spawned, totals.completed), (1, 1));
    }

    #[test]
    fn leaked_entries_count_as_settled() {
        let registry = WorkerRegistry::new();
        let key = registry.insert(entry("stuck"));
        assert!(!registry.settled(0));
        registry.for_each_mut(|entry| {
            entry.verdict = Verdict::Leaked;
            true
        });
        assert!(registry.settled(0));
        registry
            .remove_with(key, &Ended::Completed, |_| ())
            .unwrap();
        assert!(registry.settled(0));
    }
}
