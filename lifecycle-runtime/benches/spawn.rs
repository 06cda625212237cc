//! Cost of spawning (and joining) one task: `lifecycle_runtime::spawn` against raw `tokio::spawn`
//! and `tokio_util::task::TaskTracker::spawn`, on a 2-worker multi-thread runtime.
//! Target: ≤ 1.25× raw `tokio::spawn`.

mod common;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lifecycle_runtime::Coordinator;
use tokio_util::task::TaskTracker;

/// Tasks spawned before their handles are awaited.
const BATCH: u64 = 1000;

/// Spawns `iters` trivial tasks in batches with `spawn` and awaits them; returns the time taken.
async fn spawn_many<H, F>(iters: u64, mut spawn: F) -> Duration
where
    F: FnMut(u64) -> H,
    H: std::future::Future,
{
    let start = Instant::now();
    let mut left = iters;
    let mut handles = Vec::with_capacity(BATCH as usize);
    while left > 0 {
        let batch = left.min(BATCH);
        for n in 0..batch {
            handles.push(spawn(n));
        }
        for handle in handles.drain(..) {
            let _ = handle.await;
        }
        left -= batch;
    }
    start.elapsed()
}

fn spawning(c: &mut Criterion) {
    let runtime = common::two_worker_runtime();
    let mut group = c.benchmark_group("spawn");
    group.throughput(Throughput::Elements(1));

    group.bench_function("tokio::spawn", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(spawn_many(iters, |n| tokio::spawn(async move { n })))
        });
    });

    group.bench_function("tokio::spawn from a worker", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async move {
                tokio::spawn(spawn_many(iters, |n| tokio::spawn(async move { n })))
                    .await
                    .unwrap()
            })
        });
    });

    group.bench_function("lifecycle_runtime::spawn from a worker", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async move {
                tokio::spawn(spawn_many(iters, |n| {
                    lifecycle_runtime::spawn("bench", async move { n })
                }))
                .await
                .unwrap()
            })
        });
    });

    group.bench_function("TaskTracker::spawn", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let tracker = TaskTracker::new();
                spawn_many(iters, |n| tracker.spawn(async move { n })).await
            })
        });
    });

    group.bench_function("lifecycle_runtime::spawn (global coordinator)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(spawn_many(iters, |n| {
                lifecycle_runtime::spawn("bench", async move { n })
            }))
        });
    });

    group.bench_function("Coordinator::spawn (scoped coordinator)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let coordinator = Coordinator::builder().scan_os_threads(false).build();
                spawn_many(iters, |n| coordinator.spawn("bench", async move { n })).await
            })
        });
    });
    group.finish();
}

criterion_group!(benches, spawning);
criterion_main!(benches);
