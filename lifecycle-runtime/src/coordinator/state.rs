//! The coordinator's state, in named parts: its settings, the start of shutdown, the sequence's
//! run and report, and the registries it owns (workers, resources, groups, pools). Only
//! `coordinator/` reads these fields; everything else goes through `Coordinator`'s methods.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::defaults::DEFAULT_SHUTDOWN_TIMEOUT;
use crate::os_threads::OsThread;
use crate::report::{Entry, ShutdownReason, ShutdownReport};
use crate::resources::Resources;
use crate::snapshot::{PoolSnapshot, PoolStats};
use crate::util::lock;
use crate::workers::{Groups, Workers};

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

/// Everything one coordinator owns.
pub(super) struct State {
    pub(super) is_global: bool,
    pub(super) config: Mutex<Config>,
    pub(super) start: Start,
    pub(super) sequence: Sequence,
    pub(super) workers: Arc<Workers>,
    pub(super) resources: Arc<Resources>,
    pub(super) groups: Groups,
    pub(super) pools: Pools,
    /// The first runtime seen, for a trigger from a plain OS thread.
    pub(super) runtime: OnceLock<tokio::runtime::Handle>,
    /// Threads alive when the coordinator was made: not this program's leftovers.
    pub(super) baseline_threads: Vec<OsThread>,
    /// The hard deadline's thread, once started (`watchdog.rs`).
    #[cfg(unix)]
    pub(super) watchdog: OnceLock<super::watchdog::Wake>,
}

impl State {
    pub(super) fn new(config: Config, is_global: bool, baseline_threads: Vec<OsThread>) -> State {
        State {
            is_global,
            config: Mutex::new(config),
            start: Start::default(),
            sequence: Sequence::default(),
            // The global coordinator's workers are a static the workers module keeps: its tasks
            // find them without carrying a reference.
            workers: if is_global {
                crate::workers::global_workers().clone()
            } else {
                Arc::new(Workers::new())
            },
            resources: Arc::new(Resources::default()),
            groups: Groups::default(),
            pools: Pools::default(),
            runtime: OnceLock::new(),
            baseline_threads,
            #[cfg(unix)]
            watchdog: OnceLock::new(),
        }
    }
}

/// The start of shutdown (step 1): why, when, with which settings, and readiness.
pub(super) struct Start {
    reason: OnceLock<ShutdownReason>,
    /// Cancelled when shutdown starts.
    started: CancellationToken,
    at: OnceLock<Instant>,
    /// The settings in force when shutdown started: read once, so a concurrent change cannot give
    /// the trigger and the sequence different ideas of the drain.
    config: OnceLock<Config>,
    /// The program said it is ready (`mark_ready`); readiness is that, until shutdown starts.
    marked_ready: AtomicBool,
}

impl Default for Start {
    fn default() -> Start {
        Start {
            reason: OnceLock::new(),
            started: CancellationToken::new(),
            at: OnceLock::new(),
            config: OnceLock::new(),
            marked_ready: AtomicBool::new(false),
        }
    }
}

impl Start {
    /// Records the start: true for the first call only, which also freezes `config`.
    pub(super) fn begin(&self, reason: ShutdownReason, config: impl FnOnce() -> Config) -> bool {
        if self.reason.set(reason).is_err() {
            return false;
        }
        let _ = self.at.set(Instant::now());
        let _ = self.config.get_or_init(config);
        true
    }

    /// Tells those waiting for the start (after the phase moved on, so they see it).
    pub(super) fn announce(&self) {
        self.started.cancel();
    }

    pub(super) fn reason(&self) -> Option<&ShutdownReason> {
        self.reason.get()
    }

    pub(super) fn has_started(&self) -> bool {
        self.started.is_cancelled()
    }

    pub(super) async fn wait(&self) {
        self.started.cancelled().await;
    }

    /// When shutdown started (now, for a sequence that somehow runs without a start).
    pub(super) fn at(&self) -> Instant {
        *self.at.get_or_init(Instant::now)
    }

    /// The settings frozen at the start, or `current` if it has not started.
    pub(super) fn config(&self, current: impl FnOnce() -> Config) -> Config {
        self.config.get().cloned().unwrap_or_else(current)
    }

    /// The program says it is ready to serve: true the first time.
    pub(super) fn mark_ready(&self) -> bool {
        !self.marked_ready.swap(true, Ordering::AcqRel)
    }

    pub(super) fn is_marked_ready(&self) -> bool {
        self.marked_ready.load(Ordering::Acquire)
    }
}

/// The run of the shutdown sequence and the report it publishes.
pub(super) struct Sequence {
    /// Claimed by the task that runs the sequence, at its first poll; given back if that task is
    /// dropped before it reported (its runtime shut down).
    running: AtomicBool,
    /// Woken when the task running the sequence was dropped before it reported.
    lost: Notify,
    report: watch::Sender<Option<Arc<ShutdownReport>>>,
    /// The entries of the steps done so far, in order: what a report written before the sequence
    /// finished (at the hard deadline) can say. Kept across a restarted run.
    recorded: Mutex<Vec<Entry>>,
}

impl Default for Sequence {
    fn default() -> Sequence {
        Sequence {
            running: AtomicBool::new(false),
            lost: Notify::new(),
            report: watch::Sender::new(None),
            recorded: Mutex::new(Vec::new()),
        }
    }
}

impl Sequence {
    /// Claims the run: true for the one task that gets to run the sequence now.
    pub(super) fn claim(&self) -> bool {
        !self.running.swap(true, Ordering::AcqRel) && !self.has_report()
    }

    pub(super) fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// The task running it went away before it reported: another may run it.
    pub(super) fn give_back(&self) {
        self.running.store(false, Ordering::Release);
        self.lost.notify_waiters();
    }

    pub(super) fn lost(&self) -> &Notify {
        &self.lost
    }

    /// The report, once made.
    pub(super) fn report(&self) -> Option<Arc<ShutdownReport>> {
        self.report.borrow().clone()
    }

    pub(super) fn has_report(&self) -> bool {
        self.report.borrow().is_some()
    }

    /// Adds the entries of a step (or of one resource) as soon as it is done.
    pub(super) fn record(&self, entries: Vec<Entry>) {
        lock(&self.recorded).extend(entries);
    }

    /// The entries recorded so far.
    pub(super) fn recorded(&self) -> Vec<Entry> {
        lock(&self.recorded).clone()
    }

    /// The entries recorded, for the report at the end of the sequence.
    pub(super) fn take_recorded(&self) -> Vec<Entry> {
        std::mem::take(&mut *lock(&self.recorded))
    }

    pub(super) fn publish(&self, report: ShutdownReport) {
        self.report.send_replace(Some(Arc::new(report)));
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<Option<Arc<ShutdownReport>>> {
        self.report.subscribe()
    }
}

/// Connection pools reporting into snapshots; each is forgotten when it goes away.
#[derive(Default)]
pub(super) struct Pools {
    pools: Mutex<Vec<Weak<dyn PoolStats>>>,
}

impl Pools {
    pub(super) fn add(&self, pool: Weak<dyn PoolStats>) {
        lock(&self.pools).push(pool);
    }

    /// Each live pool's state, in the order the pools were opened.
    pub(super) fn snapshots(&self) -> Vec<PoolSnapshot> {
        let pools: Vec<_> = {
            let mut pools = lock(&self.pools);
            pools.retain(|pool| pool.strong_count() > 0);
            pools.iter().filter_map(Weak::upgrade).collect()
        };
        // Asked once the lock is released: listing held connections asks the workers' registry.
        pools.iter().map(|pool| pool.pool_snapshot()).collect()
    }
}
