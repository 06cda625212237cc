//! A worker's place in the registry: its [`Node`], carried by the worker itself (inside the
//! task's future, or a pinned box for threads), what it is ([`WorkerMeta`]), and what shutdown
//! decided about it ([`Verdict`]). The registry's safety rules (`registry/mod.rs`) say who may
//! touch which field when.
//!
//! Every task carries a node, and a task's memory grows in 128-byte steps, so the node is packed
//! into eight words, and a task's guard is its node alone (it finds its registry without a
//! pointer: see `reference.rs`).

use std::cell::Cell;
use std::marker::PhantomPinned;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use super::{TaskName, WorkerKind};
use crate::snapshot::StateCell;
use crate::util::coarse_now;
use crate::util::sync::{AtomicU8, Ordering, UnsafeCell};

/// What shutdown decided about a worker that did not stop in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(crate) enum Verdict {
    None = 0,
    Aborted = 1,
    Leaked = 2,
    /// A task awaiting the shutdown report: not waited for, since it waits for shutdown.
    AwaitsReport = 3,
}

/// In the verdict byte: the budget, not the worker's own stop timeout, set its deadline.
const CUT_BY_BUDGET: u8 = 1 << 2;
/// In the verdict byte: the aborted task was polled again and is dropping its future (set by the
/// owner). One still linked with it blocks its thread in a destructor; one without it has not
/// been polled since the abort.
const DROPPING: u8 = 1 << 3;
const VERDICT: u8 = 0b11;

impl Verdict {
    fn from_bits(bits: u8) -> Verdict {
        match bits & VERDICT {
            1 => Verdict::Aborted,
            2 => Verdict::Leaked,
            3 => Verdict::AwaitsReport,
            _ => Verdict::None,
        }
    }

    /// Whether shutdown no longer waits for the worker.
    pub(super) fn settled(self) -> bool {
        matches!(self, Verdict::Leaked | Verdict::AwaitsReport)
    }
}

/// What a worker is, fixed when it is spawned: what [`Node::new`] is made from.
#[derive(Debug)]
pub(crate) struct WorkerMeta {
    pub(crate) name: TaskName,
    pub(crate) kind: WorkerKind,
    pub(crate) stop_timeout: Duration,
    /// For `#[background]` loops: their state, for snapshots (and the mark of a loop).
    pub(crate) state: Option<Arc<StateCell>>,
    /// A loop that waits on its timer alone, not on its `Shutdown`: telling workers to stop must
    /// wake it. (A service, with no interval, watches its `Shutdown` itself; waking a million of
    /// them for nothing would queue a million polls ahead of the shutdown sequence.)
    pub(crate) woken_at_stop: bool,
}

impl WorkerMeta {
    #[inline]
    pub(crate) fn new(
        name: TaskName,
        kind: WorkerKind,
        stop_timeout: Duration,
        state: Option<Arc<StateCell>>,
    ) -> WorkerMeta {
        WorkerMeta {
            name,
            kind,
            stop_timeout,
            state,
            woken_at_stop: false,
        }
    }

    /// Marks a loop that waits on its timer alone; see [`WorkerMeta::woken_at_stop`].
    pub(crate) fn woken_at_stop(mut self, woken: bool) -> WorkerMeta {
        self.woken_at_stop = woken;
        self
    }

    pub(crate) fn is_loop(&self) -> bool {
        self.state.is_some()
    }
}

#[derive(Default)]
pub(super) struct Links {
    pub(super) prev: Option<NonNull<Node>>,
    pub(super) next: Option<NonNull<Node>>,
}

/// In `registered`: registered after the stop signal; the rest of the word is then milliseconds
/// after it (rounded up), on tokio's clock: its stop timeout runs from then. Otherwise the rest is
/// the coarse clock in hundredths of a second, only for snapshots' `age` (exact for workers
/// younger than 248 days). Set before linking, so others may read it under the lock.
const LATE: u32 = 1 << 31;

/// In a node's `loop_key`: the loop waits on its timer alone (see [`WorkerMeta::woken_at_stop`]).
pub(super) const WOKEN_AT_STOP: u32 = 1 << 31;

