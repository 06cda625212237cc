//! Why shutdown started: the first line of every report.

use std::fmt;

pub(crate) use std::panic::Location;

/// Why shutdown started. The report's first line says it too.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownReason {
    /// An OS signal arrived (`SIGINT`, `SIGTERM`, or ctrl-c where there are no signals).
    Signal {
        /// The signal's name, such as `"SIGTERM"`.
        name: &'static str,
    },
    /// [`shutdown()`](crate::shutdown()) or [`trigger_shutdown()`](crate::trigger_shutdown()) was called.
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
