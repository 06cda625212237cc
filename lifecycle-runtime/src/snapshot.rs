//! The health snapshot's types: tasks, threads, counters, groups, resources and pools at one
//! moment, and the cells live workers publish their state in. The coordinator fills a
//! [`Snapshot`] in (`coordinator/snapshot.rs`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::report::EntryKind;
use crate::util::lock;

/// Counters of everything that ran, since the coordinator was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Counters {
    /// Tasks and threads started.
    pub spawned: u64,
    /// Tasks and threads that ended by themselves (successfully or not).
    pub completed: u64,
    /// Task errors and `#[background]` ticks that returned `Err`.
    pub failed: u64,
    /// Ticks and group tasks cancelled for running past their limit.
    pub timed_out: u64,
    /// Panics caught in tasks, ticks and threads.
    pub panicked: u64,
    /// Tasks cancelled before they ended (aborted by a handle or by shutdown).
    pub cancelled: u64,
}

/// What a task is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskState {
    /// Running (a plain task, a service, `main`, a thread).
    Running,
    /// A `#[background]` loop waiting for its next tick; uses no CPU.
    Idle,
    /// A `#[background]` loop running a tick.
    Ticking,
    /// A `#[background]` loop running its last tick after shutdown (`final_tick`).
    FinalTick,
    /// A supervised `#[background]` service (`restart = ...`) waiting out its backoff before it
    /// runs again.
    Restarting,
}

/// The state a `#[background]` loop publishes for snapshots (and, for a supervised service, its
/// restarts for the report).
#[derive(Debug, Default)]
pub(crate) struct StateCell {
    state: AtomicU8,
    ticks: AtomicU64,
    restarts: AtomicU64,
    /// Only a supervised service writes it, once per failed run.
    failures: Mutex<Failures>,
}

/// A supervised service's latest failure.
#[derive(Debug, Default)]
struct Failures {
    last: Option<String>,
    /// It failed past its `max_restarts`: its error says so, its entry needs no more.
    gave_up: bool,
}

impl StateCell {
    pub(crate) fn set(&self, state: TaskState) {
        let value = match state {
            TaskState::Running => 0,
            TaskState::Idle => 1,
            TaskState::Ticking => 2,
            TaskState::FinalTick => 3,
            TaskState::Restarting => 4,
        };
        self.state.store(value, Ordering::Relaxed);
    }

    /// A tick started; `ticks` counts them (only the loop itself writes it, so a store will do).
    pub(crate) fn tick_started(&self, state: TaskState, ticks: u64) {
        self.set(state);
        self.ticks.store(ticks, Ordering::Relaxed);
    }

    pub(crate) fn state(&self) -> TaskState {
        match self.state.load(Ordering::Relaxed) {
            1 => TaskState::Idle,
            2 => TaskState::Ticking,
            3 => TaskState::FinalTick,
            4 => TaskState::Restarting,
            _ => TaskState::Running,
        }
    }

    pub(crate) fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// A supervised service's run failed (`failure` says how); `restarting` when it waits to
    /// run again.
    pub(crate) fn failed(&self, failure: &str, restarting: bool) {
        lock(&self.failures).last = Some(failure.to_owned());
        if restarting {
            self.set(TaskState::Restarting);
        }
    }

    /// A supervised service failed past its `max_restarts` and ends.
    pub(crate) fn gave_up(&self, failure: &str) {
        let mut failures = lock(&self.failures);
        failures.last = Some(failure.to_owned());
        failures.gave_up = true;
    }

    /// A supervised service runs again (only the loop itself writes the count).
    pub(crate) fn restarted(&self) {
        self.restarts.store(self.restarts() + 1, Ordering::Relaxed);
        self.set(TaskState::Running);
    }

    pub(crate) fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    pub(crate) fn last_failure(&self) -> Option<String> {
        lock(&self.failures).last.clone()
    }

    /// What a restarted service's report entry says of it: `restarted 2 times; last failure:
    /// ...`. Nothing for a service never restarted, or one that gave up (its error says it).
    pub(crate) fn restart_note(&self) -> Option<String> {
        let restarts = self.restarts();
        let failures = lock(&self.failures);
        if restarts == 0 || failures.gave_up {
            return None;
        }
        let times = if restarts == 1 { "time" } else { "times" };
        Some(match &failures.last {
            Some(failure) => format!("restarted {restarts} {times}; last failure: {failure}"),
            None => format!("restarted {restarts} {times}"),
        })
    }
}

/// One live task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TaskSnapshot {
    /// Its name.
    pub name: String,
    /// `true` for the body of `#[lifecycle_runtime::main]`.
    pub main: bool,
    /// What it is doing.
    pub state: TaskState,
    /// Ticks started so far (`#[background]` loops with an interval; 0 otherwise).
    pub ticks: u64,
    /// Times a supervised `#[background]` service (`restart = ...`) was started again.
    pub restarts: u64,
    /// A supervised service's latest failure, as displayed (`panicked: ...` for a panic).
    pub last_failure: Option<String>,
    /// How long it has been alive.
    #[serde(rename = "age_secs", serialize_with = "crate::util::secs")]
    pub age: Duration,
}