/// A hundredth of a second, the unit of the coarse registration time.
const CENTISECOND: u64 = 10_000_000;

/// Bits of a node's owner-only flags: read and written by the owner alone, never by others.
pub(super) mod flags {
    /// The owner awaits the shutdown report; it registers as such.
    pub(crate) const AWAITS_REPORT: u8 = 1 << 1;
    /// The owner's guard: linked in the registry (set by the link itself, so it never claims a
    /// node is linked that is not).
    pub(crate) const REGISTERED: u8 = 1 << 2;
    /// The owner's guard: gone from the registry (or never to enter it).
    pub(crate) const FINISHED: u8 = 1 << 3;
    /// The owner's future has been dropped (before the guard leaves the registry).
    pub(crate) const INNER_DROPPED: u8 = 1 << 4;
    /// The owner belongs to the global coordinator (otherwise to the coordinator of the scope
    /// its task runs in).
    pub(crate) const GLOBAL: u8 = 1 << 5;
}

/// One worker's place in the registry, carried by the worker itself: eight words, the small
/// fields packed together.
pub(crate) struct Node {
    /// Guarded by the shard's lock.
    pub(super) links: UnsafeCell<Links>,
    /// The waker shutdown wakes the task through. Written by the owner with the lock held; read
    /// by the owner without it, by others with it.
    pub(super) waker: UnsafeCell<Option<Waker>>,
    name: TaskName,
    /// When it registered; see [`LATE`]. Set before linking.
    registered: Cell<u32>,
    /// Milliseconds, rounded up, saturating: 49 days means "no limit", as `Duration::MAX` does.
    stop_timeout_ms: u32,
    /// For a `#[background]` loop, one more than the key of its state in its registry's loop
    /// table (`Workers::loop_state`); 0 for anything else.
    loop_key: u32,
    kind: WorkerKind,
    /// Set before linking.
    pub(super) shard: Cell<u8>,
    /// [`flags`]: written by the owner only.
    pub(super) flags: Cell<u8>,
    /// A [`Verdict`] and [`CUT_BY_BUDGET`]; written with the lock held.
    verdict: AtomicU8,
    _pinned: PhantomPinned,
}

/// Under loom, freeing a node is a write to its memory: one touched by anyone after its owner
/// dropped it (and not ordered before the drop) is reported as a race, the model's
/// use-after-free. Models keep the memory allocated past the drop so that the check itself reads
/// valid memory.
#[cfg(lifecycle_loom)]
impl Drop for Node {
    fn drop(&mut self) {
        self.links.with_mut(|_| ());
        self.waker.with_mut(|_| ());
    }
}

// SAFETY: see the registry's rules: shared fields are atomics or guarded by the shard lock; the
// `Cell`s others read are written by the owner before the node is linked, and `flags` is read and
// written by the owner only.
unsafe impl Send for Node {}
// SAFETY: as above.
unsafe impl Sync for Node {}

impl Node {
    /// A node for the worker `meta` describes; a loop's state was put in its registry's loop
    /// table under `loop_key` (see `Workers::node`).
    #[inline]
    pub(super) fn new(
        name: TaskName,
        kind: WorkerKind,
        stop_timeout: Duration,
        loop_key: u32,
    ) -> Node {
        let ms = stop_timeout.as_nanos().div_ceil(1_000_000);
        Node {
            links: UnsafeCell::new(Links::default()),
            waker: UnsafeCell::new(None),
            name,
            stop_timeout_ms: u32::try_from(ms).unwrap_or(u32::MAX),
            loop_key,
            kind,
            registered: Cell::new(0),
            shard: Cell::new(0),
            flags: Cell::new(0),
            verdict: AtomicU8::new(Verdict::None as u8),
            _pinned: PhantomPinned,
        }
    }

    pub(crate) fn name(&self) -> &TaskName {
        &self.name
    }

    pub(crate) fn kind(&self) -> WorkerKind {
        self.kind
    }

    pub(crate) fn stop_timeout(&self) -> Duration {
        if self.stop_timeout_ms == u32::MAX {
            Duration::MAX
        } else {
            Duration::from_millis(u64::from(self.stop_timeout_ms))
        }
    }

