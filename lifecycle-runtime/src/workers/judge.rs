//! What step 3 asks of the workers: whether anything is left to wait for (and waiting until
//! nothing is), when the next one is due, cutting off the late, giving up on the stuck, and
//! setting aside the tasks that await the report (they wait for step 3, so it does not wait for
//! them).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::node::{Node, Verdict};
use super::order::Staged;
use super::outcome::{Fate, Leak, outcome};
use super::task::{WorkerGuard, polling_worker};
use super::{Phase, StopPolicy, TaskName, WorkerKind, Workers};
use crate::util::sync::{self, Ordering};

/// How a wait of step 3 ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    Settled,
    Deadline,
    /// A worker registered late (or a task began awaiting the report): look at the registry
    /// again.
    Rescan,
}

/// Where the budget stood when step 3 gave up on the aborted tasks still there: what can be said
/// of one that was not dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BudgetEnd {
    /// Not reached: they had their whole grace and were not polled again, so their thread is
    /// blocked.
    NotReached,
    /// Reached while aborted tasks were still going (or still to be woken): there were many.
    WhileAbortedWent,
    /// Reached with many aborted tasks left and none going in the moment left after the abort:
    /// nothing can be told of them.
    NoTimeToTell,
}

/// What one pass of [`Workers::cut_off_due`] did and found.
#[derive(Debug)]
#[must_use = "aborted tasks notice their abort only when woken"]
pub(crate) struct CutOff {
    /// Wakers of the tasks aborted now.
    pub(crate) aborted: Vec<std::task::Waker>,
    /// The earliest instant a worker not judged yet is due (not counting held stages).
    pub(crate) next: Option<Instant>,
    /// With a stop order: the earliest stage some unjudged worker is in (`None`: none left).
    pub(crate) lowest_stage: Option<usize>,
}

impl Workers {
    // ----- waiting for "settled" (step 3) ------------------------------------------------------

    /// Nothing left for step 3 to wait for.
    pub(crate) fn settled(&self) -> bool {
        self.registry
            .settled(self.ignored_unpolled.load(Ordering::Acquire))
    }

    /// Wakes the shutdown sequence if it is waiting and nothing is left to wait for.
    pub(super) fn notify_if_settled(&self) {
        if self.phase() >= Phase::Draining && self.settled() {
            self.settled.notify_waiters();
        }
    }

