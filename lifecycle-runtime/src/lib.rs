//! Make a tokio service stop cleanly by construction.
//!
//! Every background loop, spawned task, OS thread, subprocess and resource is registered with one
//! [`Coordinator`]. When a signal arrives, [`shutdown()`] is called or `main` returns, the
//! coordinator runs one bounded sequence:
//!
//! 1. **trigger** — a signal, [`shutdown()`], the end of `main`, or a `critical` task failing;
//! 2. **drain** — readiness flips to false and the coordinator waits the configured drain time;
//! 3. **stop** — every task and thread is signalled at once (see [`Shutdown`]), except those
//!    declared to stop after others ([`stop_after`]), which are signalled in stages once the
//!    earlier ones ended; each gets its own stop timeout, then it is aborted and named;
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
// docs.rs (`--cfg docsrs`, `[package.metadata.docs.rs]`) shows which feature each gated item
// needs; a stable build never sets the cfg.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The parts, from the bottom up (each imports only from the ones before it; DESIGN.md draws the
// picture): `util` and `defaults` import nothing of the crate; `report` and `snapshot` are the
// words of reports and snapshots; `resources` and `workers` own what is registered;
// `coordinator` owns both and the shutdown sequence; `macro_support` and `db` build on the
// coordinator's public handle.
mod config;
mod coordinator;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
pub mod db;
mod defaults;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod macro_support;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod os_threads;
mod report;
mod resources;
mod snapshot;
#[cfg(all(feature = "systemd", unix))]
mod systemd;
mod timeout;
mod util;
mod workers;

pub use crate::config::ConfigError;
pub use crate::coordinator::{
    Coordinator, CoordinatorBuilder, EnterGuard, Shutdown, TaskGroup, manage, mark_ready, shutdown,
    shutdown_signal, snapshot, spawn, spawn_after, spawn_thread, stop_after, trigger_shutdown,
};
pub use crate::defaults::{
    DEFAULT_CLOSE_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_STOP_TIMEOUT, DEFAULT_TERM_TIMEOUT,
    DEFAULT_TEST_SHUTDOWN_TIMEOUT,
};
pub use crate::report::{
    Entry, EntryKind, Outcome, REPORT_VAR, ReportFormat, ShutdownReason, ShutdownReport,
};
pub use crate::resources::{
    Close, CloseError, Managed, ManagedChild, ManagedChildBuilder, NoCleanup,
};
pub use crate::snapshot::{
    Counters, GroupSnapshot, HeldConnection, PoolSnapshot, Readiness, ResourceSnapshot,
    ShutdownView, Snapshot, TaskSnapshot, TaskState, ThreadSnapshot,
};
pub use crate::timeout::{Elapsed, timeout};
pub use crate::workers::{StopOrderError, TaskError, TaskHandle, TaskName, ThreadHandle};