    /// For a `#[background]` loop, the key of its state in its registry's loop table.
    pub(crate) fn loop_key(&self) -> Option<usize> {
        let key = self.loop_key & !WOKEN_AT_STOP;
        (key != 0).then(|| key as usize - 1)
    }

    pub(crate) fn is_loop(&self) -> bool {
        self.loop_key & !WOKEN_AT_STOP != 0
    }

    /// A loop that waits on its timer alone: telling workers to stop wakes it.
    pub(crate) fn woken_at_stop(&self) -> bool {
        self.loop_key & WOKEN_AT_STOP != 0
    }

    #[inline]
    pub(crate) fn verdict(&self) -> Verdict {
        Verdict::from_bits(self.verdict.load(Ordering::Acquire))
    }

    pub(crate) fn cut_by_budget(&self) -> bool {
        self.verdict.load(Ordering::Relaxed) & CUT_BY_BUDGET != 0
    }

    /// Whether the aborted owner was polled again and is dropping its future.
    pub(crate) fn is_dropping(&self) -> bool {
        self.verdict.load(Ordering::Acquire) & DROPPING != 0
    }

    /// By the owner, when it noticed its abort and starts dropping its future.
    pub(super) fn mark_dropping(&self) {
        self.verdict.fetch_or(DROPPING, Ordering::AcqRel);
    }

    /// Sets the verdict (and clears [`DROPPING`]). With the lock held.
    ///
    /// A swap, not a store: the owner's [`mark_dropping`](Self::mark_dropping) races with it, and
    /// loom does not order a plain store after a concurrent read-modify-write as C11 does
    /// (tokio-rs/loom#254), so a store here makes the models report a stale verdict that no real
    /// execution can read. Only shutdown's judging calls this, under the lock.
    pub(super) fn set_verdict(&self, verdict: Verdict, cut_by_budget: bool) {
        let cut = if cut_by_budget { CUT_BY_BUDGET } else { 0 };
        self.verdict.swap(verdict as u8 | cut, Ordering::AcqRel);
    }

    #[inline]
    pub(super) fn has_flag(&self, flag: u8) -> bool {
        self.flags.get() & flag != 0
    }

    /// By the owner only.
    #[inline]
    pub(super) fn set_flag(&self, flag: u8, on: bool) {
        let flags = self.flags.get();
        self.flags
            .set(if on { flags | flag } else { flags & !flag });
    }

    /// Records when it registered, before it is linked: `late_by` after the stop signal, or, for
    /// one registered before it, `coarse` nanoseconds on the coarse clock.
    pub(super) fn set_registered(&self, late_by: Option<Duration>, coarse: u64) {
        let word = match late_by {
            Some(late_by) => {
                let ms = late_by.as_nanos().div_ceil(1_000_000);
                u32::try_from(ms).unwrap_or(u32::MAX) | LATE
            }
            // Wraps every 248 days; ages are taken modulo that.
            None => ((coarse / CENTISECOND) as u32) & !LATE,
        };
        self.registered.set(word);
    }

    /// When a late worker registered, on tokio's clock (to the millisecond, rounded up); `None`
    /// for one registered before the stop signal (its stop timeout runs from the signal).
    pub(crate) fn registered_late(&self, stop_started: Instant) -> Option<Instant> {
        let word = self.registered.get();
        (word & LATE != 0).then(|| stop_started + Duration::from_millis(u64::from(word & !LATE)))
    }

    /// How long it has been registered.
    pub(crate) fn age(&self, stop_started: Option<Instant>) -> Duration {
        match stop_started.and_then(|at| self.registered_late(at)) {
            Some(at) => at.elapsed(),
            None => {
                let now = ((coarse_now() / CENTISECOND) as u32) & !LATE;
                let centiseconds = now.wrapping_sub(self.registered.get() & !LATE) & !LATE;
                Duration::from_millis(u64::from(centiseconds) * 10)
            }
        }
    }

