//! The shutdown token tasks watch, why shutdown started, and the free functions that start it.

use std::fmt;
use std::future::Future;
use std::time::Duration;

pub(crate) use std::panic::Location;

use crate::coordinator::{Coordinator, with_current};
use crate::report::ShutdownReport;

/// Why shutdown started. The report's first line says it too.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownReason {
    /// An OS signal arrived (`SIGINT`, `SIGTERM`, or ctrl-c where there are no signals).
    Signal {
        /// The signal's name, such as `"SIGTERM"`.
        name: &'static str,
    },
    /// [`shutdown()`] or [`trigger_shutdown()`] was called.
    Requested {
        /// Where it was called.
        location: &'static Location<'static>,
    },
    /// The body of `#[lifecycle_runtime::main]` returned.
    MainReturned,
    /// The body of `#[lifecycle_runtime::main]` returned an error.
    MainFailed {
        /// The error, formatted with `{:?}` as `std` does for `main`.
        error: String,
    },
    /// A task marked `critical` failed.
    CriticalTaskFailed {
        /// The task's name.
        task: String,
        /// What went wrong, as displayed.
        error: String,
    },
    /// The body of a `#[lifecycle_runtime::test]` ended.
    TestFinished,
}

impl fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownReason::Signal { name } => write!(f, "{name} received"),
            ShutdownReason::Requested { location } => write!(
                f,
                "shutdown requested at {}:{}:{}",
                location.file(),
                location.line(),
                location.column()
            ),
            ShutdownReason::MainReturned => f.write_str("main returned"),
            ShutdownReason::MainFailed { error } => write!(f, "main returned an error: {error}"),
            ShutdownReason::CriticalTaskFailed { task, error } => {
                write!(f, "critical task `{task}` failed: {error}")
            }
            ShutdownReason::TestFinished => f.write_str("test finished"),
        }
    }
}

impl serde::Serialize for ShutdownReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let kind = match self {
            ShutdownReason::Signal { .. } => "signal",
            ShutdownReason::Requested { .. } => "requested",
            ShutdownReason::MainReturned => "main_returned",
            ShutdownReason::MainFailed { .. } => "main_failed",
            ShutdownReason::CriticalTaskFailed { .. } => "critical_task_failed",
            ShutdownReason::TestFinished => "test_finished",
        };
        let mut state = serializer.serialize_struct("ShutdownReason", 2)?;
        state.serialize_field("kind", kind)?;
        state.serialize_field("message", &self.to_string())?;
        state.end()
    }
}

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
#[derive(Clone)]
pub struct Shutdown {
    coordinator: Coordinator,
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
    pub(crate) fn new(coordinator: Coordinator) -> Shutdown {
        Shutdown { coordinator }
    }

    /// Whether tasks have been told to stop.
    pub fn is_triggered(&self) -> bool {
        // An atomic load, not `CancellationToken::is_cancelled` (which takes a lock): loops may ask
        // this on every iteration.
        self.coordinator
            .inner
            .stopped
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Completes when tasks are told to stop (at once if they already were).
    pub fn triggered(&self) -> impl Future<Output = ()> + Send + '_ {
        self.coordinator.inner.stop.cancelled()
    }

    /// Like [`triggered`](Self::triggered), but owns what it needs, for `'static` futures.
    pub fn triggered_owned(&self) -> impl Future<Output = ()> + Send + 'static {
        self.coordinator.inner.stop.clone().cancelled_owned()
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
        !self.coordinator.wait_stop_blocking(Some(duration))
    }

    /// For OS threads: blocks until tasks are told to stop.
    pub fn wait_blocking(&self) {
        self.coordinator.wait_stop_blocking(None);
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
/// assert!(coordinator.is_triggered());
/// ```
#[track_caller]
pub fn trigger_shutdown() {
    let location = Location::caller();
    with_current(|coordinator| {
        coordinator.trigger(ShutdownReason::Requested { location });
    });
}
