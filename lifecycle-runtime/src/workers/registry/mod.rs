//! The registry of live workers: O(1) to add and remove, sharded by OS thread, never locked across
//! an `.await`, never more than one shard locked at a time, and no allocation per worker.
//!
//! Each worker carries its own registry [`Node`] (inside the task's future, so inside tokio's own
//! allocation of the task); a shard is a mutex over two intrusive doubly-linked lists of nodes:
//! workers, and `#[background]` loops (which the coordinator wakes at the stop signal, so it never
//! scans every task to find them).
//!
//! A task enters the registry lazily: when its first poll returns `Pending`, into the shard of the
//! thread that polled it. A task that finishes in its first poll never takes a lock. Until its
//! first poll ends a task is only counted: "unpolled" is the sum of `spawned` minus the sum of
//! `first_polls` over the shards, so "nothing left to wait for" still covers it. Every counter is
//! bumped on the calling thread's own shard, so counting never contends. Each shard sits on its
//! own cache lines.
//!
//! # Safety
//!
//! The lists hold raw pointers to nodes that live elsewhere. Three rules keep that sound:
//! 1. A node is linked only while pinned (inside a spawned task, or a pinned box for threads),
//!    and its owner unlinks it before it is dropped (`WorkerGuard` and `ThreadGuard` do so
//!    whatever way the worker ends). Pinning guarantees the memory is not reused before that.
//! 2. A node's links are read or written only with its shard's lock held, and a linked node is
//!    only dereferenced by others with that lock held, so it cannot be unlinked (and freed) under
//!    them.
//! 3. Fields others read are either set before the node is linked (and the lock publishes them),
//!    atomics, or written only with the lock held. The owner reaches its node through `&Node`
//!    only; the node is `!Unpin`, as tokio's own intrusive lists are.

use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

mod lists;

use super::node::{Entry, Node, Verdict};
use crate::util::lock;
use lists::Lists;
pub(crate) use lists::Stopped;

/// One shard, alone on its cache lines so shards do not slow each other down. The counters are
/// monotonic atomics, bumped only on the calling thread's shard and summed when read.
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    lists: Mutex<Lists>,
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

/// How a worker leaves: what the owner records under the shard lock before the node is gone.
pub(crate) struct Leaving {
    /// Whether the shard has nothing left to wait for now.
    pub(crate) shard_settled: bool,
}

pub(crate) struct Registry {
    shards: Box<[Shard]>,
    /// `shards.len() - 1`; the length is a power of two.
    mask: usize,
}

/// Gives each OS thread a stable shard index, assigned on first use.
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|index| *index)
}

impl Registry {
    pub(crate) fn new() -> Registry {
        let cores = std::thread::available_parallelism().map_or(4, usize::from);
        let count = (cores * 2).next_power_of_two().clamp(4, 64);
        Registry {
            shards: (0..count).map(|_| Shard::default()).collect(),
            mask: count - 1,
        }
    }

