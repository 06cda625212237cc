//! Database benchmarks on loopback PostgreSQL (a throwaway cluster, started here):
//!
//! 1. acquire + release latency: lifecycle's `Database::acquire` with pre-ping (the default) and
//!    without, against a raw sqlx `PgPool` with and without sqlx's own pre-ping. Target: p50
//!    overhead < 200 µs over raw.
//! 2. writing 10,000 rows: `BatchWriter` (batches of 500) against one `INSERT` per row.
//!
//! Run with `cargo bench -p lifecycle-tests --bench db`; prints tables (p50/p99 need every
//! sample, so this is its own harness rather than criterion's mean).

use std::sync::Arc;
use std::time::{Duration, Instant};

use lifecycle_runtime::Coordinator;
use lifecycle_runtime::db::{BatchWriter, Database, DatabaseOptions};
use lifecycle_tests::pg::PgCluster;
use sqlx::postgres::PgPoolOptions;

const ACQUIRES: usize = 5_000;
const ROWS: i64 = 10_000;

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

fn summary(name: &str, mut samples: Vec<Duration>) -> (String, Duration) {
    samples.sort();
    let p50 = percentile(&samples, 0.5);
    let line = format!(
        "{name:<44} p50 {:>7.1} µs   p99 {:>7.1} µs",
        p50.as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6
    );
    (line, p50)
}

async fn time_acquires<F, Fut, T>(acquire: F) -> Vec<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    // Warm up: open the connections.
    for _ in 0..200 {
        drop(acquire().await);
    }
    let mut samples = Vec::with_capacity(ACQUIRES);
    for _ in 0..ACQUIRES {
        let started = Instant::now();
        let connection = acquire().await;
        drop(connection);
        samples.push(started.elapsed());
    }
    samples
}

fn main() {
    let Some(cluster) = PgCluster::start(50) else {
        eprintln!("SKIP: no PostgreSQL binaries; nothing measured");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let url = cluster.url();
    let coordinator = Coordinator::builder().scan_os_threads(false).build();
    runtime.block_on(coordinator.scope(async {
        println!("acquire + release, {ACQUIRES} each, loopback PostgreSQL {}", cluster.psql("SHOW server_version"));
        let raw = PgPoolOptions::new().max_connections(5).test_before_acquire(false).connect(&url).await.unwrap();
        let raw_ping = PgPoolOptions::new().max_connections(5).test_before_acquire(true).connect(&url).await.unwrap();
        let (raw_line, raw_p50) = summary("raw sqlx PgPool, no pre-ping", time_acquires(|| raw.acquire()).await);
        let (raw_ping_line, _) = summary("raw sqlx PgPool, pre-ping", time_acquires(|| raw_ping.acquire()).await);
        let plain = Database::connect(
            DatabaseOptions::new(format!("{url}?application_name=bench-plain"), "bench-plain").test_before_acquire(false),
        )
        .await
        .unwrap();
        let pinged = Database::connect(DatabaseOptions::new(format!("{url}?application_name=bench-ping"), "bench-ping"))
            .await
            .unwrap();
        let (plain_line, plain_p50) = summary("lifecycle Database::acquire, no pre-ping", time_acquires(|| plain.acquire()).await);
        let (pinged_line, pinged_p50) = summary("lifecycle Database::acquire, pre-ping (default)", time_acquires(|| pinged.acquire()).await);
        for line in [raw_line, raw_ping_line, plain_line, pinged_line] {
            println!("  {line}");
        }
        let overhead = |p50: Duration| (p50.as_secs_f64() - raw_p50.as_secs_f64()) * 1e6;
        println!(
            "  p50 overhead over raw: {:.1} µs without pre-ping, {:.1} µs with (target < 200 µs: {})",
            overhead(plain_p50),
            overhead(pinged_p50),
            if overhead(pinged_p50) < 200.0 { "met" } else { "NOT met" }
        );

        println!("writing {ROWS} rows");
        sqlx::query("CREATE TABLE bench_rows (n int8)").execute(&raw).await.unwrap();
        let started = Instant::now();
        for n in 0..ROWS {
            sqlx::query("INSERT INTO bench_rows (n) VALUES ($1)").bind(n).execute(pinged.pool()).await.unwrap();
        }
        let one_by_one = started.elapsed();
        let writer = BatchWriter::builder("bench", &pinged, |db: Database, rows: Arc<[i64]>| async move {
            let mut transaction = db.pool().begin().await?;
            for n in rows.iter() {
                sqlx::query("INSERT INTO bench_rows (n) VALUES ($1)").bind(*n).execute(&mut *transaction).await?;
            }
            transaction.commit().await
        })
        .max_batch(500)
        .interval(Duration::from_millis(5))
        // Room for every row: the bench measures writing, not back-pressure.
        .capacity(ROWS as usize)
        .spawn();
        let started = Instant::now();
        for n in 0..ROWS {
            writer.push(n).unwrap();
        }
        while writer.stats().written < ROWS as u64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let batched = started.elapsed();
        let rate = |took: Duration| ROWS as f64 / took.as_secs_f64();
        println!("  one INSERT per row (autocommit)            {:>8.0} rows/s  ({:.2} s)", rate(one_by_one), one_by_one.as_secs_f64());
        println!("  BatchWriter, batches of 500 in a transaction {:>6.0} rows/s  ({:.2} s)", rate(batched), batched.as_secs_f64());
        println!("  speed-up: {:.1}x", one_by_one.as_secs_f64() / batched.as_secs_f64());
        let stored = cluster.psql("SELECT count(*) FROM bench_rows");
        assert_eq!(stored, (2 * ROWS).to_string(), "every row was written");
        lifecycle_runtime::shutdown().await;
    }));
}
