//! Counters and histograms recorded where the event happens: a tick ending, a failure, a pool
//! acquire or release, the shutdown report. Each is one call into the `metrics` facade (a no-op
//! until a recorder is installed); the runtime calls these only with feature `metrics`.

use std::time::Duration;

use metrics::{counter, histogram};

use crate::report::{EntryKind, Outcome, ShutdownReport};

/// A task, tick or thread ended with an error.
pub(crate) fn task_failed(task: &str) {
    counter!("lifecycle_task_failures_total", "name" => task.to_owned()).increment(1);
}

/// A task, tick or thread panicked (the panic was contained).
pub(crate) fn task_panicked(task: &str) {
    counter!("lifecycle_task_panics_total", "name" => task.to_owned()).increment(1);
}

/// A tick or a group task ran past its limit and was cancelled.
pub(crate) fn task_timed_out(task: &str) {
    counter!("lifecycle_task_timeouts_total", "name" => task.to_owned()).increment(1);
}

/// A `#[background]` loop's tick ended, however it ended, after `took`.
pub(crate) fn tick_ended(task: &'static str, took: Duration) {
    counter!("lifecycle_ticks_total", "name" => task).increment(1);
    histogram!("lifecycle_tick_duration_seconds", "name" => task).record(took.as_secs_f64());
}

/// A loop's tick was due at `due` and starts `late` after it: every whole `period` of that is a
/// tick that did not start on time (with `missed_tick = "skip"`, one that was skipped).
pub(crate) fn tick_started_late(task: &'static str, late: Duration, period: Duration) {
    let missed = late.as_nanos() / period.as_nanos().max(1);
    if missed > 0 {
        counter!("lifecycle_missed_ticks_total", "name" => task)
            .increment(u64::try_from(missed).unwrap_or(u64::MAX));
    }
}

/// An acquire on pool `pool` ended after waiting `waited`: with a connection, or `timed_out`.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn pool_acquired(pool: &str, waited: Duration, timed_out: bool) {
    histogram!("lifecycle_pool_acquire_seconds", "pool" => pool.to_owned())
        .record(waited.as_secs_f64());
    if timed_out {
        counter!("lifecycle_pool_acquire_timeouts_total", "pool" => pool.to_owned()).increment(1);
    }
}

/// A connection of pool `pool` came back after being held for `held`.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn pool_released(pool: &str, held: Duration) {
    histogram!("lifecycle_pool_usage_seconds", "pool" => pool.to_owned())
        .record(held.as_secs_f64());
}

/// A connection of pool `pool` was logged as a probable leak.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn pool_leak_suspected(pool: &str) {
    counter!("lifecycle_pool_suspected_leaks_total", "pool" => pool.to_owned()).increment(1);
}

/// The shutdown report is made: every entry's duration and outcome, and the whole shutdown's.
pub(crate) fn shutdown_reported(report: &ShutdownReport) {
    histogram!("lifecycle_shutdown_duration_seconds").record(report.elapsed().as_secs_f64());
    for entry in report.entries() {
        let kind = kind_label(entry.kind());
        let outcome = outcome_label(entry.outcome());
        histogram!("lifecycle_shutdown_entry_duration_seconds", "kind" => kind, "outcome" => outcome)
            .record(entry.elapsed().as_secs_f64());
        counter!("lifecycle_shutdown_entries_total", "kind" => kind, "outcome" => outcome)
            .increment(1);
    }
}

/// The `kind` label of a report entry (the JSON report's word for it).
pub(crate) fn kind_label(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Drain => "drain",
        EntryKind::Main => "main",
        EntryKind::Task => "task",
        EntryKind::Thread => "thread",
        EntryKind::Resource => "resource",
        EntryKind::Field => "field",
        EntryKind::Process => "process",
        EntryKind::Stage => "stage",
        EntryKind::Sequence => "sequence",
    }
}

/// The `outcome` label of a report entry (the JSON report's word for it).
pub(crate) fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Stopped => "stopped",
        Outcome::Closed => "closed",
        Outcome::Drained => "drained",
        Outcome::Error(_) => "error",
        Outcome::TimedOut => "timed_out",
        Outcome::Panicked => "panicked",
        Outcome::Aborted => "aborted",
        Outcome::Leaked => "leaked",
        Outcome::Skipped => "skipped",
    }
}
