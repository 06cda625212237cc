//! The shutdown coordinator: registries of tasks, threads and resources, and the bounded shutdown
//! sequence that stops and closes them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::group::GroupInner;
use crate::os_threads;
use crate::panic::CatchUnwind;
pub(crate) use crate::registry::WorkerKind;
use crate::registry::{Control, Ended, Verdict, WorkerEntry, WorkerRegistry};
use crate::report::{Entry, EntryKind, Outcome, ShutdownReport};
use crate::resource::ResourceRegistry;
use crate::shutdown::{Shutdown, ShutdownReason};
use crate::snapshot::CounterCells;
use crate::task::TaskName;

/// The global budget for the whole shutdown sequence when nothing else is configured.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the coordinator waits for aborted tasks to actually go before it calls them leaked.
/// An abort takes effect at the task's next `.await`; a task still present after this is blocking
/// its worker thread in synchronous code.
const ABORT_GRACE: Duration = Duration::from_millis(100);

/// The least time aborted tasks get even when the budget is spent: enough for the runtime to poll
/// (and so drop) them once.
const MIN_ABORT_GRACE: Duration = Duration::from_millis(5);

/// How soon step 3 looks again when tasks spawned just before it have not been polled yet.
const UNPOLLED_RECHECK: Duration = Duration::from_millis(1);

/// Far enough ahead to mean "never" (what tokio itself uses for an unbounded sleep).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `at + by`, where a sum past what `Instant` can hold means "never" instead of a panic: budgets
/// and timeouts come from configuration, and `Duration::MAX` is a natural way to write "no limit".
pub(crate) fn after(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .or_else(|| at.checked_add(FAR_FUTURE))
        .unwrap_or(at)
}

/// A worker leaving the registry: by key, or (a task that ended on its first poll) by what it
/// carried.
pub(crate) enum Leaving<'a> {
    Registered(usize),
    Unregistered(&'a crate::task::WorkerMeta),
}

tokio::task_local! {
    static CURRENT: Coordinator;
}

thread_local! {
    static THREAD_CURRENT: RefCell<Option<Coordinator>> = const { RefCell::new(None) };
}

static GLOBAL: OnceLock<Coordinator> = OnceLock::new();

/// Where the shutdown sequence is.
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

/// Settings of one coordinator.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) shutdown_timeout: Duration,
    pub(crate) drain: Duration,
    /// Whether the report lists OS threads still alive after shutdown (from `/proc`). Off for
    /// coordinators that share their process with others (tests), where a thread cannot be
    /// attributed.
    pub(crate) scan_os_threads: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            drain: Duration::ZERO,
            scan_os_threads: true,
        }
    }
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

/// A worker's ending, kept while shutdown is under way for the report.
#[derive(Debug)]
struct StopRecord {
    name: TaskName,
    kind: WorkerKind,
    outcome: Outcome,
    detail: Option<String>,
    ended: Instant,
}

pub(crate) struct Inner {
    is_global: bool,
    config: Mutex<Config>,
    reason: OnceLock<ShutdownReason>,
    /// Cancelled when shutdown is triggered (step 1).
    triggered: CancellationToken,
    /// Cancelled when tasks are told to stop (step 3): the token behind [`Shutdown`].
    pub(crate) stop: CancellationToken,
    /// Set with `stop`, so that asking whether it fired is a plain atomic load.
    pub(crate) stopped: AtomicBool,
    /// The same moment as `stop`, for OS threads waiting in blocking code.
    blocking_stop: (Mutex<bool>, Condvar),
    ready: AtomicBool,
    phase: AtomicU8,
    pub(crate) workers: WorkerRegistry,
    /// Set once shutdown aborted some task: only then do tasks look up whether they were.
    aborts_issued: AtomicBool,
    /// Tasks still in their first poll that step 3 gave up on (they block their thread).
    ignored_unpolled: AtomicU64,
    settled: Notify,
    pub(crate) resources: Mutex<ResourceRegistry>,
    pub(crate) groups: Mutex<HashMap<Arc<str>, Arc<GroupInner>>>,
    /// Pools reporting into snapshots.
    pools: Mutex<Vec<std::sync::Weak<dyn crate::snapshot::PoolStats>>>,
    pub(crate) counters: CounterCells,
    stop_records: Mutex<Vec<StopRecord>>,
    sequence_started_at: OnceLock<Instant>,
    /// The settings in force when shutdown was triggered: read once, so a concurrent change cannot
    /// give the trigger and the sequence different ideas of the drain.
    sequence_config: OnceLock<Config>,
    stop_started_at: OnceLock<Instant>,
    /// Claimed by the task that runs the sequence, at its first poll; given back if that task is
    /// dropped before it reported (its runtime shut down).
    sequence_running: AtomicBool,
    /// Woken when the task running the sequence was dropped before it reported.
    sequence_lost: Notify,
    /// Set when a worker registers after the stop signal, so step 3 takes its stop timeout into
    /// account.
    rescan: AtomicBool,
    /// Tasks awaiting the report (by tokio id): step 3 does not wait for them, since they wait for
    /// it.
    awaiting_report: Mutex<Vec<tokio::task::Id>>,
    /// The resource being closed right now, for the "still pending" list of a second signal.
    closing_now: Mutex<Option<String>>,
    report: watch::Sender<Option<Arc<ShutdownReport>>>,
    /// The first runtime seen, for a trigger from a plain OS thread.
    handle: OnceLock<tokio::runtime::Handle>,
    baseline_threads: Vec<os_threads::OsThread>,
}