    /// A worker registered after the stop signal, or a task started awaiting the report: step 3
    /// looks at the registry again.
    pub(super) fn registered_late(&self) {
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

    /// Aborts the tasks due by `now` and gives up on the threads due, which cannot be aborted.
    /// Returns the aborted tasks' wakers, for the caller to wake outside the locks (each notices
    /// its abort at its next poll), and the earliest instant a worker not judged yet is due,
    /// found in the same pass.
    ///
    /// With a stop order (`order.rs`), a worker of a stage not told to stop yet is never due, and
    /// one of a later stage is due its stop timeout after its stage started; `lowest_stage` says
    /// the earliest stage some unjudged worker is in.
    pub(crate) fn cut_off_due(&self, policy: &StopPolicy, now: Instant) -> CutOff {
        // The stop order's lock is held for the scan only: what is logged and recorded after it
        // may call into anything.
        let (cut, leaked) = if self.order.is_used() {
            self.order
                .with_staged(|staged| self.cut_off_due_in_stages(policy, now, Some(staged)))
        } else {
            self.cut_off_due_in_stages(policy, now, None)
        };
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
        cut
    }

    /// One pass of [`cut_off_due`](Self::cut_off_due): the threads given up on are returned, not
    /// logged.
    #[allow(clippy::type_complexity, reason = "a private pair of results")]
    fn cut_off_due_in_stages(
        &self,
        policy: &StopPolicy,
        now: Instant,
        staged: Option<&dyn Fn(&str) -> Staged>,
    ) -> (CutOff, Vec<(TaskName, WorkerKind, Duration, bool)>) {
        let mut to_wake = Vec::new();
        let mut leaked = Vec::new();
        let mut next: Option<Instant> = None;
        let mut lowest_stage = None;
        self.registry.judge(Some(policy.stop_started), |entry| {
            if entry.verdict() != Verdict::None {
                return None;
            }
            let mut registered = entry.registered_late();
            if let Some(staged) = staged {
                let standing = staged(entry.name().as_str());
                lowest_stage = Some(lowest_stage.map_or(standing.stage(), |lowest: usize| {
                    lowest.min(standing.stage())
                }));
                match standing {
                    Staged::No => {}
                    Staged::Held(_) => return None,
                    Staged::Started(_, at) => {
                        registered = Some(registered.map_or(at, |late| late.max(at)));
                    }
                }
            }
            let due = policy.due(registered, entry.stop_timeout());
            if due.at > now {
                next = Some(next.map_or(due.at, |next| next.min(due.at)));
                return None;
            }
            Some(match entry.waker() {
                Some(waker) if entry.kind() != WorkerKind::Thread => {
                    to_wake.push(waker);
                    (Verdict::Aborted, due.cut_by_budget)
                }
                _ => {
                    leaked.push((
                        entry.name().clone(),
                        entry.kind(),
                        entry.stop_timeout(),
                        due.cut_by_budget,
                    ));
                    (Verdict::Leaked, due.cut_by_budget)
                }
            })
        });
        if !to_wake.is_empty() {
            self.aborts_issued.store(true, Ordering::Release);
        }
        let cut = CutOff {
            aborted: to_wake,
            next,
            lowest_stage,
        };
        (cut, leaked)
    }

    /// Keeps wakers of aborted tasks that step 3 did not get to wake within the budget, to wake
    /// once the report is made (the report does not wait for them; they still get dropped).
    pub(crate) fn defer_wakes(&self, wakers: Vec<std::task::Waker>) {
        sync::lock(&self.deferred_wakes).extend(wakers);
    }

    /// Whether the budget left aborted tasks unwoken: they cannot have been polled.
    pub(crate) fn has_deferred_wakes(&self) -> bool {
        !sync::lock(&self.deferred_wakes).is_empty()
    }

    /// Wakes what [`defer_wakes`](Self::defer_wakes) kept.
    pub(crate) fn wake_deferred(&self) {
        let wakers = std::mem::take(&mut *sync::lock(&self.deferred_wakes));
        wakers.into_iter().for_each(std::task::Waker::wake);
    }

    /// After the abort grace: aborted workers still here are given up on, as blocked in their
    /// destructor or as not polled again (or, with `out_of_budget`, as not dropped in time while
    /// others still went); with `give_up`, so is everything not judged yet (it kept registering
    /// past the budget). Returns whether some worker is left unjudged. One log line per name and
    /// reason, however many workers share it.
    ///
    /// A task counts as blocked in its destructor only if it was already dropping at
    /// `dropping_before` (see [`dropping_now`](Self::dropping_now)): one seen dropping just now
    /// is likely in the middle of an ordinary drop.
    pub(crate) fn leak_stragglers(
        &self,
        give_up: bool,
        budget: BudgetEnd,
        dropping_before: &HashSet<usize>,
    ) -> bool {
        // Folded as they are judged: neighbours mostly share a name and a reason, so a run is
        // counted without hashing each of a million names.
        let mut folded: HashMap<(TaskName, WorkerKind, Leak), usize> = HashMap::new();
        let mut run: Option<((TaskName, WorkerKind, Leak), usize)> = None;
        let mut unjudged = false;
        self.registry.judge(None, |entry| {
            let leak = match entry.verdict() {
                Verdict::Aborted
                    if entry.is_dropping() && dropping_before.contains(&entry.address()) =>
                {
                    Leak::Stuck
                }
                Verdict::Aborted => match budget {
                    BudgetEnd::NotReached => Leak::NotPolledAgain,
                    BudgetEnd::WhileAbortedWent => Leak::NotDroppedInBudget,
                    BudgetEnd::NoTimeToTell => Leak::NoTimeToTell,
                },
                Verdict::None if give_up => Leak::LateAfterBudget,
                Verdict::None => {
                    unjudged = true;
                    return None;
                }
                Verdict::Leaked | Verdict::AwaitsReport => return None,
            };
            match &mut run {
                Some(((name, kind, same), count))
                    if *same == leak && *kind == entry.kind() && name == entry.name() =>
                {
                    *count += 1;
                }
                _ => {
                    let key = (entry.name().clone(), entry.kind(), leak);
                    if let Some((key, count)) = run.replace((key, 1)) {
                        *folded.entry(key).or_default() += count;
                    }
                }
            }
            Some((Verdict::Leaked, false))
        });
        if let Some((key, count)) = run {
            *folded.entry(key).or_default() += count;
        }
        for ((name, kind, leak), count) in folded {
            let (outcome, detail) =
                outcome(Fate::Leaked(leak), Duration::ZERO, Verdict::Leaked, false);
            tracing::error!(task = %name, count, "{}", detail.as_deref().unwrap_or_default());
            self.push_records(name, kind, outcome, detail, count);
        }
        unjudged
    }

    /// The aborted tasks dropping their future right now, by address: those still dropping a
    /// moment later are blocked in a destructor.
    pub(crate) fn dropping_now(&self) -> HashSet<usize> {
        let mut dropping = HashSet::new();
        self.registry.for_each(None, |entry| {
            if entry.verdict() == Verdict::Aborted && entry.is_dropping() {
                dropping.insert(entry.address());
            }
        });
        dropping
    }

    /// How many workers are registered: step 3 watches it fall while aborted tasks go.
    pub(crate) fn linked(&self) -> usize {
        self.registry.linked()
    }

    /// Since when step 3 has seen some task in its first poll at every look: the first look of
    /// the current run of such looks (`now` opens one). A look that sees none ends the run
    /// ([`no_unpolled_seen`](Self::no_unpolled_seen)). Tasks keep being spawned through the
    /// stop (requests to a server of a later stage), each in its first poll for a moment: such a
    /// stream leaves looks that see none, so it is never taken for a task blocked there, while
    /// a task that is blocked keeps every look seeing one, whatever else comes and goes.
    pub(crate) fn unpolled_since(&self, now: Instant) -> Instant {
        *crate::util::lock(&self.unpolled_window).get_or_insert(now)
    }

    /// A look of step 3 saw no task in its first poll (that it has not given up on).
    pub(crate) fn no_unpolled_seen(&self) {
        *crate::util::lock(&self.unpolled_window) = None;
    }

    /// Gives up on the tasks still in their first poll: they cannot be named.
    pub(crate) fn give_up_unpolled(&self) {
        *crate::util::lock(&self.unpolled_window) = None;
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
        self.registry.judge(None, |entry| {
            if entry.verdict() != Verdict::None {
                return None;
            }
            late.push((entry.name().clone(), entry.kind()));
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
}

/// Registers the calling worker as awaiting the report while it does: step 3 does not wait for
/// a worker that waits for step 3. Outside a worker of these `workers` it does nothing.
///
/// A report future moved to another task after its first poll (boxed, or shared) and dropped
/// there takes the mark back only if the worker is still linked; one whose first poll was that
/// first poll keeps it (its node, not linked yet, belongs to its own thread).
pub(crate) struct AwaitingReport<'a> {
    workers: &'a Workers,
    /// The worker, while its poll runs; null when it is not one of these workers'.
    worker: *const WorkerGuard,
    /// Its node, to find it again when dropped outside the worker's poll.
    node: *const Node,
}

// SAFETY: the pointers are dereferenced only while the worker they name is being polled on this
// thread (checked against the thread's polling worker); elsewhere `node` is only compared with
// linked nodes, under their shard's lock, before anything reads it.
unsafe impl Send for AwaitingReport<'_> {}
// SAFETY: as above.
unsafe impl Sync for AwaitingReport<'_> {}

impl<'a> AwaitingReport<'a> {
    pub(crate) fn new(workers: &'a Workers) -> AwaitingReport<'a> {
        let mut awaiting = AwaitingReport {
            workers,
            worker: std::ptr::null(),
            node: std::ptr::null(),
        };
        let worker = polling_worker();
        // SAFETY: the worker being polled on this thread is alive for the whole of its poll,
        // which this call is part of.
        let Some(guard) = (unsafe { worker.as_ref() }) else {
            return awaiting;
        };
        if !std::ptr::eq(guard.workers(), workers) {
            return awaiting;
        }
        guard.set_awaiting(true);
        if workers.phase() >= Phase::Draining {
            workers.registered_late();
        }
        awaiting.worker = worker;
        awaiting.node = guard.node();
        awaiting
    }
}

impl Drop for AwaitingReport<'_> {
    fn drop(&mut self) {
        if self.worker.is_null() {
            return;
        }
        if std::ptr::eq(polling_worker(), self.worker) {
            // The wait given up inside the same worker (a `select!`, say): it is alive, and waits
            // for shutdown no more.
            // SAFETY: the worker being polled on this thread is alive during its poll.
            unsafe { (*self.worker).set_awaiting(false) };
        } else {
            // Elsewhere: the worker may have ended. Only a node still linked is alive to unmark.
            self.workers.registry.unmark_awaiting_if_linked(self.node);
        }
    }
}
