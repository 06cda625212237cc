//! The coordinator: the public handle ([`Coordinator`], thin methods over its state) and what only
//! it may touch. `state.rs` holds the state in named parts; `scope.rs` decides which coordinator
//! is current; `spawn.rs`, `group.rs` and `manage.rs` register workers and resources;
//! `shutdown.rs` is the [`Shutdown`] token tasks watch; `snapshot.rs` builds snapshots;
//! `sequence/` is the shutdown sequence, one file per step.

mod group;
mod manage;
mod order;
mod scope;
mod sequence;
mod shutdown;
mod snapshot;
mod spawn;
mod state;
#[cfg(unix)]
mod watchdog;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

pub use group::TaskGroup;
pub use manage::manage;
pub use order::{spawn_after, stop_after};
pub use scope::EnterGuard;
pub(crate) use scope::with_current;
pub use shutdown::{Shutdown, shutdown, shutdown_signal, trigger_shutdown};
pub use snapshot::{mark_ready, snapshot};
pub use spawn::{spawn, spawn_thread};
pub(crate) use state::Config;
#[cfg(unix)]
pub(crate) use watchdog::{HARD_GRACE, TEST_HARD_GRACE, Watch, claim_exit};

use crate::report::{Location, ShutdownReason, ShutdownReport};
use crate::snapshot::Readiness;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
use crate::util::after;
use crate::util::lock;
use crate::workers::{AwaitingReport, Phase, Staged, TaskName, WorkerKind, Workers, WorkersRef};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
use crate::workers::{Due, StopPolicy};
use state::State;

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
    state: Arc<State>,
}