/// Registries of tasks, threads and resources, and the shutdown sequence over them.
///
/// Cheap to clone: clones share one coordinator. Most programs never name this type: the
/// process-global coordinator serves `#[lifecycle_runtime::main]`, and `#[lifecycle_runtime::test]`
/// gives each test its own. Embedders that run several independent services in one process create
/// one per service and run each service inside [`Coordinator::scope`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use lifecycle_runtime::Coordinator;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let coordinator = Coordinator::builder()
///     .shutdown_timeout(Duration::from_secs(5))
///     .build();
/// let report = coordinator
///     .scope(async {
///         lifecycle_runtime::spawn("waiter", async {
///             lifecycle_runtime::shutdown_signal().triggered().await;
///         });
///         lifecycle_runtime::shutdown().await
///     })
///     .await;
/// assert!(report.is_clean(), "{report}");
/// # }
/// ```
#[derive(Clone)]
pub struct Coordinator {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coordinator")
            .field("global", &self.inner.is_global)
            .field("phase", &self.phase())
            .field("reason", &self.inner.reason.get())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Coordinator`] with its own budget and drain time.
#[derive(Debug, Clone, Default)]
pub struct CoordinatorBuilder {
    config: Config,
}

impl CoordinatorBuilder {
    /// The global budget for the whole shutdown sequence (drain, stop, close, report).
    /// Default: [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub fn shutdown_timeout(mut self, budget: Duration) -> Self {
        self.config.shutdown_timeout = budget;
        self
    }

    /// How long to wait after readiness flips to false before tasks are told to stop, so a load
    /// balancer can stop sending traffic. Default: zero.
    pub fn drain(mut self, drain: Duration) -> Self {
        self.config.drain = drain;
        self
    }

    /// Whether the report lists OS threads that are still alive after shutdown and were not
    /// started through this crate (Linux only). Default: on. Turn it off when the coordinator
    /// shares its process with unrelated work, as tests do.
    pub fn scan_os_threads(mut self, scan: bool) -> Self {
        self.config.scan_os_threads = scan;
        self
    }

    /// Creates the coordinator.
    pub fn build(self) -> Coordinator {
        Coordinator::from_config(self.config, false)
    }
}

impl Default for Coordinator {
    fn default() -> Self {
        Coordinator::new()
    }
}

impl Coordinator {
    /// A coordinator with default settings.
    pub fn new() -> Coordinator {
        CoordinatorBuilder::default().build()
    }

    /// Starts building a coordinator.
    pub fn builder() -> CoordinatorBuilder {
        CoordinatorBuilder::default()
    }

    fn from_config(config: Config, is_global: bool) -> Coordinator {
        let baseline_threads = if config.scan_os_threads {
            os_threads::list()
        } else {
            Vec::new()
        };
        Coordinator {
            inner: Arc::new(Inner {
                is_global,
                config: Mutex::new(config),
                reason: OnceLock::new(),
                triggered: CancellationToken::new(),
                stop: CancellationToken::new(),
                stopped: AtomicBool::new(false),
                blocking_stop: (Mutex::new(false), Condvar::new()),
                ready: AtomicBool::new(true),
                phase: AtomicU8::new(Phase::Running as u8),
                workers: WorkerRegistry::new(),
                aborts_issued: AtomicBool::new(false),
                ignored_unpolled: AtomicU64::new(0),
                settled: Notify::new(),
                resources: Mutex::new(ResourceRegistry::default()),
                groups: Mutex::new(HashMap::new()),
                pools: Mutex::new(Vec::new()),
                counters: CounterCells::default(),
                stop_records: Mutex::new(Vec::new()),
                sequence_started_at: OnceLock::new(),
                sequence_config: OnceLock::new(),
                stop_started_at: OnceLock::new(),
                sequence_running: AtomicBool::new(false),
                sequence_lost: Notify::new(),
                rescan: AtomicBool::new(false),
                awaiting_report: Mutex::new(Vec::new()),
                closing_now: Mutex::new(None),
                report: watch::Sender::new(None),
                handle: OnceLock::new(),
                baseline_threads,
            }),
        }
    }

    /// The process-global coordinator, created on first use with default settings.
    pub fn global() -> &'static Coordinator {
        GLOBAL.get_or_init(|| Coordinator::from_config(Config::default(), true))
    }

    /// The coordinator that free functions ([`spawn`](crate::spawn), [`shutdown`](crate::shutdown),
    /// macros) act on here: the innermost [`scope`](Self::scope), else the coordinator of the OS
    /// thread (see [`enter`](Self::enter)), else [`global`](Self::global).
    pub fn current() -> Coordinator {
        with_current(Coordinator::clone)
    }

    /// Runs `fut` with this coordinator as the current one. Tasks spawned through this crate
    /// inside it inherit the scope.
    pub fn scope<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> + use<F> {
        CURRENT.scope(self.clone(), fut)
    }

    /// Makes this coordinator the current one for synchronous code on this OS thread until the
    /// guard is dropped.
    pub fn enter(&self) -> EnterGuard {
        let previous = THREAD_CURRENT.with(|slot| slot.replace(Some(self.clone())));
        EnterGuard { previous }
    }

    /// Changes the shutdown budget. Takes effect if shutdown has not started yet.
    pub fn set_shutdown_timeout(&self, budget: Duration) {
        self.config_mut().shutdown_timeout = budget;
    }

    /// Changes the drain time. Takes effect if shutdown has not started yet.
    pub fn set_drain(&self, drain: Duration) {
        self.config_mut().drain = drain;
    }

    /// The shutdown budget in force.
    pub fn shutdown_timeout(&self) -> Duration {
        self.config().shutdown_timeout
    }

    /// The token that tasks and threads watch; see [`Shutdown`].
    pub fn shutdown_signal(&self) -> Shutdown {
        Shutdown::new(self.clone())
    }

    /// Starts shutdown without waiting for it. Idempotent: only the first reason is kept.
    /// Works from synchronous code and from any thread.
    #[track_caller]
    pub fn trigger_shutdown(&self) {
        self.trigger(ShutdownReason::Requested {
            location: crate::shutdown::Location::caller(),
        });
    }

    /// Starts shutdown (if it has not started) and waits for the report. Concurrent and repeated
    /// callers get the same report.
    #[track_caller]
    pub fn shutdown(&self) -> impl Future<Output = ShutdownReport> + Send + use<> {
        let reason = ShutdownReason::Requested {
            location: crate::shutdown::Location::caller(),
        };
        self.shutdown_with(reason)
    }

    /// Starts shutdown for `reason` and waits for the report.
    pub(crate) fn shutdown_with(
        &self,
        reason: ShutdownReason,
    ) -> impl Future<Output = ShutdownReport> + Send + use<> {
        self.trigger(reason);
        let this = self.clone();
        async move { this.report().await }
    }

    /// Waits until shutdown has been triggered and finished, and returns the report. Does not
    /// trigger anything itself.
    ///
    /// A tracked task (or the body of `main`) may await it: step 3 does not wait for a task that
    /// is waiting for the report.
    pub async fn report(&self) -> ShutdownReport {
        let _awaiting = AwaitingReport::new(self);
        let mut rx = self.inner.report.subscribe();
        loop {
            let lost = self.inner.sequence_lost.notified();
            tokio::pin!(lost);
            lost.as_mut().enable();
            // Triggered from a thread before any runtime was known, or the runtime that ran the
            // sequence is gone: the sequence (re)starts here.
            self.start_sequence();
            tokio::select! {
                biased;
                report = rx.wait_for(Option::is_some) => {
                    return match report.ok().and_then(|report| report.clone()) {
                        Some(report) => (*report).clone(),
                        // Unreachable: `inner` owns the sender for as long as `self` lives.
                        None => ShutdownReport::empty(),
                    };
                }
                () = &mut lost => {}
            }
        }
    }

    /// Waits until shutdown is triggered (step 1), before any drain.
    pub async fn triggered(&self) {
        self.inner.triggered.cancelled().await;
    }

    /// Whether shutdown has been triggered.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.is_cancelled()
    }

    /// Why shutdown was triggered, once it was.
    pub fn reason(&self) -> Option<&ShutdownReason> {
        self.inner.reason.get()
    }

    /// False from the moment shutdown is triggered: a readiness probe should answer "not ready".
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Names of what shutdown is still waiting for: live tasks and threads, the resource being
    /// closed, and resources not closed yet.
    pub fn pending(&self) -> Vec<String> {
        let mut pending = Vec::new();
        self.inner
            .workers
            .for_each(|entry| pending.push(format!("{} {}", entry.kind.entry_kind(), entry.name)));
        if let Some(name) = lock(&self.inner.closing_now).clone() {
            pending.push(format!("resource {name} (closing)"));
        }
        pending.extend(
            lock(&self.inner.resources)
                .open_names()
                .into_iter()
                .map(|name| format!("resource {name}")),
        );
        pending
    }

    /// Adds a pool to snapshots (it is dropped from them when it goes away).
    #[allow(dead_code, reason = "used by the database layer, behind its features")]
    pub(crate) fn add_pool_stats(&self, pool: std::sync::Weak<dyn crate::snapshot::PoolStats>) {
        lock(&self.inner.pools).push(pool);
    }

    pub(crate) fn pool_snapshots(&self) -> Vec<crate::snapshot::PoolSnapshot> {
        let mut pools = lock(&self.inner.pools);
        pools.retain(|pool| pool.strong_count() > 0);
        pools
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .map(|pool| pool.pool_snapshot())
            .collect()
    }

    /// The name of a live tracked task, by its tokio id (a scan: for reports, not hot paths).
    #[allow(dead_code, reason = "used by the database layer, behind its features")]
    pub(crate) fn task_name(&self, id: tokio::task::Id) -> Option<TaskName> {
        let mut name = None;
        self.inner.workers.for_each(|entry| {
            if entry.task_id == Some(id) {
                name = Some(entry.name.clone());
            }
        });
        name
    }

    // ----- crate-internal plumbing -------------------------------------------------------------

    pub(crate) fn config(&self) -> Config {
        lock(&self.inner.config).clone()
    }

    fn config_mut(&self) -> MutexGuard<'_, Config> {
        lock(&self.inner.config)
    }

    pub(crate) fn is_global(&self) -> bool {
        self.inner.is_global
    }

    pub(crate) fn phase(&self) -> Phase {
        // SeqCst with the first-poll counters: a task ending in its first poll stores its count
        // then loads the phase, the sequence stores the phase then loads the counts, and at least
        // one of the two must see the other (free on x86, needed on weaker memory models).
        Phase::from_u8(self.inner.phase.load(Ordering::SeqCst))
    }

    fn set_phase(&self, phase: Phase) {
        self.inner.phase.store(phase as u8, Ordering::SeqCst);
    }

    pub(crate) fn workers(&self) -> &WorkerRegistry {
        &self.inner.workers
    }

    /// Remembers the runtime so that a trigger from a plain OS thread can run the sequence there.
    /// Called on every spawn, so only the first runtime is kept (a load when set). A `report()`
    /// caller runs the sequence on its own runtime if that one is gone.
    pub(crate) fn remember_runtime(&self) {
        if self.inner.handle.get().is_none() {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let _ = self.inner.handle.set(handle);
            }
        }
    }

    /// Blocks the calling OS thread until tasks are told to stop or `timeout` passes.
    /// Returns true when stopped.
    pub(crate) fn wait_stop_blocking(&self, timeout: Option<Duration>) -> bool {
        let (flag, condvar) = &self.inner.blocking_stop;
        let guard = lock(flag);
        match timeout {
            None => {
                let guard = condvar
                    .wait_while(guard, |stopped| !*stopped)
                    .unwrap_or_else(|poison| poison.into_inner());
                *guard
            }
            Some(timeout) => {
                let (guard, _) = condvar
                    .wait_timeout_while(guard, timeout, |stopped| !*stopped)
                    .unwrap_or_else(|poison| poison.into_inner());
                *guard
            }
        }
    }

    /// Step 1. Returns true for the first trigger.
    pub(crate) fn trigger(&self, reason: ShutdownReason) -> bool {
        let first = self.inner.reason.set(reason).is_ok();
        if first {
            let _ = self.inner.sequence_started_at.set(Instant::now());
            self.inner.ready.store(false, Ordering::Release);
            self.set_phase(Phase::Draining);
            if let Some(reason) = self.inner.reason.get() {
                tracing::info!(%reason, "shutdown triggered");
            }
            let config = self.inner.sequence_config.get_or_init(|| self.config());
            self.inner.triggered.cancel();
            if config.drain.is_zero() {
                // No drain: tasks hear it now, not when the sequence task gets scheduled.
                self.signal_stop();
            }
            self.start_sequence();
        }
        first
    }

    /// Tells tasks and threads to stop (step 3). Idempotent.
    fn signal_stop(&self) {
        let _ = self.inner.stop_started_at.set(Instant::now());
        if self.phase() < Phase::Stopping {
            self.set_phase(Phase::Stopping);
        }
        self.inner.stopped.store(true, Ordering::Release);
        self.inner.stop.cancel();
        let (flag, condvar) = &self.inner.blocking_stop;
        *lock(flag) = true;
        condvar.notify_all();
        // `#[background]` loops wait on their timer alone and are woken here. A loop that
        // registers while this runs sees `stopped` itself (the shard lock orders the two).
        let mut loops = Vec::new();
        self.inner.workers.for_each(|entry| {
            if let (Some(_), Control::Task(waker)) = (&entry.state, &entry.control) {
                loops.push(waker.clone());
            }
        });
        loops.into_iter().for_each(Waker::wake);
    }

    /// Spawns a task to run the shutdown sequence, on the current runtime or the remembered one,
    /// unless one is running. Several may be spawned (each `report()` caller spawns one on its own
    /// runtime, in case the remembered runtime is not driven any more); the first polled runs the
    /// sequence and the others return at once.
    fn start_sequence(&self) {
        if !self.is_triggered()
            || self.inner.sequence_running.load(Ordering::Acquire)
            || self.inner.report.borrow().is_some()
        {
            return;
        }
        let handle = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.inner.handle.get().cloned());
        // No runtime yet: the first `shutdown().await` or `report()` caller starts it.
        if let Some(handle) = handle {
            // In this coordinator's scope: what closes spawn or manage belongs to it.
            handle.spawn(in_scope(self, self.clone().run_sequence_once()));
        }
    }

    /// Runs the sequence and publishes its report, unless another task already does. A panic in
    /// the sequence still produces a report (naming it), so no caller of `report()` waits forever.
    async fn run_sequence_once(self) {
        if self.inner.sequence_running.swap(true, Ordering::AcqRel)
            || self.inner.report.borrow().is_some()
        {
            return;
        }
        let running = SequenceTask {
            coordinator: &self,
            reported: false,
        };
        let report = match CatchUnwind::new(self.run_sequence()).await {
            Ok(report) => report,
            Err(panic) => self.failed_report(&panic),
        };
        self.inner.report.send_replace(Some(Arc::new(report)));
        running.reported();
    }

    /// The report of a sequence that panicked: what it had not done yet is not known, so it says
    /// only that.
    fn failed_report(&self, panic: &str) -> ShutdownReport {
        tracing::error!(panic, "the shutdown sequence panicked");
        self.set_phase(Phase::Done);
        let started = self
            .inner
            .sequence_started_at
            .get()
            .copied()
            .unwrap_or_else(Instant::now);
        let config = self.sequence_config();
        let entry = Entry::new(
            "shutdown sequence",
            EntryKind::Sequence,
            Outcome::Panicked,
            Duration::ZERO,
            started.elapsed(),
        )
        .with_detail(Some(format!(
            "{panic}; tasks and resources it had not reached were left as they were"
        )));
        ShutdownReport::new(
            self.reason()
                .cloned()
                .unwrap_or(ShutdownReason::MainReturned),
            config.shutdown_timeout,
            started.elapsed(),
            vec![entry],
            Vec::new(),
        )
    }

    fn sequence_config(&self) -> Config {
        self.inner
            .sequence_config
            .get()
            .cloned()
            .unwrap_or_else(|| self.config())
    }

    /// Whether tasks have been told to stop (step 3).
    pub(crate) fn shutdown_signal_fired(&self) -> bool {
        self.inner.stopped.load(Ordering::Acquire)
    }

    /// Whether shutdown has aborted any task (then each woken task checks whether it was one).
    pub(crate) fn aborts_issued(&self) -> bool {
        self.inner.aborts_issued.load(Ordering::Acquire)
    }

    /// A task's first poll is over (it registered or ended).
    pub(crate) fn first_poll_done(&self) {
        self.inner.workers.first_poll_done();
        self.notify_if_settled();
    }

    /// Wakes the shutdown sequence if it is waiting and nothing is left to wait for.
    fn notify_if_settled(&self) {
        if self.phase() >= Phase::Draining && self.settled() {
            self.inner.settled.notify_waiters();
        }
    }

    /// Nothing left for step 3 to wait for.
    fn settled(&self) -> bool {
        self.inner
            .workers
            .settled(self.inner.ignored_unpolled.load(Ordering::Acquire))
    }

    /// Removes a worker that ended and, while shutdown is under way, records how. O(1).
    /// Returns the worker's name.
    pub(crate) fn worker_ended(&self, leaving: Leaving<'_>, ended: Ended) -> TaskName {
        let unregistered = matches!(leaving, Leaving::Unregistered(_));
        let (name, verdict, shard_settled) = match leaving {
            // The outcome is recorded before the entry leaves the registry (under its shard's
            // lock), so shutdown never sees "nothing left to wait for" with an outcome unrecorded.
            Leaving::Registered(key) => {
                let removed = self.inner.workers.remove_with(key, &ended, |entry| {
                    self.record_end(entry, &ended);
                    (entry.name.clone(), entry.verdict)
                });
                match removed {
                    Some(((name, verdict), shard_settled)) => (name, verdict, shard_settled),
                    None => return TaskName::from("unregistered worker"),
                }
            }
            Leaving::Unregistered(meta) => {
                self.inner.workers.ended_in_first_poll(&ended);
                if matches!(ended, Ended::Completed) && self.phase() == Phase::Running {
                    // The common case, kept short: a task done on its first poll, with nobody
                    // waiting for "settled".
                    return meta.name.clone();
                }
                let entry = WorkerEntry::new(
                    meta.name.clone(),
                    meta.kind,
                    meta.stop_timeout,
                    Control::Thread,
                );
                self.record_end(&entry, &ended);
                (entry.name, Verdict::None, false)
            }
        };
        match &ended {
            Ended::Panicked(message) => {
                self.inner.counters.add_panicked();
                tracing::error!(task = %name, panic = %message, "task panicked");
            }
            Ended::Failed(message) => {
                self.inner.counters.add_failed();
                tracing::error!(task = %name, error = %message, "task failed");
            }
            Ended::TimedOut(limit) => {
                self.inner.counters.add_timed_out();
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
        // Only shutdown waits for "settled"; the last shard to settle checks the others. A task
        // that ended in its first poll changed the unpolled count instead.
        if shard_settled || unregistered {
            self.notify_if_settled();
        }
        name
    }

    /// While shutdown is under way, records how a worker ended, for the report.
    fn record_end(&self, entry: &WorkerEntry, ended: &Ended) {
        let phase = self.phase();
        if phase < Phase::Draining || phase == Phase::Done || entry.verdict == Verdict::Leaked {
            return;
        }
        let (outcome, detail) = match ended {
            Ended::Completed => (Outcome::Closed, None),
            Ended::Failed(message) => (Outcome::Error(message.clone()), None),
            Ended::Panicked(message) => (Outcome::Panicked, Some(message.clone())),
            Ended::TimedOut(limit) => (
                Outcome::TimedOut,
                Some(format!(
                    "ran past its group limit of {}",
                    crate::report::format_duration(*limit)
                )),
            ),
            Ended::NotStarted(group) => (
                Outcome::Skipped,
                Some(format!(
                    "never started: shutdown began while it waited for a permit of group `{group}`"
                )),
            ),
            Ended::Cancelled => match entry.verdict {
                Verdict::Aborted => (Outcome::Aborted, Some(stop_detail(entry, "aborted"))),
                _ => (Outcome::Aborted, Some("cancelled by its handle".to_owned())),
            },
        };
        lock(&self.inner.stop_records).push(StopRecord {
            name: entry.name.clone(),
            kind: entry.kind,
            outcome,
            detail,
            ended: Instant::now(),
        });
    }

    /// Waits until nothing is left to wait for, `deadline`, or (with `rescan`) a worker registering
    /// late.
    async fn wait_settled_until(&self, deadline: Instant, rescan: bool) -> Wait {
        loop {
            let notified = self.inner.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.settled() {
                return Wait::Settled;
            }
            if rescan && self.inner.rescan.swap(false, Ordering::AcqRel) {
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

    /// A worker registered after the stop signal, or a task started awaiting the report: step 3
    /// looks at the registry again.
    pub(crate) fn registered_late(&self) {
        self.inner.rescan.store(true, Ordering::Release);
        self.inner.settled.notify_waiters();
    }

    // ----- the sequence ------------------------------------------------------------------------

    async fn run_sequence(&self) -> ShutdownReport {
        let started = *self.inner.sequence_started_at.get_or_init(Instant::now);
        let config = self.sequence_config();
        let deadline = after(started, config.shutdown_timeout);
        let mut entries = Vec::new();

        // Step 2: drain. Readiness went false at the trigger.
        if !config.drain.is_zero() {
            let wait = config
                .drain
                .min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(wait).await;
            let (outcome, detail) = if wait < config.drain {
                (
                    Outcome::Skipped,
                    Some("drain cut short by the shutdown budget".to_owned()),
                )
            } else {
                (Outcome::Closed, None)
            };
            entries.push(
                Entry::new("drain", EntryKind::Drain, outcome, Duration::ZERO, wait)
                    .with_detail(detail),
            );
        }

        // Step 3: stop tasks and threads.
        self.signal_stop();
        let stop_started = self
            .inner
            .stop_started_at
            .get()
            .copied()
            .unwrap_or_else(Instant::now);
        self.stop_workers(stop_started, deadline).await;
        entries.extend(self.worker_entries(started));

        // Step 4: close resources, newest first.
        self.set_phase(Phase::Closing);
        let resources = lock(&self.inner.resources).take_for_shutdown();
        for resource in resources {
            let now = Instant::now();
            let offset = now.saturating_duration_since(started);
            if now >= deadline {
                entries.push(
                    Entry::new(
                        resource.name.clone(),
                        EntryKind::Resource,
                        Outcome::Skipped,
                        offset,
                        Duration::ZERO,
                    )
                    .with_detail(Some(
                        "shutdown budget exhausted before it could close".to_owned(),
                    )),
                );
                resource.mark_skipped();
                continue;
            }
            *lock(&self.inner.closing_now) = Some(resource.name.to_string());
            let closed = resource.close_for_shutdown(deadline, started).await;
            *lock(&self.inner.closing_now) = None;
            entries.extend(closed);
        }

        // Workers that ended while resources closed, and those started then (nothing waits for
        // them any more), are reported too rather than dropped silently.
        entries.extend(self.worker_entries(started));
        let mut late = Vec::new();
        let awaiting = lock(&self.inner.awaiting_report).clone();
        self.inner.workers.for_each(|entry| {
            let awaits_report = entry.task_id.is_some_and(|id| awaiting.contains(&id));
            if entry.verdict == Verdict::None && !awaits_report {
                late.push((entry.name.clone(), entry.kind));
            }
        });
        for (name, kind) in late {
            tracing::warn!(task = %name, "started after tasks were stopped; left running");
            entries.push(
                Entry::new(
                    name,
                    kind.entry_kind(),
                    Outcome::Leaked,
                    Instant::now().saturating_duration_since(started),
                    Duration::ZERO,
                )
                .with_detail(Some(
                    "started while resources were closing, after tasks were stopped; left running"
                        .to_owned(),
                )),
            );
        }

        // Step 5: report.
        let mut lingering = Vec::new();
        if config.scan_os_threads {
            let mut known = Vec::new();
            self.inner
                .workers
                .for_each(|entry| known.push(entry.name.to_string()));
            lingering = os_threads::lingering(&self.inner.baseline_threads, &known, deadline).await;
            for thread in &lingering {
                entries.push(
                    Entry::new(thread.name.clone(), EntryKind::Thread, Outcome::Leaked, Instant::now().saturating_duration_since(started), Duration::ZERO)
                        .with_detail(Some(format!(
                            "OS thread {} (tid {}) was not started through lifecycle and is still running",
                            thread.name, thread.tid
                        ))),
                );
            }
        }
        self.set_phase(Phase::Done);
        // The sequence only starts after a trigger recorded its reason.
        let reason = self
            .reason()
            .cloned()
            .unwrap_or(ShutdownReason::MainReturned);
        let report = ShutdownReport::new(
            reason,
            config.shutdown_timeout,
            started.elapsed(),
            entries,
            lingering.into_iter().map(|thread| thread.name).collect(),
        );
        if report.is_clean() {
            tracing::info!(elapsed = ?report.elapsed(), "shutdown complete");
        } else {
            tracing::warn!(elapsed = ?report.elapsed(), "shutdown finished with problems");
        }
        report
    }

    /// Step 3 proper: waits for every worker up to its stop timeout (capped by the budget), aborts
    /// tasks that are late and gives up on threads that are late. A worker that registers after
    /// the stop signal (a cleanup task spawned on the way out) gets its own stop timeout from the
    /// moment it registered.
    async fn stop_workers(&self, stop_started: Instant, deadline: Instant) {
        let mut rounds_past_deadline = 0;
        loop {
            if self.stop_round(stop_started, deadline).await {
                return;
            }
            // Aborted tasks go at their next `.await`. Those still here are stuck in synchronous
            // code.
            let now = Instant::now();
            let grace = after(now, ABORT_GRACE).min(deadline.max(after(now, MIN_ABORT_GRACE)));
            loop {
                match self.wait_settled_until(grace, false).await {
                    Wait::Settled => return,
                    Wait::Deadline => break,
                    Wait::Rescan => {}
                }
            }
            if Instant::now() >= deadline {
                rounds_past_deadline += 1;
            }
            // Workers that joined during the grace are judged by their own stop timeout in another
            // round, unless the budget is long gone and they keep coming.
            let give_up = rounds_past_deadline > MAX_ROUNDS_PAST_BUDGET;
            let mut stuck: Vec<(TaskName, WorkerKind, String)> = Vec::new();
            let mut unjudged = false;
            self.inner.workers.for_each_mut(|entry| match entry.verdict {
                Verdict::Aborted => {
                    entry.verdict = Verdict::Leaked;
                    stuck.push((
                        entry.name.clone(),
                        entry.kind,
                        "aborted, but still running: it blocks its worker thread in synchronous code"
                            .to_owned(),
                    ));
                    true
                }
                Verdict::None if give_up => {
                    entry.verdict = Verdict::Leaked;
                    stuck.push((
                        entry.name.clone(),
                        entry.kind,
                        "started during shutdown after the budget ran out; left running".to_owned(),
                    ));
                    true
                }
                Verdict::None => {
                    unjudged = true;
                    false
                }
                Verdict::Leaked | Verdict::AwaitsReport => false,
            });
            for (name, kind, detail) in stuck {
                tracing::error!(task = %name, "{detail}");
                self.record_leak(name, kind, detail);
            }
            if !unjudged {
                return;
            }
        }
    }

    /// Waits for workers up to their stop timeouts and aborts (or gives up on) the late ones.
    /// Returns true when nothing is left to wait for.
    async fn stop_round(&self, stop_started: Instant, deadline: Instant) -> bool {
        // A worker's stop timeout runs from the stop signal, or from its registration if later.
        let due = |entry: &WorkerEntry| after(entry.started.max(stop_started), entry.stop_timeout);
        loop {
            // The earliest deadline among workers not judged yet. Scanning is O(n) and happens once
            // per distinct stop timeout (and per late registration), not per worker. Tasks waiting
            // for the report are not waited for: they wait for this.
            let awaiting = lock(&self.inner.awaiting_report).clone();
            let mut next: Option<Instant> = None;
            self.inner.workers.for_each_mut(|entry| {
                if entry.verdict != Verdict::None {
                    return false;
                }
                if entry.task_id.is_some_and(|id| awaiting.contains(&id)) {
                    entry.verdict = Verdict::AwaitsReport;
                    return true;
                }
                let at = due(entry).min(deadline);
                next = Some(next.map_or(at, |next| next.min(at)));
                false
            });
            let unpolled = self.inner.workers.unpolled();
            let ignored = self.inner.ignored_unpolled.load(Ordering::Acquire);
            let at = match next {
                Some(at) => at,
                // Spawned but not polled yet: they register (or end) at their first poll, which is
                // normally moments away; look again then. One whose first poll never ends blocks
                // its thread and cannot even be named: give up on it after the default stop
                // timeout.
                None if unpolled > ignored => {
                    let give_up =
                        after(stop_started, crate::task::DEFAULT_STOP_TIMEOUT).min(deadline);
                    let now = Instant::now();
                    if now >= give_up {
                        self.inner
                            .ignored_unpolled
                            .store(unpolled, Ordering::Release);
                        let count = unpolled - ignored;
                        tracing::error!(
                            count,
                            "tasks never returned from their first poll: they block their threads"
                        );
                        let detail = format!(
                            "{count} task(s) never returned from their first poll, so they could not be named: each blocks a runtime thread in synchronous code"
                        );
                        self.record_leak(
                            TaskName::from("(unnamed: blocked in its first poll)"),
                            WorkerKind::Task,
                            detail,
                        );
                        continue;
                    }
                    after(now, UNPOLLED_RECHECK).min(give_up)
                }
                None => return self.settled(),
            };
            match self.wait_settled_until(at, true).await {
                Wait::Settled => return true,
                Wait::Rescan => continue,
                Wait::Deadline => {}
            }
            let now = Instant::now();
            let mut leaked_now = Vec::new();
            let mut to_wake = Vec::new();
            self.inner.workers.for_each_mut(|entry| {
                if entry.verdict != Verdict::None || due(entry).min(deadline) > now {
                    return false;
                }
                entry.cut_by_budget = due(entry) > deadline;
                match &entry.control {
                    Control::Task(waker) => {
                        entry.verdict = Verdict::Aborted;
                        to_wake.push(waker.clone());
                        false
                    }
                    Control::Thread => {
                        entry.verdict = Verdict::Leaked;
                        leaked_now.push((
                            entry.name.clone(),
                            entry.kind,
                            stop_detail(entry, "left running"),
                        ));
                        true
                    }
                }
            });
            if !to_wake.is_empty() {
                // Woken outside the shard locks; each checks its verdict at its next poll.
                self.inner.aborts_issued.store(true, Ordering::Release);
                to_wake.into_iter().for_each(Waker::wake);
            }
            for (name, kind, detail) in leaked_now {
                tracing::error!(thread = %name, "thread {detail}");
                self.record_leak(name, kind, detail);
            }
        }
    }

    fn record_leak(&self, name: TaskName, kind: WorkerKind, detail: String) {
        lock(&self.inner.stop_records).push(StopRecord {
            name,
            kind,
            outcome: Outcome::Leaked,
            detail: Some(detail),
            ended: Instant::now(),
        });
    }

    /// Turns the stop records into report entries, folding workers of one name and outcome into
    /// one entry with a count (a server with 10,000 connection tasks gets one line, not 10,000).
    fn worker_entries(&self, sequence_started: Instant) -> Vec<Entry> {
        let records = std::mem::take(&mut *lock(&self.inner.stop_records));
        let stop_started = self
            .inner
            .stop_started_at
            .get()
            .copied()
            .unwrap_or(sequence_started);
        let mut index: HashMap<(TaskName, WorkerKind, Outcome), usize> = HashMap::new();
        let mut entries: Vec<Entry> = Vec::new();
        for record in records {
            let start = if record.ended < stop_started {
                sequence_started
            } else {
                stop_started
            };
            let offset = start.saturating_duration_since(sequence_started);
            let elapsed = record.ended.saturating_duration_since(start);
            let key = (record.name.clone(), record.kind, record.outcome.clone());
            match index.get(&key) {
                Some(&at) => entries[at].absorb(elapsed),
                None => {
                    index.insert(key, entries.len());
                    entries.push(
                        Entry::new(
                            record.name,
                            record.kind.entry_kind(),
                            record.outcome,
                            offset,
                            elapsed,
                        )
                        .with_detail(record.detail),
                    );
                }
            }
        }
        entries
    }
}

/// How a wait of step 3 ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Settled,
    Deadline,
    /// A worker registered late (or a task began awaiting the report): look at the registry again.
    Rescan,
}

/// How many more rounds step 3 gives workers that keep registering after the budget ran out
/// (tasks spawned by the drops of aborted tasks) before it stops waiting for them.
const MAX_ROUNDS_PAST_BUDGET: u32 = 3;

/// Marks the task running the sequence; if it is dropped before it reported (its runtime shut
/// down), the sequence may be started again by a `report()` caller.
struct SequenceTask<'a> {
    coordinator: &'a Coordinator,
    reported: bool,
}

impl SequenceTask<'_> {
    fn reported(mut self) {
        self.reported = true;
    }
}

impl Drop for SequenceTask<'_> {
    fn drop(&mut self) {
        if !self.reported {
            let inner = &self.coordinator.inner;
            inner.sequence_running.store(false, Ordering::Release);
            inner.sequence_lost.notify_waiters();
        }
    }
}

