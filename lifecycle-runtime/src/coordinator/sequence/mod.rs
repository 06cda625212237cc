//! The shutdown sequence: a short driver over one file per step. It runs in its own tokio task
//! (spawned by the start of shutdown, in the coordinator's scope), so a caller that is cancelled
//! cannot leave it half done and every caller of `report()` gets the same report. A panic inside
//! it still produces a report; a sequence whose runtime went away is started again by the next
//! `report()` caller.
//!
//! 1. start (`Coordinator::start_shutdown`): readiness false, phase `Draining`;
//! 2. drain (`drain.rs`);
//! 3. stop workers (`stop.rs`);
//! 4. close resources (`close.rs`), then stop and close what the closes started (`late.rs`);
//! 5. report, with the OS threads still lingering (`lingering.rs`).

mod close;
mod drain;
mod late;
mod lingering;
mod stop;

use tokio::time::Instant;

use super::Coordinator;
use crate::report::{Outcome, ShutdownReason, ShutdownReport};
use crate::util::{CatchUnwind, after};
use crate::workers::Phase;

impl Coordinator {
    /// Spawns a task to run the shutdown sequence, on the current runtime or the remembered one,
    /// unless one is running. Several may be spawned (each `report()` caller spawns one on its
    /// own runtime, in case the remembered runtime is not driven any more); the first polled runs
    /// the sequence and the others return at once.
    pub(super) fn start_sequence(&self) {
        let sequence = &self.state.sequence;
        if !self.is_shutting_down() || sequence.is_running() || sequence.has_report() {
            return;
        }
        let handle = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.state.runtime.get().cloned());
        // No runtime yet: the first `shutdown().await` or `report()` caller starts it.
        if let Some(handle) = handle {
            // In this coordinator's scope: what closes spawn or manage belongs to it.
            handle.spawn(self.scope(self.clone().run_sequence_once()));
        }
    }

    /// Runs the sequence and publishes its report, unless another task already does.
    async fn run_sequence_once(self) {
        if !self.state.sequence.claim() {
            return;
        }
        let running = SequenceTask {
            coordinator: &self,
            reported: false,
        };
        let report = match CatchUnwind::new(self.run_sequence()).await {
            Ok(report) => report,
            Err(panic) => {
                tracing::error!(panic, "the shutdown sequence panicked");
                self.state.workers.set_phase(Phase::Done);
                self.sequence_failed(Outcome::Panicked, &format!("it panicked: {panic}"))
            }
        };
        self.state.sequence.publish(report);
        running.reported();
        // Aborted tasks the budget left unwoken: the report is made, they can go now.
        self.state.workers.wake_deferred();
        #[cfg(unix)]
        self.wake_watchdog();
    }

    /// The one report of a sequence that could not finish.
    pub(super) fn sequence_failed(&self, outcome: Outcome, why: &str) -> ShutdownReport {
        let started = self.state.start.at();
        ShutdownReport::sequence_failed(
            self.reason()
                .cloned()
                .unwrap_or(ShutdownReason::MainReturned),
            self.sequence_config().shutdown_timeout,
            started.elapsed(),
            outcome,
            why,
        )
    }

    /// The sequence, step by step, under one budget.
    async fn run_sequence(&self) -> ShutdownReport {
        let started = self.state.start.at();
        let config = self.sequence_config();
        let deadline = after(started, config.shutdown_timeout);
        let workers = &self.state.workers;

        let sequence = &self.state.sequence;

        sequence.record(drain::run(config.drain, deadline).await);
        workers.tell_to_stop();
        stop::run(workers, deadline).await;
        // Stages of a stop order with nobody left in them were never needed: their signals
        // still fire, for workers that come late.
        workers.start_stages_through(
            usize::MAX,
            Instant::now(),
            crate::workers::StageStart::EarlierDone,
        );
        sequence.record(workers.take_entries(started));
        workers.set_phase(Phase::Closing);
        close::run(self, started, deadline).await;
        late::run(self, started, deadline).await;
        // Workers still running after the late rounds (nothing waits for them any more) are
        // reported rather than dropped silently.
        workers.leak_unjudged();
        sequence.record(workers.take_entries(started));
        let lingering = if config.scan_os_threads {
            lingering::run(workers, &self.state.baseline_threads, started, deadline).await
        } else {
            lingering::Lingering::default()
        };
        sequence.record(lingering.entries);
        workers.set_phase(Phase::Done);

        // The sequence only starts after a start recorded its reason.
        let reason = self
            .reason()
            .cloned()
            .unwrap_or(ShutdownReason::MainReturned);
        let report = ShutdownReport::new(
            reason,
            config.shutdown_timeout,
            started.elapsed(),
            sequence.take_recorded(),
            lingering.names,
        );
        // Feature `metrics`: the entries' durations and outcomes, once, as the report is made.
        #[cfg(feature = "metrics")]
        crate::metrics::events::shutdown_reported(&report);
        if report.is_clean() {
            tracing::info!(elapsed = ?report.elapsed(), "shutdown complete");
        } else {
            tracing::warn!(elapsed = ?report.elapsed(), "shutdown finished with problems");
        }
        report
    }
}

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
            self.coordinator.state.sequence.give_back();
        }
    }
}

/// Time since the sequence started, for an entry that happens now.
fn offset(started: Instant) -> std::time::Duration {
    Instant::now().saturating_duration_since(started)
}
