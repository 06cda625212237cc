//! `BatchWriter`: batches by size and time, flushes at shutdown before the pool closes, refuses
//! pushes once shutdown began, holds at most its capacity, and never drops an accepted item
//! silently: every accepted item is written, failed or not written, and the report says how many.
//! What happens when shutdown cuts the writing short is in `batch_writer_shutdown.rs`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::Watchdog;
use common::batch::*;
use lifecycle_runtime::Outcome;
use lifecycle_runtime::db::{BatchWriter, Database, DatabaseOptions, PushError};
use tokio::sync::Semaphore;

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
            assert_eq!(counts(&stats), (13, 13, 0, 0, 0));
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
                counts(&stats),
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
