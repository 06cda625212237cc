//! Shutdown of tasks that ignore it, at scale: n tasks wait on nothing, each with a stop timeout
//! of 100 ms; the clock runs from `shutdown()` to the report. All must be reported `ABORTED` on
//! one folded line, and the time past the stop timeout (the aborting: waking, dropping and
//! recording each task) must grow in proportion to n.
//!
//! `ROUNDS=3 cargo bench -p lifecycle-runtime --bench abort`

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lifecycle_runtime::{Coordinator, Outcome, Shutdown, background};

const STOP_TIMEOUT: Duration = Duration::from_millis(100);

#[background(shutdown, stop_timeout = "100ms", name = "deaf")]
async fn deaf(waiting: Arc<AtomicUsize>, _shutdown: Shutdown) {
    waiting.fetch_add(1, Ordering::Relaxed);
    std::future::pending::<()>().await;
}

/// Seconds from `shutdown()` to the report for `n` deaf tasks.
async fn measure(n: usize) -> Duration {
    let coordinator = Coordinator::builder()
        .scan_os_threads(false)
        .shutdown_timeout(Duration::from_secs(300))
        .build();
    coordinator
        .scope(async {
            let waiting = Arc::new(AtomicUsize::new(0));
            for _ in 0..n {
                deaf(waiting.clone());
            }
            while waiting.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let started = Instant::now();
            let report = lifecycle_runtime::shutdown().await;
            let took = started.elapsed();
            let entries = report.entries();
            assert_eq!(entries.len(), 1, "one folded line:\n{report}");
            assert_eq!(entries[0].outcome(), &Outcome::Aborted, "{report}");
            assert_eq!(entries[0].count(), n, "{report}");
            took
        })
        .await
}

/// The baseline: `n` raw tokio tasks waiting on nothing, all aborted through their handles; the
/// clock runs until the runtime has none of them left.
async fn measure_raw(n: usize) -> Duration {
    let baseline = common::runtime::alive_tasks();
    let waiting = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let waiting = waiting.clone();
            tokio::spawn(async move {
                waiting.fetch_add(1, Ordering::Relaxed);
                std::future::pending::<()>().await;
            })
        })
        .collect();
    while waiting.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    for handle in &handles {
        handle.abort();
    }
    drop(handles);
    while common::runtime::alive_tasks() > baseline {
        tokio::task::yield_now().await;
    }
    started.elapsed()
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(3);
    println!(
        "# Aborting tasks that ignore shutdown: shutdown() → report, 2 workers, stop timeout 100 ms\n"
    );
    println!("run with: ROUNDS={rounds} cargo bench -p lifecycle-runtime --bench abort\n");
    println!(
        "| tasks | lifecycle: shutdown → report | past the stop timeout | per task | raw tokio: abort every handle → none alive | per task | lifecycle past the stop timeout vs. raw |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let runtime = common::runtime::two_worker_runtime();
    for n in [10_000, 100_000, 1_000_000] {
        // Interleaved: lifecycle, raw, lifecycle, raw, ...
        let mut ours = Vec::new();
        let mut raw = Vec::new();
        for _ in 0..rounds {
            ours.push(runtime.block_on(measure(n)));
            raw.push(runtime.block_on(measure_raw(n)));
        }
        let mut ratios: Vec<f64> = ours
            .iter()
            .zip(&raw)
            .map(|(ours, raw)| ours.saturating_sub(STOP_TIMEOUT).as_secs_f64() / raw.as_secs_f64())
            .collect();
        ours.sort();
        raw.sort();
        ratios.sort_by(f64::total_cmp);
        let median = ours[ours.len() / 2];
        let raw_median = raw[raw.len() / 2];
        let past = median.saturating_sub(STOP_TIMEOUT);
        println!(
            "| {n} | {:.3} s | {:.3} s | {:.0} ns | {:.3} s | {:.0} ns | {:.2}× |",
            median.as_secs_f64(),
            past.as_secs_f64(),
            past.as_nanos() as f64 / n as f64,
            raw_median.as_secs_f64(),
            raw_median.as_nanos() as f64 / n as f64,
            ratios[ratios.len() / 2]
        );
    }
    println!("\nevery round: one entry, ABORTED ×n");
}
