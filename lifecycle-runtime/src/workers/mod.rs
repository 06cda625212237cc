//! Workers: tokio tasks, OS threads and the body of `main`. Owns the registry of live workers
//! (`registry.rs`), the stop signal they watch (`stop.rs`), the arithmetic of step 3
//! (`policy.rs`), how each way of ending reads in the report ([`outcome`]), the counters of
//! failures, task groups' permits (`group.rs`), and the public handles [`TaskHandle`] and
//! [`ThreadHandle`].
//!
//! Nothing here knows the coordinator's state: the coordinator owns a [`Workers`] and asks it.

mod group;
mod judge;
#[cfg(all(test, lifecycle_loom))]
mod loom_tests;
mod name;
mod node;
mod order;
mod outcome;
mod policy;
mod reference;
mod registry;
mod stop;
mod task;
mod thread;

use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use slab::Slab;
use tokio::time::Instant;

pub(crate) use group::{Group, Groups};
pub(crate) use judge::{AwaitingReport, BudgetEnd, Wait};
pub use name::TaskName;
pub(crate) use node::{Entry as LiveWorker, Node, Verdict, WorkerMeta};
pub(crate) use order::Staged;
pub use order::StopOrderError;
pub(crate) use order::{Stage, StopOrder, Why as StageStart};
use outcome::Records;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) use policy::Due;
pub(crate) use policy::{MAX_ROUNDS_PAST_BUDGET, StopPolicy, Unpolled};
pub(crate) use reference::{WorkersRef, enter_scope, global_workers};
pub(crate) use registry::Totals;
use registry::{FoldedEnd, Registry};
pub(crate) use stop::StopSignal;
pub(crate) use task::current_task_name;
pub(crate) use task::{OkFuture, Worker, ended_from};
pub use task::{TaskError, TaskHandle};
pub(crate) use thread::ThreadGuard;
pub use thread::ThreadHandle;
pub(crate) use thread::set_current_thread_worker;

use crate::report::EntryKind;
use crate::snapshot::StateCell;
use crate::util::sync::{self, AtomicBool, AtomicU8, AtomicU64, Notify, Ordering};
use crate::util::{coarse_now, lock};

/// What kind of worker a registry entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum WorkerKind {
    Task,
    Thread,
    Main,
}

impl WorkerKind {
    pub(crate) fn entry_kind(self) -> EntryKind {
        match self {
            WorkerKind::Task => EntryKind::Task,
            WorkerKind::Thread => EntryKind::Thread,
            WorkerKind::Main => EntryKind::Main,
        }
    }
}

/// Where the shutdown sequence is. The coordinator moves it forward; it lives here because the
/// workers' hot path reads it, paired with the first-poll counts (see [`Workers::phase`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum Phase {
    Running = 0,
    Draining = 1,
    Stopping = 2,
    Closing = 3,
    Done = 4,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            0 => Phase::Running,
            1 => Phase::Draining,
            2 => Phase::Stopping,
            3 => Phase::Closing,
            _ => Phase::Done,
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

/// Failures counted since the coordinator was created (the registry counts the rest).
#[derive(Debug, Default)]
pub(crate) struct Failures {
    pub(crate) failed: StdAtomicU64,
    pub(crate) timed_out: StdAtomicU64,
    pub(crate) panicked: StdAtomicU64,
}

/// Every live worker of one coordinator, and what shutdown needs to stop them.
pub(crate) struct Workers {
    registry: Registry,
    stop: StopSignal,
    /// Which workers are told to stop after others (`order.rs`).
    order: StopOrder,
    phase: AtomicU8,
    stop_started_at: OnceLock<Instant>,
    /// Woken when nothing may be left to wait for, or a worker registered late.
    settled: Notify,
    rescan: AtomicBool,
    /// Set once shutdown aborted some task: only then do tasks look up whether they were.
    aborts_issued: AtomicBool,
    /// Wakers of aborted tasks step 3 did not wake within the budget (`judge.rs`).
    deferred_wakes: sync::Mutex<Vec<std::task::Waker>>,
    /// Tasks still in their first poll that step 3 gave up on (they block their thread).
    ignored_unpolled: AtomicU64,
    /// Since when every look of step 3 has seen some task in its first poll (`judge.rs`).
    unpolled_window: Mutex<Option<Instant>>,
    records: Mutex<Records>,
    failures: Failures,
    /// `#[background]` loops' states, for snapshots (loops are few; keeping them here keeps a
    /// word out of every task's node).
    loops: Mutex<Slab<Arc<StateCell>>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("phase", &self.phase())
            .field("unpolled", &self.registry.unpolled())
            .finish_non_exhaustive()
    }
}

