//! `BatchWriter`: batches by size and time, flushes at shutdown before the pool closes, refuses
//! pushes once shutdown began, holds at most its capacity, and never drops an accepted item
//! silently: every accepted item is written, failed or not written, and the report says how many.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::Watchdog;
use lifecycle_runtime::db::{BatchStats, BatchWriter, Database, DatabaseOptions, PushError};
use lifecycle_runtime::{Coordinator, Entry, EntryKind, Outcome, ShutdownReport};
use lifecycle_tests::pg::PgCluster;
use tokio::sync::Semaphore;

const HANG: Duration = Duration::from_secs(600);

fn sqlite(test: &str) -> (DatabaseOptions, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("lifecycle-{test}-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    (DatabaseOptions::sqlite(&path, test), path)
}

fn coordinator() -> Coordinator {
    Coordinator::builder()
        .scan_os_threads(false)
        .shutdown_timeout(Duration::from_secs(10))
        .build()
}

/// The promise every test checks: each accepted item is written, failed, not written, or still
/// pending, and in one count only.
#[track_caller]
fn assert_accounted(stats: &BatchStats) {
    assert_eq!(
        stats.accepted,
        stats.written + stats.failed + stats.not_written + stats.pending,
        "an accepted item is unaccounted for: {stats:?}"
    );
}

/// The writer's entry with its counts: the resource `batch-writer <name>` (its task, of the same
/// name, is listed with the tasks).
#[track_caller]
fn writer_entry<'a>(report: &'a ShutdownReport, writer: &str) -> &'a Entry {
    let name = format!("batch-writer {writer}");
    report
        .entries()
        .iter()
        .find(|entry| entry.kind() == EntryKind::Resource && entry.name() == name)
        .unwrap_or_else(|| panic!("no resource entry `{name}`:\n{report}"))
}

/// The error message of the writer's entry (failing when the entry is clean).
#[track_caller]
fn writer_error<'a>(report: &'a ShutdownReport, writer: &str) -> &'a str {
    match writer_entry(report, writer).outcome() {
        Outcome::Error(message) => message,
        other => panic!("the writer's entry is {other:?}, not an error:\n{report}"),
    }
}

/// `push` once shutdown began hands the item back as `Closed`.
#[track_caller]
fn assert_refused_after_shutdown(writer: &BatchWriter<i64>, name: &str) {
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
async fn through_gate(gate: Arc<Semaphore>) -> Result<(), tokio::sync::AcquireError> {
    gate.acquire().await?.forget();
    Ok(())
}

/// One batch's write that does not touch the database and takes `took` (of the paused clock).
async fn slow_write(took: Duration) -> Result<(), std::convert::Infallible> {
    tokio::time::sleep(took).await;
    Ok(())
}

/// Waits (real time, bounded) until `done` holds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("still not true after 10s: {what}");
}

async fn create_table(db: &Database) {
    sqlx::query("CREATE TABLE IF NOT EXISTS rows (run INTEGER, n INTEGER)")
        .execute(db.pool())
        .await
        .unwrap();
}

