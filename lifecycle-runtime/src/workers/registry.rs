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

use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use super::{TaskName, WorkerKind};
use crate::snapshot::StateCell;
use crate::util::lock;

/// What shutdown decided about a worker that did not stop in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Verdict {
    None = 0,
    Aborted = 1,
    Leaked = 2,
    /// A task awaiting the shutdown report: not waited for, since it waits for shutdown.
    AwaitsReport = 3,
}

impl Verdict {
    fn from_u8(value: u8) -> Verdict {
        match value {
            1 => Verdict::Aborted,
            2 => Verdict::Leaked,
            3 => Verdict::AwaitsReport,
            _ => Verdict::None,
        }
    }

    /// Whether shutdown no longer waits for the worker.
    fn settled(self) -> bool {
        matches!(self, Verdict::Leaked | Verdict::AwaitsReport)
    }
}

/// What a worker is, fixed when it is spawned.
#[derive(Debug)]
pub(crate) struct WorkerMeta {
    pub(crate) name: TaskName,
    pub(crate) kind: WorkerKind,
    /// Nanoseconds, saturating (584 years means "no limit", as `Duration::MAX` does): half the
    /// size of a `Duration` in every task.
    stop_timeout_nanos: u64,
    /// For `#[background]` loops: their state, for snapshots (and the mark of a loop).
    pub(crate) state: Option<Arc<StateCell>>,
}

impl WorkerMeta {
    pub(crate) fn new(
        name: TaskName,
        kind: WorkerKind,
        stop_timeout: Duration,
        state: Option<Arc<StateCell>>,
    ) -> WorkerMeta {
        WorkerMeta {
            name,
            kind,
            stop_timeout_nanos: u64::try_from(stop_timeout.as_nanos()).unwrap_or(u64::MAX),
            state,
        }
    }

    pub(crate) fn stop_timeout(&self) -> Duration {
        Duration::from_nanos(self.stop_timeout_nanos)
    }

    pub(crate) fn is_loop(&self) -> bool {
        self.state.is_some()
    }
}

#[derive(Default)]
struct Links {
    prev: Option<NonNull<Node>>,
    next: Option<NonNull<Node>>,
}

/// One worker's place in the registry, carried by the worker itself.
pub(crate) struct Node {
    /// Guarded by the shard's lock.
    links: UnsafeCell<Links>,
    /// The waker shutdown wakes the task through. Written by the owner with the lock held; read
    /// by the owner without it, by others with it.
    waker: UnsafeCell<Option<Waker>>,
    pub(crate) meta: WorkerMeta,
    /// Set before linking, read-only after.
    started: Cell<Option<Instant>>,
    task_id: Cell<Option<tokio::task::Id>>,
    shard: Cell<u16>,
    /// A [`Verdict`]; written with the lock held.
    verdict: AtomicU8,
    /// Whether the shutdown budget, not the worker's own stop timeout, set its deadline.
    cut_by_budget: AtomicBool,
    _pinned: PhantomPinned,
}

// SAFETY: see the module's rules: shared fields are atomics or guarded by the shard lock, and the
// `Cell`s are written only by the owner before the node is linked.
unsafe impl Send for Node {}
// SAFETY: as above.
unsafe impl Sync for Node {}

impl Node {
    pub(crate) fn new(meta: WorkerMeta) -> Node {
        Node {
            links: UnsafeCell::new(Links::default()),
            waker: UnsafeCell::new(None),
            meta,
            started: Cell::new(None),
            task_id: Cell::new(None),
            shard: Cell::new(0),
            verdict: AtomicU8::new(Verdict::None as u8),
            cut_by_budget: AtomicBool::new(false),
            _pinned: PhantomPinned,
        }
    }

    pub(crate) fn verdict(&self) -> Verdict {
        Verdict::from_u8(self.verdict.load(Ordering::Acquire))
    }

    pub(crate) fn cut_by_budget(&self) -> bool {
        self.cut_by_budget.load(Ordering::Relaxed)
    }

    /// When it registered (for a task: its first wait).
    pub(crate) fn started(&self) -> Instant {
        self.started.get().unwrap_or_else(Instant::now)
    }

    pub(crate) fn task_id(&self) -> Option<tokio::task::Id> {
        self.task_id.get()
    }

    /// The waker, cloned. With the lock held, or by the owner.
    fn waker(&self) -> Option<Waker> {
        // SAFETY: written only by the owner with the lock held; see the module's rules.
        unsafe { (*self.waker.get()).clone() }
    }

    fn list(&self) -> ListId {
        if self.meta.is_loop() {
            ListId::Loops
        } else {
            ListId::Workers
        }
    }
}

/// A view of one live node, handed to callbacks while its shard is locked.
pub(crate) struct Entry<'a> {
    node: &'a Node,
}

