//! What `#[background]` expands to: a spec of the loop and a ticker that drives it.
//!
//! The generated code owns the loop, so a tick's body can borrow the fn's parameters across
//! ticks:
//!
//! ```text
//! spawn_background(SPEC, move |mut ticker| async move {
//!     while ticker.next_tick().await {
//!         ticker
//!             .run_tick(async {
//!                 let outcome: Result<(), Error> = async { /* the fn body */ }.await;
//!                 TickResult::into_tick_result(outcome)
//!             })
//!             .await;
//!     }
//!     ticker
//! })
//! ```
//!
//! A service (no interval) runs its body once: `if` instead of `while`. A supervised service
//! (`restart = ...`) is spawned by `spawn_supervised` and keeps `while`: `next_tick` is true
//! again after a run its supervisor restarts (`restart.rs`), once the backoff has passed.

mod thread;

pub use thread::{ThreadTicker, spawn_background_thread, spawn_supervised_thread};

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::{Interval, MissedTickBehavior};

use super::restart::{Decision, RETURNED, RestartSpec, Supervisor};
use crate::coordinator::{Coordinator, Shutdown, with_current};
use crate::report::ShutdownReason;
use crate::snapshot::{StateCell, TaskState};
use crate::util::{CatchUnwind, after_std, catch, display_guarded, format_duration};
use crate::workers::{
    Group, TaskError, TaskHandle, TaskName, ThreadHandle, WorkerKind, WorkerMeta,
};

/// What happens to a tick when shutdown comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Finish the running tick, start no new one.
    Finish,
    /// Cancel the running tick at its next `.await`.
    Abort,
    /// Finish the running tick, then run one last tick.
    FinalTick,
}

/// What an interval does when a tick ran longer than the period (tokio's `MissedTickBehavior`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissedTick {
    /// Skip the missed ticks and stay on the original schedule.
    Skip,
    /// Start the next period from when the late tick ran.
    Delay,
    /// Run the missed ticks back to back to catch up.
    Burst,
}

/// Everything `#[background(...)]` said, as constants.
#[derive(Clone, Copy, Debug)]
pub struct BackgroundSpec {
    /// Name in logs, reports and thread names.
    pub name: &'static str,
    /// Names of the workers it stops after (`stop_after`; empty: none).
    pub stop_after: &'static [&'static str],
    /// `None` for a service: the body runs once.
    pub interval: Option<Duration>,
    /// What shutdown does to a tick.
    pub shutdown: ShutdownMode,
    /// How long shutdown waits for the task before aborting it.
    pub stop_timeout: Duration,
    /// Limit for one tick.
    pub timeout: Option<Duration>,
    /// Task group whose permit each tick holds.
    pub group: Option<&'static str>,
    /// Whether a failure triggers shutdown.
    pub critical: bool,
    /// Missed-tick behaviour of the interval.
    pub missed_tick: MissedTick,
}

/// What a `#[background]` body may return: `()` or `Result<(), E>` with `E: Display`.
#[diagnostic::on_unimplemented(
    message = "a `#[background]` body must return `()` or `Result<(), E>` where `E: Display`, not `{Self}`",
    label = "the body returns `{Self}`",
    note = "an error is logged with the task's name and counted, and the loop goes on (unless the task is `critical`)"
)]
pub trait TickResult {
    /// `Err` carries the error as displayed.
    fn into_tick_result(self) -> Result<(), String>;
}

impl TickResult for () {
    fn into_tick_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> TickResult for Result<(), E> {
    fn into_tick_result(self) -> Result<(), String> {
        self.map_err(|error| display_guarded(&error))
    }
}

/// How one tick ended.
enum TickEnd {
    Done(Result<(), String>),
    Panicked(String),
    TimedOut(Duration),
    Cancelled,
}

/// Shared by the async and the thread ticker: what to do with a tick's end.
struct Settle<'a> {
    spec: &'a BackgroundSpec,
    coordinator: &'a Coordinator,
    shutdown: &'a Shutdown,
    exit: &'a mut Option<TaskError>,
    /// A supervised service's restarts.
    supervisor: Option<&'a mut Supervisor>,
    state: &'a StateCell,
}

