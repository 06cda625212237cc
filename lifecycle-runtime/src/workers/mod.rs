//! Workers: tokio tasks, OS threads and the body of `main`. Owns the registry of live workers
//! (`registry.rs`), the stop signal they watch (`stop.rs`), the arithmetic of step 3
//! (`policy.rs`), how each way of ending reads in the report ([`outcome`]), the counters of
//! failures, task groups' permits (`group.rs`), and the public handles [`TaskHandle`] and
//! [`ThreadHandle`].
//!
//! Nothing here knows the coordinator's state: the coordinator owns a [`Workers`] and asks it.

mod group;
mod name;
mod policy;
mod registry;
mod stop;
mod task;
mod thread;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

pub(crate) use group::{Group, Groups};
pub use name::TaskName;
pub(crate) use policy::{MAX_ROUNDS_PAST_BUDGET, StopPolicy, Unpolled};
pub(crate) use registry::{Entry as LiveWorker, Totals};
use registry::{Node, Registry};
pub(crate) use registry::{Verdict, WorkerMeta};
pub(crate) use stop::StopSignal;
pub(crate) use task::{OkFuture, Worker, ended_from};
pub use task::{TaskError, TaskHandle};
pub(crate) use thread::ThreadGuard;
pub use thread::ThreadHandle;

use crate::report::{Entry, EntryKind, Outcome};
use crate::util::{format_duration, lock};

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

/// Why step 3 gave up on a worker that is still there.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Leak {
    /// Aborted, and still present after the grace.
    Stuck,
    /// A thread past its stop timeout: threads cannot be aborted.
    NotStopped,
    /// Kept registering after the budget ran out.
    LateAfterBudget,
    /// Started while resources were closing, when nothing waits for workers any more.
    StartedWhileClosing,
    /// This many tasks never returned from their first poll.
    Unpolled(u64),
}

/// What happened to a worker, for [`outcome`].
pub(crate) enum Fate<'a> {
    Ended(&'a Ended),
    Leaked(Leak),
}

/// How a worker's fate reads in the report: the one place every way a worker can end becomes an
/// [`Outcome`] and its detail.
pub(crate) fn outcome(
    fate: Fate<'_>,
    stop_timeout: Duration,
    verdict: Verdict,
    cut_by_budget: bool,
) -> (Outcome, Option<String>) {
    // Why a worker was aborted or given up on: its own stop timeout, or the budget first.
    let cut_off = |action: &str| {
        let stop_timeout = format_duration(stop_timeout);
        if cut_by_budget {
            format!(
                "still running when the shutdown budget ran out (its own stop timeout is {stop_timeout}); {action}"
            )
        } else {
            format!("ignored shutdown for its whole stop timeout of {stop_timeout}; {action}")
        }
    };
    match fate {
        Fate::Ended(Ended::Completed) => (Outcome::Stopped, None),
        Fate::Ended(Ended::Failed(message)) => (Outcome::Error(message.clone()), None),
        Fate::Ended(Ended::Panicked(message)) => (Outcome::Panicked, Some(message.clone())),
        Fate::Ended(Ended::TimedOut(limit)) => (
            Outcome::TimedOut,
            Some(format!(
                "ran past its group limit of {}",
                format_duration(*limit)
            )),
        ),
        Fate::Ended(Ended::NotStarted(group)) => (
            Outcome::Skipped,
            Some(format!(
                "never started: shutdown began while it waited for a permit of group `{group}`"
            )),
        ),
        Fate::Ended(Ended::Cancelled) if verdict == Verdict::Aborted => {
            (Outcome::Aborted, Some(cut_off("aborted")))
        }
        Fate::Ended(Ended::Cancelled) => {
            (Outcome::Aborted, Some("cancelled by its handle".to_owned()))
        }
        Fate::Leaked(leak) => (
            Outcome::Leaked,
            Some(match leak {
                Leak::Stuck => {
                    "aborted, but still running: it blocks its worker thread in synchronous code"
                        .to_owned()
                }
                Leak::NotStopped => cut_off("left running"),
                Leak::LateAfterBudget => {
                    "started during shutdown after the budget ran out; left running".to_owned()
                }
                Leak::StartedWhileClosing => {
                    "started while resources were closing, after tasks were stopped; left running"
                        .to_owned()
                }
                Leak::Unpolled(count) => format!(
                    "{count} task(s) never returned from their first poll, so they could not be named: each blocks a runtime thread in synchronous code"
                ),
            }),
        ),
    }
}