/// Turns an `async fn` into a tracked, shutdown-aware loop or service (or, with `thread`, a plain
/// `fn` into one on a named OS thread).
///
/// Calling the fn spawns the task on the current coordinator and returns its [`TaskHandle`]
/// ([`ThreadHandle`] with `thread`). Parameters move into the task once and every tick sees them.
/// A parameter of type [`Shutdown`] is filled in by the runtime, not passed by the caller.
///
/// | key | meaning | default |
/// |---|---|---|
/// | `interval = "5s"` | run the body once per interval; the first tick is immediate | none: a service, run once |
/// | `shutdown` / `shutdown = "finish"` | finish the running tick, start no new one | required (one of the three) |
/// | `shutdown = "abort"` | cancel the running tick at its next `.await` | |
/// | `shutdown = "final_tick"` | finish the running tick, then run one last one (flushers) | |
/// | `stop_timeout = "2s"` | how long shutdown waits for the task before aborting it | `2s` |
/// | `timeout = "30s"` | limit for one tick; a late tick is cancelled and counted | none |
/// | `name = "..."` | name in logs, reports, snapshots and the thread name | the fn's name |
/// | `group = "db"` | each tick holds a permit of that [`TaskGroup`] | none |
/// | `critical` | a failing tick (or service) starts shutdown | off |
/// | `missed_tick = "skip" \| "delay" \| "burst"` | what a late loop does (tokio's `MissedTickBehavior`) | `skip` |
/// | `thread` | run on a dedicated OS thread; the body is sync | off |
/// | `restart = "never" \| "on_failure" \| "always"` | services only: run the body again when it fails (`"on_failure"`: returns `Err` or panics), or also when it returns before shutdown (`"always"`) | `"never"` |
/// | `max_restarts = "5/1m"` | at most N restarts in any PERIOD; one more ends the task failed (and a `critical` one starts shutdown) | `"5/1m"` |
/// | `crate = "path"` | where `lifecycle_runtime` is, if renamed | |
///
/// The body returns `()` or `Result<(), E: Display>`: an `Err` or a panic is logged with the
/// task's name and counted, and the loop goes on (unless `critical`). Waiting between ticks is
/// event-driven and uses no CPU; shutdown wakes the loop at once.
///
/// **Supervision.** A service (no `interval`) with `restart` is started again, as an Erlang/OTP
/// supervisor restarts a child: after a pause of 100 ms, doubled for each restart already within
/// the `max_restarts` period (at most 5 s). Each failure is logged and counted; the restarts and
/// the latest failure show in [`snapshot()`] (`restarts`, `last_failure`, the state `restarting`
/// during the pause) and in the task's report entry (`restarted 2 times; last failure: ...`, on a
/// line of its own). More than N restarts within PERIOD and the failure escalates: the task ends
/// failed (`restarted N times in PERIOD, ...` in its error), and a `critical` one starts shutdown
/// with that reason; `critical` does not escalate a failure that is restarted. Nothing is restarted
/// once shutdown has started: a failure then is reported, and shutdown during the pause ends the
/// task at once, stopped. Parameters move in once and each run borrows them, as ticks do. An
/// interval loop needs no `restart`: it already goes on after a failing tick.
///
/// Compile errors, each under the offending tokens: no shutdown behaviour; a service without a
/// `Shutdown` parameter; a sync fn without `thread` or an async fn with it; zero or malformed
/// durations; unknown or repeated keys; `restart` on an interval loop, `max_restarts` without a
/// `restart` that restarts, or not `"N/PERIOD"` with N ≥ 1 and a period above zero; and in the
/// body a raw `tokio::spawn`/`std::thread::spawn` (use [`spawn`]/[`spawn_thread`]) or, in an
/// async body, a blocking `std::thread::sleep`.
///
/// Linux shows only the first 15 bytes of a thread's name (`"metrics-sampler-1"` appears as
/// `metrics-sampler` in `top -H`); reports use the whole name.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use lifecycle_runtime::{background, Shutdown};
///
/// /// Writes the counter out every 5 seconds, and once more at shutdown.
/// #[background(interval = "5s", shutdown = "final_tick", name = "counter-flush")]
/// async fn flush(counter: Arc<AtomicU64>) -> Result<(), std::io::Error> {
///     let _value = counter.swap(0, Ordering::Relaxed);
///     Ok(())
/// }
///
/// /// A service: runs once and watches its `Shutdown` itself.
/// #[background(shutdown, stop_timeout = "5s")]
/// async fn listener(port: u16, shutdown: Shutdown) {
///     shutdown.triggered().await;
///     let _ = port;
/// }
///
/// /// A blocking sampler on its own thread.
/// #[background(interval = "1s", shutdown, thread, name = "sampler")]
/// fn sample(counter: Arc<AtomicU64>) {
///     counter.fetch_add(1, Ordering::Relaxed);
/// }
///
/// /// A supervised service: restarted when it fails, at most 3 times in any 10 seconds.
/// #[background(shutdown, restart = "on_failure", max_restarts = "3/10s")]
/// async fn subscriber(topic: String, shutdown: Shutdown) -> Result<(), std::io::Error> {
///     let _ = topic.len();
///     shutdown.triggered().await;
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # lifecycle_runtime::Coordinator::new().scope(async {
/// let counter = Arc::new(AtomicU64::new(0));
/// let flusher = flush(counter.clone());
/// assert_eq!(flusher.name(), "counter-flush");
/// listener(8080);
/// sample(counter);
/// subscriber("orders".to_owned());
/// let report = lifecycle_runtime::shutdown().await;
/// assert!(report.is_clean(), "{report}");
/// # }).await;
/// # }
/// ```
pub use lifecycle_macros::background;

/// Runs `async fn main` under the process-global coordinator.
///
/// Does what `#[tokio::main]` does, and: installs SIGINT and SIGTERM handlers; when a signal
/// arrives, [`trigger_shutdown`] is called or the body returns, runs the shutdown sequence under
/// the budget, prints the [`ShutdownReport`] to stderr, and exits with 0 only when the body
/// succeeded and shutdown was clean (1 otherwise, 2 when it could not start). A second signal
/// during shutdown exits at once with 130 after listing what was still pending.
///
/// | key | meaning | default |
/// |---|---|---|
/// | `shutdown_timeout = "30s"` | the global budget (`LIFECYCLE_SHUTDOWN_TIMEOUT` overrides) | `30s` |
/// | `drain = "5s"` | wait with readiness false before stopping tasks (`LIFECYCLE_DRAIN` overrides) | `0s` |
/// | `stop_timeout = "5s"` | how long the body may take to return after shutdown starts | `5s` |
/// | `worker_threads = 4` | tokio worker threads | one per core |
/// | `flavor = "current_thread"` | tokio's current-thread scheduler | multi-thread |
/// | `crate = "path"` | where `lifecycle_runtime` is, if renamed | |
///
/// The body may return `()` or `Result<(), E: Debug>`.
///
/// ```no_run
/// #[lifecycle_runtime::main(shutdown_timeout = "30s", drain = "5s")]
/// async fn main() -> Result<(), std::io::Error> {
///     // start loops, servers, resources ...
///     lifecycle_runtime::shutdown_signal().triggered().await;
///     Ok(())
/// }
/// ```
pub use lifecycle_macros::main;