    fn lists(&self, index: usize) -> MutexGuard<'_, Lists> {
        lock(&self.shards[index].lists)
    }

    fn local_index(&self) -> usize {
        thread_index() & self.mask
    }

    fn local(&self) -> &Shard {
        &self.shards[self.local_index()]
    }

    /// A task was spawned.
    pub(crate) fn task_spawned(&self) {
        self.local().spawned.fetch_add(1, Ordering::Release);
    }

    /// A thread was started: threads register when they start, so their "first poll" is over at
    /// once.
    pub(crate) fn thread_spawned(&self) {
        let shard = self.local();
        shard.spawned.fetch_add(1, Ordering::Release);
        shard.first_polls.fetch_add(1, Ordering::SeqCst);
    }

    /// A task's first poll ended with it registered. SeqCst, paired with the phase (see
    /// `Workers::phase`).
    pub(crate) fn first_poll_done(&self) {
        self.local().first_polls.fetch_add(1, Ordering::SeqCst);
    }

    /// A task ended in its first poll (it never registered): both counts on one shard.
    pub(crate) fn ended_in_first_poll(&self, cancelled: bool) {
        let shard = self.local();
        if cancelled {
            shard.cancelled.fetch_add(1, Ordering::Relaxed);
        } else {
            shard.completed.fetch_add(1, Ordering::Relaxed);
        }
        shard.first_polls.fetch_add(1, Ordering::SeqCst);
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

    /// Links `node` into the calling thread's shard.
    ///
    /// # Safety
    ///
    /// `node` is pinned and not linked, and its owner unlinks it (with [`Registry::unlink`])
    /// before it is dropped or moved.
    pub(crate) unsafe fn link(
        &self,
        node: Pin<&Node>,
        waker: Option<Waker>,
        verdict: Verdict,
        task_id: Option<tokio::task::Id>,
        started: Instant,
    ) {
        let node = node.get_ref();
        let index = self.local_index();
        node.started.set(Some(started));
        node.task_id.set(task_id);
        // At most 64 shards.
        node.shard.set(index as u16);
        node.verdict.store(verdict as u8, Ordering::Relaxed);
        let mut lists = self.lists(index);
        // SAFETY: not linked yet, so no one else sees it; the lock is held for the waker and the
        // push.
        unsafe {
            *node.waker.get() = waker;
            lists.push(node);
        }
    }

    /// Unlinks `node`, calling `record` with the shard's folded "stopped" rows while the lock is
    /// still held, so nobody sees the worker gone before its outcome is recorded.
    ///
    /// # Safety
    ///
    /// `node` is linked in this registry, and the caller is its owner.
    pub(crate) unsafe fn unlink(
        &self,
        node: &Node,
        record: impl FnOnce(&Node, &mut dyn FnMut(Instant)),
    ) -> Leaving {
        let mut lists = self.lists(usize::from(node.shard.get()));
        // SAFETY: linked here, by the caller's promise.
        unsafe { lists.remove(node) };
        let meta = &node.meta;
        let lists = &mut *lists;
        record(node, &mut |now| lists.fold_stopped(meta, now));
        Leaving {
            shard_settled: lists.is_settled(),
        }
    }

    /// Replaces the waker of a linked node (by its owner).
    pub(crate) fn set_waker(&self, node: &Node, waker: &Waker) {
        let _lists = self.lists(usize::from(node.shard.get()));
        // SAFETY: the owner writes with the lock held.
        unsafe { *node.waker.get() = Some(waker.clone()) };
    }

    /// Whether `waker` is the one `node` holds (by its owner, without the lock).
    pub(crate) fn holds_waker(node: &Node, waker: &Waker) -> bool {
        // SAFETY: only the owner writes it, and the owner is the caller.
        unsafe { (*node.waker.get()).as_ref() }.is_some_and(|known| known.will_wake(waker))
    }

    /// Changes the verdict of a linked node, keeping the settled count right.
    fn set_verdict(lists: &mut Lists, node: &Node, verdict: Verdict) {
        let before = node.verdict().settled();
        node.verdict.store(verdict as u8, Ordering::Release);
        match (before, verdict.settled()) {
            (false, true) => lists.settled += 1,
            (true, false) => lists.settled -= 1,
            _ => {}
        }
    }

    /// True when every linked entry has been given up on and no more than `ignored_unpolled`
    /// spawned tasks are still in their first poll: nothing left to wait for.
    pub(crate) fn settled(&self, ignored_unpolled: u64) -> bool {
        let entries_settled = (0..self.shards.len()).all(|index| self.lists(index).is_settled());
        entries_settled && self.unpolled() <= ignored_unpolled
    }

    /// Calls `f` on every live entry, one shard locked at a time.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Entry<'_>)) {
        for index in 0..self.shards.len() {
            self.lists(index).for_each(|node| f(&Entry { node }));
        }
    }

    /// Calls `f` on every `#[background]` loop.
    pub(crate) fn for_each_loop(&self, mut f: impl FnMut(&Entry<'_>)) {
        for index in 0..self.shards.len() {
            let lists = self.lists(index);
            let mut cursor = lists.loops.head;
            while let Some(node) = cursor {
                // SAFETY: the lock is held; linked nodes are alive.
                let node = unsafe { node.as_ref() };
                f(&Entry { node });
                // SAFETY: as above.
                cursor = unsafe { (*node.links.get()).next };
            }
        }
    }

    /// Lets `judge` change the verdict of every live entry (`Some(verdict)`), and, when it does,
    /// whether the budget cut the worker off.
    pub(crate) fn judge(&self, mut judge: impl FnMut(&Entry<'_>) -> Option<(Verdict, bool)>) {
        for index in 0..self.shards.len() {
            let mut lists = self.lists(index);
            let mut changes = Vec::new();
            lists.for_each(|node| {
                if let Some(change) = judge(&Entry { node }) {
                    changes.push((NonNull::from(node), change));
                }
            });
            for (node, (verdict, cut_by_budget)) in changes {
                // SAFETY: still linked: the lock was held throughout.
                let node = unsafe { node.as_ref() };
                node.cut_by_budget.store(cut_by_budget, Ordering::Relaxed);
                Registry::set_verdict(&mut lists, node, verdict);
            }
        }
    }

    /// Marks the linked node of task `id` (if any) as awaiting the report, or not.
    pub(crate) fn mark_awaiting(&self, id: tokio::task::Id, awaiting: bool) {
        for index in 0..self.shards.len() {
            let mut lists = self.lists(index);
            let mut found = None;
            lists.for_each(|node| {
                if node.task_id() == Some(id) {
                    found = Some(NonNull::from(node));
                }
            });
            if let Some(node) = found {
                // SAFETY: still linked: the lock was held throughout.
                let node = unsafe { node.as_ref() };
                match (awaiting, node.verdict()) {
                    (true, Verdict::None) => {
                        Registry::set_verdict(&mut lists, node, Verdict::AwaitsReport);
                    }
                    (false, Verdict::AwaitsReport) => {
                        Registry::set_verdict(&mut lists, node, Verdict::None);
                    }
                    _ => {}
                }
                return;
            }
        }
    }

    /// The least stop timeout of anything ever registered (a lower bound for the live ones).
    pub(crate) fn min_stop_timeout(&self) -> Option<Duration> {
        (0..self.shards.len())
            .filter_map(|index| self.lists(index).min_stop_timeout)
            .min()
    }

    /// Takes the folded "stopped when told" rows of every shard.
    pub(crate) fn take_stopped(&self) -> Vec<Stopped> {
        let mut rows = Vec::new();
        for index in 0..self.shards.len() {
            let mut lists = self.lists(index);
            lists.last_stopped = 0;
            rows.append(&mut lists.stopped);
        }
        rows
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

    /// Counts a registered worker's end on the calling thread's shard.
    pub(crate) fn count_end(&self, cancelled: bool) {
        let shard = self.local();
        if cancelled {
            shard.cancelled.fetch_add(1, Ordering::Relaxed);
        } else {
            shard.completed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