impl fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coordinator")
            .field("global", &self.state.is_global)
            .field("phase", &self.phase())
            .field("reason", &self.reason())
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
    /// Default: [`DEFAULT_SHUTDOWN_TIMEOUT`](crate::DEFAULT_SHUTDOWN_TIMEOUT).
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
            crate::os_threads::list()
        } else {
            Vec::new()
        };
        Coordinator {
            state: Arc::new(State::new(config, is_global, baseline_threads)),
        }
    }

    /// The process-global coordinator, created on first use with default settings.
    #[inline]
    pub fn global() -> &'static Coordinator {
        scope::global(|| Coordinator::from_config(Config::default(), true))
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
        scope::scope(self.clone(), fut)
    }

    /// Makes this coordinator the current one for synchronous code on this OS thread until the
    /// guard is dropped.
    pub fn enter(&self) -> EnterGuard {
        EnterGuard {
            previous: scope::enter_thread(self.clone()),
        }
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

    /// The token that tasks and threads watch; see [`Shutdown`]. Inside a worker whose name is
    /// in a stop order ([`stop_after`](Self::stop_after)), the token of its stage.
    pub fn shutdown_signal(&self) -> Shutdown {
        if self.workers().order().is_used()
            && let Some(name) = crate::workers::current_task_name()
        {
            return Shutdown::for_name(self.clone(), name.as_str());
        }
        Shutdown::new(self.clone())
    }

    /// Starts shutdown without waiting for it. Idempotent: only the first reason is kept.
    /// Works from synchronous code and from any thread.
    #[track_caller]
    pub fn trigger_shutdown(&self) {
        self.start_shutdown(ShutdownReason::Requested {
            location: Location::caller(),
        });
    }

    /// Starts shutdown (if it has not started) and waits for the report. Concurrent and repeated
    /// callers get the same report.
    #[track_caller]
    pub fn shutdown(&self) -> impl Future<Output = ShutdownReport> + Send + use<> {
        let reason = ShutdownReason::Requested {
            location: Location::caller(),
        };
        self.shutdown_with(reason)
    }

    /// Starts shutdown for `reason` and waits for the report.
    pub(crate) fn shutdown_with(
        &self,
        reason: ShutdownReason,
    ) -> impl Future<Output = ShutdownReport> + Send + use<> {
        self.start_shutdown(reason);
        let this = self.clone();
        async move { this.report().await }
    }

    /// Waits until shutdown has started and finished, and returns the report. Does not start
    /// anything itself.
    ///
    /// A tracked task (or the body of `main`) may await it: step 3 does not wait for a task that
    /// is waiting for the report.
    pub async fn report(&self) -> ShutdownReport {
        // Step 3 sets the calling worker aside while it waits here.
        let _awaiting = AwaitingReport::new(&self.state.workers);
        let mut published = self.state.sequence.subscribe();
        loop {
            let lost = self.state.sequence.lost().notified();
            tokio::pin!(lost);
            lost.as_mut().enable();
            // Started from a thread before any runtime was known, or the runtime that ran the
            // sequence is gone: the sequence (re)starts here.
            self.start_sequence();
            tokio::select! {
                biased;
                report = published.wait_for(Option::is_some) => {
                    return match report.ok().and_then(|report| report.clone()) {
                        Some(report) => (*report).clone(),
                        // Unreachable: the state owns the sender for as long as `self` lives.
                        None => self.sequence_failed(
                            crate::report::Outcome::Aborted,
                            "the shutdown sequence stopped publishing its report",
                        ),
                    };
                }
                () = &mut lost => {}
            }
        }
    }

    /// Waits until shutdown starts (step 1), before any drain. Tasks are told to stop later, when
    /// their [`Shutdown`] fires.
    pub async fn shutdown_started(&self) {
        self.state.start.wait().await;
    }

    /// Whether shutdown has started (step 1). With a drain, tasks are told to stop only when it
    /// ends; see [`Shutdown::is_triggered`].
    pub fn is_shutting_down(&self) -> bool {
        self.state.start.has_started()
    }

    /// Why shutdown started, once it did.
    pub fn reason(&self) -> Option<&ShutdownReason> {
        self.state.start.reason()
    }

    /// Whether a readiness probe should answer "ready": the program said so
    /// ([`mark_ready`](Coordinator::mark_ready)) and shutdown has not started. See
    /// [`readiness`](Coordinator::readiness).
    pub fn is_ready(&self) -> bool {
        self.readiness() == Readiness::Ready
    }

    /// Where the program stands: [`Readiness::Starting`] until it calls
    /// [`mark_ready`](Coordinator::mark_ready), then `Ready`; from the start of shutdown
    /// `Draining` (during the drain), `Stopping` (tasks told to stop, resources closing), and
    /// `Stopped` once the report is made.
    ///
    /// ```
    /// use lifecycle_runtime::{Coordinator, Readiness};
    ///
    /// let coordinator = Coordinator::new();
    /// assert_eq!(coordinator.readiness(), Readiness::Starting);
    /// coordinator.mark_ready();
    /// assert_eq!(coordinator.readiness(), Readiness::Ready);
    /// coordinator.trigger_shutdown();
    /// assert_eq!(coordinator.readiness(), Readiness::Stopping);
    /// ```
    pub fn readiness(&self) -> Readiness {
        if !self.state.start.has_started() {
            return match self.state.start.is_marked_ready() {
                true => Readiness::Ready,
                false => Readiness::Starting,
            };
        }
        match self.phase() {
            Phase::Running | Phase::Draining => Readiness::Draining,
            Phase::Stopping | Phase::Closing => Readiness::Stopping,
            Phase::Done => Readiness::Stopped,
        }
    }

    /// Says the program is ready to serve: readiness probes answer "ready" from now until
    /// shutdown starts. Call it once start-up is done (connections opened, listeners bound).
    /// Idempotent; after shutdown started it changes nothing.
    pub fn mark_ready(&self) {
        if self.state.start.mark_ready() && !self.is_shutting_down() {
            tracing::info!("ready");
            #[cfg(all(feature = "systemd", unix))]
            if self.is_global() {
                crate::systemd::ready();
            }
        }
    }

    /// Names of what shutdown is still waiting for: live tasks and threads, the resource being
    /// closed, and resources not closed yet.
    pub fn pending(&self) -> Vec<String> {
        let mut pending = Vec::new();
        self.state.workers.for_each(|worker| {
            pending.push(format!("{} {}", worker.kind().entry_kind(), worker.name()));
        });
        if let Some(name) = self.state.resources.closing_now() {
            pending.push(format!("resource {name} (closing)"));
        }
        pending.extend(
            self.state
                .resources
                .open_names()
                .into_iter()
                .map(|name| format!("resource {name}")),
        );
        pending
    }

    // ----- crate-internal -----------------------------------------------------------------------

    /// [`pending`](Coordinator::pending), folded by name with a count (`task request ×12`) in
    /// the order they first come, at most `most` names and then how many more. Workers are
    /// counted in runs of one name as the registry is walked, so a million of one name cost no
    /// million strings.
    pub(crate) fn pending_folded(&self, most: usize) -> Vec<String> {
        self.pending_split(most, false).0
    }

    /// [`pending_folded`](Self::pending_folded), with the workers of a stop order's stages not
    /// told to stop yet apart, in the second list (when `split` and an order is declared; else
    /// that list is empty).
    pub(crate) fn pending_split(&self, most: usize, split: bool) -> (Vec<String>, Vec<String>) {
        let workers = &self.state.workers;
        let order = workers.order();
        // A run of workers of one kind and name, and whether their stage is not told yet.
        type Run = (WorkerKind, TaskName, bool, usize);
        let walk = |held: &dyn Fn(&str) -> bool| {
            let mut names: [Vec<String>; 2] = [Vec::new(), Vec::new()];
            let mut push = |(kind, name, held, count): Run| {
                names[usize::from(held)]
                    .push(fold_marker(format!("{} {name}", kind.entry_kind()), count));
            };
            let mut run: Option<Run> = None;
            workers.for_each(|worker| match &mut run {
                Some((kind, name, _, count)) if *kind == worker.kind() && name == worker.name() => {
                    *count += 1;
                }
                _ => {
                    let is_held = held(worker.name().as_str());
                    if let Some(done) =
                        run.replace((worker.kind(), worker.name().clone(), is_held, 1))
                    {
                        push(done);
                    }
                }
            });
            if let Some(done) = run {
                push(done);
            }
            names
        };
        let [mut awaited, held] = if split && order.is_used() {
            order.with_staged(|staged| walk(&|name| matches!(staged(name), Staged::Held(_))))
        } else {
            walk(&|_| false)
        };
        if let Some(name) = self.state.resources.closing_now() {
            awaited.push(fold_marker(format!("resource {name} (closing)"), 1));
        }
        awaited.extend(
            self.state
                .resources
                .open_names()
                .into_iter()
                .map(|name| fold_marker(format!("resource {name}"), 1)),
        );
        (fold_names(awaited, most), fold_names(held, most))
    }

    /// Starts shutdown (step 1): readiness goes false, the sequence is spawned, and with no drain
    /// tasks hear it now, not when the sequence task gets scheduled. Returns true for the first
    /// start; later ones keep the first reason.
    pub(crate) fn start_shutdown(&self, reason: ShutdownReason) -> bool {
        let start = &self.state.start;
        if !start.begin(reason, || self.config()) {
            return false;
        }
        self.state.workers.set_phase(Phase::Draining);
        if let Some(reason) = start.reason() {
            tracing::info!(%reason, "shutdown started");
            #[cfg(all(feature = "systemd", unix))]
            if self.is_global() {
                let budget = self.sequence_config().shutdown_timeout;
                crate::systemd::stopping(&reason.to_string(), budget.saturating_add(HARD_GRACE));
            }
        }
        start.announce();
        #[cfg(unix)]
        self.wake_watchdog();
        if self.sequence_config().drain.is_zero() {
            self.state.workers.tell_to_stop();
        }
        self.start_sequence();
        true
    }

    pub(crate) fn config(&self) -> Config {
        self.config_mut().clone()
    }

    fn config_mut(&self) -> MutexGuard<'_, Config> {
        lock(&self.state.config)
    }

    /// The settings frozen when shutdown started.
    fn sequence_config(&self) -> Config {
        self.state.start.config(|| self.config())
    }

    #[inline]
    pub(crate) fn is_global(&self) -> bool {
        self.state.is_global
    }

    /// When a task told to stop, with `stop_timeout` as its stop timeout, is cut off: the rule
    /// step 3 applies (the stop timeout runs from the stop signal, the budget caps it). `None`
    /// before tasks are told to stop. A writer that must finish inside that time asks it.
    ///
    /// For `worker` (a name) in a stop order, from when its stage was told: `None` until then.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub(crate) fn stop_due(&self, worker: &str, stop_timeout: Duration) -> Option<Due> {
        let stop_started = self.state.workers.stop_started()?;
        let told = match self.state.workers.order().staged(worker) {
            Staged::No => None,
            Staged::Held(_) => return None,
            Staged::Started(_, at) => Some(at),
        };
        // Tasks are only told to stop after shutdown started, so `at()` is the recorded start.
        let deadline = after(
            self.state.start.at(),
            self.sequence_config().shutdown_timeout,
        );
        let policy = StopPolicy {
            stop_started,
            deadline,
        };
        Some(policy.due(told, stop_timeout))
    }

    pub(crate) fn phase(&self) -> Phase {
        self.state.workers.phase()
    }

    /// The workers of this coordinator, for the code that drives them (tickers, the runner).
    pub(crate) fn workers(&self) -> &Workers {
        &self.state.workers
    }

    /// This coordinator's workers, to be asked later who still runs.
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub(crate) fn workers_shared(&self) -> Arc<Workers> {
        Arc::clone(&self.state.workers)
    }

    /// How a worker of this coordinator reaches it: the global coordinator's without reference
    /// counting.
    fn workers_ref(&self) -> WorkersRef {
        if self.is_global() {
            WorkersRef::global(&Coordinator::global().state.workers)
        } else {
            WorkersRef::shared(&self.state.workers)
        }
    }

    /// Remembers the runtime so that a start from a plain OS thread can run the sequence there.
    /// Called on every spawn, so only the first runtime is kept (a load when set). A `report()`
    /// caller runs the sequence on its own runtime if that one is gone.
    #[inline]
    pub(crate) fn remember_runtime(&self) {
        if self.state.runtime.get().is_none()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let _ = self.state.runtime.set(handle);
        }
    }
}

