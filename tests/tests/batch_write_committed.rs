//! `BatchWriter::write`, the committed write: it returns `Ok` only once the item's batch was
//! written, `Err` with the cause when the batch failed or was given up at shutdown, and the items
//! of concurrent writers still share batches (group commit). The SIGKILL test is in
//! `batch_writer_kills.rs`.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Watchdog;
use lifecycle_runtime::db::{BatchStats, BatchWriter, Database, DatabaseOptions, WriteError};
use tokio::sync::Semaphore;

const HANG: Duration = Duration::from_secs(120);

fn sqlite(test: &str) -> (DatabaseOptions, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("lifecycle-{test}-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    (DatabaseOptions::sqlite(&path, test), path)
}

#[track_caller]
fn assert_accounted(stats: &BatchStats) {
    assert_eq!(
        stats.accepted,
        stats.written + stats.failed + stats.not_written + stats.pending,
        "an accepted item is unaccounted for: {stats:?}"
    );
}

/// Waits (real time, bounded) until `done` holds.
async fn eventually(done: impl Fn() -> bool) {
    for _ in 0..2000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("still not true after 10s");
}

async fn insert_all(db: &Database, rows: &[i64]) -> Result<(), sqlx::Error> {
    let mut transaction = db.pool().begin().await?;
    for n in rows {
        sqlx::query("INSERT INTO rows (n) VALUES ($1)")
            .bind(*n)
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await
}

/// 200 tasks write at once through a writer whose batches take 10 ms: every write returns `Ok`,
/// only after the transaction holding its row committed, and they shared a few batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_batches_and_return_once_committed() {
    const WRITES: i64 = 200;
    let _watchdog = Watchdog::new("group_commit", HANG);
    let (options, path) = sqlite("group-commit");
    let coordinator = common::coordinator();
    coordinator
        .scope(async {
            let db = Database::connect(options).await.unwrap();
            sqlx::query("CREATE TABLE rows (n INTEGER)")
                .execute(db.pool())
                .await
                .unwrap();
            let batches = Arc::new(AtomicU32::new(0));
            let committed = Arc::new(Mutex::new(HashSet::new()));
            let writer = BatchWriter::builder("rows", &db, {
                let (batches, committed) = (batches.clone(), committed.clone());
                move |db: Database, rows: Arc<[i64]>| {
                    let (batches, committed) = (batches.clone(), committed.clone());
                    async move {
                        batches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        insert_all(&db, &rows).await?;
                        committed.lock().unwrap().extend(rows.iter().copied());
                        Ok::<(), sqlx::Error>(())
                    }
                }
            })
            // The interval never comes: writes start batches by themselves.
            .interval(Duration::from_secs(3600))
            .spawn();
            let writes: Vec<_> = (0..WRITES)
                .map(|n| {
                    let (writer, committed) = (writer.clone(), committed.clone());
                    tokio::spawn(async move {
                        writer.write(n).await?;
                        // Told `Ok`: the transaction holding it has committed already.
                        assert!(
                            committed.lock().unwrap().contains(&n),
                            "Ok for {n} before its commit"
                        );
                        Ok::<(), WriteError<i64>>(())
                    })
                })
                .collect();
            for write in writes {
                write.await.unwrap().unwrap();
            }
            let batches = batches.load(Ordering::SeqCst);
            eprintln!("{WRITES} writes in {batches} batches");
            assert!(
                batches <= WRITES as u32 / 4,
                "{WRITES} concurrent writes took {batches} batches: they did not share"
            );
            let stored: i64 = sqlx::query_scalar("SELECT count(DISTINCT n) FROM rows")
                .fetch_one(db.pool())
                .await
                .unwrap();
            assert_eq!(stored, WRITES);
            let stats = writer.stats();
            assert_accounted(&stats);
            assert_eq!(
                (stats.accepted, stats.written),
                (WRITES as u64, WRITES as u64)
            );
            let report = lifecycle_runtime::shutdown().await;
            assert!(report.is_clean(), "{report}");
        })
        .await;
    let _ = std::fs::remove_file(path);
}

/// A batch that fails every try: its writes return `Err` naming the database's error and the
/// writer; the batches that succeed still return `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_batch_fails_returns_the_cause() {
    let _watchdog = Watchdog::new("write_fails", HANG);
    let (options, path) = sqlite("write-fails");
    let coordinator = common::coordinator();
    coordinator
        .scope(async {
            let db = Database::connect(options).await.unwrap();
            sqlx::query("CREATE TABLE rows (n INTEGER CHECK (n >= 0))")
                .execute(db.pool())
                .await
                .unwrap();
            let tries = Arc::new(AtomicU32::new(0));
            let writer = BatchWriter::builder("checked", &db, {
                let tries = tries.clone();
                move |db: Database, rows: Arc<[i64]>| {
                    tries.fetch_add(1, Ordering::SeqCst);
                    async move { insert_all(&db, &rows).await }
                }
            })
            .retries(1)
            .interval(Duration::from_secs(3600))
            .spawn();
            writer.write(1).await.unwrap();
            // A row the table refuses: its batch fails both tries.
            let error = writer.write(-1).await.unwrap_err();
            assert_eq!(tries.load(Ordering::SeqCst), 3, "one try, then one retry");
            assert!(error.was_accepted());
            let message = error.to_string();
            assert!(
                message.starts_with(
                    "batch writer `checked` could not write the item: its batch failed every \
                     try; last error: "
                ),
                "{message}"
            );
            assert!(message.contains("CHECK constraint failed"), "{message}");
            assert!(matches!(error, WriteError::Failed { .. }), "{error:?}");
            writer.write(2).await.unwrap();
            let stats = writer.stats();
            assert_accounted(&stats);
            assert_eq!((stats.written, stats.failed), (2, 1));

            // The table is gone: the same, with the database's own words.
            sqlx::query("DROP TABLE rows")
                .execute(db.pool())
                .await
                .unwrap();
            let message = writer.write(3).await.unwrap_err().to_string();
            assert!(message.contains("no such table: rows"), "{message}");
            let report = lifecycle_runtime::shutdown().await;
            assert!(!report.is_clean(), "{report}");
        })
        .await;
    let _ = std::fs::remove_file(path);
}

