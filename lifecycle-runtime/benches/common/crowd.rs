//! The tasks under test: n tasks that count themselves at their first poll and then wait until
//! they are stopped, spawned and stopped the way each contender does it.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use lifecycle_runtime::Coordinator;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_graceful_shutdown::{SubsystemBuilder, SubsystemHandle, Toplevel};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::common::runtime::{alive_tasks, tasks_gone};

/// How long tokio-graceful-shutdown may take to stop its subsystems before it reports a timeout.
const GRACEFUL_LIMIT: Duration = Duration::from_secs(60);

/// Who spawns the tasks, and what they wait on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Contender {
    /// `tokio::spawn`, tasks waiting on a shared `Notify`: the baseline of spawn and memory.
    Raw,
    /// `TaskTracker::spawn`, tasks waiting on a `CancellationToken`: the baseline of shutdown.
    Tracker,
    /// tokio-graceful-shutdown subsystems, waiting on `on_shutdown_requested()`.
    Graceful,
    /// `lifecycle_runtime::spawn` on the global coordinator, waiting on a `Notify` of the round's
    /// own, as raw's do: the global coordinator shuts down once, so a bench never shuts it down,
    /// and its own `Shutdown` is a `Notify` too, so the wait costs what raw's does.
    Global,
    /// `Coordinator::spawn` on a fresh scoped coordinator, waiting on its `Shutdown`.
    Scoped,
}

impl Contender {
    pub const ALL: [Contender; 5] = [
        Contender::Raw,
        Contender::Tracker,
        Contender::Graceful,
        Contender::Global,
        Contender::Scoped,
    ];

    /// How it spawns and what its tasks wait on.
    pub fn label(self) -> String {
        format!("{} + {}", self.spawner(), self.waits_on())
    }

    /// How it spawns.
    pub fn spawner(self) -> &'static str {
        match self {
            Contender::Raw => "tokio::spawn",
            Contender::Tracker => "TaskTracker::spawn",
            Contender::Graceful => "tokio-graceful-shutdown subsystem",
            Contender::Global => "lifecycle_runtime::spawn (global)",
            Contender::Scoped => "Coordinator::spawn (scoped)",
        }
    }

    /// What its tasks wait on.
    fn waits_on(self) -> &'static str {
        match self {
            Contender::Raw => "Notify",
            Contender::Tracker => "CancellationToken",
            Contender::Graceful => "on_shutdown_requested()",
            Contender::Global => "Notify",
            Contender::Scoped => "Shutdown",
        }
    }

    /// Whether it can spawn from `placement`. tokio-graceful-shutdown starts subsystems only from
    /// inside a subsystem, and a subsystem is a task on a worker.
    pub fn spawns_from(self, placement: Placement) -> bool {
        self != Contender::Graceful || placement == Placement::Worker
    }
}

/// Where the spawning code runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In a task on a runtime worker, as a server's accept loop does.
    Worker,
    /// On the thread that called `Runtime::block_on`, outside the workers.
    BlockOn,
}

impl Placement {
    pub const BOTH: [Placement; 2] = [Placement::Worker, Placement::BlockOn];

    pub fn label(self) -> &'static str {
        match self {
            Placement::Worker => "from a worker",
            Placement::BlockOn => "from the block_on thread",
        }
    }
}

/// Every placement with every contender that can spawn from it.
pub fn placed(contenders: &[Contender]) -> impl Iterator<Item = (Placement, Contender)> + '_ {
    Placement::BOTH.into_iter().flat_map(|placement| {
        contenders
            .iter()
            .filter(move |contender| contender.spawns_from(placement))
            .map(move |&contender| (placement, contender))
    })
}

/// Runs `work` at `placement`. For [`Placement::BlockOn`] the caller must itself be running in
/// `Runtime::block_on`, not in a task.
pub async fn on<T: Send + 'static>(
    placement: Placement,
    work: impl Future<Output = T> + Send + 'static,
) -> T {
    match placement {
        Placement::BlockOn => work.await,
        Placement::Worker => tokio::spawn(work).await.expect("the spawning task ends"),
    }
}

/// Counts first polls, and notes when the first spawn came and when the last first poll did.
#[derive(Debug)]
pub struct FirstPolls {
    count: AtomicUsize,
    target: usize,
    started: OnceLock<Instant>,
    completed: OnceLock<Instant>,
    done: Notify,
}