/// Registers the calling task as awaiting the report while it does.
struct AwaitingReport<'a> {
    coordinator: &'a Coordinator,
    task: Option<tokio::task::Id>,
}

impl<'a> AwaitingReport<'a> {
    fn new(coordinator: &'a Coordinator) -> AwaitingReport<'a> {
        let task = tokio::task::try_id();
        if let Some(id) = task {
            lock(&coordinator.inner.awaiting_report).push(id);
            if coordinator.phase() >= Phase::Draining {
                coordinator.registered_late();
            }
        }
        AwaitingReport { coordinator, task }
    }
}

impl Drop for AwaitingReport<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.task {
            let mut awaiting = lock(&self.coordinator.inner.awaiting_report);
            if let Some(at) = awaiting.iter().position(|known| *known == id) {
                awaiting.swap_remove(at);
            }
        }
    }
}

/// Why a worker was aborted or given up on: its own stop timeout, or the budget running out first.
fn stop_detail(entry: &WorkerEntry, action: &str) -> String {
    let stop_timeout = crate::report::format_duration(entry.stop_timeout);
    if entry.cut_by_budget {
        format!(
            "still running when the shutdown budget ran out (its own stop timeout is {stop_timeout}); {action}"
        )
    } else {
        format!("ignored shutdown for its whole stop timeout of {stop_timeout}; {action}")
    }
}