impl Entry<'_> {
    pub(crate) fn meta(&self) -> &WorkerMeta {
        &self.node.meta
    }

    pub(crate) fn started(&self) -> Instant {
        self.node.started()
    }

    pub(crate) fn task_id(&self) -> Option<tokio::task::Id> {
        self.node.task_id()
    }

    pub(crate) fn verdict(&self) -> Verdict {
        self.node.verdict()
    }

    pub(crate) fn waker(&self) -> Option<Waker> {
        self.node.waker()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ListId {
    Workers,
    Loops,
}

#[derive(Default)]
struct List {
    head: Option<NonNull<Node>>,
}

/// Workers of one name that stopped when told, folded as they end (the usual outcome needs no
/// record of its own).
#[derive(Debug, Clone)]
pub(crate) struct Stopped {
    pub(crate) name: TaskName,
    pub(crate) kind: WorkerKind,
    pub(crate) count: usize,
    pub(crate) last_end: Instant,
}

#[derive(Default)]
struct Lists {
    workers: List,
    loops: List,
    len: usize,
    /// Entries shutdown no longer waits for (leaked, or awaiting the report).
    settled: usize,
    /// The least stop timeout of anything registered here: a lower bound for step 3's first wait.
    min_stop_timeout: Option<Duration>,
    stopped: Vec<Stopped>,
    /// Where the last fold landed: workers of one name tend to end together.
    last_stopped: usize,
}

// SAFETY: the pointers are dereferenced only with the shard's lock held (module rules).
unsafe impl Send for Lists {}

impl Lists {
    fn list(&mut self, id: ListId) -> &mut List {
        match id {
            ListId::Workers => &mut self.workers,
            ListId::Loops => &mut self.loops,
        }
    }

    /// Pushes `node` at the head of its list.
    ///
    /// # Safety
    ///
    /// `node` is pinned, not linked, and stays alive until unlinked.
    unsafe fn push(&mut self, node: &Node) {
        let id = node.list();
        let list = self.list(id);
        let ptr = NonNull::from(node);
        // SAFETY: the lock is held (we have `&mut self`); `head` is a live linked node.
        unsafe {
            *node.links.get() = Links {
                prev: None,
                next: list.head,
            };
            if let Some(head) = list.head {
                (*head.as_ref().links.get()).prev = Some(ptr);
            }
        }
        list.head = Some(ptr);
        self.len += 1;
        if node.verdict().settled() {
            self.settled += 1;
        }
        let timeout = node.meta.stop_timeout();
        self.min_stop_timeout = Some(self.min_stop_timeout.map_or(timeout, |t| t.min(timeout)));
    }

    /// Unlinks `node`.
    ///
    /// # Safety
    ///
    /// `node` is linked in these lists.
    unsafe fn remove(&mut self, node: &Node) {
        let id = node.list();
        // SAFETY: the lock is held; `node` and its neighbours are linked, live nodes.
        unsafe {
            let links = std::mem::take(&mut *node.links.get());
            match links.prev {
                Some(prev) => (*prev.as_ref().links.get()).next = links.next,
                None => self.list(id).head = links.next,
            }
            if let Some(next) = links.next {
                (*next.as_ref().links.get()).prev = links.prev;
            }
        }
        self.len -= 1;
        if node.verdict().settled() {
            self.settled -= 1;
        }
    }

    fn is_settled(&self) -> bool {
        self.len == self.settled
    }

    /// Every linked node, workers then loops.
    fn for_each(&self, mut f: impl FnMut(&Node)) {
        for head in [self.workers.head, self.loops.head] {
            let mut cursor = head;
            while let Some(node) = cursor {
                // SAFETY: the lock is held (we have `&self` through the guard); linked nodes are
                // alive.
                let node = unsafe { node.as_ref() };
                f(node);
                // SAFETY: as above.
                cursor = unsafe { (*node.links.get()).next };
            }
        }
    }

    /// Folds one more worker that stopped when told.
    fn fold_stopped(&mut self, meta: &WorkerMeta, now: Instant) {
        let same = |row: &Stopped| row.kind == meta.kind && row.name.same_as(&meta.name);
        let at = match self.stopped.get(self.last_stopped) {
            Some(row) if same(row) => Some(self.last_stopped),
            _ => self.stopped.iter().position(same),
        };
        match at {
            Some(at) => {
                let row = &mut self.stopped[at];
                row.count += 1;
                row.last_end = row.last_end.max(now);
                self.last_stopped = at;
            }
            None => {
                self.last_stopped = self.stopped.len();
                self.stopped.push(Stopped {
                    name: meta.name.clone(),
                    kind: meta.kind,
                    count: 1,
                    last_end: now,
                });
            }
        }
    }
}

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
mod tests {
    use super::*;

    fn node(name: &'static str, stop_timeout: u64) -> Pin<Box<Node>> {
        Box::pin(Node::new(WorkerMeta::new(
            name.into(),
            WorkerKind::Thread,
            Duration::from_secs(stop_timeout),
            None,
        )))
    }

    fn link(registry: &Registry, node: &Pin<Box<Node>>) {
        // SAFETY: pinned in a box the test unlinks before dropping.
        unsafe { registry.link(node.as_ref(), None, Verdict::None, None, Instant::now()) };
    }

    fn unlink(registry: &Registry, node: &Pin<Box<Node>>) -> bool {
        // SAFETY: linked in `registry` by this test.
        unsafe { registry.unlink(node, |_, _| {}) }.shard_settled
    }

    fn names(registry: &Registry) -> Vec<String> {
        let mut names = Vec::new();
        registry.for_each(|entry| names.push(entry.meta().name.to_string()));
        names.sort();
        names
    }

    #[test]
    fn nodes_link_and_unlink_from_any_thread_in_any_order() {
        let registry = Arc::new(Registry::new());
        let (a, b, c) = (node("a", 1), node("b", 1), node("c", 1));
        link(&registry, &a);
        link(&registry, &b);
        let remote = registry.clone();
        let c = std::thread::spawn(move || {
            link(&remote, &c);
            c
        })
        .join()
        .unwrap();
        assert_eq!(names(&registry), ["a", "b", "c"]);
        assert!(!registry.settled(0));
        // The middle of a list, then its head, then another shard's only node.
        assert!(!unlink(&registry, &a));
        assert_eq!(names(&registry), ["b", "c"]);
        assert!(unlink(&registry, &b), "this shard is empty now");
        assert!(!registry.settled(0), "c is still linked elsewhere");
        unlink(&registry, &c);
        assert!(registry.settled(0));
        assert!(names(&registry).is_empty());
    }

    #[test]
    fn loops_have_their_own_list() {
        let registry = Registry::new();
        let plain = node("plain", 1);
        let looping = Box::pin(Node::new(WorkerMeta::new(
            "loop".into(),
            WorkerKind::Task,
            Duration::from_secs(1),
            Some(Arc::new(StateCell::default())),
        )));
        link(&registry, &plain);
        link(&registry, &looping);
        let mut loops = Vec::new();
        registry.for_each_loop(|entry| loops.push(entry.meta().name.to_string()));
        assert_eq!(loops, ["loop"]);
        assert_eq!(names(&registry), ["loop", "plain"]);
        unlink(&registry, &looping);
        unlink(&registry, &plain);
    }

    #[test]
    fn unpolled_tasks_keep_the_registry_unsettled() {
        let registry = Arc::new(Registry::new());
        registry.task_spawned();
        assert!(!registry.settled(0));
        assert!(registry.settled(1), "unless they are given up on");
        assert_eq!(registry.unpolled(), 1);
        // The first poll ends on another thread: the sums still add up.
        let remote = registry.clone();
        std::thread::spawn(move || remote.ended_in_first_poll(false))
            .join()
            .unwrap();
        assert!(registry.settled(0));
        let totals = registry.totals();
        assert_eq!((totals.spawned, totals.completed), (1, 1));
    }

    #[test]
    fn given_up_entries_count_as_settled_until_they_leave() {
        let registry = Registry::new();
        let stuck = node("stuck", 1);
        link(&registry, &stuck);
        assert!(!registry.settled(0));
        registry.judge(|_| Some((Verdict::Leaked, false)));
        assert!(registry.settled(0));
        assert_eq!(stuck.verdict(), Verdict::Leaked);
        assert!(unlink(&registry, &stuck));
        assert!(registry.settled(0));
    }

    #[test]
    fn the_least_stop_timeout_bounds_the_first_wait() {
        let registry = Registry::new();
        assert_eq!(registry.min_stop_timeout(), None);
        let (slow, quick) = (node("slow", 9), node("quick", 2));
        link(&registry, &slow);
        link(&registry, &quick);
        assert_eq!(registry.min_stop_timeout(), Some(Duration::from_secs(2)));
        unlink(&registry, &quick);
        unlink(&registry, &slow);
    }

    #[test]
    fn stopped_workers_fold_by_name_and_kind() {
        let registry = Registry::new();
        let now = Instant::now();
        let nodes: Vec<_> = ["conn", "conn", "flush", "conn"]
            .into_iter()
            .map(|name| node(name, 1))
            .collect();
        for node in &nodes {
            link(&registry, node);
        }
        for (n, node) in nodes.iter().enumerate() {
            let at = now + Duration::from_millis(n as u64);
            // SAFETY: linked above.
            unsafe { registry.unlink(node, |_, fold| fold(at)) };
        }
        let mut rows = registry.take_stopped();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(rows.len(), 2);
        assert_eq!((&*rows[0].name, rows[0].count), ("conn", 3));
        assert_eq!(rows[0].last_end, now + Duration::from_millis(3));
        assert_eq!((&*rows[1].name, rows[1].count), ("flush", 1));
        assert!(registry.take_stopped().is_empty(), "taken once");
    }
}