impl Workers {
    pub(crate) fn new() -> Workers {
        Workers {
            registry: Registry::new(),
            stop: StopSignal::default(),
            order: StopOrder::default(),
            phase: AtomicU8::new(Phase::Running as u8),
            stop_started_at: OnceLock::new(),
            settled: Notify::new(),
            rescan: AtomicBool::new(false),
            aborts_issued: AtomicBool::new(false),
            deferred_wakes: sync::Mutex::new(Vec::new()),
            ignored_unpolled: AtomicU64::new(0),
            unpolled_window: Mutex::new(None),
            records: Mutex::new(Records::default()),
            failures: Failures::default(),
            loops: Mutex::new(Slab::new()),
        }
    }

    // ----- phase and stop signal ---------------------------------------------------------------

    #[inline]
    pub(crate) fn phase(&self) -> Phase {
        // SeqCst with the count of tasks that ended in their first poll: such a task stores its
        // count then loads the phase (and skips waking shutdown if it reads `Running`), the
        // sequence stores the phase then loads the counts, and at least one of the two must see
        // the other (free on x86, needed on weaker memory models).
        Phase::from_u8(self.phase.load(Ordering::SeqCst))
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }

    /// The signal tasks and threads watch.
    pub(crate) fn stop_signal(&self) -> &StopSignal {
        &self.stop
    }

    /// Tells every worker to stop (step 3). Idempotent. `#[background]` loops wait on their timer
    /// alone and are woken here; a loop that registers while this runs sees the signal itself
    /// (the shard lock orders the two).
    ///
    /// With a stop order, only stage 0 is told now; see [`start_stages_through`].
    ///
    /// [`start_stages_through`]: Self::start_stages_through
    pub(crate) fn tell_to_stop(&self) {
        let now = *self.stop_started_at.get_or_init(Instant::now);
        self.order.freeze(now);
        if self.phase() < Phase::Stopping {
            self.set_phase(Phase::Stopping);
        }
        self.stop.fire();
        self.wake_loops(|_| true);
    }

    /// Wakes the registered loops whose name `which` picks.
    fn wake_loops(&self, which: impl Fn(&str) -> bool) {
        let mut loops = Vec::new();
        self.registry.for_each_loop(|entry| {
            if which(entry.name().as_str()) {
                loops.extend(entry.waker());
            }
        });
        loops.into_iter().for_each(std::task::Waker::wake);
    }

    /// The stop order of these workers.
    pub(crate) fn order(&self) -> &StopOrder {
        &self.order
    }

    /// Tells the workers of every stage up to `through` to stop (those not told yet), and has
    /// step 3 look at them. Returns whether any stage started.
    pub(crate) fn start_stages_through(
        &self,
        through: usize,
        now: Instant,
        why: StageStart,
    ) -> bool {
        let told = self.order.start_through(through, now, why);
        if told.is_empty() {
            return false;
        }
        for name in &told {
            tracing::debug!(task = %name, "told to stop after the stages before it");
        }
        self.wake_loops(|name| told.iter().any(|told| told == name));
        self.rescan.store(true, Ordering::Release);
        true
    }

    /// When workers were told to stop.
    pub(crate) fn stop_started(&self) -> Option<Instant> {
        self.stop_started_at.get().copied()
    }

    // ----- counting ----------------------------------------------------------------------------

    pub(crate) fn failures(&self) -> &Failures {
        &self.failures
    }

