//! Metrics of the runtime through the [`metrics`](https://docs.rs/metrics) facade: the program
//! installs the recorder (Prometheus, StatsD, OpenTelemetry, ...), this crate records into it.
//!
//! - **Counters and histograms** are recorded where the event happens, with nothing to start:
//!   ticks and their durations, missed ticks, failures, panics and timeouts by task name, pool
//!   acquire and hold times, acquire timeouts, suspected leaks, and the shutdown report's entries
//!   (durations and outcomes by kind) when the report is made.
//! - **Gauges** (tasks by name and state, group permits, open resources, pool connections,
//!   readiness) are read from [`snapshot()`](crate::snapshot()) by a collector:
//!   [`spawn_collector`] runs one pass every period as a tracked task. It is not started by
//!   itself, so a program without a recorder has no extra task in its snapshots and reports.
//!
//! Every metric is named `lifecycle_...`; METRICS.md in the repository lists each with its type,
//! labels and source. Without the feature none of this is compiled.
//!
//! ```
//! use std::time::Duration;
//! use lifecycle_runtime::background;
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//!
//! #[background(interval = "10ms", shutdown, name = "sweeper")]
//! async fn sweep() {}
//!
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! // A program installs its recorder globally (`metrics::set_global_recorder`); this example
//! // keeps it to its thread, where its current-thread runtime runs every task.
//! let _local = metrics::set_default_local_recorder(&recorder);
//! tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(
//!     lifecycle_runtime::Coordinator::new().scope(async {
//!         sweep();
//!         tokio::time::sleep(Duration::from_millis(35)).await;
//!         lifecycle_runtime::shutdown().await;
//!     }),
//! );
//! let ticks = snapshotter.snapshot().into_vec().into_iter().find_map(|(key, _, _, value)| {
//!     match value {
//!         DebugValue::Counter(ticks) if key.key().name() == "lifecycle_ticks_total" => Some(ticks),
//!         _ => None,
//!     }
//! });
//! assert!(ticks >= Some(2), "{ticks:?}");
//! ```

mod collector;
pub(crate) mod events;

pub use collector::{Collector, MAX_NAMES, OTHER_NAME, spawn_collector};

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Gives every metric of this crate its unit and a one-line description in the installed
/// recorder (what Prometheus shows as `# HELP`). [`spawn_collector`] calls it; a program that
/// does not run the collector may call it once after installing its recorder.
///
/// ```
/// use metrics_util::debugging::DebuggingRecorder;
///
/// let recorder = DebuggingRecorder::new();
/// metrics::with_local_recorder(&recorder, lifecycle_runtime::metrics::describe);
/// ```
pub fn describe() {
    for (name, help) in GAUGES {
        describe_gauge!(*name, Unit::Count, *help);
    }
    describe_gauge!(
        "lifecycle_readiness",
        "1 for the phase the program is in (starting, ready, draining, stopping, stopped), 0 for the others"
    );
    describe_gauge!(
        "lifecycle_shutdown_elapsed_seconds",
        Unit::Seconds,
        "Since shutdown started (0 before)"
    );
    for (name, help) in COUNTERS {
        describe_counter!(*name, Unit::Count, *help);
    }
    for (name, help) in HISTOGRAMS {
        describe_histogram!(*name, Unit::Seconds, *help);
    }
}

const GAUGES: &[(&str, &str)] = &[
    ("lifecycle_tasks", "Live tasks by name and state"),
    (
        "lifecycle_threads",
        "Live OS threads started through the runtime, by name and state",
    ),
    (
        "lifecycle_tasks_starting",
        "Tasks spawned and not yet polled",
    ),
    (
        "lifecycle_group_permits_in_use",
        "Permits of a task group held right now",
    ),
    (
        "lifecycle_group_permits_waiting",
        "Tasks and ticks waiting for a permit of a task group",
    ),
    (
        "lifecycle_group_permits_max",
        "A task group's concurrency limit",
    ),
    (
        "lifecycle_resources_open",
        "Managed resources not closed yet",
    ),
    ("lifecycle_pool_connections", "Open connections of a pool"),
    (
        "lifecycle_pool_connections_active",
        "Connections of a pool in use (open, not idle)",
    ),
    (
        "lifecycle_pool_connections_idle",
        "Open connections of a pool not in use",
    ),
    (
        "lifecycle_pool_connections_max",
        "The most connections a pool opens",
    ),
    (
        "lifecycle_pool_pending_acquires",
        "Tasks waiting for a connection of a pool",
    ),
];

const COUNTERS: &[(&str, &str)] = &[
    ("lifecycle_tasks_spawned_total", "Tasks and threads started"),
    (
        "lifecycle_tasks_completed_total",
        "Tasks and threads that ended by themselves",
    ),
    (
        "lifecycle_tasks_cancelled_total",
        "Tasks cancelled before they ended",
    ),
    (
        "lifecycle_task_failures_total",
        "Task errors and failed ticks, by task name",
    ),
    (
        "lifecycle_task_panics_total",
        "Panics caught in tasks, ticks and threads, by task name",
    ),
    (
        "lifecycle_task_timeouts_total",
        "Ticks and group tasks cancelled past their limit",
    ),
    (
        "lifecycle_ticks_total",
        "Ticks of a `#[background]` loop that ended",
    ),
    (
        "lifecycle_missed_ticks_total",
        "Whole periods a loop's ticks started behind schedule",
    ),
    (
        "lifecycle_pool_acquire_timeouts_total",
        "Acquires that gave up waiting for a connection",
    ),
    (
        "lifecycle_pool_suspected_leaks_total",
        "Connections logged as probable leaks",
    ),
    (
        "lifecycle_shutdown_entries_total",
        "Shutdown report entries by kind and outcome",
    ),
];

const HISTOGRAMS: &[(&str, &str)] = &[
    (
        "lifecycle_tick_duration_seconds",
        "How long a loop's tick ran",
    ),
    (
        "lifecycle_pool_acquire_seconds",
        "How long an acquire waited for a connection",
    ),
    (
        "lifecycle_pool_usage_seconds",
        "How long a connection was held",
    ),
    (
        "lifecycle_shutdown_entry_duration_seconds",
        "A shutdown report entry's time, by kind and outcome",
    ),
    (
        "lifecycle_shutdown_duration_seconds",
        "How long a shutdown took, up to its report",
    ),
];
