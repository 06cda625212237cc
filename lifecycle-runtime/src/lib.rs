//! Make a tokio service stop cleanly by construction.
//!
//! Every background loop, spawned task, OS thread, subprocess and resource is registered with one
//! [`Coordinator`]. When a signal arrives, [`shutdown()`] is called or `main` returns, the
//! coordinator runs one bounded sequence:
//!
//! 1. **trigger** — a signal, [`shutdown()`], the end of `main`, or a `critical` task failing;
//! 2. **drain** — readiness flips to false and the coordinator waits the configured drain time;
//! 3. **stop** — every task and thread is signalled at once (see [`Shutdown`]); each gets its own
//!    stop timeout, then it is aborted and named;
//! 4. **close** — resources close in reverse registration order, each under its own timeout;
//! 5. **report** — a [`ShutdownReport`] lists every entry with its outcome and time, and OS threads
//!    still alive.
//!
//! One global budget caps steps 2–5: what it cannot reach is skipped and reported, never waited on.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use lifecycle_runtime::{background, Shutdown};
//!
//! /// Prints a heartbeat every second until shutdown.
//! #[background(interval = "1s", shutdown)]
//! async fn heartbeat() {
//!     println!("still alive");
//! }
//!
//! /// A service: runs once and watches its `Shutdown` itself.
//! #[background(shutdown, stop_timeout = "5s")]
//! async fn server(port: u16, shutdown: Shutdown) {
//!     while shutdown.sleep(Duration::from_millis(100)).await {
//!         // accept connections on `port` ...
//!         let _ = port;
//!     }
//! }
//!
//! #[lifecycle_runtime::main(shutdown_timeout = "30s")]
//! async fn main() {
//!     heartbeat();
//!     server(8080);
//!     lifecycle_runtime::shutdown_signal().triggered().await;
//! }
//! ```
//!
//! # Choosing a coordinator
//!
//! Free functions such as [`spawn`] and [`shutdown`] act on the *current* coordinator: the one a
//! surrounding [`Coordinator::scope`] (or `#[lifecycle_runtime::test]`) installed, else the one an
//! OS thread started by [`spawn_thread`] belongs to, else the process-global one that
//! `#[lifecycle_runtime::main]` configures.

#![warn(missing_docs)]

mod background;
mod config;
mod coordinator;
mod entry;
mod fields;
mod group;
mod os_threads;
mod panic;
mod process;
mod registry;
mod report;
mod resource;
mod shutdown;
mod signal;
mod snapshot;
mod task;
mod thread;
mod timeout;

pub use crate::config::ConfigError;
pub use crate::coordinator::{Coordinator, CoordinatorBuilder, DEFAULT_SHUTDOWN_TIMEOUT};
pub use crate::entry::DEFAULT_TEST_SHUTDOWN_TIMEOUT;
pub use crate::group::TaskGroup;
pub use crate::process::{DEFAULT_TERM_TIMEOUT, ManagedChild, ManagedChildBuilder};
pub use crate::report::{Entry, EntryKind, Outcome, ShutdownReport};
pub use crate::resource::{Close, CloseError, DEFAULT_CLOSE_TIMEOUT, Managed, NoCleanup, manage};
pub use crate::shutdown::{Shutdown, ShutdownReason, shutdown, shutdown_signal, trigger_shutdown};
pub use crate::snapshot::{
    Counters, GroupSnapshot, ResourceSnapshot, Snapshot, TaskSnapshot, TaskState, ThreadSnapshot,
    snapshot,
};
pub use crate::task::{DEFAULT_STOP_TIMEOUT, TaskError, TaskHandle, TaskName, spawn};
pub use crate::thread::{ThreadHandle, spawn_thread};
pub use crate::timeout::{Elapsed, timeout};

pub use lifecycle_macros::{background, main, managed_resource, test, timeout};

/// Items used by the code the macros generate. Not a public API: names and signatures here may
/// change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::background::{
        BackgroundSpec, MissedTick, ShutdownMode, ThreadTicker, TickResult, Ticker,
        spawn_background, spawn_background_thread,
    };
    pub use crate::entry::{Flavor, MainOutput, MainSpec, TestSpec, run_main, run_test};
    pub use crate::fields::{
        CloseFuture, ClosingFields, IntoCloseResult, close_boxed, resource_timeout,
    };
    pub use crate::timeout::{TimeoutResult, returning};
    pub use core::time::Duration;
    pub use std::borrow::Cow;
}