impl Settle<'_> {
    fn settle(mut self, end: TickEnd) {
        if let Some(supervisor) = self.supervisor.take()
            && self.restart_or_give_up(supervisor, &end)
        {
            return;
        }
        let spec = self.spec;
        let service = spec.interval.is_none();
        let message = match end {
            TickEnd::Done(Ok(())) | TickEnd::Cancelled => return,
            TickEnd::Done(Err(message)) => {
                if service {
                    *self.exit = Some(TaskError::Failed {
                        task: spec.name.into(),
                        message: message.clone(),
                    });
                } else {
                    self.coordinator.workers().count_failed(spec.name);
                    tracing::error!(task = spec.name, error = %message, "tick failed");
                }
                message
            }
            TickEnd::Panicked(message) => {
                if service {
                    *self.exit = Some(TaskError::Panicked {
                        task: spec.name.into(),
                        message: message.clone(),
                    });
                } else {
                    self.coordinator.workers().count_panicked(spec.name);
                    tracing::error!(task = spec.name, panic = %message, "tick panicked");
                }
                format!("panicked: {message}")
            }
            TickEnd::TimedOut(limit) => {
                self.coordinator.workers().count_timed_out(spec.name);
                tracing::warn!(task = spec.name, limit = %format_duration(limit), "tick timed out and was cancelled");
                format!("tick timed out after {}", format_duration(limit))
            }
        };
        if spec.critical {
            self.coordinator
                .start_shutdown(ShutdownReason::CriticalTaskFailed {
                    task: spec.name.to_owned(),
                    error: message,
                });
        }
    }

    /// A supervised service's run ended: restarts it (the failure logged and counted, `critical`
    /// not escalated), or gives up past `max_restarts` (the task ends failed, and a `critical`
    /// one starts shutdown). False when neither: the run's end is the task's, settled as any
    /// service's.
    fn restart_or_give_up(&mut self, supervisor: &mut Supervisor, end: &TickEnd) -> bool {
        let spec = self.spec;
        let failure = match end {
            TickEnd::Cancelled => return false,
            TickEnd::Done(Ok(())) => None,
            TickEnd::Done(Err(message)) => Some(message.clone()),
            TickEnd::Panicked(message) => Some(format!("panicked: {message}")),
            TickEnd::TimedOut(limit) => {
                Some(format!("tick timed out after {}", format_duration(*limit)))
            }
        };
        let shutting_down = self.shutdown.is_winding_down();
        match supervisor.decide(
            failure.as_deref(),
            shutting_down,
            tokio::time::Instant::now(),
        ) {
            Decision::Done => {
                if let Some(failure) = &failure {
                    self.state.failed(failure, false);
                }
                false
            }
            Decision::Restart(pause) => {
                let restart_in = format_duration(pause);
                match (end, &failure) {
                    (TickEnd::Panicked(message), _) => {
                        self.coordinator.workers().count_panicked(spec.name);
                        tracing::error!(task = spec.name, panic = %message, %restart_in, "service panicked; restarting it");
                    }
                    (_, Some(failure)) => {
                        self.coordinator.workers().count_failed(spec.name);
                        tracing::error!(task = spec.name, error = %failure, %restart_in, "service failed; restarting it");
                    }
                    (_, None) => {
                        tracing::warn!(task = spec.name, %restart_in, "service returned before shutdown; restarting it");
                    }
                }
                self.state
                    .failed(failure.as_deref().unwrap_or(RETURNED), true);
                true
            }
            Decision::GiveUp(message) => {
                self.state.gave_up(failure.as_deref().unwrap_or(RETURNED));
                *self.exit = Some(TaskError::Failed {
                    task: spec.name.into(),
                    message: message.clone(),
                });
                if spec.critical {
                    self.coordinator
                        .start_shutdown(ShutdownReason::CriticalTaskFailed {
                            task: spec.name.to_owned(),
                            error: message,
                        });
                }
                true
            }
        }
    }
}

/// What both tickers share: counting ticks, a service's single run, the final tick.
#[derive(Debug)]
struct Ticks {
    state: Arc<StateCell>,
    count: u64,
    in_final_tick: bool,
}

impl Ticks {
    fn new(state: Arc<StateCell>) -> Ticks {
        Ticks {
            state,
            count: 0,
            in_final_tick: false,
        }
    }

    /// A service's body runs once: true the first time only.
    fn service_run(&mut self) -> bool {
        self.count += 1;
        if self.count == 1 {
            self.state.tick_started(TaskState::Running, self.count);
        }
        self.count == 1
    }

    fn idle(&self) {
        self.state.set(TaskState::Idle);
    }

    /// A supervised service runs again.
    fn restarted(&mut self) {
        self.state.restarted();
    }