/// One live OS thread started through this crate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ThreadSnapshot {
    /// Its name (the OS sees at most the first 15 bytes on Linux).
    pub name: String,
    /// What it is doing.
    pub state: TaskState,
    /// Ticks started so far (interval threads; 0 otherwise).
    pub ticks: u64,
    /// Times a supervised `#[background(thread)]` service was started again.
    pub restarts: u64,
    /// A supervised service's latest failure, as displayed.
    pub last_failure: Option<String>,
    /// How long it has been alive.
    #[serde(rename = "age_secs", serialize_with = "crate::util::secs")]
    pub age: Duration,
}

/// One task group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GroupSnapshot {
    /// Its name.
    pub name: String,
    /// Its concurrency limit, if it has one.
    pub max_concurrent: Option<usize>,
    /// Permits held right now.
    pub in_use: usize,
    /// Tasks and ticks waiting for a permit.
    pub waiting: usize,
}

/// A connection pool's state and counters (the database layer fills it in).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PoolSnapshot {
    /// The pool's name.
    pub name: String,
    /// Which database is live (`postgres`, `sqlite`).
    pub backend: String,
    /// Why the primary is not used, when the pool is a fallback.
    pub fallback_reason: Option<String>,
    /// Whether the pool has been closed.
    pub closed: bool,
    /// Open connections.
    pub size: u32,
    /// Open connections not in use.
    pub idle: usize,
    /// Connections checked out through `acquire`.
    pub in_use: usize,
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// Tasks waiting for a connection.
    pub waiters: usize,
    /// Connections handed out.
    pub acquires: u64,
    /// Acquires that gave up waiting.
    pub acquire_timeouts: u64,
    /// Mean wait for a connection.
    #[serde(rename = "acquire_wait_avg_secs", serialize_with = "crate::util::secs")]
    pub acquire_wait_avg: Duration,
    /// Longest wait for a connection.
    #[serde(rename = "acquire_wait_max_secs", serialize_with = "crate::util::secs")]
    pub acquire_wait_max: Duration,
    /// Mean time a connection was held.
    #[serde(rename = "hold_avg_secs", serialize_with = "crate::util::secs")]
    pub hold_avg: Duration,
    /// Longest time a connection was held.
    #[serde(rename = "hold_max_secs", serialize_with = "crate::util::secs")]
    pub hold_max: Duration,
    /// Connections logged as probable leaks.
    pub suspected_leaks: u64,
    /// The connections checked out right now through `acquire` or queries on the database,
    /// oldest first: where each was acquired, by which task, for how long.
    pub held: Vec<HeldConnection>,
}

/// A connection someone holds: where it was acquired, by which task, for how long (what
/// [`PoolSnapshot::held`] and `Database::held` list).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HeldConnection {
    /// `file:line:column` of the `acquire` call, or ``query `SELECT …` `` for a connection a
    /// query on the database itself took (its SQL, cut at 80 characters).
    pub site: String,
    /// Taken by a query on the database itself (`query.execute(&db)`), not by `acquire`.
    pub by_query: bool,
    /// The tracked task (or thread) that acquired it, if any.
    pub task: Option<String>,
    /// Whether that task is known to have ended: the connection outlived its holder, kept in a
    /// value that lives on (a cache, a static) or forgotten. Never true of a holder that may still
    /// run.
    pub task_ended: bool,
    /// How long it has been held.
    #[serde(rename = "held_for_secs", serialize_with = "crate::util::secs")]
    pub held_for: Duration,
}

impl HeldConnection {
    /// "acquired at src/jobs.rs:41:22 by task `ingest`, held for 12.3s".
    #[allow(dead_code, reason = "used by the database layer, behind its features")]
    pub(crate) fn describe(&self) -> String {
        let by = match (&self.task, self.task_ended) {
            (Some(name), false) => format!(" by task `{name}`"),
            (Some(name), true) => format!(
                " by task `{name}`, which has ended (the connection outlived it: kept in a value that lives on, or forgotten)"
            ),
            (None, _) => " outside any tracked task".to_owned(),
        };
        let at = if self.by_query {
            "acquired for"
        } else {
            "acquired at"
        };
        format!(
            "{at} {}{by}, held for {}",
            self.site,
            crate::util::format_duration(self.held_for)
        )
    }
}

/// Something that reports a pool's state into snapshots (keeps the coordinator free of any
/// database library).
pub(crate) trait PoolStats: Send + Sync {
    fn pool_snapshot(&self) -> PoolSnapshot;
}