/// Shutdown while a batch's write never ends and more writes wait: once the flush time runs out
/// the one being written hears that its outcome is unknown, the one still buffered that it was
/// not written, both with the flush timeout; a write after that is refused with its item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_not_written_at_shutdown_say_why() {
    let _watchdog = Watchdog::new("write_not_written", HANG);
    let (options, path) = sqlite("write-not-written");
    let coordinator = common::coordinator();
    coordinator
        .scope(async {
            let db = Database::connect(options).await.unwrap();
            let gate = Arc::new(Semaphore::new(0));
            let writer = BatchWriter::builder("stuck", &db, {
                let gate = gate.clone();
                move |_db: Database, _rows: Arc<[i64]>| {
                    let gate = gate.clone();
                    async move { gate.acquire().await.map(|permit| permit.forget()) }
                }
            })
            .max_batch(1)
            .capacity(2)
            .interval(Duration::from_secs(3600))
            .flush_timeout(Duration::from_millis(500))
            .spawn();
            let first = tokio::spawn({
                let writer = writer.clone();
                async move { writer.write(1).await }
            });
            eventually(|| writer.stats().accepted == 1).await;
            let second = tokio::spawn({
                let writer = writer.clone();
                async move { writer.write(2).await }
            });
            eventually(|| writer.stats().accepted == 2).await;
            // Full: a third waits for room, not accepted.
            let third = tokio::spawn({
                let writer = writer.clone();
                async move { writer.write(3).await }
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(
                !third.is_finished(),
                "write returned while the writer was full"
            );
            assert_eq!(writer.stats().accepted, 2);

            let report = lifecycle_runtime::shutdown().await;
            let first = first.await.unwrap().unwrap_err();
            assert_eq!(
                first.to_string(),
                "batch writer `stuck` did not write the item: the flush timeout of 500ms ran \
                 out; its batch was being written when the write was cut off, so it may or may \
                 not be in the database"
            );
            let second = second.await.unwrap().unwrap_err();
            assert!(
                matches!(&second, WriteError::NotWritten { .. }),
                "{second:?}"
            );
            assert_eq!(
                second.to_string(),
                "batch writer `stuck` did not write the item: the flush timeout of 500ms ran out"
            );
            // The third was waiting for room when shutdown began: refused, item back.
            let third = third.await.unwrap().unwrap_err();
            assert!(!third.was_accepted());
            assert_eq!(third.into_item(), Some(3));
            let late = writer.write(4).await.unwrap_err();
            assert_eq!(
                late.to_string(),
                "batch writer `stuck` accepts no more items: shutdown began"
            );
            let stats = writer.stats();
            assert_accounted(&stats);
            assert_eq!((stats.accepted, stats.not_written), (2, 2), "{report}");
        })
        .await;
    let _ = std::fs::remove_file(path);
}