impl FirstPolls {
    pub fn new(target: usize) -> Arc<FirstPolls> {
        Arc::new(FirstPolls {
            count: AtomicUsize::new(0),
            target,
            started: OnceLock::new(),
            completed: OnceLock::new(),
            done: Notify::new(),
        })
    }

    /// Starts the clock: the spawner calls it just before its first spawn.
    fn start_clock(&self) {
        let _ = self.started.set(Instant::now());
    }

    /// Each task calls it at its first poll; the last one stops the clock.
    fn count(&self) {
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.target {
            let _ = self.completed.set(Instant::now());
            self.done.notify_one();
        }
    }

    /// Waits until every task was polled once; returns the time from the first spawn until then.
    pub async fn all(&self) -> Duration {
        self.done.notified().await;
        let started = self.started.get().expect("the spawner started the clock");
        let completed = self
            .completed
            .get()
            .expect("the last task stopped the clock");
        completed.duration_since(*started)
    }
}

/// A task's body: holds `N` bytes across its wait (none for the bare wait), counts itself at its
/// first poll and waits for `stop`. It polls `stop` before counting, so a stop sent once every
/// task has counted reaches them all (a `Notify` does not remember a waiter it has not seen).
async fn wait_for<const N: usize>(polls: Arc<FirstPolls>, stop: impl Future<Output = ()>) {
    let buffer = black_box([0u8; N]);
    let mut stop = std::pin::pin!(stop);
    let mut first = true;
    std::future::poll_fn(|cx| {
        let stopped = stop.as_mut().poll(cx);
        if std::mem::take(&mut first) {
            polls.count();
        }
        stopped
    })
    .await;
    black_box(&buffer);
}

/// What stops the tasks of one contender.
enum Signal {
    Raw {
        notify: Arc<Notify>,
        handles: Vec<JoinHandle<()>>,
    },
    Tracker {
        token: CancellationToken,
        tracker: TaskTracker,
    },
    Graceful {
        token: CancellationToken,
        toplevel: Option<Toplevel>,
    },
    Global {
        notify: Arc<Notify>,
    },
    Scoped {
        coordinator: Coordinator,
    },
}

/// `n` waiting tasks of one contender, and what stops them.
pub struct Crowd {
    n: usize,
    polls: Arc<FirstPolls>,
    signal: Signal,
    /// Tasks alive in the runtime before this crowd.
    baseline: usize,
    future_size: Option<usize>,
}

impl Crowd {
    /// Sets up what the contender needs before its first spawn, the raw handles' vector included,
    /// so that neither the clock nor a memory count sees it. Call it inside the runtime.
    pub fn prepare(contender: Contender, n: usize) -> Crowd {
        let signal = match contender {
            Contender::Raw => Signal::Raw {
                notify: Arc::new(Notify::new()),
                handles: Vec::with_capacity(n),
            },
            Contender::Tracker => Signal::Tracker {
                token: CancellationToken::new(),
                tracker: TaskTracker::new(),
            },
            Contender::Graceful => Signal::Graceful {
                token: CancellationToken::new(),
                toplevel: None,
            },
            Contender::Global => Signal::Global {
                notify: Arc::new(Notify::new()),
            },
            Contender::Scoped => Signal::Scoped {
                coordinator: Coordinator::builder().scan_os_threads(false).build(),
            },
        };
        Crowd {
            n,
            polls: FirstPolls::new(n),
            signal,
            baseline: alive_tasks(),
            future_size: None,
        }
    }

