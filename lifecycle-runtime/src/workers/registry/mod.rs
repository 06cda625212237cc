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

use std::cell::Cell;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

mod lists;

use super::node::{Entry, Node, Verdict, flags};
use crate::util::sync::{self, AtomicU64, Mutex, MutexGuard, Ordering};
use lists::Lists;
pub(crate) use lists::{Folded, FoldedEnd};

/// One shard, alone on its cache lines so shards do not slow each other down. The counters are
/// monotonic atomics, bumped only on the calling thread's shard and summed when read.
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    lists: Mutex<Lists>,
    spawned: AtomicU64,
    /// Tasks whose first poll ended with the task finished (registered ones are counted in the
    /// lists, under the lock they take anyway).
    first_polls: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
}

impl Shard {
    fn count_end(&self, cancelled: bool) {
        let counter = if cancelled {
            &self.cancelled
        } else {
            &self.completed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
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
///
/// Indexes of threads that ended are handed out again, so the threads alive at one time have
/// distinct small indexes (and so distinct shards) however many threads came and went: a
/// program that builds a runtime per test, or a blocking pool whose threads come and go, does
/// not end up with two busy workers on one shard.
#[cfg(not(lifecycle_loom))]
#[inline]
fn thread_index() -> usize {
    thread_local! {
        /// The index, once assigned: a plain read on the hot path.
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    match INDEX.with(Cell::get) {
        usize::MAX => assign_thread_index(|index| INDEX.with(|cell| cell.set(index))),
        index => index,
    }
}

/// Takes a free index for this thread, and arranges for it to be given back when the thread
/// ends.
#[cfg(not(lifecycle_loom))]
#[cold]
fn assign_thread_index(remember: impl FnOnce(usize)) -> usize {
    use std::sync::atomic::AtomicUsize;

    use crate::util::lock;

    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static FREE: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

    struct GiveBack(usize);

    impl Drop for GiveBack {
        fn drop(&mut self) {
            lock(&FREE).push(self.0);
        }
    }

    thread_local! {
        static GIVE_BACK: Cell<Option<GiveBack>> = const { Cell::new(None) };
    }
    let index = lock(&FREE)
        .pop()
        .unwrap_or_else(|| NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    // During thread teardown the thread-local may be gone already: then the index is simply not
    // given back (and not remembered either).
    if GIVE_BACK
        .try_with(|slot| slot.set(Some(GiveBack(index))))
        .is_ok()
    {
        remember(index);
    }
    index
}

#[cfg(lifecycle_loom)]
loom::thread_local! {
    /// Under loom, the model says which shard each of its threads uses (0 unless told).
    static MODEL_INDEX: Cell<usize> = Cell::new(0);
}

#[cfg(lifecycle_loom)]
fn thread_index() -> usize {
    MODEL_INDEX.with(Cell::get)
}

/// Under loom: the calling model thread uses shard `index`.
#[cfg(all(test, lifecycle_loom))]
pub(crate) fn model_thread_shard(index: usize) {
    MODEL_INDEX.with(|cell| cell.set(index));
}

impl Registry {
    pub(crate) fn new() -> Registry {
        let cores = std::thread::available_parallelism().map_or(4, usize::from);
        let count = (cores * 4).next_power_of_two().clamp(8, 64);
        // Under loom two shards: enough for a node in another shard than the scanner's, and every
        // scan locks every shard.
        #[cfg(lifecycle_loom)]
        let count = {
            let _ = count;
            2
        };
        Registry {
            shards: (0..count).map(|_| Shard::default()).collect(),
            mask: count - 1,
        }
    }

    fn lists(&self, index: usize) -> MutexGuard<'_, Lists> {
        sync::lock(&self.shards[index].lists)
    }

    #[inline]
    fn local_index(&self) -> usize {
        thread_index() & self.mask
    }

    #[inline]
    fn local(&self) -> &Shard {
        &self.shards[self.local_index()]
    }

    /// A task was spawned (or a thread started: it registers at once, which ends its "first
    /// poll").
    #[inline]
    pub(crate) fn task_spawned(&self) {
        self.local().spawned.fetch_add(1, Ordering::Release);
    }

    /// A task ended in its first poll (it never registered): both counts on one shard.
    pub(crate) fn ended_in_first_poll(&self, cancelled: bool) {
        let shard = self.local();
        shard.count_end(cancelled);
        shard.first_polls.fetch_add(1, Ordering::SeqCst);
    }

    /// Tasks spawned whose first poll has not ended. Summing the first polls before `spawned`
    /// never undercounts: both only grow.
    pub(crate) fn unpolled(&self) -> u64 {
        let registered: u64 = (0..self.shards.len())
            .map(|index| self.lists(index).registered)
            .sum();
        self.unpolled_after(registered)
    }

    /// [`unpolled`](Self::unpolled), given the registered first polls already summed.
    fn unpolled_after(&self, registered: u64) -> u64 {
        let ended: u64 = self
            .shards
            .iter()
            .map(|shard| shard.first_polls.load(Ordering::SeqCst))
            .sum();
        let polled = registered + ended;
        let spawned: u64 = self
            .shards
            .iter()
            .map(|shard| shard.spawned.load(Ordering::Acquire))
            .sum();
        spawned.saturating_sub(polled)
    }

    /// Links `node` into the calling thread's shard, with `waker` to wake it through, and counts
    /// the end of its first poll with it, under the same lock. The node's registration time is
    /// set already.
    ///
    /// # Safety
    ///
    /// `node` is pinned and not linked, and its owner unlinks it (with [`Registry::unlink`])
    /// before it is dropped or moved.
    pub(crate) unsafe fn link(&self, node: Pin<&Node>, waker: Option<Waker>) {
        let node = node.get_ref();
        let index = self.local_index();
        // At most 64 shards.
        node.shard.set(index as u8);
        if node.has_flag(flags::AWAITS_REPORT) {
            node.set_verdict(Verdict::AwaitsReport, false);
        }
        let mut lists = self.lists(index);
        // SAFETY: not linked yet, so no one else sees it; the lock is held for the waker and the
        // push.
        unsafe {
            node.waker.with_mut(|slot| *slot = waker);
            lists.push(node);
        }
        node.set_flag(flags::REGISTERED, true);
        lists.registered += 1;
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
        record: impl FnOnce(&Node, &mut dyn FnMut(FoldedEnd, Instant)),
    ) -> Leaving {
        let mut lists = self.lists(usize::from(node.shard.get()));
        // SAFETY: linked here, by the caller's promise.
        unsafe { lists.remove(node) };
        let lists = &mut *lists;
        record(node, &mut |how, now| lists.fold(node, how, now));
        Leaving {
            shard_settled: lists.is_settled(),
        }
    }

    /// Changes the verdict of a linked node, keeping the settled count right. With the lock held.
    fn set_verdict(lists: &mut Lists, node: &Node, verdict: Verdict, cut_by_budget: bool) {
        let before = node.verdict().settled();
        node.set_verdict(verdict, cut_by_budget);
        match (before, verdict.settled()) {
            (false, true) => lists.settled += 1,
            (true, false) => lists.settled -= 1,
            _ => {}
        }
    }

    /// True when every linked entry has been given up on and no more than `ignored_unpolled`
    /// spawned tasks are still in their first poll: nothing left to wait for.
    ///
    /// Each shard's lists and its count of registered first polls are read together, under its
    /// lock, and `spawned` last: a task that registers in a shard already read was not counted
    /// as polled there, so it still counts as unpolled.
    pub(crate) fn settled(&self, ignored_unpolled: u64) -> bool {
        let mut registered = 0;
        for index in 0..self.shards.len() {
            let lists = self.lists(index);
            if !lists.is_settled() {
                return false;
            }
            registered += lists.registered;
        }
        self.unpolled_after(registered) <= ignored_unpolled
    }

    /// How many entries are linked, one shard locked at a time.
    pub(crate) fn linked(&self) -> usize {
        (0..self.shards.len())
            .map(|index| self.lists(index).len)
            .sum()
    }

    /// Calls `f` on every live entry, one shard locked at a time. `stop_started` is when workers
    /// were told to stop, if they were (entries tell late registrations by it).
    pub(crate) fn for_each(&self, stop_started: Option<Instant>, mut f: impl FnMut(&Entry<'_>)) {
        for index in 0..self.shards.len() {
            self.lists(index)
                .for_each(|node| f(&Entry { node, stop_started }));
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
                f(&Entry {
                    node,
                    stop_started: None,
                });
                // SAFETY: as above.
                cursor = node.links.with(|links| unsafe { (*links).next });
            }
        }
    }

    /// Lets `judge` change the verdict of every live entry (`Some(verdict)`), and, when it does,
    /// say whether the budget cut the worker off.
    pub(crate) fn judge(
        &self,
        stop_started: Option<Instant>,
        mut judge: impl FnMut(&Entry<'_>) -> Option<(Verdict, bool)>,
    ) {
        for index in 0..self.shards.len() {
            let mut lists = self.lists(index);
            // Each verdict is set while its node is at hand (a million nodes are a million cache
            // misses; a second pass would pay them twice); the settled count is fixed after.
            let (mut newly_settled, mut unsettled) = (0, 0);
            lists.for_each(|node| {
                if let Some((verdict, cut_by_budget)) = judge(&Entry { node, stop_started }) {
                    let before = node.verdict().settled();
                    node.set_verdict(verdict, cut_by_budget);
                    match (before, verdict.settled()) {
                        (false, true) => newly_settled += 1,
                        (true, false) => unsettled += 1,
                        _ => {}
                    }
                }
            });
            lists.settled = lists.settled + newly_settled - unsettled;
        }
    }

    /// Marks a linked node (by its owner) as awaiting the report, or not, unless shutdown judged
    /// it otherwise already.
    pub(crate) fn set_awaiting(&self, node: &Node, awaiting: bool) {
        let mut lists = self.lists(usize::from(node.shard.get()));
        match (awaiting, node.verdict()) {
            (true, Verdict::None) => {
                Registry::set_verdict(&mut lists, node, Verdict::AwaitsReport, false);
            }
            (false, Verdict::AwaitsReport) => {
                Registry::set_verdict(&mut lists, node, Verdict::None, false);
            }
            _ => {}
        }
    }

    /// Takes back the "awaits the report" mark of the node at `node`, if that node is still
    /// linked (otherwise it may be gone: the address is only compared, never followed).
    pub(crate) fn unmark_awaiting_if_linked(&self, node: *const Node) {
        for index in 0..self.shards.len() {
            let mut lists = self.lists(index);
            let mut found = None;
            lists.for_each(|linked| {
                if std::ptr::eq(linked, node) {
                    found = Some(NonNull::from(linked));
                }
            });
            if let Some(linked) = found {
                // SAFETY: linked, and the lock is held.
                let linked = unsafe { linked.as_ref() };
                if linked.verdict() == Verdict::AwaitsReport {
                    Registry::set_verdict(&mut lists, linked, Verdict::None, false);
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

    /// The folded rows so far, left in place (a live view).
    pub(crate) fn peek_folded(&self) -> Vec<Folded> {
        let mut rows = Vec::new();
        for index in 0..self.shards.len() {
            rows.extend(self.lists(index).stopped.iter().cloned());
        }
        rows
    }

    /// Takes the folded rows (stopped when told, aborted) of every shard.
    pub(crate) fn take_folded(&self) -> Vec<Folded> {
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
        self.local().count_end(cancelled);
    }
}

#[cfg(test)]
mod tests;
