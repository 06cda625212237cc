//! Every default value of the runtime, named once. The public ones are re-exported at the crate
//! root; the macros' expansions refer to them through `__private`, so a default changes here and
//! nowhere else.

use std::time::Duration;

/// The global budget for the whole shutdown sequence when nothing else is configured.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// The shutdown budget of a `#[lifecycle_runtime::test]` that sets none.
pub const DEFAULT_TEST_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long shutdown waits for a task or thread that has no stop timeout of its own.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the body of `#[lifecycle_runtime::main]` may take to return once shutdown started.
pub(crate) const DEFAULT_MAIN_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a resource's close may take when it says nothing else.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a managed child process gets after SIGTERM before SIGKILL, unless set otherwise.
pub const DEFAULT_TERM_TIMEOUT: Duration = Duration::from_secs(3);

/// How many restarts a supervised `#[background]` service may make within
/// [`DEFAULT_RESTART_PERIOD`] before its failure escalates, when `max_restarts` says nothing.
pub(crate) const DEFAULT_MAX_RESTARTS: u32 = 5;

/// The window [`DEFAULT_MAX_RESTARTS`] counts restarts in.
pub(crate) const DEFAULT_RESTART_PERIOD: Duration = Duration::from_secs(60);

/// The pause before a supervised service's first restart within its window; each further
/// restart within the window doubles it.
pub(crate) const RESTART_BACKOFF_FIRST: Duration = Duration::from_millis(100);

/// The longest pause before a restart.
pub(crate) const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(5);
