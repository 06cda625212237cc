//! `BatchWriter`: batches by size and time, flushes at shutdown before the pool closes, refuses
//! pushes once shutdown began, and never drops an accepted item silently.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::Watchdog;
use lifecycle_runtime::db::{BatchWriter, Database, DatabaseOptions, PushError};
use lifecycle_runtime::{Coordinator, Outcome};
use lifecycle_tests::pg::PgCluster;

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
            let report = lifecycle_runtime::shutdown().await;
            assert!(report.is_clean(), "{report}");
            let stats = writer.stats();
            assert_eq!(
                (stats.accepted, stats.written, stats.failed, stats.pending),
                (13, 13, 0, 0)
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
            let error = writer.push(99).unwrap_err();
            assert!(matches!(&error, PushError::Closed { .. }));
            assert_eq!(
                error.to_string(),
                "batch writer `rows` accepts no more items: shutdown began"
            );
            assert_eq!(error.into_item(), 99, "the refused item is handed back");
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
            assert_eq!(writer.stats().failed, 7);
            let entry = report
                .entry("batch-writer doomed")
                .unwrap_or_else(|| panic!("{report}"));
            let Outcome::Error(message) = entry.outcome() else {
                panic!("{report}")
            };
            assert!(
                message.starts_with("7 accepted item(s) could not be written: "),
                "{message}"
            );
            assert!(message.contains("no such table"), "{message}");
        })
        .await;
    let _ = std::fs::remove_file(path);
}

/// A small deterministic generator of kill moments (no dependency for one test).
fn kill_moments(seed: u64) -> impl Iterator<Item = Duration> {
    let mut state = seed;
    std::iter::from_fn(move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        Some(Duration::from_micros((state >> 33) % 150_000))
    })
}

#[test]
fn no_accepted_row_is_lost_when_the_writer_is_sent_sigterm_at_random_200_times() {
    let _watchdog = Watchdog::new("no_data_lost", HANG);
    let Some(cluster) = PgCluster::start(50) else {
        return;
    };
    cluster.psql("CREATE TABLE rows (run int8, n int8); GRANT ALL ON rows TO app");
    let mut moments = kill_moments(20261122);
    let mut total_accepted = 0u64;
    for run in 0..200u32 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lifecycle-fixture-writer"))
            .env("DATABASE_URL", cluster.url())
            .env("RUN", run.to_string())
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let accepted = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|line| {
                    line.strip_prefix("accepted ")
                        .and_then(|n| n.parse::<i64>().ok())
                })
                .collect::<Vec<i64>>()
        });
        let stderr = child.stderr.take().unwrap();
        let mut stderr = BufReader::new(stderr).lines().map_while(Result::ok);
        let mut seen = Vec::new();
        for line in stderr.by_ref() {
            let ready = line == "ready";
            seen.push(line);
            if ready {
                break;
            }
        }
        assert_eq!(
            seen.last().map(String::as_str),
            Some("ready"),
            "run {run} never got ready:\n{}",
            seen.join("\n")
        );
        std::thread::sleep(moments.next().unwrap());
        // SAFETY: kill(2) on our own child with a valid signal.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let rest: Vec<String> = stderr.collect();
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(0),
            "run {run} did not stop cleanly:\n{}",
            rest.join("\n")
        );
        let accepted = accepted.join().unwrap();
        // Accepted rows are 0..k: all of them must be there.
        let k = accepted.len() as i64;
        assert_eq!(
            accepted.last().copied(),
            if k == 0 { None } else { Some(k - 1) }
        );
        let stored = cluster.psql(&format!(
            "SELECT count(DISTINCT n) FROM rows WHERE run = {run} AND n < {k}"
        ));
        assert_eq!(
            stored,
            k.to_string(),
            "run {run}: {k} rows accepted, {stored} stored"
        );
        total_accepted += k as u64;
    }
    assert!(
        total_accepted > 1000,
        "the runs did write ({total_accepted} rows)"
    );
    eprintln!("{total_accepted} accepted rows over 200 kills, none lost");
}