    /// The waker, cloned. With the lock held, or by the owner.
    pub(super) fn waker(&self) -> Option<Waker> {
        // SAFETY: written only by the owner with the lock held; see the registry's rules.
        self.waker.with(|waker| unsafe { (*waker).clone() })
    }

    pub(super) fn list(&self) -> ListId {
        if self.woken_at_stop() {
            ListId::Loops
        } else {
            ListId::Workers
        }
    }
}

/// A view of one live node, handed to callbacks while its shard is locked.
pub(crate) struct Entry<'a> {
    pub(super) node: &'a Node,
    /// When workers were told to stop, if they were.
    pub(super) stop_started: Option<Instant>,
}

impl Entry<'_> {
    pub(crate) fn name(&self) -> &TaskName {
        self.node.name()
    }

    pub(crate) fn kind(&self) -> WorkerKind {
        self.node.kind()
    }

    pub(crate) fn stop_timeout(&self) -> Duration {
        self.node.stop_timeout()
    }

    /// For a `#[background]` loop, the key of its state in its registry's loop table.
    pub(crate) fn loop_key(&self) -> Option<usize> {
        self.node.loop_key()
    }

    /// When a late worker registered; `None` for one registered before the stop signal.
    pub(crate) fn registered_late(&self) -> Option<Instant> {
        self.stop_started
            .and_then(|at| self.node.registered_late(at))
    }

    pub(crate) fn age(&self) -> Duration {
        self.node.age(self.stop_started)
    }

    pub(crate) fn verdict(&self) -> Verdict {
        self.node.verdict()
    }

    pub(crate) fn is_dropping(&self) -> bool {
        self.node.is_dropping()
    }

    /// The node's address: the same while it is linked, for telling one entry from another
    /// across two looks at the registry.
    pub(crate) fn address(&self) -> usize {
        std::ptr::from_ref(self.node).addr()
    }

    pub(crate) fn waker(&self) -> Option<Waker> {
        self.node.waker()
    }
}

/// Which of a shard's lists a node belongs in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ListId {
    Workers,
    /// `#[background]` loops, which the coordinator wakes at the stop signal.
    Loops,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(stop_timeout: Duration) -> Node {
        Node::new("n".into(), WorkerKind::Task, stop_timeout, 0)
    }

    #[test]
    fn eight_words() {
        assert_eq!(size_of::<Node>(), size_of::<[usize; 8]>());
    }

    #[test]
    fn stop_timeouts_round_up_to_whole_milliseconds_and_no_limit_stays_no_limit() {
        assert_eq!(
            node(Duration::from_micros(1)).stop_timeout(),
            Duration::from_millis(1)
        );
        assert_eq!(
            node(Duration::from_millis(1500)).stop_timeout(),
            Duration::from_millis(1500)
        );
        assert_eq!(node(Duration::MAX).stop_timeout(), Duration::MAX);
        assert_eq!(
            node(Duration::from_secs(86_400 * 60)).stop_timeout(),
            Duration::MAX,
            "past 49 days means no limit"
        );
    }

    #[test]
    fn a_late_registration_is_kept_on_tokio_time_from_the_stop_signal() {
        let stop_started = Instant::now();
        let late = node(Duration::from_secs(1));
        late.set_registered(Some(Duration::from_millis(250)), 0);
        assert_eq!(
            late.registered_late(stop_started),
            Some(stop_started + Duration::from_millis(250))
        );
        let early = node(Duration::from_secs(1));
        early.set_registered(None, coarse_now());
        assert_eq!(early.registered_late(stop_started), None);
        assert!(early.age(Some(stop_started)) < Duration::from_secs(5));
    }

    #[test]
    fn the_verdict_keeps_whether_the_budget_cut_it_off() {
        let node = node(Duration::from_secs(1));
        assert_eq!(node.verdict(), Verdict::None);
        node.set_verdict(Verdict::Aborted, true);
        assert_eq!(node.verdict(), Verdict::Aborted);
        assert!(node.cut_by_budget());
        node.set_verdict(Verdict::Leaked, false);
        assert_eq!(node.verdict(), Verdict::Leaked);
        assert!(!node.cut_by_budget());
    }
}
