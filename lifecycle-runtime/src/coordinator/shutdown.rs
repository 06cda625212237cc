//! The [`Shutdown`] token tasks and threads watch (it fires when they are told to stop, step 3),
//! and the free functions that start shutdown or wait for its report.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use super::{Coordinator, with_current};
use crate::report::{Location, ShutdownReason, ShutdownReport};
use crate::workers::StopSignal;

/// The shutdown signal of a coordinator, as tasks and threads see it. Cheap to clone.
///
/// It fires when tasks are told to stop (step 3 of the sequence): right at the trigger, or after the
/// drain time when one is configured.
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let coordinator = lifecycle_runtime::Coordinator::new();
/// let shutdown = coordinator.shutdown_signal();
/// assert!(!shutdown.is_triggered());
/// coordinator.trigger_shutdown();
/// assert!(shutdown.is_triggered());
/// // Woken at once: `false` means the sleep was cut short by shutdown.
/// assert!(!shutdown.sleep(Duration::from_secs(60)).await);
/// assert!(shutdown.reason().unwrap().to_string().starts_with("shutdown requested at"));
/// # }
/// ```
///
/// A worker declared to stop after others ([`Coordinator::stop_after`]) gets a token that fires
/// when its stage is told to stop, later than the others.
#[derive(Clone)]
pub struct Shutdown {
    coordinator: Coordinator,
    signal: StopSignal,
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.is_triggered())
            .field("reason", &self.reason())
            .finish()
    }
}

impl Shutdown {
    /// The token of workers in no stop order: it fires when tasks are told to stop.
    pub(crate) fn new(coordinator: Coordinator) -> Shutdown {
        let signal = coordinator.workers().stop_signal().clone();
        Shutdown {
            coordinator,
            signal,
        }
    }

    /// The token of workers named `name`: a later stage's when the name is in a stop order.
    pub(crate) fn for_name(coordinator: Coordinator, name: &str) -> Shutdown {
        match coordinator.workers().order().signal(name) {
            Some(signal) => Shutdown {
                coordinator,
                signal,
            },
            None => Shutdown::new(coordinator),
        }
    }

    /// Whether no more is coming for this token's worker: shutdown has started and, for a
    /// worker in a later stage of a stop order, its own stage was told. A supervisor restarts a
    /// failed service only until then.
    pub(crate) fn is_winding_down(&self) -> bool {
        self.coordinator.is_shutting_down()
            && (self.is_triggered()
                || self
                    .signal
                    .same_as(self.coordinator.workers().stop_signal()))
    }

    /// The signal this token watches.
    pub(crate) fn signal(&self) -> &StopSignal {
        &self.signal
    }

    /// Whether tasks have been told to stop (not merely whether shutdown started: with a drain,
    /// that comes first; see [`Coordinator::is_shutting_down`]).
    pub fn is_triggered(&self) -> bool {
        // An atomic load, not `CancellationToken::is_cancelled` (which takes a lock): loops may ask
        // this on every iteration.
        self.signal().is_fired()
    }

    /// Completes when tasks are told to stop (at once if they already were).
    pub fn triggered(&self) -> impl Future<Output = ()> + Send + '_ {
        self.signal().fired()
    }

    /// Like [`triggered`](Self::triggered), but owns what it needs, for `'static` futures.
    pub fn triggered_owned(&self) -> impl Future<Output = ()> + Send + use<> {
        self.signal().fired_owned()
    }

    /// Sleeps for `duration` unless shutdown comes first. Returns `true` when the whole duration
    /// passed, `false` when woken by shutdown (at once if shutdown was already under way).
    pub async fn sleep(&self, duration: Duration) -> bool {
        if self.is_triggered() {
            return false;
        }
        tokio::select! {
            biased;
            () = self.triggered() => false,
            () = tokio::time::sleep(duration) => true,
        }
    }

    /// For OS threads: blocks for `duration` unless shutdown comes first. Returns `true` when the
    /// whole duration passed, `false` when woken by shutdown.
    pub fn sleep_blocking(&self, duration: Duration) -> bool {
        !self.signal().wait_blocking(Some(duration))
    }

    /// For OS threads: blocks until tasks are told to stop.
    pub fn wait_blocking(&self) {
        self.signal().wait_blocking(None);
    }

    /// Why shutdown was triggered, once it was.
    pub fn reason(&self) -> Option<&ShutdownReason> {
        self.coordinator.reason()
    }

    /// The coordinator this token belongs to.
    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }
}

/// The shutdown token of the current coordinator.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let shutdown = lifecycle_runtime::shutdown_signal();
/// if !shutdown.is_triggered() {
///     // keep serving
/// }
/// # }
/// ```
pub fn shutdown_signal() -> Shutdown {
    with_current(Coordinator::shutdown_signal)
}

/// Starts shutdown of the current coordinator and waits for the report. Idempotent: concurrent and
/// repeated callers get the same report. The report's reason names the first caller's location.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let report = lifecycle_runtime::Coordinator::new()
///     .scope(lifecycle_runtime::shutdown())
///     .await;
/// assert!(report.is_clean());
/// # }
/// ```
#[track_caller]
pub fn shutdown() -> impl Future<Output = ShutdownReport> + Send + 'static {
    let location = Location::caller();
    Coordinator::current().shutdown_with(ShutdownReason::Requested { location })
}

/// Starts shutdown of the current coordinator without waiting. Works from synchronous code and
/// from any thread; idempotent.
///
/// ```
/// let coordinator = lifecycle_runtime::Coordinator::new();
/// let _guard = coordinator.enter();
/// lifecycle_runtime::trigger_shutdown();
/// assert!(coordinator.is_shutting_down());
/// ```
#[track_caller]
pub fn trigger_shutdown() {
    let location = Location::caller();
    with_current(|coordinator| {
        coordinator.start_shutdown(ShutdownReason::Requested { location });
    });
}