    /// Counts a failure of `task` (its name feeds the per-name counters of feature `metrics`).
    pub(crate) fn count_failed(
        &self,
        #[cfg_attr(not(feature = "metrics"), allow(unused_variables))] task: &str,
    ) {
        self.failures.failed.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        crate::metrics::events::task_failed(task);
    }

    pub(crate) fn count_timed_out(
        &self,
        #[cfg_attr(not(feature = "metrics"), allow(unused_variables))] task: &str,
    ) {
        self.failures.timed_out.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        crate::metrics::events::task_timed_out(task);
    }

    pub(crate) fn count_panicked(
        &self,
        #[cfg_attr(not(feature = "metrics"), allow(unused_variables))] task: &str,
    ) {
        self.failures.panicked.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        crate::metrics::events::task_panicked(task);
    }

    pub(crate) fn totals(&self) -> Totals {
        self.registry.totals()
    }

    /// Tasks spawned whose first poll has not ended.
    pub(crate) fn unpolled(&self) -> u64 {
        self.registry.unpolled()
    }

    #[inline]
    pub(crate) fn task_spawned(&self) {
        self.registry.task_spawned();
    }

    // ----- registering and leaving (the guards) ------------------------------------------------

    /// The registry node of the worker `meta` describes (a loop's state goes in the loop table).
    pub(crate) fn node(&self, meta: WorkerMeta) -> Node {
        let woken = if meta.woken_at_stop {
            node::WOKEN_AT_STOP
        } else {
            0
        };
        let loop_key = meta.state.map_or(0, |state| {
            let key = lock(&self.loops).insert(state);
            let key = u32::try_from(key + 1).expect("fewer than 2 billion loops at once");
            assert!(
                key < node::WOKEN_AT_STOP,
                "fewer than 2 billion loops at once"
            );
            key | woken
        });
        Node::new(meta.name, meta.kind, meta.stop_timeout, loop_key)
    }

    /// A loop's state, by the key its node holds.
    pub(crate) fn loop_state(&self, key: usize) -> Option<Arc<StateCell>> {
        lock(&self.loops).get(key).cloned()
    }

    /// Takes a finished loop's state out of the loop table.
    fn forget_loop(&self, node: &Node) {
        if let Some(key) = node.loop_key() {
            lock(&self.loops).try_remove(key);
        }
    }

    /// Registers a worker at its first wait (a task) or its start (a thread).
    ///
    /// # Safety
    ///
    /// As [`Registry::link`]: `node` is pinned, not linked, and unlinked by its owner (through
    /// [`Workers::leave`]) before it is dropped.
    unsafe fn register(&self, node: std::pin::Pin<&Node>, waker: Option<&std::task::Waker>) {
        // A worker that registers after the stop signal gets its stop timeout from now, so now is
        // read on tokio's clock (which tests pause); any other only shows its age in snapshots.
        match self.stop_started() {
            Some(stop_started) if self.stop.is_fired() => {
                let late_by = Instant::now().saturating_duration_since(stop_started);
                node.set_registered(Some(late_by), 0);
            }
            _ => node.set_registered(None, coarse_now()),
        }
        let is_loop = node.is_loop();
        // SAFETY: passed on from the caller.
        unsafe { self.registry.link(node, waker.cloned()) };
        // Asked after linking: a stop signal that came meanwhile either saw this worker in the
        // registry or is seen here (the shard lock orders the two).
        if self.stop.is_fired() {
            if is_loop {
                // Shutdown may have woken the registered loops just before this one joined.
                waker.into_iter().for_each(std::task::Waker::wake_by_ref);
            }
            self.registered_late();
        }
        self.notify_if_settled();
    }