/// Gives a struct an ordered, time-limited [`Close`].
///
/// `close` runs the `before_close` hook first, then closes every field in declaration order (the
/// order Rust drops them), each under its own timeout, best effort: an error, panic or timeout in
/// one field does not stop the others. At shutdown each field gets an entry in the report, under
/// its resource; `close` returns an error naming every field that failed.
///
/// | key / field attribute | meaning | default |
/// |---|---|---|
/// | `close_timeout = "3s"` | each field's limit (and the hook's) | `3s` |
/// | `before_close = path` | an `async fn(&Self)` run first (flush, say goodbye to peers) | none |
/// | `name = "..."` | the name in reports | the struct's name |
/// | `crate = "path"` | where `lifecycle_runtime` is, if renamed | |
/// | `#[close(timeout = "5s")]` | this field's limit | the struct's |
/// | `#[close(with = path)]` | close this field with an `async fn(&FieldType)` | `Close::close` |
/// | `#[close(skip = "why")]` | this field needs no cleanup (the reason is required) | |
///
/// Every field must implement `Close` (plain values do through [`NoCleanup`]) or carry `skip` or
/// `with`: otherwise compilation fails at that field, naming it, its type and the three ways out.
/// Generic fields need a `T: Close` bound on the struct. `Box<T>` fields need `with` (or an
/// `Arc`): `Box` cannot implement `Close` next to `NoCleanup`'s blanket impl.
///
/// ```
/// use lifecycle_runtime::{Close, CloseError, managed_resource};
///
/// struct Connection;
/// impl Close for Connection {
///     async fn close(&self) -> Result<(), CloseError> {
///         Ok(())
///     }
/// }
///
/// struct Buffer;
/// async fn flush(_buffer: &Buffer) -> std::io::Result<()> {
///     Ok(())
/// }
///
/// #[managed_resource(close_timeout = "2s", before_close = Store::goodbye)]
/// struct Store {
///     #[close(with = flush)]
///     buffer: Buffer,
///     #[close(timeout = "5s")]
///     connection: Connection,
///     #[close(skip = "a plain label")]
///     label: &'static str,
/// }
///
/// impl Store {
///     async fn goodbye(&self) {}
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # lifecycle_runtime::Coordinator::new().scope(async {
/// let store = lifecycle_runtime::manage(Store { buffer: Buffer, connection: Connection, label: "main" });
/// let report = lifecycle_runtime::shutdown().await;
/// assert_eq!(report.entries()[0].name(), "Store");
/// assert_eq!(report.entries()[1].name(), "before_close");
/// assert_eq!(report.entries()[2].name(), "buffer");
/// # drop(store);
/// # }).await;
/// # }
/// ```
pub use lifecycle_macros::managed_resource;

/// `#[tokio::test]` with a coordinator of the test's own.
///
/// After the body, shutdown runs; the test fails, naming the culprit, if a task ignored shutdown
/// and had to be aborted, a resource's close failed or timed out, or a thread the test started
/// (through this crate) is still running. Tests in one process never see each other's tasks.
///
/// | key | meaning | default |
/// |---|---|---|
/// | `flavor = "multi_thread"` | tokio's multi-thread scheduler | current thread |
/// | `worker_threads = 2` | with `multi_thread` | one per core |
/// | `start_paused = true` | tokio's paused clock; needs this crate's `test-util` feature | `false` |
/// | `shutdown_timeout = "5s"` | the shutdown budget | [`DEFAULT_TEST_SHUTDOWN_TIMEOUT`] |
/// | `crate = "path"` | where `lifecycle_runtime` is, if renamed | |
///
/// ```
/// # fn main() {}
/// #[lifecycle_runtime::test]
/// async fn stops_cleanly() {
///     let _worker = lifecycle_runtime::spawn("worker", async {
///         lifecycle_runtime::shutdown_signal().triggered().await;
///     });
/// }
/// ```
pub use lifecycle_macros::test;

/// Limits an async fn returning `Result<T, E>` where `E: From<`[`Elapsed`]`>`; the signature is
/// unchanged. Past the limit the call's future is dropped and the fn returns the `Elapsed` error,
/// which names the operation and the limit. `std::io::Error` converts already.
///
/// Written `#[timeout("10s")]`, or with keys: `duration = "10s"`, `name = "..."` (the fn's name
/// otherwise), `crate = "path"`. The runtime form is [`timeout()`].
///
/// ```
/// use std::time::Duration;
///
/// #[lifecycle_runtime::timeout("50ms")]
/// async fn lookup(delay: Duration) -> std::io::Result<u32> {
///     tokio::time::sleep(delay).await;
///     Ok(7)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(lookup(Duration::ZERO).await.unwrap(), 7);
/// let error = lookup(Duration::from_secs(5)).await.unwrap_err();
/// assert_eq!(error.to_string(), "`lookup` timed out after 50ms");
/// # }
/// ```
pub use lifecycle_macros::timeout;

/// Items used by the code the macros generate. Not a public API: names and signatures here may
/// change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::macro_support::*;
}

/// The crate README's examples, compiled by `cargo test --doc` so the "Use it in your project"
/// snippet stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
