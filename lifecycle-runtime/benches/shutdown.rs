//! Shutdown of n idle tasks (each waiting for the shutdown signal), n = 1k, 10k, 100k, against the
//! same with a bare `CancellationToken` + `TaskTracker`. Target: < 250 ms at 100k on 2 cores, and
//! linear growth (10× tasks ≤ 11× time).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lifecycle_runtime::Coordinator;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Waits until all `n` tasks have run once (each counts itself), so every one is idle, waiting
/// for the signal, before the clock starts. A fixed sleep is not enough at 100k tasks.
async fn let_them_start(started: &AtomicUsize, n: u64) {
    while started.load(Ordering::Acquire) < n as usize {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
}

fn shutdown_idle(c: &mut Criterion) {
    let runtime = common::two_worker_runtime();
    let mut group = c.benchmark_group("shutdown idle tasks");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    for n in [1_000u64, 10_000, 100_000] {
        group.bench_with_input(BenchmarkId::new("lifecycle shutdown()", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += runtime.block_on(async {
                        let coordinator = Coordinator::builder().scan_os_threads(false).build();
                        let started = Arc::new(AtomicUsize::new(0));
                        for _ in 0..n {
                            let signal = coordinator.shutdown_signal().triggered_owned();
                            let started = started.clone();
                            let _idle = coordinator.spawn("idle", async move {
                                started.fetch_add(1, Ordering::Release);
                                signal.await;
                            });
                        }
                        let_them_start(&started, n).await;
                        let start = Instant::now();
                        let report = coordinator.shutdown().await;
                        let elapsed = start.elapsed();
                        assert!(report.is_clean(), "{report}");
                        assert_eq!(report.entries()[0].count() as u64, n);
                        elapsed
                    });
                }
                total
            });
        });
        group.bench_with_input(
            BenchmarkId::new("CancellationToken + TaskTracker", n),
            &n,
            |b, &n| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += runtime.block_on(async {
                            let token = CancellationToken::new();
                            let tracker = TaskTracker::new();
                            let started = Arc::new(AtomicUsize::new(0));
                            for _ in 0..n {
                                let signal = token.clone().cancelled_owned();
                                let started = started.clone();
                                let _idle = tracker.spawn(async move {
                                    started.fetch_add(1, Ordering::Release);
                                    signal.await;
                                });
                            }
                            let_them_start(&started, n).await;
                            let start = Instant::now();
                            token.cancel();
                            tracker.close();
                            tracker.wait().await;
                            start.elapsed()
                        });
                    }
                    total
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, shutdown_idle);
criterion_main!(benches);
