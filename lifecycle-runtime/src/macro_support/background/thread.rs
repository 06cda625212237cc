//! `#[background(thread)]`: the same loop on a named OS thread, driven by a [`ThreadTicker`]
//! that sleeps on the coordinator's `Shutdown` instead of a tokio timer.

use super::*;

/// Drives one `#[background(thread)]` loop on its OS thread.
#[derive(Debug)]
pub struct ThreadTicker {
    spec: BackgroundSpec,
    coordinator: Coordinator,
    shutdown: Shutdown,
    ticks: Ticks,
    next_due: Option<Instant>,
    exit: Option<TaskError>,
    /// A supervised service's restarts (`None` for loops and unsupervised services).
    supervisor: Option<Supervisor>,
}

impl ThreadTicker {
    /// Blocks until the next tick or shutdown. Returns false when the loop must end. A
    /// supervised service runs again as [`Ticker::next_tick`] says.
    pub fn next_tick(&mut self) -> bool {
        let Some(period) = self.spec.interval else {
            return match self.supervisor.as_mut().and_then(Supervisor::take_pending) {
                None => self.ticks.service_run(),
                Some(pause) => {
                    let restart =
                        self.shutdown.sleep_blocking(pause) && !self.shutdown.is_winding_down();
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
            let now = Instant::now();
            let due = self.next_due.unwrap_or(now);
            self.ticks.idle();
            let stopped = due > now && self.shutdown.signal().wait_blocking(Some(due - now));
            if !stopped && !self.shutdown.is_triggered() {
                let started = Instant::now();
                #[cfg(feature = "metrics")]
                crate::metrics::events::tick_started_late(
                    self.spec.name,
                    started.saturating_duration_since(due),
                    period,
                );
                self.next_due = Some(match self.spec.missed_tick {
                    MissedTick::Burst => after_std(due, period),
                    MissedTick::Delay => after_std(started, period),
                    MissedTick::Skip => {
                        let next = after_std(due, period);
                        if next > started {
                            next
                        } else {
                            // The first multiple of the period after now.
                            let behind =
                                started.duration_since(due).as_nanos() / period.as_nanos().max(1);
                            u32::try_from(behind + 1)
                                .ok()
                                .and_then(|periods| period.checked_mul(periods))
                                .map_or_else(
                                    || after_std(started, period),
                                    |skip| after_std(due, skip),
                                )
                        }
                    }
                });
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

    /// Runs one tick, catching panics, and logs, counts and escalates failures.
    pub fn run_tick<F: FnOnce() -> Result<(), String>>(&mut self, tick: F) {
        #[cfg(feature = "metrics")]
        let started = Instant::now();
        let end = match catch(tick) {
            Ok(result) => TickEnd::Done(result),
            Err(message) => TickEnd::Panicked(message),
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

/// Starts a `#[background(thread)]` loop on a named OS thread of the current coordinator.
#[track_caller]
pub fn spawn_background_thread<F>(spec: BackgroundSpec, body: F) -> ThreadHandle
where
    F: FnOnce(ThreadTicker) -> ThreadTicker + Send + 'static,
{
    spawn_loop_thread(spec, None, body)
}

/// Starts a supervised `#[background(thread, restart = ...)]` service on a named OS thread, as
/// [`spawn_supervised`] does a task.
#[track_caller]
pub fn spawn_supervised_thread<F>(
    spec: BackgroundSpec,
    restart: RestartSpec,
    body: F,
) -> ThreadHandle
where
    F: FnOnce(ThreadTicker) -> ThreadTicker + Send + 'static,
{
    spawn_loop_thread(spec, supervisor(&spec, restart), body)
}

#[track_caller]
fn spawn_loop_thread<F>(
    spec: BackgroundSpec,
    supervisor: Option<Supervisor>,
    body: F,
) -> ThreadHandle
where
    F: FnOnce(ThreadTicker) -> ThreadTicker + Send + 'static,
{
    with_current(|coordinator| {
        let state = Arc::new(StateCell::default());
        let ticker = ThreadTicker {
            spec,
            coordinator: coordinator.clone(),
            shutdown: super::declare_stop_after(coordinator, &spec),
            ticks: Ticks::new(state.clone()),
            next_due: None,
            exit: None,
            supervisor,
        };
        let meta = WorkerMeta::new(
            TaskName::from(spec.name),
            WorkerKind::Thread,
            spec.stop_timeout,
            Some(state),
        );
        coordinator.spawn_thread_worker(meta, move |_shutdown| match body(ticker).exit {
            None => Ok(()),
            Some(error) => Err(error),
        })
    })
}
