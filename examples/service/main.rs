//! The demo service: a small worker that shows every moving part stopping cleanly.
//!
//! - `acceptor`: a service that takes "requests" and hands them to the `workers` task group;
//! - `heartbeat`: a loop that logs every second;
//! - `flusher`: buffers results and writes them out every 500ms, with one last flush at shutdown;
//! - `load-sampler`: a blocking sampler on its own OS thread.
//!
//! Run it with `cargo run -p lifecycle-examples --bin service` and press Ctrl+C: it prints the
//! shutdown report and exits 0 when everything stopped cleanly.
//!
//! Environment: `DEMO_RUN_FOR=3s` stops it by itself after that long; `LIFECYCLE_SHUTDOWN_TIMEOUT`
//! and `LIFECYCLE_DRAIN` override the shutdown budget and drain time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifecycle_runtime::{Shutdown, TaskGroup, background};

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

/// Accepts a request every 20ms and hands it to the `workers` group, until shutdown.
#[background(shutdown, name = "acceptor", stop_timeout = "1s")]
async fn acceptor(stats: Arc<Stats>, shutdown: Shutdown) {
    let workers = TaskGroup::new("workers");
    while shutdown.sleep(Duration::from_millis(20)).await {
        let id = stats.accepted.fetch_add(1, Ordering::Relaxed);
        let stats = stats.clone();
        let _request = workers.spawn("request", async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            stats.handled.fetch_add(1, Ordering::Relaxed);
            stats.buffer.lock().expect("buffer lock").push(id);
        });
    }
    tracing::info!("acceptor stopped taking requests");
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

/// Writes buffered results out every 500ms, and once more at shutdown so none is lost.
#[background(interval = "500ms", shutdown = "final_tick", name = "flusher")]
async fn flusher(stats: Arc<Stats>, shutdown: Shutdown) -> Result<(), std::io::Error> {
    let batch: Vec<u64> = std::mem::take(&mut *stats.buffer.lock().expect("buffer lock"));
    if batch.is_empty() {
        return Ok(());
    }
    // A real service would write to a database or a file here.
    tokio::time::sleep(Duration::from_millis(2)).await;
    stats
        .flushed
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    if shutdown.is_triggered() {
        tracing::info!(rows = batch.len(), "final flush");
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
    heartbeat(stats.clone());
    flusher(stats.clone());
    load_sampler(stats.clone());
    acceptor(stats.clone());
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
    // Give the in-flight work a moment; the flusher's final tick writes what is left.
    let accepted = stats.accepted.load(Ordering::Relaxed);
    tracing::info!(accepted, "main is done");
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