/// A name and how many carry it, as one string for [`fold_names`] (the count after a NUL,
/// which no name holds).
fn fold_marker(name: String, count: usize) -> String {
    format!("{name}\0{count}")
}

/// Names (each with its count, see [`fold_marker`]) folded in the order they first come
/// (`task deaf ×1000`), at most `most` of them and then how many more.
fn fold_names(names: Vec<String>, most: usize) -> Vec<String> {
    let mut folded: Vec<(String, usize)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for marked in names {
        let (name, count) = match marked.split_once('\0') {
            Some((name, count)) => (name.to_owned(), count.parse().unwrap_or(1)),
            None => (marked, 1),
        };
        match index.get(&name) {
            Some(&at) => folded[at].1 += count,
            None => {
                index.insert(name.clone(), folded.len());
                folded.push((name, count));
            }
        }
    }
    let more = folded.len().saturating_sub(most);
    let mut shown: Vec<String> = folded
        .into_iter()
        .take(most)
        .map(|(name, count)| match count {
            1 => name,
            count => format!("{name} ×{count}"),
        })
        .collect();
    if more > 0 {
        shown.push(format!("(+{more} more)"));
    }
    shown
}

#[cfg(test)]
mod fold_tests {
    use super::{fold_marker, fold_names};

    #[test]
    fn names_fold_by_name_in_first_order_and_stop_at_the_most() {
        let names = vec![
            fold_marker("task a".to_owned(), 2),
            "task b".to_owned(),
            fold_marker("task a".to_owned(), 1),
            "resource db".to_owned(),
        ];
        assert_eq!(
            fold_names(names.clone(), 8),
            ["task a ×3", "task b", "resource db"]
        );
        assert_eq!(fold_names(names, 1), ["task a ×3", "(+2 more)"]);
        assert!(fold_names(Vec::new(), 8).is_empty());
    }
}