    fn regular(&mut self) {
        self.count += 1;
        self.state.tick_started(TaskState::Ticking, self.count);
    }

    /// Shutdown came: one last tick with `final_tick`, then the end.
    fn after_shutdown(&mut self, mode: ShutdownMode) -> bool {
        if mode != ShutdownMode::FinalTick || self.in_final_tick {
            return false;
        }
        self.in_final_tick = true;
        self.count += 1;
        self.state.tick_started(TaskState::FinalTick, self.count);
        true
    }
}

/// Drives one `#[background]` task: waits for ticks, runs them under the spec's rules.
#[derive(Debug)]
pub struct Ticker {
    spec: BackgroundSpec,
    coordinator: Coordinator,
    shutdown: Shutdown,
    interval: Option<Interval>,
    ticks: Ticks,
    group: Option<Arc<Group>>,
    exit: Option<TaskError>,
    /// A supervised service's restarts (`None` for loops and unsupervised services).
    supervisor: Option<Supervisor>,
}

impl Ticker {
    /// Waits for the next tick, or for shutdown. Returns false when the loop must end.
    ///
    /// The first tick is immediate. Waiting is event-driven (a timer and the shutdown token), so
    /// an idle loop uses no CPU. With `final_tick`, one more tick follows shutdown. A service's
    /// body runs once, and again after each restart its supervisor decided, once the backoff
    /// has passed; shutdown during the backoff ends it instead.
    pub async fn next_tick(&mut self) -> bool {
        let Some(period) = self.spec.interval else {
            return match self.supervisor.as_mut().and_then(Supervisor::take_pending) {
                None => self.ticks.service_run(),
                Some(pause) => {
                    let restart =
                        self.shutdown.sleep(pause).await && !self.shutdown.is_winding_down();
                    if restart {
                        self.ticks.restarted();
                    }
                    restart
                }
            };
        };
        if self.ticks.in_final_tick {
            return false;
        }
        if !self.shutdown.is_triggered() {
            let missed_tick = self.spec.missed_tick;
            let interval = self
                .interval
                .get_or_insert_with(|| new_interval(period, missed_tick));
            self.ticks.idle();
            // Waits on the timer alone: at shutdown the coordinator wakes every registered loop
            // itself, so no cancellation future is built, registered and dropped per tick.
            let shutdown = &self.shutdown;
            let ticked = std::future::poll_fn(|cx| {
                if shutdown.is_triggered() {
                    return std::task::Poll::Ready(false);
                }
                interval.poll_tick(cx).map(|_due| {
                    // Feature `metrics`: a tick that starts a period or more after it was due.
                    #[cfg(feature = "metrics")]
                    crate::metrics::events::tick_started_late(
                        self.spec.name,
                        tokio::time::Instant::now().saturating_duration_since(_due),
                        period,
                    );
                    true
                })
            })
            .await;
            if ticked {
                self.ticks.regular();
                return true;
            }
        }
        self.ticks.after_shutdown(self.spec.shutdown)
    }

    /// The shutdown token, for a body that takes a `Shutdown` parameter.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Runs one tick: holds the group permit, applies the tick timeout, cancels the tick at
    /// shutdown in `abort` mode, and logs, counts and (for `critical`) escalates failures.
    pub async fn run_tick<F>(&mut self, tick: F)
    where
        F: Future<Output = Result<(), String>>,
    {
        let _permit = match &self.group {
            None => None,
            Some(group) => {
                // The last tick of a flusher waits for its permit even during shutdown.
                let stop = self.shutdown.signal();
                let give_up_on = (!self.ticks.in_final_tick).then_some(stop);
                match group.acquire(give_up_on).await {
                    Some(permit) => Some(permit),
                    None => return,
                }
            }
        };
        // Feature `metrics`: the tick's duration, from when it holds its permit.
        #[cfg(feature = "metrics")]
        let started = Instant::now();
        let end = if self.spec.timeout.is_none() && self.spec.shutdown != ShutdownMode::Abort {
            // The common case, without the extra layers: run the tick, catch a panic.
            match CatchUnwind::new(tick).await {
                Ok(result) => TickEnd::Done(result),
                Err(message) => TickEnd::Panicked(message),
            }
        } else if self.spec.shutdown == ShutdownMode::Abort {
            let tick = limited(self.spec.timeout, CatchUnwind::new(tick));
            // A tick that finished as shutdown fired keeps its result (an error is still logged).
            tokio::select! {
                biased;
                end = tick => end,
                () = self.shutdown.triggered() => TickEnd::Cancelled,
            }
        } else {
            limited(self.spec.timeout, CatchUnwind::new(tick)).await
        };
        #[cfg(feature = "metrics")]
        if self.spec.interval.is_some() {
            crate::metrics::events::tick_ended(self.spec.name, started.elapsed());
        }
        Settle {
            spec: &self.spec,
            coordinator: &self.coordinator,
            shutdown: &self.shutdown,
            exit: &mut self.exit,
            supervisor: self.supervisor.as_mut(),
            state: &self.ticks.state,
        }
        .settle(end);
    }
}