/// A worker's ending that the report names on its own line (anything but "stopped when told",
/// which the registry folds by name as it happens).
#[derive(Debug)]
struct Record {
    name: TaskName,
    kind: WorkerKind,
    outcome: Outcome,
    detail: Option<String>,
    ended: Instant,
}

/// Failures counted since the coordinator was created (the registry counts the rest).
#[derive(Debug, Default)]
pub(crate) struct Failures {
    pub(crate) failed: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) panicked: AtomicU64,
}

/// How a wait of step 3 ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    Settled,
    Deadline,
    /// A worker registered late (or a task began awaiting the report): look at the registry
    /// again.
    Rescan,
}

/// Every live worker of one coordinator, and what shutdown needs to stop them.
pub(crate) struct Workers {
    registry: Registry,
    stop: StopSignal,
    phase: AtomicU8,
    stop_started_at: OnceLock<Instant>,
    /// Woken when nothing may be left to wait for, or a worker registered late.
    settled: Notify,
    rescan: AtomicBool,
    /// Set once shutdown aborted some task: only then do tasks look up whether they were.
    aborts_issued: AtomicBool,
    /// Tasks still in their first poll that step 3 gave up on (they block their thread).
    ignored_unpolled: AtomicU64,
    /// Tasks awaiting the report (by tokio id): step 3 does not wait for them, since they wait
    /// for it.
    awaiting: Mutex<Vec<tokio::task::Id>>,
    awaiting_any: AtomicBool,
    records: Mutex<Vec<Record>>,
    failures: Failures,
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
            phase: AtomicU8::new(Phase::Running as u8),
            stop_started_at: OnceLock::new(),
            settled: Notify::new(),
            rescan: AtomicBool::new(false),
            aborts_issued: AtomicBool::new(false),
            ignored_unpolled: AtomicU64::new(0),
            awaiting: Mutex::new(Vec::new()),
            awaiting_any: AtomicBool::new(false),
            records: Mutex::new(Vec::new()),
            failures: Failures::default(),
        }
    }

    // ----- phase and stop signal ---------------------------------------------------------------

    pub(crate) fn phase(&self) -> Phase {
        // SeqCst with the first-poll counters: a task ending in its first poll stores its count
        // then loads the phase, the sequence stores the phase then loads the counts, and at least
        // one of the two must see the other (free on x86, needed on weaker memory models).
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
    pub(crate) fn tell_to_stop(&self) {
        let _ = self.stop_started_at.set(Instant::now());
        if self.phase() < Phase::Stopping {
            self.set_phase(Phase::Stopping);
        }
        self.stop.fire();
        let mut loops = Vec::new();
        self.registry
            .for_each_loop(|entry| loops.extend(entry.waker()));
        loops.into_iter().for_each(std::task::Waker::wake);
    }

    /// When workers were told to stop.
    pub(crate) fn stop_started(&self) -> Option<Instant> {
        self.stop_started_at.get().copied()
    }

    // ----- counting ----------------------------------------------------------------------------

    pub(crate) fn failures(&self) -> &Failures {
        &self.failures
    }

    pub(crate) fn count_failed(&self) {
        self.failures.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_timed_out(&self) {
        self.failures.timed_out.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_panicked(&self) {
        self.failures.panicked.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn totals(&self) -> Totals {
        self.registry.totals()
    }

    /// Tasks spawned whose first poll has not ended.
    pub(crate) fn unpolled(&self) -> u64 {
        self.registry.unpolled()
    }

    pub(crate) fn task_spawned(&self) {
        self.registry.task_spawned();
    }

    // ----- registering and leaving (the guards) ------------------------------------------------

    /// Registers a worker at its first wait (a task) or its start (a thread).
    ///
    /// # Safety
    ///
    /// As [`Registry::link`]: `node` is pinned, not linked, and unlinked by its owner (through
    /// [`Workers::leave`]) before it is dropped.
    unsafe fn register(
        &self,
        node: std::pin::Pin<&Node>,
        waker: Option<&std::task::Waker>,
        task_id: Option<tokio::task::Id>,
    ) {
        let verdict = if self.awaiting_any.load(Ordering::Acquire)
            && task_id.is_some_and(|id| lock(&self.awaiting).contains(&id))
        {
            Verdict::AwaitsReport
        } else {
            Verdict::None
        };
        let is_loop = node.meta.is_loop();
        // SAFETY: passed on from the caller.
        unsafe {
            self.registry
                .link(node, waker.cloned(), verdict, task_id, Instant::now())
        };
        if self.stop.is_fired() {
            if is_loop {
                // Shutdown may have woken the registered loops just before this one joined.
                waker.into_iter().for_each(std::task::Waker::wake_by_ref);
            }
            self.registered_late();
        }
    }

    /// A task's first poll is over and it registered.
    fn first_poll_done(&self) {
        self.registry.first_poll_done();
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
        // SAFETY: passed on from the caller.
        let left = unsafe {
            self.registry.unlink(node, |node, fold| {
                if !recording || node.verdict() == Verdict::Leaked {
                    return;
                }
                let now = Instant::now();
                if matches!(ended, Ended::Completed) && node.verdict() == Verdict::None {
                    fold(now);
                } else {
                    self.record(
                        &node.meta,
                        &ended,
                        node.verdict(),
                        node.cut_by_budget(),
                        now,
                    );
                }
            })
        };
        self.registry.count_end(ended.is_cancelled());
        self.log_end(&node.meta.name, &ended, node.verdict());
        if left.shard_settled {
            self.notify_if_settled();
        }
    }

    /// A task ended in its first poll, never registered. The common case (done, no shutdown
    /// under way) takes no lock.
    fn leave_unregistered(&self, meta: &WorkerMeta, ended: Ended) {
        self.registry.ended_in_first_poll(ended.is_cancelled());
        if matches!(ended, Ended::Completed) && self.phase() == Phase::Running {
            return;
        }
        if self.recording() {
            self.record(meta, &ended, Verdict::None, false, Instant::now());
        }
        self.log_end(&meta.name, &ended, Verdict::None);
        self.notify_if_settled();
    }

    /// Whether endings are recorded for the report: from the trigger until the report is made.
    fn recording(&self) -> bool {
        let phase = self.phase();
        phase >= Phase::Draining && phase < Phase::Done
    }

    fn record(
        &self,
        meta: &WorkerMeta,
        ended: &Ended,
        verdict: Verdict,
        cut_by_budget: bool,
        now: Instant,
    ) {
        let (outcome, detail) = outcome(
            Fate::Ended(ended),
            meta.stop_timeout(),
            verdict,
            cut_by_budget,
        );
        lock(&self.records).push(Record {
            name: meta.name.clone(),
            kind: meta.kind,
            outcome,
            detail,
            ended: now,
        });
    }

    fn log_end(&self, name: &TaskName, ended: &Ended, verdict: Verdict) {
        match ended {
            Ended::Panicked(message) => {
                self.count_panicked();
                tracing::error!(task = %name, panic = %message, "task panicked");
            }
            Ended::Failed(message) => {
                self.count_failed();
                tracing::error!(task = %name, error = %message, "task failed");
            }
            Ended::TimedOut(limit) => {
                self.count_timed_out();
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

    /// Whether shutdown aborted this linked node.
    fn is_aborted(&self, node: &Node) -> bool {
        self.aborts_issued.load(Ordering::Acquire) && node.verdict() == Verdict::Aborted
    }

    // ----- waiting for "settled" (step 3) ------------------------------------------------------

    /// Nothing left for step 3 to wait for.
    pub(crate) fn settled(&self) -> bool {
        self.registry
            .settled(self.ignored_unpolled.load(Ordering::Acquire))
    }

    /// Wakes the shutdown sequence if it is waiting and nothing is left to wait for.
    fn notify_if_settled(&self) {
        if self.phase() >= Phase::Draining && self.settled() {
            self.settled.notify_waiters();
        }
    }

    /// A worker registered after the stop signal, or a task started awaiting the report: step 3
    /// looks at the registry again.
    fn registered_late(&self) {
        self.rescan.store(true, Ordering::Release);
        self.settled.notify_waiters();
    }

    /// Waits until nothing is left to wait for, `deadline`, or (with `rescan`) a worker
    /// registering late.
    pub(crate) async fn wait_settled_until(&self, deadline: Instant, rescan: bool) -> Wait {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.settled() {
                return Wait::Settled;
            }
            if rescan && self.rescan.swap(false, Ordering::AcqRel) {
                return Wait::Rescan;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return if self.settled() {
                    Wait::Settled
                } else {
                    Wait::Deadline
                };
            }
        }
    }

    // ----- judging (step 3) --------------------------------------------------------------------

    /// The least stop timeout registered: step 3's first wait needs no scan.
    pub(crate) fn least_stop_timeout(&self) -> Option<Duration> {
        self.registry.min_stop_timeout()
    }

    /// The earliest instant a worker not judged yet is due, if any.
    pub(crate) fn next_due(&self, policy: &StopPolicy) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        self.registry.for_each(|entry| {
            if entry.verdict() == Verdict::None {
                let at = policy.due(entry.started(), entry.meta().stop_timeout()).at;
                next = Some(next.map_or(at, |next| next.min(at)));
            }
        });
        next
    }

    /// Aborts the tasks due by `now` (woken outside the locks; each notices at its next poll)
    /// and gives up on the threads due, which cannot be aborted.
    pub(crate) fn cut_off_due(&self, policy: &StopPolicy, now: Instant) {
        let mut to_wake = Vec::new();
        let mut leaked = Vec::new();
        self.registry.judge(|entry| {
            if entry.verdict() != Verdict::None {
                return None;
            }
            let due = policy.due(entry.started(), entry.meta().stop_timeout());
            if due.at > now {
                return None;
            }
            Some(match entry.waker() {
                Some(waker) if entry.meta().kind != WorkerKind::Thread => {
                    to_wake.push(waker);
                    (Verdict::Aborted, due.cut_by_budget)
                }
                _ => {
                    leaked.push((
                        entry.meta().name.clone(),
                        entry.meta().kind,
                        entry.meta().stop_timeout(),
                        due.cut_by_budget,
                    ));
                    (Verdict::Leaked, due.cut_by_budget)
                }
            })
        });
        if !to_wake.is_empty() {
            self.aborts_issued.store(true, Ordering::Release);
            to_wake.into_iter().for_each(std::task::Waker::wake);
        }
        for (name, kind, stop_timeout, cut_by_budget) in leaked {
            let (outcome, detail) = outcome(
                Fate::Leaked(Leak::NotStopped),
                stop_timeout,
                Verdict::Leaked,
                cut_by_budget,
            );
            tracing::error!(thread = %name, "thread {}", detail.as_deref().unwrap_or_default());
            self.push_record(name, kind, outcome, detail);
        }
    }

    /// After the abort grace: aborted workers still here are stuck in synchronous code; with
    /// `give_up`, so is everything not judged yet (it kept registering past the budget).
    /// Returns whether some worker is left unjudged.
    pub(crate) fn leak_stragglers(&self, give_up: bool) -> bool {
        let mut stuck = Vec::new();
        let mut unjudged = false;
        self.registry.judge(|entry| {
            let leak = match entry.verdict() {
                Verdict::Aborted => Leak::Stuck,
                Verdict::None if give_up => Leak::LateAfterBudget,
                Verdict::None => {
                    unjudged = true;
                    return None;
                }
                Verdict::Leaked | Verdict::AwaitsReport => return None,
            };
            stuck.push((entry.meta().name.clone(), entry.meta().kind, leak));
            Some((Verdict::Leaked, false))
        });
        for (name, kind, leak) in stuck {
            let (outcome, detail) =
                outcome(Fate::Leaked(leak), Duration::ZERO, Verdict::Leaked, false);
            tracing::error!(task = %name, "{}", detail.as_deref().unwrap_or_default());
            self.push_record(name, kind, outcome, detail);
        }
        unjudged
    }

    /// Gives up on the tasks still in their first poll: they cannot be named.
    pub(crate) fn give_up_unpolled(&self) {
        let unpolled = self.unpolled();
        let ignored = self.ignored_unpolled.swap(unpolled, Ordering::AcqRel);
        let count = unpolled.saturating_sub(ignored);
        if count == 0 {
            return;
        }
        tracing::error!(
            count,
            "tasks never returned from their first poll: they block their threads"
        );
        let (outcome, detail) = outcome(
            Fate::Leaked(Leak::Unpolled(count)),
            Duration::ZERO,
            Verdict::Leaked,
            false,
        );
        self.push_record(
            TaskName::from("(unnamed: blocked in its first poll)"),
            WorkerKind::Task,
            outcome,
            detail,
        );
    }

    /// Tasks in their first poll that step 3 has not given up on.
    pub(crate) fn unpolled_pending(&self) -> bool {
        self.unpolled() > self.ignored_unpolled.load(Ordering::Acquire)
    }

    /// Workers still running once resources closed that nobody judged (started while resources
    /// closed): reported as left running.
    pub(crate) fn leak_unjudged(&self) {
        let mut late = Vec::new();
        self.registry.judge(|entry| {
            if entry.verdict() != Verdict::None {
                return None;
            }
            late.push((entry.meta().name.clone(), entry.meta().kind));
            Some((Verdict::Leaked, false))
        });
        for (name, kind) in late {
            tracing::warn!(task = %name, "started after tasks were stopped; left running");
            let (outcome, detail) = outcome(
                Fate::Leaked(Leak::StartedWhileClosing),
                Duration::ZERO,
                Verdict::Leaked,
                false,
            );
            self.push_record(name, kind, outcome, detail);
        }
    }

    fn push_record(
        &self,
        name: TaskName,
        kind: WorkerKind,
        outcome: Outcome,
        detail: Option<String>,
    ) {
        lock(&self.records).push(Record {
            name,
            kind,
            outcome,
            detail,
            ended: Instant::now(),
        });
    }

    /// The report's entries for the workers that ended (or were given up on) so far, in the
    /// order they ended, folding workers of one name and outcome into one entry with a count (a
    /// server with 10,000 connection tasks gets one line, not 10,000). Times count from
    /// `sequence_started`; a worker that ended during step 3 is drawn from the stop signal.
    pub(crate) fn take_entries(&self, sequence_started: Instant) -> Vec<Entry> {
        let stop_started = self.stop_started().unwrap_or(sequence_started);
        let mut ended: Vec<(Record, usize)> = std::mem::take(&mut *lock(&self.records))
            .into_iter()
            .map(|record| (record, 1))
            .collect();
        ended.extend(self.registry.take_stopped().into_iter().map(|row| {
            let record = Record {
                name: row.name,
                kind: row.kind,
                outcome: Outcome::Stopped,
                detail: None,
                ended: row.last_end,
            };
            (record, row.count)
        }));
        ended.sort_by_key(|(record, _)| record.ended);
        let mut entries: Vec<Entry> = Vec::new();
        let mut index: HashMap<(TaskName, WorkerKind, Outcome), usize> = HashMap::new();
        for (record, count) in ended {
            let start = if record.ended < stop_started {
                sequence_started
            } else {
                stop_started
            };
            let offset = start.saturating_duration_since(sequence_started);
            let elapsed = record.ended.saturating_duration_since(start);
            let key = (record.name, record.kind, record.outcome);
            if let Some(&at) = index.get(&key) {
                entries[at].absorb(count, elapsed);
                continue;
            }
            let (name, kind, outcome) = key.clone();
            index.insert(key, entries.len());
            entries.push(
                Entry::new(name, kind.entry_kind(), outcome, offset, elapsed)
                    .with_detail(record.detail)
                    .with_count(count),
            );
        }
        entries
    }

    // ----- looking -----------------------------------------------------------------------------

    /// Calls `f` on every live worker, one shard locked at a time.
    pub(crate) fn for_each(&self, f: impl FnMut(&LiveWorker<'_>)) {
        self.registry.for_each(f);
    }

    /// The name of a live worker by its tokio task id (a scan: for reports, not hot paths).
    pub(crate) fn task_name(&self, id: tokio::task::Id) -> Option<TaskName> {
        let mut name = None;
        self.registry.for_each(|entry| {
            if entry.task_id() == Some(id) {
                name = Some(entry.meta().name.clone());
            }
        });
        name
    }
}

/// Registers the calling task as awaiting the report while it does: step 3 does not wait for a
/// task that waits for step 3.
pub(crate) struct AwaitingReport<'a> {
    workers: &'a Workers,
    task: Option<tokio::task::Id>,
}

impl<'a> AwaitingReport<'a> {
    pub(crate) fn new(workers: &'a Workers) -> AwaitingReport<'a> {
        let task = tokio::task::try_id();
        if let Some(id) = task {
            lock(&workers.awaiting).push(id);
            workers.awaiting_any.store(true, Ordering::Release);
            // Registered already: mark it. (One registering later is marked as it registers.)
            workers.registry.mark_awaiting(id, true);
            if workers.phase() >= Phase::Draining {
                workers.registered_late();
            }
        }
        AwaitingReport { workers, task }
    }
}

impl Drop for AwaitingReport<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.task {
            let mut awaiting = lock(&self.workers.awaiting);
            if let Some(at) = awaiting.iter().position(|known| *known == id) {
                awaiting.swap_remove(at);
            }
            if !awaiting.contains(&id) {
                self.workers.registry.mark_awaiting(id, false);
            }
        }
    }
}

/// How a worker reaches the [`Workers`] it belongs to: the global coordinator's by a plain
/// reference (no reference counting on a line every task would share), any other's by `Arc`.
/// One word in every task.
pub(crate) struct WorkersRef {
    /// Tagged: the low bit set means the global, uncounted reference.
    ptr: std::ptr::NonNull<Workers>,
}

// SAFETY: points to a `Workers` (which is `Send + Sync`), kept alive by the count it holds or by
// being the global coordinator's.
unsafe impl Send for WorkersRef {}
// SAFETY: as above.
unsafe impl Sync for WorkersRef {}

impl WorkersRef {
    /// The global coordinator's workers, which live as long as the process.
    pub(crate) fn global(workers: &'static Workers) -> WorkersRef {
        let ptr = std::ptr::NonNull::from(workers);
        WorkersRef {
            ptr: ptr.map_addr(|addr| addr | 1),
        }
    }

    /// Another coordinator's workers, kept alive by this reference.
    pub(crate) fn shared(workers: &Arc<Workers>) -> WorkersRef {
        let raw = Arc::into_raw(workers.clone()).cast_mut();
        WorkersRef {
            // SAFETY: `Arc::into_raw` never returns null.
            ptr: unsafe { std::ptr::NonNull::new_unchecked(raw) },
        }
    }

    fn is_global(&self) -> bool {
        self.ptr.addr().get() & 1 == 1
    }

    pub(crate) fn get(&self) -> &Workers {
        let ptr = self.ptr.map_addr(|addr| {
            // SAFETY: clearing the tag of a non-null, aligned pointer leaves it non-null.
            unsafe { std::num::NonZeroUsize::new_unchecked(addr.get() & !1) }
        });
        // SAFETY: alive, see the type's `Send` impl.
        unsafe { ptr.as_ref() }
    }
}

impl Drop for WorkersRef {
    fn drop(&mut self) {
        if !self.is_global() {
            // SAFETY: made by `Arc::into_raw` in `shared`, given back once.
            drop(unsafe { Arc::from_raw(self.ptr.as_ptr().cast_const()) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fate_reads_as_one_outcome_with_its_reason() {
        let two = Duration::from_secs(2);
        let read = |fate, verdict, cut| outcome(fate, two, verdict, cut);
        assert_eq!(
            read(Fate::Ended(&Ended::Completed), Verdict::None, false),
            (Outcome::Stopped, None)
        );
        let (aborted, detail) = read(Fate::Ended(&Ended::Cancelled), Verdict::Aborted, false);
        assert_eq!(aborted, Outcome::Aborted);
        assert_eq!(
            detail.unwrap(),
            "ignored shutdown for its whole stop timeout of 2s; aborted"
        );
        let (_, detail) = read(Fate::Ended(&Ended::Cancelled), Verdict::Aborted, true);
        assert!(
            detail
                .unwrap()
                .starts_with("still running when the shutdown budget ran out")
        );
        let (_, detail) = read(Fate::Ended(&Ended::Cancelled), Verdict::None, false);
        assert_eq!(detail.unwrap(), "cancelled by its handle");
        let (leaked, detail) = read(Fate::Leaked(Leak::Unpolled(3)), Verdict::Leaked, false);
        assert_eq!(leaked, Outcome::Leaked);
        assert!(detail.unwrap().starts_with("3 task(s) never returned"));
        let (skipped, _) = read(
            Fate::Ended(&Ended::NotStarted("db".into())),
            Verdict::None,
            false,
        );
        assert_eq!(skipped, Outcome::Skipped);
    }

    #[test]
    fn a_shared_reference_keeps_its_workers_alive_and_the_global_one_counts_nothing() {
        let workers = Arc::new(Workers::new());
        let shared = WorkersRef::shared(&workers);
        assert_eq!(Arc::strong_count(&workers), 2);
        assert!(std::ptr::eq(shared.get(), &*workers));
        drop(shared);
        assert_eq!(Arc::strong_count(&workers), 1);
        let leaked: &'static Workers = Box::leak(Box::new(Workers::new()));
        let global = WorkersRef::global(leaked);
        assert!(std::ptr::eq(global.get(), leaked));
        drop(global);
    }
}
