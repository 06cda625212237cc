//! `BatchWriter` when shutdown cuts the writing short: a final flush longer than the flush
//! timeout, one cut by the budget, a writer aborted or dropped with its runtime, and the database
//! stopped mid-flush. Whatever is not written is counted and reported with its cause.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Watchdog;
use common::batch::*;
use lifecycle_runtime::db::{BatchWriter, Database, DatabaseOptions, PushError};
use lifecycle_runtime::{EntryKind, Outcome};
use lifecycle_tests::pg::PgCluster;
use tokio::sync::Semaphore;

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
            assert_eq!(counts(&stats), (12, 0, 0, 12, 0), "{report}");
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
    assert_eq!(counts(&stats), (12, 0, 0, 12, 0));
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