async fn insert_all(db: Database, rows: Arc<[i64]>) -> Result<(), sqlx::Error> {
    let mut transaction = db.pool().begin().await?;
    for n in rows.iter() {
        sqlx::query("INSERT INTO rows (run, n) VALUES (0, $1)")
            .bind(*n)
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_flush_by_size_and_by_time_and_what_is_left_at_shutdown() {
    let _watchdog = Watchdog::new("batches", HANG);
    let (options, path) = sqlite("batches");
    let coordinator = coordinator();
    coordinator
        .scope(async {
            let db = Database::connect(options).await.unwrap();
            create_table(&db).await;
            let batches = Arc::new(AtomicU32::new(0));
            let counted = batches.clone();
            let writer =
                BatchWriter::builder("rows", &db, move |db: Database, rows: Arc<[i64]>| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    insert_all(db, rows)
                })
                .max_batch(10)
                .interval(Duration::from_secs(3600))
                .spawn();
            // A full batch goes at once, long before the hour-long interval.
            for n in 0..10 {
                writer.push(n).unwrap();
            }
            for _ in 0..500 {
                if writer.stats().written == 10 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(
                writer.stats().written,
                10,
                "a full batch is written without waiting"
            );
            // Three more wait for the interval... or for shutdown.
            for n in 10..13 {
                writer.push(n).unwrap();
            }
            assert_eq!(writer.stats().pending, 3);
            assert_accounted(&writer.stats());
            let report = lifecycle_runtime::shutdown().await;
            assert!(report.is_clean(), "{report}");
            let stats = writer.stats();
            assert_accounted(&stats);
            assert_eq!(
                (
                    stats.accepted,
                    stats.written,
                    stats.failed,
                    stats.not_written,
                    stats.pending
                ),
                (13, 13, 0, 0, 0)
            );
            assert_eq!(
                writer_entry(&report, "rows").outcome(),
                &Outcome::Closed,
                "{report}"
            );
            // Resources close after tasks: the writer's last flush ran while the pool was open.
            let names: Vec<&str> = report.entries().iter().map(|entry| entry.name()).collect();
            let writer_at = names
                .iter()
                .position(|name| *name == "batch-writer rows")
                .unwrap();
            let pool_at = names
                .iter()
                .position(|name| *name == "database batches")
                .unwrap();
            assert!(writer_at < pool_at, "{report}");
            assert_refused_after_shutdown(&writer, "rows");
        })
        .await;
    // Everything accepted is in the table.
    let check = Database::connect(DatabaseOptions::sqlite(&path, "batches-check")).await;
    let check = match check {
        Ok(db) => db,
        Err(error) => panic!("{error}"),
    };
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM rows")
        .fetch_one(check.pool())
        .await
        .unwrap();
    assert_eq!(count, 13);
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_that_cannot_be_written_are_retried_counted_and_reported() {
    let _watchdog = Watchdog::new("failing_writes", HANG);
    let (options, path) = sqlite("failing");
    let coordinator = coordinator();
    coordinator
        .scope(async {
            let db = Database::connect(options).await.unwrap();
            let attempts = Arc::new(AtomicU32::new(0));
            let counted = attempts.clone();
            // No table: every write fails.
            let writer =
                BatchWriter::builder("doomed", &db, move |db: Database, rows: Arc<[i64]>| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    insert_all(db, rows)
                })
                .retries(2)
                .interval(Duration::from_millis(10))
                .spawn();
            for n in 0..7 {
                writer.push(n).unwrap();
            }
            let report = lifecycle_runtime::shutdown().await;
            assert_eq!(
                attempts.load(Ordering::SeqCst),
                3,
                "tried once and retried twice"
            );
            let stats = writer.stats();
            assert_accounted(&stats);
            assert_eq!(
                (
                    stats.accepted,
                    stats.written,
                    stats.failed,
                    stats.not_written
                ),
                (7, 0, 7, 0)
            );
            let message = writer_error(&report, "doomed");
            assert!(
                message.starts_with("7 of 7 accepted items could not be written (last error: "),
                "{message}"
            );
            assert!(message.contains("no such table"), "{message}");
            assert!(
                message.ends_with("); written 0, not written 0"),
                "{message}"
            );
            assert!(report.to_string().contains(message), "{report}");
            assert_refused_after_shutdown(&writer, "doomed");
        })
        .await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_writer_hands_the_item_back_and_push_wait_waits_for_room() {
    let _watchdog = Watchdog::new("full", HANG);
    let (options, path) = sqlite("full");
    let coordinator = coordinator();
    coordinator
        .scope(async {
            let db = Database::connect(options).await.unwrap();
            let gate = Arc::new(Semaphore::new(0));
            let permits = gate.clone();
            let writer =
                BatchWriter::builder("gated", &db, move |_db: Database, _rows: Arc<[i64]>| {
                    through_gate(permits.clone())
                })
                .max_batch(4)
                .capacity(10)
                .interval(Duration::from_secs(3600))
                .spawn();
            for n in 0..10 {
                writer.push(n).unwrap();
            }
            // Whatever the writer took and holds at the gate still counts as pending.
            let stats = writer.stats();
            assert_accounted(&stats);
            assert_eq!((stats.accepted, stats.pending), (10, 10));
            let error = writer.push(10).unwrap_err();
            assert!(
                matches!(&error, PushError::Full { name, .. } if name == "gated"),
                "{error}"
            );
            assert_eq!(
                error.to_string(),
                "batch writer `gated` is full: its capacity of pending items is taken. Slow down, wait for room with `push_wait`, or raise its `capacity`"
            );
            assert_eq!(error.into_item(), 10, "the refused item is handed back");
            assert_eq!(writer.stats().accepted, 10, "a refused item is not counted");

            // `push_wait` waits while the writer is full...
            let waiting = tokio::spawn({
                let writer = writer.clone();
                async move { writer.push_wait(10).await }
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(
                !waiting.is_finished(),
                "push_wait returned while the writer was full"
            );
            // ... and goes on once a batch is written and its room is free.
            gate.add_permits(1);
            let pushed = tokio::time::timeout(Duration::from_secs(10), waiting)
                .await
                .expect("push_wait got room once a batch was written")
                .unwrap();
            assert!(pushed.is_ok(), "{pushed:?}");
            let stats = writer.stats();
            assert_accounted(&stats);
            assert_eq!((stats.accepted, stats.written, stats.pending), (11, 4, 7));

            gate.add_permits(100);
            let report = lifecycle_runtime::shutdown().await;
            assert!(report.is_clean(), "{report}");
            let stats = writer.stats();
            assert_accounted(&stats);
            assert_eq!(
                (
                    stats.accepted,
                    stats.written,
                    stats.failed,
                    stats.not_written,
                    stats.pending
                ),
                (11, 11, 0, 0, 0)
            );
            assert_refused_after_shutdown(&writer, "gated");
        })
        .await;
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_wait_hands_the_item_back_when_shutdown_begins_while_it_waits() {
    let _watchdog = Watchdog::new("push_wait_closed", HANG);
    let (options, path) = sqlite("push-wait-closed");
    let coordinator = coordinator();
    coordinator
        .scope(async {
            let db = Database::connect(options).await.unwrap();
            let gate = Arc::new(Semaphore::new(0));
            let permits = gate.clone();
            let writer =
                BatchWriter::builder("waited", &db, move |_db: Database, _rows: Arc<[i64]>| {
                    through_gate(permits.clone())
                })
                .max_batch(3)
                .capacity(3)
                .interval(Duration::from_secs(3600))
                .spawn();
            for n in 0..3 {
                writer.push(n).unwrap();
            }
            let waiting = tokio::spawn({
                let writer = writer.clone();
                async move { writer.push_wait(3).await }
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(
                !waiting.is_finished(),
                "push_wait returned while the writer was full"
            );
            lifecycle_runtime::trigger_shutdown();
            let refused = tokio::time::timeout(Duration::from_secs(10), waiting)
                .await
                .expect("push_wait ended when shutdown began")
                .unwrap()
                .unwrap_err();
            assert!(matches!(&refused, PushError::Closed { .. }), "{refused}");
            assert_eq!(refused.into_item(), 3, "the waiting item is handed back");
            // Once shutdown began, `push_wait` does not wait at all.
            let late = tokio::time::timeout(Duration::from_secs(10), writer.push_wait(4))
                .await
                .expect("push_wait after shutdown began returns at once")
                .unwrap_err();
            assert_eq!(late.into_item(), 4);

            gate.add_permits(100);
            let report = lifecycle_runtime::shutdown().await;
            assert!(report.is_clean(), "{report}");
            let stats = writer.stats();
            assert_accounted(&stats);
            assert_eq!(
                (
                    stats.accepted,
                    stats.written,
                    stats.not_written,
                    stats.pending
                ),
                (3, 3, 0, 0)
            );
            assert_refused_after_shutdown(&writer, "waited");
        })
        .await;
    let _ = std::fs::remove_file(path);
}

/// A million accepted rows and a final flush that needs 7 to 8 s of (paused) time (1,000 batches
/// of 7 ms each, rounded up to tokio's millisecond timer ticks) for 5s of flush timeout: at most
/// 714 batches fit, the one under way at the deadline is cut off, and the rest is counted as not
/// written, with the cause, in the report.
#[tokio::test(flavor = "current_thread")]
async fn a_final_flush_longer_than_the_flush_timeout_counts_and_reports_what_it_could_not_write() {
    let _watchdog = Watchdog::new("slow_flush", HANG);
    let (options, path) = sqlite("slow-flush");
    let coordinator = coordinator();
    coordinator
        .scope(async {
            let db = Database::connect(options).await.unwrap();
            // Timing is the subject: from here on the clock moves only when everything waits.
            tokio::time::pause();
            let writer = BatchWriter::builder("slow", &db, |_db: Database, _rows: Arc<[i64]>| {
                slow_write(Duration::from_millis(7))
            })
            .max_batch(1000)
            .capacity(1_000_000)
            .interval(Duration::from_secs(3600))
            .flush_timeout(Duration::from_secs(5))
            .spawn();
            for n in 0..1_000_000 {
                writer.push(n).unwrap();
            }
            assert_eq!(
                writer.push(1_000_000).unwrap_err().into_item(),
                1_000_000,
                "full at its capacity"
            );
            let stats = writer.stats();
            assert_accounted(&stats);
            assert_eq!(stats.pending, 1_000_000);

            let started = tokio::time::Instant::now();
            let report = lifecycle_runtime::shutdown().await;
            lifecycle_tests::record_fault_time(started.elapsed());
            let stats = writer.stats();
            assert_accounted(&stats);
            assert_eq!(
                (stats.accepted, stats.failed, stats.pending),
                (1_000_000, 0, 0),
                "{report}"
            );
            assert_eq!(stats.written % 1000, 0, "whole batches are written");
            assert!(
                (600_000..=714_000).contains(&stats.written),
                "5s fits 600 to 714 batches of 7-8ms: {stats:?}"
            );
            assert_eq!(stats.not_written, 1_000_000 - stats.written);
            assert!(!report.is_clean(), "{report}");
            let message = writer_error(&report, "slow");
            assert_eq!(
                message,
                format!(
                    "{} of 1000000 accepted items not written (the flush timeout of 5s ran out; \
                     outcome unknown for the 1000 being written: the write was cut off); \
                     written {}, failed 0",
                    stats.not_written, stats.written
                )
            );
            assert!(report.to_string().contains(message), "{report}");
            // The writer stopped by itself just before its stop timeout: its task stopped as
            // asked; what it could not write is on its own entry.
            let task = report.entry("batch-writer slow").unwrap();
            assert_eq!(task.kind(), EntryKind::Task);
            assert_eq!(task.outcome(), &Outcome::Stopped, "{report}");
            assert_refused_after_shutdown(&writer, "slow");
        })
        .await;
    let _ = std::fs::remove_file(path);
}

/// The flush timeout (5s) is longer than the shutdown budget (2s): the budget cuts the flush off,
/// and the report says so. A task that ignores shutdown holds step 3 up to the end of the
/// budget, so step 4 has no time left to close the writer's entry: it is skipped, and still
/// carries the counts.
#[tokio::test(flavor = "current_thread")]
async fn a_flush_cut_off_by_the_shutdown_budget_names_the_budget() {
    let _watchdog = Watchdog::new("budget_flush", HANG);
    let (options, path) = sqlite("budget-flush");
    let coordinator = common::coordinator_with_budget(Duration::from_secs(2));
    coordinator
        .scope(async {
            let db = Database::connect(options).await.unwrap();
            tokio::time::pause();
            let _stubborn = lifecycle_runtime::spawn("stubborn", std::future::pending::<()>());
            let writer =
                BatchWriter::builder("budgeted", &db, |_db: Database, _rows: Arc<[i64]>| {
                    slow_write(Duration::from_millis(7))
                })
                .max_batch(100)
                .capacity(100_000)
                .interval(Duration::from_secs(3600))
                .flush_timeout(Duration::from_secs(5))
                .spawn();
            for n in 0..100_000 {
                writer.push(n).unwrap();
            }
            let started = tokio::time::Instant::now();
            let report = lifecycle_runtime::shutdown().await;
            lifecycle_tests::record_fault_time(started.elapsed());
            let stats = writer.stats();
            assert_accounted(&stats);
            assert_eq!(
                (stats.accepted, stats.failed, stats.pending),
                (100_000, 0, 0),
                "{report}"
            );
            assert!(
                (20_000..=28_500).contains(&stats.written),
                "2s fits 200 to 285 batches of 7-8ms: {stats:?}"
            );
            assert_eq!(stats.not_written, 100_000 - stats.written);
            let entry = writer_entry(&report, "budgeted");
            assert_eq!(entry.outcome(), &Outcome::Skipped, "{report}");
            assert_eq!(
                entry.detail(),
                Some(
                    format!(
                        "shutdown budget exhausted before it could close; {} of 100000 accepted \
                         items not written (the shutdown budget ran out; outcome unknown for the \
                         100 being written: the write was cut off); written {}, failed 0",
                        stats.not_written, stats.written
                    )
                    .as_str()
                ),
                "{report}"
            );
            assert_refused_after_shutdown(&writer, "budgeted");
        })
        .await;
    let _ = std::fs::remove_file(path);
}

/// A write that began before shutdown never returns: step 3 aborts the writer at its stop
/// timeout (the flush timeout), dropping its future with the rows in it. They are counted as not
/// written, the batch under way as of unknown outcome, and the report says so.
#[tokio::test(flavor = "current_thread")]
async fn a_writer_aborted_at_its_stop_timeout_counts_what_its_future_held() {
    let _watchdog = Watchdog::new("aborted_writer", HANG);
    let (options, path) = sqlite("aborted-writer");
    let coordinator = coordinator();
    coordinator
        .scope(async {
            let db = Database::connect(options).await.unwrap();
            tokio::time::pause();
            let gate = Arc::new(Semaphore::new(0));
            let writer =
                BatchWriter::builder("stuck", &db, move |_db: Database, _rows: Arc<[i64]>| {
                    through_gate(gate.clone())
                })
                .max_batch(5)
                .interval(Duration::from_secs(3600))
                .flush_timeout(Duration::from_secs(1))
                .spawn();
            for n in 0..12 {
                writer.push(n).unwrap();
            }
            // The writer takes everything and starts on its first batch, which never ends.
            tokio::task::yield_now().await;
            let started = tokio::time::Instant::now();
            let report = lifecycle_runtime::shutdown().await;
            lifecycle_tests::record_fault_time(started.elapsed());
            let stats = writer.stats();
            assert_accounted(&stats);
            assert_eq!(
                (
                    stats.accepted,
                    stats.written,
                    stats.failed,
                    stats.not_written,
                    stats.pending
                ),
                (12, 0, 0, 12, 0),
                "{report}"
            );
            let task = report.entry("batch-writer stuck").unwrap();
            assert_eq!(task.kind(), EntryKind::Task);
            assert_eq!(task.outcome(), &Outcome::Aborted, "{report}");
            assert_eq!(
                writer_error(&report, "stuck"),
                "12 of 12 accepted items not written (the flush timeout of 1s ran out; outcome \
                 unknown for the 5 being written: the write was cut off); written 0, failed 0"
            );
            assert_refused_after_shutdown(&writer, "stuck");
        })
        .await;
    let _ = std::fs::remove_file(path);
}

/// The writer task's future is dropped with its runtime, before any shutdown, holding a batch at
/// the gate and more in the buffer: all of it is counted as not written, and the next shutdown's
/// report says why.
#[test]
fn a_writer_dropped_with_its_runtime_counts_what_it_held_as_not_written() {
    let _watchdog = Watchdog::new("dropped_runtime", HANG);
    let (options, path) = sqlite("dropped-runtime");
    let coordinator = coordinator();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let writer = runtime.block_on(coordinator.scope(async {
        let db = Database::connect(options).await.unwrap();
        let gate = Arc::new(Semaphore::new(0));
        let writer =
            BatchWriter::builder("stranded", &db, move |_db: Database, _rows: Arc<[i64]>| {
                through_gate(gate.clone())
            })
            .max_batch(5)
            .interval(Duration::from_secs(3600))
            .spawn();
        for n in 0..12 {
            writer.push(n).unwrap();
        }
        // The writer takes what waits and holds its first batch at the gate.
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer
    }));
    drop(runtime);
    let stats = writer.stats();
    assert_accounted(&stats);
    assert_eq!(
        (
            stats.accepted,
            stats.written,
            stats.failed,
            stats.not_written,
            stats.pending
        ),
        (12, 0, 0, 12, 0)
    );
    let refused = writer.push(12).unwrap_err();
    assert!(matches!(&refused, PushError::Closed { .. }), "{refused}");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = runtime
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(60), coordinator.shutdown()).await
        })
        .expect("shutdown finished");
    assert_eq!(
        writer_error(&report, "stranded"),
        "12 of 12 accepted items not written (the writer task was dropped before shutdown told \
         it to flush; outcome unknown for the 5 being written: the write was cut off); written \
         0, failed 0"
    );
    let _ = std::fs::remove_file(path);
}

/// PostgreSQL stops (fast shutdown: sessions cut) while the final flush writes 20,000 buffered
/// rows. Every accepted row is written, failed or not written, the report says how many, and the
/// table agrees: it holds every row counted as written, plus at most the one batch whose commit
/// was under way when the server went away (its outcome is unknown to the writer: it counts it
/// as failed or not written, yet the server may have committed it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_stopped_during_the_final_flush_is_accounted_for_exactly() {
    const ROWS: i64 = 20_000;
    const BATCH: usize = 200;
    let _watchdog = Watchdog::new("stopped_database", HANG);
    let Some(cluster) = PgCluster::start(20) else {
        return;
    };
    cluster.psql("CREATE TABLE rows (run int8, n int8); GRANT ALL ON rows TO app");
    let cluster = Arc::new(cluster);
    let coordinator = coordinator();
    let stats = coordinator
        .scope(async {
            let options = DatabaseOptions::new(cluster.url(), "stopped-mid-flush")
                .acquire_timeout(Duration::from_secs(1));
            let db = Database::connect(options).await.unwrap();
            let writer =
                BatchWriter::builder("events", &db, |db: Database, rows: Arc<[i64]>| async move {
                    // Slow enough that the server stops while most rows still wait.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    insert_all(db, rows).await
                })
                .max_batch(BATCH)
                .capacity(ROWS as usize)
                .interval(Duration::from_secs(3600))
                .flush_timeout(Duration::from_secs(5))
                .spawn();
            for n in 0..ROWS {
                writer.push(n).unwrap();
            }
            let started = std::time::Instant::now();
            let report = tokio::spawn(lifecycle_runtime::shutdown());
            eventually("ten batches written", || {
                writer.stats().written >= 10 * BATCH as u64
            })
            .await;
            let stopping = cluster.clone();
            tokio::task::spawn_blocking(move || stopping.stop())
                .await
                .unwrap();
            let report = report.await.unwrap();
            let took = started.elapsed();
            lifecycle_tests::record_fault_time(took);
            // The flush timeout (5 s) bounds the final flush, the server's stop included; 500 ms
            // for closing the pool and a loaded machine.
            assert!(
                took <= Duration::from_millis(5_500),
                "shutdown took {took:?}, the flush timeout is 5s:\n{report}"
            );
            let stats = writer.stats();
            assert_accounted(&stats);
            assert_eq!(stats.pending, 0, "{report}");
            assert_eq!(stats.accepted, ROWS as u64);
            assert!(
                stats.failed + stats.not_written > 0,
                "the server stopped before the flush ended: {stats:?}\n{report}"
            );
            let message = writer_error(&report, "events");
            let counts = if stats.not_written > 0 {
                format!(
                    "{} of {ROWS} accepted items not written (",
                    stats.not_written
                )
            } else {
                format!(
                    "{} of {ROWS} accepted items could not be written",
                    stats.failed
                )
            };
            assert!(message.starts_with(&counts), "{message}");
            assert!(
                message.contains(&format!("written {}, ", stats.written)),
                "{message}"
            );
            assert!(report.to_string().contains(message), "{report}");
            assert_refused_after_shutdown(&writer, "events");
            stats
        })
        .await;
    // Count with a fresh connection once the server is back.
    cluster.restart();
    let stored: u64 = cluster
        .psql("SELECT count(DISTINCT n) FROM rows")
        .parse()
        .unwrap();
    let lost = stats.failed + stats.not_written;
    assert!(
        stats.written <= stored && stored <= stats.written + BATCH as u64,
        "{stored} rows stored; {stats:?}"
    );
    assert!(
        ROWS as u64 - stored <= lost && lost <= ROWS as u64 - stored + BATCH as u64,
        "accepted minus stored ({}) is what was counted failed or not written ({lost}), \
         give or take the one batch whose commit was under way",
        ROWS as u64 - stored
    );
    eprintln!("stored {stored} of {ROWS}; {stats:?}");
}