/// One open resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ResourceSnapshot {
    /// Its name in reports.
    pub name: String,
    /// What it is: `resource` (a managed value) or `process` (a managed subprocess).
    pub kind: EntryKind,
    /// The longest its close may take at shutdown: its `close_timeout` (for a
    /// `#[managed_resource]`, its fields' limits added up, as it closes them one by one; for a
    /// subprocess, its stop timeout). `None` (JSON `null`) when it has no limit. Shutdown also
    /// cuts it at what is left of its budget.
    #[serde(
        rename = "close_timeout_secs",
        serialize_with = "crate::util::opt_secs"
    )]
    pub close_timeout: Option<Duration>,
}

/// Where a program stands, from start-up to the report: what a readiness probe reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Readiness {
    /// Started, not ready yet: the program has not called [`mark_ready`](crate::mark_ready).
    Starting,
    /// Ready to serve.
    Ready,
    /// Shutdown started and the drain runs: still serving, but load balancers should stop
    /// sending traffic.
    Draining,
    /// Tasks were told to stop; resources close.
    Stopping,
    /// Shutdown is done: the report is made.
    Stopped,
}

impl Readiness {
    /// The name a probe or a page shows: `starting`, `ready`, `draining`, `stopping`, `stopped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::Starting => "starting",
            Readiness::Ready => "ready",
            Readiness::Draining => "draining",
            Readiness::Stopping => "stopping",
            Readiness::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a coordinator at one moment. Serialize it for a health endpoint.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # lifecycle_runtime::Coordinator::new().scope(async {
/// let task = lifecycle_runtime::spawn("idle", async {
///     lifecycle_runtime::shutdown_signal().triggered().await;
/// });
/// // Spawned but not polled yet: counted as starting.
/// assert_eq!(lifecycle_runtime::snapshot().starting, 1);
/// tokio::task::yield_now().await;
/// let snapshot = lifecycle_runtime::snapshot();
/// assert_eq!(snapshot.starting, 0);
/// // Not ready until the program says so.
/// assert!(!snapshot.ready);
/// assert_eq!(snapshot.tasks[0].name, "idle");
/// assert_eq!(snapshot.counters.spawned, 1);
/// # drop(task);
/// # }).await;
/// # }
/// ```
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// Whether to answer readiness probes "ready": the program called
    /// [`mark_ready`](crate::mark_ready) and shutdown has not started.
    pub ready: bool,
    /// Where the program stands: starting, ready, draining, stopping or stopped.
    pub readiness: Readiness,
    /// Whether shutdown has been triggered.
    pub shutting_down: bool,
    /// Live tasks, oldest first. A task is listed from the first time it waits; see `starting`.
    pub tasks: Vec<TaskSnapshot>,
    /// Tasks spawned that have not been polled yet (or are in their first poll): counted, not
    /// listed.
    pub starting: u64,
    /// Live OS threads started through this crate.
    pub threads: Vec<ThreadSnapshot>,
    /// Counters since start.
    pub counters: Counters,
    /// Task groups.
    pub groups: Vec<GroupSnapshot>,
    /// Open resources, in the order they will close.
    pub resources: Vec<ResourceSnapshot>,
    /// Connection pools: size, use, waits, timeouts, hold times, and which backend is live.
    pub pools: Vec<PoolSnapshot>,
    /// The shutdown as it goes, once it started (`null` in JSON before): the report's timeline
    /// so far, and what it still waits for. After the report, the report's own entries.
    pub shutdown: Option<ShutdownView>,
}

/// A shutdown under way (or done), as a snapshot sees it: the same entries the report prints,
/// those known so far, and what is still awaited. What a live view draws as a waterfall.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let coordinator = lifecycle_runtime::Coordinator::new();
/// assert!(coordinator.snapshot().shutdown.is_none());
/// let report = coordinator.shutdown().await;
/// let view = coordinator.snapshot().shutdown.expect("shutdown started");
/// assert!(view.done);
/// assert_eq!(view.entries.len(), report.entries().len());
/// # }
/// ```
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct ShutdownView {
    /// Why shutdown started, as the report says it.
    pub reason: String,
    /// Whether the report is made.
    pub done: bool,
    /// Since shutdown started.
    #[serde(rename = "elapsed_secs", serialize_with = "crate::util::secs")]
    pub elapsed: Duration,
    /// The shutdown budget.
    #[serde(rename = "budget_secs", serialize_with = "crate::util::secs")]
    pub budget: Duration,
    /// When tasks were told to stop (the end of the drain), from the start; `None` before.
    #[serde(rename = "stop_started_secs", serialize_with = "crate::util::opt_secs")]
    pub stop_started: Option<Duration>,
    /// The report's entries known so far, in the report's order and shape.
    pub entries: Vec<crate::report::Entry>,
    /// What it still waits for (`task http ×3`, `resource database orders`), folded by name.
    /// Workers of a stop order's stages not told to stop yet are in `not_told` instead.
    pub waiting_for: Vec<String>,
    /// Workers of a stop order's later stages, still at work because their stage is not told
    /// to stop yet (`task batch-writer items`), folded by name.
    pub not_told: Vec<String>,
}
