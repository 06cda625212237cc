//! Helpers of the `BatchWriter` tests (`batch_writer.rs`, `batch_writer_shutdown.rs`): an SQLite
//! file per test, a coordinator with a 10 s budget, the accounting every test checks, the
//! writer's report entry, and write functions that wait for the test.

use std::sync::Arc;
use std::time::Duration;

use lifecycle_runtime::db::{BatchStats, BatchWriter, Database, DatabaseOptions, PushError};
use lifecycle_runtime::{Coordinator, Entry, EntryKind, Outcome, ShutdownReport};
use tokio::sync::Semaphore;

/// A writer's counts as one tuple, to compare in one assertion: (accepted, written, failed,
/// not written, pending).
pub fn counts(stats: &BatchStats) -> (u64, u64, u64, u64, u64) {
    (
        stats.accepted,
        stats.written,
        stats.failed,
        stats.not_written,
        stats.pending,
    )
}

/// The outer limit of a `BatchWriter` test.
pub const HANG: Duration = Duration::from_secs(600);

pub fn sqlite(test: &str) -> (DatabaseOptions, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("lifecycle-{test}-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    (DatabaseOptions::sqlite(&path, test), path)
}

pub fn coordinator() -> Coordinator {
    Coordinator::builder()
        .scan_os_threads(false)
        .shutdown_timeout(Duration::from_secs(10))
        .build()
}

/// The promise every test checks: each accepted item is written, failed, not written, or still
/// pending, and in one count only.
#[track_caller]
pub fn assert_accounted(stats: &BatchStats) {
    assert_eq!(
        stats.accepted,
        stats.written + stats.failed + stats.not_written + stats.pending,
        "an accepted item is unaccounted for: {stats:?}"
    );
}

/// The writer's entry with its counts: the resource `batch-writer <name>` (its task, of the same
/// name, is listed with the tasks).
#[track_caller]
pub fn writer_entry<'a>(report: &'a ShutdownReport, writer: &str) -> &'a Entry {
    let name = format!("batch-writer {writer}");
    report
        .entries()
        .iter()
        .find(|entry| entry.kind() == EntryKind::Resource && entry.name() == name)
        .unwrap_or_else(|| panic!("no resource entry `{name}`:\n{report}"))
}

/// The error message of the writer's entry (failing when the entry is clean).
#[track_caller]
pub fn writer_error<'a>(report: &'a ShutdownReport, writer: &str) -> &'a str {
    match writer_entry(report, writer).outcome() {
        Outcome::Error(message) => message,
        other => panic!("the writer's entry is {other:?}, not an error:\n{report}"),
    }
}

/// `push` once shutdown began hands the item back as `Closed`.
#[track_caller]
pub fn assert_refused_after_shutdown(writer: &BatchWriter<i64>, name: &str) {
    let error = writer.push(99).unwrap_err();
    assert!(matches!(&error, PushError::Closed { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        format!("batch writer `{name}` accepts no more items: shutdown began")
    );
    assert_eq!(error.into_item(), 99, "the refused item is handed back");
}

/// One batch's write that does not touch the database: it waits for a permit of `gate`, so the
/// test decides when batches are written.
pub async fn through_gate(gate: Arc<Semaphore>) -> Result<(), tokio::sync::AcquireError> {
    gate.acquire().await?.forget();
    Ok(())
}

/// One batch's write that does not touch the database and takes `took` (of the paused clock).
pub async fn slow_write(took: Duration) -> Result<(), std::convert::Infallible> {
    tokio::time::sleep(took).await;
    Ok(())
}

/// Waits (real time, bounded) until `done` holds.
pub async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("still not true after 10s: {what}");
}

pub async fn create_table(db: &Database) {
    sqlx::query("CREATE TABLE IF NOT EXISTS rows (run INTEGER, n INTEGER)")
        .execute(db.pool())
        .await
        .unwrap();
}

pub async fn insert_all(db: Database, rows: Arc<[i64]>) -> Result<(), sqlx::Error> {
    let mut transaction = db.pool().begin().await?;
    for n in rows.iter() {
        sqlx::query("INSERT INTO rows (run, n) VALUES (0, $1)")
            .bind(*n)
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await
}