/// Restores the previous thread coordinator when dropped; see [`Coordinator::enter`].
#[derive(Debug)]
#[must_use = "the coordinator is current only while the guard lives"]
pub struct EnterGuard {
    previous: Option<Coordinator>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        THREAD_CURRENT.with(|slot| *slot.borrow_mut() = previous);
    }
}

/// Calls `f` with the current coordinator without cloning it.
pub(crate) fn with_current<R>(f: impl FnOnce(&Coordinator) -> R) -> R {
    let mut f = Some(f);
    if let Ok(result) =
        CURRENT.try_with(|coordinator| (f.take().expect("called once"))(coordinator))
    {
        return result;
    }
    let f = f.take().expect("not called by the task-local branch");
    let thread = THREAD_CURRENT.with(|slot| slot.borrow().clone());
    match thread {
        // A tokio task with no scope belongs to the global coordinator (tasks of other
        // coordinators carry their scope), even on a thread that entered another one: `enter` is
        // for synchronous code on that thread.
        Some(coordinator) if tokio::task::try_id().is_none() => f(&coordinator),
        _ => f(Coordinator::global()),
    }
}

/// Wraps `fut` so that it runs with `coordinator` current, unless that is the global one (which is
/// current anyway).
pub(crate) fn in_scope<F>(coordinator: &Coordinator, fut: F) -> ScopedFuture<F>
where
    F: Future,
{
    if coordinator.is_global() {
        ScopedFuture::Plain { fut }
    } else {
        ScopedFuture::Scoped {
            fut: CURRENT.scope(coordinator.clone(), fut),
        }
    }
}

pin_project_lite::pin_project! {
    /// A future that may run inside a coordinator scope.
    #[project = ScopedProj]
    pub(crate) enum ScopedFuture<F: Future> {
        Plain { #[pin] fut: F },
        Scoped { #[pin] fut: tokio::task::futures::TaskLocalFuture<Coordinator, F> },
    }
}

impl<F: Future> Future for ScopedFuture<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        match self.project() {
            ScopedProj::Plain { fut } => fut.poll(cx),
            ScopedProj::Scoped { fut } => fut.poll(cx),
        }
    }
}

/// Sets the thread-local coordinator for an OS thread started by this crate.
pub(crate) fn set_thread_coordinator(coordinator: Coordinator) {
    THREAD_CURRENT.with(|slot| *slot.borrow_mut() = Some(coordinator));
}

/// Locks a mutex, recovering from poisoning: every critical section here leaves the data
/// consistent (plain inserts, removals and counter updates), so a panic elsewhere while holding it
/// cannot leave it half-updated.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