async fn limited<F: Future<Output = Result<(), String>>>(
    timeout: Option<Duration>,
    tick: CatchUnwind<F>,
) -> TickEnd {
    let ended = match timeout {
        None => tick.await,
        Some(limit) => match tokio::time::timeout(limit, tick).await {
            Ok(ended) => ended,
            Err(_) => return TickEnd::TimedOut(limit),
        },
    };
    match ended {
        Ok(result) => TickEnd::Done(result),
        Err(message) => TickEnd::Panicked(message),
    }
}

fn new_interval(period: Duration, missed_tick: MissedTick) -> Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(match missed_tick {
        MissedTick::Skip => MissedTickBehavior::Skip,
        MissedTick::Delay => MissedTickBehavior::Delay,
        MissedTick::Burst => MissedTickBehavior::Burst,
    });
    interval
}

/// Spawns a `#[background]` task on the current coordinator. `body` receives the ticker and
/// gives it back when the loop ends.
#[track_caller]
pub fn spawn_background<F, Fut>(spec: BackgroundSpec, body: F) -> TaskHandle
where
    F: FnOnce(Ticker) -> Fut,
    Fut: Future<Output = Ticker> + Send + 'static,
{
    spawn_loop_task(spec, None, body)
}

/// Spawns a supervised `#[background(restart = ...)]` service on the current coordinator: as
/// [`spawn_background`], and its ticker restarts the body as `restart` says. (The macros only
/// supervise services; a loop's ticks are never restarted, so `restart` is ignored for one.)
#[track_caller]
pub fn spawn_supervised<F, Fut>(spec: BackgroundSpec, restart: RestartSpec, body: F) -> TaskHandle
where
    F: FnOnce(Ticker) -> Fut,
    Fut: Future<Output = Ticker> + Send + 'static,
{
    spawn_loop_task(spec, supervisor(&spec, restart), body)
}

/// A service's supervisor; none for a loop.
fn supervisor(spec: &BackgroundSpec, restart: RestartSpec) -> Option<Supervisor> {
    spec.interval.is_none().then(|| Supervisor::new(restart))
}

/// Declares a `stop_after` key's order (see [`Coordinator::stop_after`]) and returns the token the
/// worker watches.
///
/// # Panics
///
/// At the caller's call of the `#[background]` fn, when the order would be a cycle (a program
/// error, like a bad key): the message names the cycle.
#[track_caller]
pub(super) fn declare_stop_after(coordinator: &Coordinator, spec: &BackgroundSpec) -> Shutdown {
    if !spec.stop_after.is_empty()
        && let Err(error) = coordinator.stop_after(spec.name, spec.stop_after)
    {
        panic!("cannot start `{}`: {error}", spec.name);
    }
    Shutdown::for_name(coordinator.clone(), spec.name)
}

#[track_caller]
fn spawn_loop_task<F, Fut>(
    spec: BackgroundSpec,
    supervisor: Option<Supervisor>,
    body: F,
) -> TaskHandle
where
    F: FnOnce(Ticker) -> Fut,
    Fut: Future<Output = Ticker> + Send + 'static,
{
    with_current(|coordinator| {
        let state = Arc::new(StateCell::default());
        let ticker = Ticker {
            spec,
            coordinator: coordinator.clone(),
            shutdown: declare_stop_after(coordinator, &spec),
            interval: None,
            ticks: Ticks::new(state.clone()),
            group: spec
                .group
                .map(|name| coordinator.group(name).group().clone()),
            exit: None,
            supervisor,
        };
        let run = body(ticker);
        let meta = WorkerMeta::new(
            TaskName::from(spec.name),
            WorkerKind::Task,
            spec.stop_timeout,
            Some(state),
        )
        .woken_at_stop(spec.interval.is_some());
        coordinator.spawn_worker(meta, async move {
            match run.await.exit {
                None => Ok(()),
                Some(error) => Err(error),
            }
        })
    })
}
