//! The demo service: a small worker that shows every moving part stopping cleanly.
//!
//! - `acceptor`: a service that takes "requests" and hands them to the `workers` task group;
//! - `heartbeat`: a loop that logs every second;
//! - `flusher`: buffers results and writes them out every 500ms, with one last flush at shutdown;
//! - `load-sampler`: a blocking sampler on its own OS thread;
//! - `store`: a `#[managed_resource]` whose journal flushes to disk when it closes;
//! - `sidecar`: a child process, stopped with SIGTERM (then SIGKILL) at shutdown;
//! - a database (embedded SQLite, or PostgreSQL with `DATABASE_URL`, falling back to SQLite when
//!   that is unreachable) and a batch writer recording every handled request, flushed before the
//!   pool closes.
//!
//! Run it with `cargo run -p lifecycle-examples --bin service` and press Ctrl+C: it prints the
//! shutdown report and exits 0 when everything stopped cleanly.
//!
//! Environment: `DEMO_RUN_FOR=3s` stops it by itself after that long; `LIFECYCLE_SHUTDOWN_TIMEOUT`
//! and `LIFECYCLE_DRAIN` override the shutdown budget and drain time.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifecycle_runtime::db::{BatchWriter, Database, DatabaseOptions, sqlx};
use lifecycle_runtime::{Managed, ManagedChild, Shutdown, TaskGroup, background, managed_resource};

/// What the parts share.
#[derive(Default)]
struct Stats {
    accepted: AtomicU64,
    handled: AtomicU64,
    flushed: AtomicU64,
    load_samples: AtomicU64,
    /// Results waiting for the flusher.
    buffer: Mutex<Vec<u64>>,
}

/// Accepts a request every 20ms and hands it to the `workers` group, until shutdown. Each handled
/// request is recorded in the database through the batch writer.
#[background(shutdown, name = "acceptor", stop_timeout = "1s")]
async fn acceptor(stats: Arc<Stats>, recorder: BatchWriter<i64>, shutdown: Shutdown) {
    let workers = TaskGroup::new("workers");
    while shutdown.sleep(Duration::from_millis(20)).await {
        let id = stats.accepted.fetch_add(1, Ordering::Relaxed);
        let stats = stats.clone();
        let recorder = recorder.clone();
        let _request = workers.spawn("request", async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            stats.handled.fetch_add(1, Ordering::Relaxed);
            stats.buffer.lock().expect("buffer lock").push(id);
            if let Err(error) = recorder.push(id as i64) {
                // Shutdown began while this request ran, or the writer is full: say so rather
                // than lose it quietly.
                tracing::warn!(%error, request = id, "request not recorded");
            }
        });
    }
    tracing::info!("acceptor stopped taking requests");
}

/// Writes a batch of handled request ids (one statement per row, one transaction per batch: the
/// same SQL runs on SQLite and PostgreSQL).
async fn record(db: Database, ids: Arc<[i64]>) -> Result<(), sqlx::Error> {
    let mut transaction = db.pool().begin().await?;
    for id in ids.iter() {
        sqlx::query("INSERT INTO handled_requests (id) VALUES ($1)")
            .bind(*id)
            .execute(&mut *transaction)
            .await?;
    }
    transaction.commit().await
}

/// Logs progress once a second.
#[background(interval = "1s", shutdown, name = "heartbeat")]
async fn heartbeat(stats: Arc<Stats>) {
    tracing::info!(
        accepted = stats.accepted.load(Ordering::Relaxed),
        handled = stats.handled.load(Ordering::Relaxed),
        flushed = stats.flushed.load(Ordering::Relaxed),
        load_samples = stats.load_samples.load(Ordering::Relaxed),
        "alive"
    );
}

/// An append-only journal of handled requests, buffered in memory.
struct Journal {
    file: Mutex<std::io::BufWriter<std::fs::File>>,
}

impl Journal {
    fn open(path: &std::path::Path) -> std::io::Result<Journal> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Journal {
            file: Mutex::new(std::io::BufWriter::new(file)),
        })
    }

    fn append(&self, ids: &[u64]) -> std::io::Result<()> {
        let mut file = self.file.lock().expect("journal lock");
        for id in ids {
            writeln!(file, "handled request {id}")?;
        }
        Ok(())
    }

    /// Writes what is buffered to disk: the journal's close.
    async fn flush(&self) -> std::io::Result<()> {
        let mut file = self.file.lock().expect("journal lock");
        file.flush()?;
        file.get_ref().sync_data()
    }
}