    /// A registered worker left: records how (under the shard lock, before it is gone), logs and
    /// counts it, and wakes shutdown if nothing is left.
    ///
    /// # Safety
    ///
    /// `node` is linked in this registry and the caller is its owner.
    unsafe fn leave(&self, node: &Node, ended: Ended) {
        let recording = self.recording();
        // Read before the shard is locked: a restarted service keeps a line of its own.
        let restarts = if recording {
            self.restart_note(node)
        } else {
            None
        };
        // SAFETY: passed on from the caller.
        let left = unsafe {
            self.registry.unlink(node, |node, fold| {
                if !recording || node.verdict() == Verdict::Leaked {
                    return;
                }
                let now = Instant::now();
                if restarts.is_none() {
                    match (&ended, node.verdict()) {
                        (Ended::Completed, Verdict::None) => {
                            return fold(FoldedEnd::Stopped, now);
                        }
                        (Ended::Cancelled, Verdict::Aborted) => {
                            return fold(
                                FoldedEnd::Aborted {
                                    stop_timeout: node.stop_timeout(),
                                    cut_by_budget: node.cut_by_budget(),
                                },
                                now,
                            );
                        }
                        _ => {}
                    }
                }
                self.record(
                    node,
                    &ended,
                    node.verdict(),
                    node.cut_by_budget(),
                    now,
                    restarts,
                );
            })
        };
        self.registry.count_end(ended.is_cancelled());
        self.forget_loop(node);
        self.log_end(node.name(), &ended, node.verdict());
        if left.shard_settled {
            self.notify_if_settled();
        }
    }

    /// A task ended in its first poll, never registered. The common case (done, no shutdown
    /// under way) takes no lock.
    fn leave_unregistered(&self, node: &Node, ended: Ended) {
        self.registry.ended_in_first_poll(ended.is_cancelled());
        self.forget_loop(node);
        if matches!(ended, Ended::Completed) && self.phase() == Phase::Running {
            return;
        }
        if self.recording() {
            let restarts = self.restart_note(node);
            self.record(node, &ended, Verdict::None, false, Instant::now(), restarts);
        }
        self.log_end(node.name(), &ended, Verdict::None);
        self.notify_if_settled();
    }

    /// Whether endings are recorded for the report: from the trigger until the report is made.
    fn recording(&self) -> bool {
        let phase = self.phase();
        phase >= Phase::Draining && phase < Phase::Done
    }

    fn log_end(&self, name: &TaskName, ended: &Ended, verdict: Verdict) {
        match ended {
            Ended::Panicked(message) => {
                self.count_panicked(name);
                tracing::error!(task = %name, panic = %message, "task panicked");
            }
            Ended::Failed(message) => {
                self.count_failed(name);
                tracing::error!(task = %name, error = %message, "task failed");
            }
            Ended::TimedOut(limit) => {
                self.count_timed_out(name);
                tracing::warn!(task = %name, ?limit, "task timed out and was cancelled");
            }
            Ended::NotStarted(group) => {
                tracing::warn!(task = %name, %group, "task never started: shutdown began while it waited for a group permit");
            }
            Ended::Cancelled if verdict == Verdict::None && self.phase() < Phase::Stopping => {
                tracing::debug!(task = %name, "task cancelled");
            }
            _ => {}
        }
    }

    /// Whether shutdown has aborted any task (only then do tasks look at their own verdict).
    #[inline]
    fn aborts_issued(&self) -> bool {
        self.aborts_issued.load(Ordering::Acquire)
    }

    /// Whether shutdown aborted this linked node.
    #[inline]
    fn is_aborted(&self, node: &Node) -> bool {
        node.verdict() == Verdict::Aborted
    }

    // ----- looking -----------------------------------------------------------------------------

    /// Calls `f` on every live worker, one shard locked at a time.
    pub(crate) fn for_each(&self, f: impl FnMut(&LiveWorker<'_>)) {
        self.registry.for_each(self.stop_started(), f);
    }

    /// Which of `names` no task or thread carries any more: a name is said to have ended only
    /// when none is listed and no spawned task is still in its first poll (such a task is not
    /// listed yet), so "it has ended" is never said of one that may still be there. One walk of
    /// the registry for all of them.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub(crate) fn ended_of<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> std::collections::HashSet<&'a str> {
        let mut ended: std::collections::HashSet<&'a str> = names.into_iter().collect();
        if ended.is_empty() {
            return ended;
        }
        self.for_each(|worker| {
            ended.remove(worker.name().as_str());
        });
        if self.unpolled() > 0 {
            ended.clear();
        }
        ended
    }
}