    /// Spawns the `n` tasks from `placement`, each holding `N` bytes across its wait. Returns when
    /// the spawner is done; some tasks may not have had their first poll yet.
    pub async fn spawn<const N: usize>(&mut self, placement: Placement) {
        let (n, polls) = (self.n, self.polls.clone());
        let clock = polls.clone();
        match &mut self.signal {
            Signal::Raw { notify, handles } => {
                let notify = notify.clone();
                let task = move || {
                    let notify = notify.clone();
                    wait_for::<N>(polls.clone(), async move { notify.notified().await })
                };
                self.future_size = Some(size_of_val(&task()));
                let kept = std::mem::take(handles);
                *handles = spawn_all(placement, clock, n, kept, move || tokio::spawn(task())).await;
            }
            Signal::Tracker { token, tracker } => {
                let token = token.clone();
                let task = move || wait_for::<N>(polls.clone(), token.clone().cancelled_owned());
                self.future_size = Some(size_of_val(&task()));
                let tracker = tracker.clone();
                spawn_all(placement, clock, n, Vec::new(), move || {
                    drop(tracker.spawn(task()));
                })
                .await;
            }
            Signal::Graceful { token, toplevel } => {
                assert_eq!(
                    placement,
                    Placement::Worker,
                    "tokio-graceful-shutdown starts subsystems from inside a subsystem"
                );
                *toplevel = Some(Toplevel::new_with_shutdown_token(
                    async move |s: &mut SubsystemHandle| {
                        clock.start_clock();
                        for _ in 0..n {
                            let polls = polls.clone();
                            drop(s.start(SubsystemBuilder::new(
                                "waiting",
                                async move |s: &mut SubsystemHandle| {
                                    wait_for::<N>(polls, s.on_shutdown_requested()).await;
                                    Ok::<(), Infallible>(())
                                },
                            )));
                        }
                    },
                    token.clone(),
                ));
            }
            Signal::Global { notify } => {
                let notify = notify.clone();
                let task = move || {
                    let notify = notify.clone();
                    wait_for::<N>(polls.clone(), async move { notify.notified().await })
                };
                self.future_size = Some(size_of_val(&task()));
                spawn_all(placement, clock, n, Vec::new(), move || {
                    drop(lifecycle_runtime::spawn("waiting", task()));
                })
                .await;
            }
            Signal::Scoped { coordinator } => {
                let shutdown = coordinator.shutdown_signal();
                let task = move || wait_for::<N>(polls.clone(), shutdown.triggered_owned());
                self.future_size = Some(size_of_val(&task()));
                let coordinator = coordinator.clone();
                spawn_all(placement, clock, n, Vec::new(), move || {
                    drop(coordinator.spawn("waiting", task()));
                })
                .await;
            }
        }
    }

    /// Size of one task's future as handed to the contender's spawn, before any wrapper of its
    /// own; `None` for tokio-graceful-shutdown, which builds the future itself.
    pub fn future_size(&self) -> Option<usize> {
        self.future_size
    }

    /// Waits until every task was polled once; returns the time from the first spawn until then.
    pub async fn all_polled(&self) -> Duration {
        self.polls.all().await
    }

    /// Stops the tasks the contender's way and waits until they ended; returns the time that took
    /// (for the global coordinator, which cannot say when its tasks ended, until the runtime has
    /// none left). A scoped coordinator's report must be clean and fold the n tasks into one entry.
    /// Returns once every task is gone from the runtime.
    pub async fn stop(self) -> Duration {
        let started = Instant::now();
        let elapsed = match self.signal {
            Signal::Raw { notify, handles } => {
                notify.notify_waiters();
                for handle in handles {
                    handle.await.expect("a raw task ends when notified");
                }
                started.elapsed()
            }
            Signal::Tracker { token, tracker } => {
                token.cancel();
                tracker.close();
                tracker.wait().await;
                started.elapsed()
            }
            Signal::Graceful { token, toplevel } => {
                token.cancel();
                let toplevel = toplevel.expect("the subsystems were started");
                let stopped = toplevel.handle_shutdown_requests(GRACEFUL_LIMIT).await;
                let elapsed = started.elapsed();
                stopped.expect("the subsystems stop cleanly");
                elapsed
            }
            Signal::Global { notify } => {
                notify.notify_waiters();
                tasks_gone(self.baseline).await;
                started.elapsed()
            }
            Signal::Scoped { coordinator } => {
                let report = coordinator.shutdown().await;
                let elapsed = started.elapsed();
                assert!(report.is_clean(), "{report}");
                assert_eq!(report.entries()[0].count(), self.n, "{report}");
                elapsed
            }
        };
        tasks_gone(self.baseline).await;
        elapsed
    }
}

/// Runs the spawn loop at `placement`: starts the clock, then spawns `n` tasks, keeping what
/// `spawn` returns in `kept` (a vector of `()` for the contenders that need no handle).
async fn spawn_all<H: Send + 'static>(
    placement: Placement,
    clock: Arc<FirstPolls>,
    n: usize,
    mut kept: Vec<H>,
    mut spawn: impl FnMut() -> H + Send + 'static,
) -> Vec<H> {
    on(placement, async move {
        clock.start_clock();
        for _ in 0..n {
            kept.push(spawn());
        }
        kept
    })
    .await
}
