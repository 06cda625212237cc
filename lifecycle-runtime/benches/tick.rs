//! Per-tick overhead of a `#[background]` loop against the hand-written equivalent
//! (`tokio::select!` on a `CancellationToken` and a `tokio::time::interval`).
//!
//! Both loops tick on a 1ns interval with `Burst`, so every tick is ready at once and the
//! measurement is the loop machinery itself, not the timer wheel or parking. Target: ≤ 1.05×.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lifecycle_runtime::{Coordinator, Shutdown, background};
use tokio::sync::Notify;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Counts ticks and says when `target` is reached.
struct Counter {
    ticks: AtomicU64,
    target: u64,
    done: Notify,
}

impl Counter {
    fn new(target: u64) -> Arc<Counter> {
        Arc::new(Counter {
            ticks: AtomicU64::new(0),
            target,
            done: Notify::new(),
        })
    }

    fn tick(&self) {
        if self.ticks.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            self.done.notify_one();
        }
    }
}

#[background(interval = "1ns", shutdown, missed_tick = "burst", name = "bench-loop")]
async fn generated(counter: Arc<Counter>) {
    counter.tick();
}

#[background(
    interval = "1ns",
    shutdown,
    missed_tick = "burst",
    name = "bench-loop-shutdown"
)]
async fn generated_with_shutdown(counter: Arc<Counter>, shutdown: Shutdown) {
    if !shutdown.is_triggered() {
        counter.tick();
    }
}

async fn hand_written(counter: Arc<Counter>, token: CancellationToken) {
    let mut interval = tokio::time::interval(Duration::from_nanos(1));
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    loop {
        tokio::select! {
            biased;
            () = token.cancelled() => break,
            _ = interval.tick() => {}
        }
        async {
            counter.tick();
        }
        .await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Times `iters` ticks of a generated loop started by `start` on a fresh coordinator, then shuts
/// it down (outside the timing).
async fn time_generated(
    iters: u64,
    start: fn(Arc<Counter>) -> lifecycle_runtime::TaskHandle<()>,
) -> Duration {
    let coordinator = Coordinator::builder().scan_os_threads(false).build();
    let counter = Counter::new(iters);
    let started = Instant::now();
    let task = {
        let _current = coordinator.enter();
        start(counter.clone())
    };
    counter.done.notified().await;
    let elapsed = started.elapsed();
    coordinator.shutdown().await;
    task.await.expect("loop ends");
    elapsed
}

fn ticks(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("tick");
    group.throughput(Throughput::Elements(1));

    group.bench_function("hand-written select! loop", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let counter = Counter::new(iters);
                let token = CancellationToken::new();
                let start = Instant::now();
                let task = tokio::spawn(hand_written(counter.clone(), token.clone()));
                counter.done.notified().await;
                let elapsed = start.elapsed();
                token.cancel();
                task.await.expect("loop ends");
                elapsed
            })
        });
    });

    group.bench_function("#[background] loop", |b| {
        b.iter_custom(|iters| runtime.block_on(time_generated(iters, generated)));
    });

    group.bench_function("#[background] loop with Shutdown parameter", |b| {
        b.iter_custom(|iters| runtime.block_on(time_generated(iters, generated_with_shutdown)));
    });
    group.finish();
}

criterion_group!(benches, ticks);
criterion_main!(benches);
