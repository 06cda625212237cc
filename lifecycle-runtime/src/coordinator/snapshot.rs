//! Building a [`Snapshot`] of a coordinator: what its registries hold right now.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Coordinator, with_current};
use crate::snapshot::{
    Counters, ResourceSnapshot, ShutdownView, Snapshot, TaskSnapshot, TaskState, ThreadSnapshot,
};
use crate::workers::WorkerKind;

/// Says the current coordinator's program is ready to serve; see [`Coordinator::mark_ready`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # lifecycle_runtime::Coordinator::new().scope(async {
/// use lifecycle_runtime::Readiness;
///
/// assert_eq!(lifecycle_runtime::snapshot().readiness, Readiness::Starting);
/// // ... open connections, bind listeners ...
/// lifecycle_runtime::mark_ready();
/// assert!(lifecycle_runtime::snapshot().ready);
/// # }).await;
/// # }
/// ```
pub fn mark_ready() {
    with_current(Coordinator::mark_ready);
}

/// A snapshot of the current coordinator.
pub fn snapshot() -> Snapshot {
    with_current(Coordinator::snapshot)
}

impl Coordinator {
    /// A snapshot of this coordinator; see [`snapshot`].
    pub fn snapshot(&self) -> Snapshot {
        // Read once: `ready` and `readiness` never disagree.
        let readiness = self.readiness();
        let workers = &self.state.workers;
        let mut tasks = Vec::new();
        let mut threads = Vec::new();
        workers.for_each(|worker| {
            let state_cell = worker.loop_key().and_then(|key| workers.loop_state(key));
            let state = state_cell
                .as_ref()
                .map_or(TaskState::Running, |cell| cell.state());
            let ticks = state_cell.as_ref().map_or(0, |cell| cell.ticks());
            let restarts = state_cell.as_ref().map_or(0, |cell| cell.restarts());
            let last_failure = state_cell.as_ref().and_then(|cell| cell.last_failure());
            let age = worker.age();
            let name = worker.name().to_string();
            match worker.kind() {
                WorkerKind::Thread => threads.push(ThreadSnapshot {
                    name,
                    state,
                    ticks,
                    restarts,
                    last_failure,
                    age,
                }),
                kind => tasks.push(TaskSnapshot {
                    name,
                    main: kind == WorkerKind::Main,
                    state,
                    ticks,
                    restarts,
                    last_failure,
                    age,
                }),
            }
        });
        let totals = workers.totals();
        let failures = workers.failures();
        let counters = Counters {
            spawned: totals.spawned,
            completed: totals.completed,
            cancelled: totals.cancelled,
            failed: failures.failed.load(Ordering::Relaxed),
            timed_out: failures.timed_out.load(Ordering::Relaxed),
            panicked: failures.panicked.load(Ordering::Relaxed),
        };
        tasks.sort_by_key(|task| std::cmp::Reverse(task.age));
        threads.sort_by_key(|thread| std::cmp::Reverse(thread.age));
        let resources = self
            .state
            .resources
            .open()
            .into_iter()
            .map(|(name, kind, close_timeout)| ResourceSnapshot {
                name,
                kind,
                close_timeout: (close_timeout != Duration::MAX).then_some(close_timeout),
            })
            .collect();
        Snapshot {
            ready: readiness == crate::snapshot::Readiness::Ready,
            readiness,
            shutting_down: self.is_shutting_down(),
            tasks,
            starting: workers.unpolled(),
            threads,
            counters,
            groups: self.state.groups.snapshots(),
            resources,
            pools: self.state.pools.snapshots(),
            shutdown: self.shutdown_view(),
        }
    }

    /// The shutdown so far, for a live view: the entries recorded by the steps done, those of
    /// workers that ended since (left in place for the report), and what is still awaited; once
    /// the report is made, its entries.
    fn shutdown_view(&self) -> Option<ShutdownView> {
        let reason = self.reason()?.to_string();
        let started = self.state.start.at();
        let budget = self.sequence_config().shutdown_timeout;
        let stop_started = self
            .state
            .workers
            .stop_started()
            .map(|at| at.saturating_duration_since(started));
        if let Some(report) = self.state.sequence.report() {
            return Some(ShutdownView {
                reason,
                done: true,
                elapsed: report.elapsed(),
                budget,
                stop_started,
                entries: report.entries().to_vec(),
                waiting_for: Vec::new(),
                not_told: Vec::new(),
            });
        }
        let mut entries = self.state.sequence.recorded();
        entries.extend(self.state.workers.peek_entries(started));
        // With the resource being closed, `resource <name> (closing)`.
        let (waiting_for, not_told) = self.pending_split(LIVE_NAMES, true);
        Some(ShutdownView {
            reason,
            done: false,
            elapsed: started.elapsed(),
            budget,
            stop_started,
            entries,
            waiting_for,
            not_told,
        })
    }
}

/// How many names (each folded with its count) a live view lists as awaited.
const LIVE_NAMES: usize = 50;