/// Where handled requests end up. Closing it flushes the journal; the path needs nothing.
#[managed_resource(close_timeout = "2s", name = "store")]
struct Store {
    #[close(with = Journal::flush)]
    journal: Journal,
    path: PathBuf,
}

/// Writes buffered results to the store every 500ms, and once more at shutdown so none is lost.
#[background(interval = "500ms", shutdown = "final_tick", name = "flusher")]
async fn flusher(
    stats: Arc<Stats>,
    store: Managed<Store>,
    shutdown: Shutdown,
) -> Result<(), std::io::Error> {
    let batch: Vec<u64> = std::mem::take(&mut *stats.buffer.lock().expect("buffer lock"));
    if batch.is_empty() {
        return Ok(());
    }
    store.journal.append(&batch)?;
    stats
        .flushed
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    if shutdown.is_triggered() {
        tracing::info!(rows = batch.len(), journal = %store.path.display(), "final flush");
    }
    Ok(())
}

/// Samples the system load on its own thread (a blocking read), every 200ms.
#[background(interval = "200ms", shutdown, thread, name = "load-sampler")]
fn load_sampler(stats: Arc<Stats>) {
    if std::fs::read_to_string("/proc/loadavg").is_ok() {
        stats.load_samples.fetch_add(1, Ordering::Relaxed);
    }
}

#[lifecycle_runtime::main(shutdown_timeout = "10s")]
async fn main() -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .init();
    let run_for = match std::env::var("DEMO_RUN_FOR") {
        Ok(text) => Some(humantime_duration(&text)?),
        Err(_) => None,
    };

    let stats = Arc::new(Stats::default());
    TaskGroup::new("workers")
        .max_concurrent(4)
        .timeout(Duration::from_secs(2));

    // The database: DATABASE_URL, or embedded SQLite. A PostgreSQL that cannot be reached within
    // the start-up budget leaves the demo on SQLite (and the report and logs say why).
    let fallback = std::env::temp_dir().join("lifecycle-demo-fallback.sqlite");
    let options = DatabaseOptions::from_env("lifecycle-demo")
        .map_err(|error| error.to_string())?
        .fallback_sqlite(fallback);
    let db = Database::connect(options)
        .await
        .map_err(|error| error.to_string())?;
    sqlx::query("CREATE TABLE IF NOT EXISTS handled_requests (id BIGINT)")
        .execute(db.pool())
        .await
        .map_err(|error| format!("cannot create the demo table: {error}"))?;
    tracing::info!(backend = %db.backend(), "database ready");
    let recorder = BatchWriter::builder("handled-requests", &db, record)
        .max_batch(100)
        .interval(Duration::from_millis(250))
        .spawn();

    // Resources close in reverse order of registration, after every task stopped.
    let journal_path =
        std::env::temp_dir().join(format!("lifecycle-demo-{}.journal", std::process::id()));
    let journal = Journal::open(&journal_path)
        .map_err(|error| format!("cannot open {}: {error}", journal_path.display()))?;
    let store = lifecycle_runtime::manage(Store {
        journal,
        path: journal_path,
    });
    let mut sidecar = tokio::process::Command::new("sh");
    sidecar
        .arg("-c")
        .arg("trap 'exit 0' TERM; while :; do sleep 0.2; done");
    let sidecar = ManagedChild::spawn("sidecar", sidecar).map_err(|error| error.to_string())?;
    tracing::info!(pid = sidecar.id(), "sidecar started");

    heartbeat(stats.clone());
    flusher(stats.clone(), store.clone());
    load_sampler(stats.clone());
    acceptor(stats.clone(), recorder.clone());
    // Start-up is done (database open, loops running): from now on a readiness probe says
    // "ready", until shutdown starts.
    lifecycle_runtime::mark_ready();
    tracing::info!(
        pid = std::process::id(),
        "demo service running; press Ctrl+C to stop"
    );

    let shutdown = lifecycle_runtime::shutdown_signal();
    match run_for {
        Some(limit) => {
            shutdown.sleep(limit).await;
        }
        None => shutdown.triggered().await,
    }
    let accepted = stats.accepted.load(Ordering::Relaxed);
    let recorded = recorder.stats();
    tracing::info!(
        accepted,
        recorded = recorded.written,
        pending = recorded.pending,
        "main is done"
    );
    Ok(())
}

/// Parses `DEMO_RUN_FOR` ("3s", "500ms"), naming the variable on error.
fn humantime_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|error| {
        format!(
            "DEMO_RUN_FOR={text:?} is not a duration ({error}); write it like \"3s\" or \"500ms\""
        )
    })
}
