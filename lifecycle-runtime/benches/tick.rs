//! Per-tick overhead of `#[background]` loops against fair hand-written equivalents, in paired
//! interleaved rounds.
//!
//! - **Loop machinery**: both loops tick on a 1 ns interval with `Burst`, so every tick is ready at
//!   once and the figure is the loop itself, not the timer wheel or parking (one-thread runtime).
//!   Each mode of the macro meets the loop a careful person would write for it: a `select!`
//!   (biased) on a `CancellationToken` and the interval, plus, for `shutdown = "abort"`, the tick
//!   raced against the token (tick first, as the generated loop keeps a tick that finished as
//!   shutdown fired); for `timeout`, `tokio::time::timeout` around the tick; for `group`, a
//!   `Semaphore` permit per tick, its wait raced against the token (token first, as the
//!   generated loop gives up waiting at shutdown).
//! - **A real 1 ms interval**: CPU time of the whole process (the runtime's workers included) per
//!   tick, over a second of ticking, on 2 workers.
//!
//! Target: ≤ 1.05× the hand-written loop.
//!
//! `ROUNDS=15 cargo bench -p lifecycle-runtime --bench tick`

mod common;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::print::{self, Table};
use common::rounds;
use common::runtime::process_cpu_time;
use lifecycle_runtime::{Coordinator, Shutdown, TaskGroup, TaskHandle, background};
use tokio::runtime::Runtime;
use tokio::sync::{Notify, Semaphore};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

const TARGET: f64 = 1.05;
/// Ticks per measurement of the loop machinery.
const BURST_TICKS: u64 = 200_000;
/// How long the 1 ms loops tick per measurement, after [`WARM_UP`].
const WINDOW: Duration = Duration::from_secs(1);
const WARM_UP: Duration = Duration::from_millis(50);
/// The tick limit of the `timeout` variants: never reached.
const TICK_LIMIT: Duration = Duration::from_secs(10);
/// Permits of the `group` variants' semaphore; one loop holds at most one.
const PERMITS: usize = 4;
const GROUP: &str = "bench-group";

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

    fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }
}

/// A tick's body, the same in every loop.
async fn body(counter: &Counter) {
    counter.tick();
}

#[background(
    interval = "1ns",
    shutdown,
    missed_tick = "burst",
    name = "bench-finish"
)]
async fn generated_finish(counter: Arc<Counter>) {
    body(&counter).await;
}

#[background(
    interval = "1ns",
    shutdown,
    missed_tick = "burst",
    name = "bench-finish-shutdown"
)]
async fn generated_finish_shutdown(counter: Arc<Counter>, shutdown: Shutdown) {
    if !shutdown.is_triggered() {
        body(&counter).await;
    }
}

#[background(
    interval = "1ns",
    shutdown = "abort",
    missed_tick = "burst",
    name = "bench-abort"
)]
async fn generated_abort(counter: Arc<Counter>) {
    body(&counter).await;
}

#[background(
    interval = "1ns",
    shutdown,
    timeout = "10s",
    missed_tick = "burst",
    name = "bench-timeout"
)]
async fn generated_timeout(counter: Arc<Counter>) {
    body(&counter).await;
}

#[background(
    interval = "1ns",
    shutdown,
    group = "bench-group",
    missed_tick = "burst",
    name = "bench-group"
)]
async fn generated_group(counter: Arc<Counter>) {
    body(&counter).await;
}

#[background(interval = "1ms", shutdown, missed_tick = "skip", name = "bench-1ms")]
async fn generated_1ms(counter: Arc<Counter>) {
    body(&counter).await;
}

/// The usual wait for the next tick: the token or the interval, token first.
async fn next_tick(interval: &mut Interval, token: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        () = token.cancelled() => false,
        _ = interval.tick() => true,
    }
}

async fn hand_finish(counter: Arc<Counter>, token: CancellationToken, mut interval: Interval) {
    while next_tick(&mut interval, &token).await {
        body(&counter).await;
    }
}

async fn hand_abort(counter: Arc<Counter>, token: CancellationToken, mut interval: Interval) {
    while next_tick(&mut interval, &token).await {
        tokio::select! {
            biased;
            () = body(&counter) => {}
            () = token.cancelled() => break,
        }
    }
}

async fn hand_timeout(counter: Arc<Counter>, token: CancellationToken, mut interval: Interval) {
    while next_tick(&mut interval, &token).await {
        // A late tick is cancelled; the loop goes on.
        let _in_time = tokio::time::timeout(TICK_LIMIT, body(&counter)).await;
    }
}

async fn hand_group(counter: Arc<Counter>, token: CancellationToken, mut interval: Interval) {
    let permits = Semaphore::new(PERMITS);
    while next_tick(&mut interval, &token).await {
        let _permit = tokio::select! {
            biased;
            () = token.cancelled() => break,
            permit = permits.acquire() => permit.expect("the semaphore is never closed"),
        };
        body(&counter).await;
    }
}

fn interval(period: Duration, missed_tick: MissedTickBehavior) -> Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(missed_tick);
    interval
}

/// Starts a generated loop on a fresh coordinator; the group its ticks may use is configured.
fn start_generated(
    start: fn(Arc<Counter>) -> TaskHandle,
    counter: &Arc<Counter>,
) -> (Coordinator, TaskHandle) {
    let coordinator = Coordinator::builder().scan_os_threads(false).build();
    let task = {
        let _current = coordinator.enter();
        let _group = TaskGroup::new(GROUP).max_concurrent(PERMITS);
        start(counter.clone())
    };
    (coordinator, task)
}

async fn stop_generated(coordinator: Coordinator, task: TaskHandle) {
    assert!(coordinator.shutdown().await.is_clean());
    task.await.expect("the loop ends");
}

/// Seconds for [`BURST_TICKS`] ticks of a generated loop.
async fn burst_generated(start: fn(Arc<Counter>) -> TaskHandle) -> f64 {
    let counter = Counter::new(BURST_TICKS);
    let started = Instant::now();
    let (coordinator, task) = start_generated(start, &counter);
    counter.done.notified().await;
    let elapsed = started.elapsed();
    stop_generated(coordinator, task).await;
    elapsed.as_secs_f64()
}

/// Seconds for [`BURST_TICKS`] ticks of a hand-written loop.
async fn burst_hand_written<F>(
    hand_written: impl FnOnce(Arc<Counter>, CancellationToken, Interval) -> F,
) -> f64
where
    F: Future<Output = ()> + Send + 'static,
{
    let counter = Counter::new(BURST_TICKS);
    let token = CancellationToken::new();
    let started = Instant::now();
    let burst = interval(Duration::from_nanos(1), MissedTickBehavior::Burst);
    let task = tokio::spawn(hand_written(counter.clone(), token.clone(), burst));
    counter.done.notified().await;
    let elapsed = started.elapsed();
    token.cancel();
    task.await.expect("the loop ends");
    elapsed.as_secs_f64()
}

/// CPU nanoseconds of the whole process per tick of a generated 1 ms loop.
fn cpu_generated(runtime: &Runtime) -> f64 {
    let counter = Counter::new(u64::MAX);
    let (coordinator, task) = {
        let _runtime = runtime.enter();
        start_generated(generated_1ms, &counter)
    };
    let per_tick = cpu_per_tick(&counter);
    runtime.block_on(stop_generated(coordinator, task));
    per_tick
}

/// CPU nanoseconds of the whole process per tick of the hand-written 1 ms loop.
fn cpu_hand_written(runtime: &Runtime) -> f64 {
    let counter = Counter::new(u64::MAX);
    let token = CancellationToken::new();
    let task = {
        let _runtime = runtime.enter();
        let every_ms = interval(Duration::from_millis(1), MissedTickBehavior::Skip);
        tokio::spawn(hand_finish(counter.clone(), token.clone(), every_ms))
    };
    let per_tick = cpu_per_tick(&counter);
    token.cancel();
    runtime.block_on(task).expect("the loop ends");
    per_tick
}

/// CPU nanoseconds of the whole process per tick counted by `counter` over [`WINDOW`], after
/// [`WARM_UP`]; this thread sleeps meanwhile.
fn cpu_per_tick(counter: &Counter) -> f64 {
    std::thread::sleep(WARM_UP);
    let (cpu, ticks) = (process_cpu_time(), counter.ticks());
    std::thread::sleep(WINDOW);
    let (cpu, ticks) = (process_cpu_time() - cpu, counter.ticks() - ticks);
    cpu.as_nanos() as f64 / ticks as f64
}

/// The variants of `#[background]` measured on the 1 ns burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Finish,
    FinishWithShutdown,
    Abort,
    Timeout,
    Group,
}

impl Mode {
    const ALL: [Mode; 5] = [
        Mode::Finish,
        Mode::FinishWithShutdown,
        Mode::Abort,
        Mode::Timeout,
        Mode::Group,
    ];

    fn label(self) -> &'static str {
        match self {
            Mode::Finish => "shutdown (finish)",
            Mode::FinishWithShutdown => "shutdown, body takes a Shutdown",
            Mode::Abort => "shutdown = \"abort\"",
            Mode::Timeout => "timeout = \"10s\"",
            Mode::Group => "group (max_concurrent 4)",
        }
    }

    fn generated(self) -> fn(Arc<Counter>) -> TaskHandle {
        match self {
            Mode::Finish => generated_finish,
            Mode::FinishWithShutdown => generated_finish_shutdown,
            Mode::Abort => generated_abort,
            Mode::Timeout => generated_timeout,
            Mode::Group => generated_group,
        }
    }

    /// The hand-written loop it meets.
    fn baseline(self) -> HandWritten {
        match self {
            Mode::Finish | Mode::FinishWithShutdown => HandWritten::Finish,
            Mode::Abort => HandWritten::Abort,
            Mode::Timeout => HandWritten::Timeout,
            Mode::Group => HandWritten::Group,
        }
    }
}

/// The hand-written loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HandWritten {
    Finish,
    Abort,
    Timeout,
    Group,
}

impl HandWritten {
    const ALL: [HandWritten; 4] = [
        HandWritten::Finish,
        HandWritten::Abort,
        HandWritten::Timeout,
        HandWritten::Group,
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Generated(Mode),
    HandWritten(HandWritten),
    Generated1Ms,
    HandWritten1Ms,
}

fn cases() -> Vec<Case> {
    Mode::ALL
        .map(Case::Generated)
        .into_iter()
        .chain(HandWritten::ALL.map(Case::HandWritten))
        .chain([Case::Generated1Ms, Case::HandWritten1Ms])
        .collect()
}

/// Seconds for the burst, CPU nanoseconds per tick for the 1 ms loops.
fn measure(one_thread: &Runtime, two_workers: &Runtime, case: Case) -> f64 {
    match case {
        Case::Generated(mode) => one_thread.block_on(burst_generated(mode.generated())),
        Case::HandWritten(HandWritten::Finish) => {
            one_thread.block_on(burst_hand_written(hand_finish))
        }
        Case::HandWritten(HandWritten::Abort) => {
            one_thread.block_on(burst_hand_written(hand_abort))
        }
        Case::HandWritten(HandWritten::Timeout) => {
            one_thread.block_on(burst_hand_written(hand_timeout))
        }
        Case::HandWritten(HandWritten::Group) => {
            one_thread.block_on(burst_hand_written(hand_group))
        }
        Case::Generated1Ms => cpu_generated(two_workers),
        Case::HandWritten1Ms => cpu_hand_written(two_workers),
    }
}

fn main() {
    let rounds = print::announce(
        "tick",
        "Per-tick overhead of #[background] loops against hand-written equivalents",
        rounds::DEFAULT_ROUNDS,
    );
    let one_thread = common::runtime::current_thread_runtime();
    let two_workers = common::runtime::two_worker_runtime();
    let samples = rounds::run(cases(), rounds, |case| {
        measure(&one_thread, &two_workers, case)
    });

    let mut verdicts = Vec::new();
    let mut table = Table::new(
        format!(
            "Loop machinery: {} ticks on a 1 ns interval (Burst), one-thread runtime",
            print::count(BURST_TICKS as usize)
        ),
        &[
            "#[background(interval, ...)]",
            "generated",
            "hand-written",
            "generated vs. hand-written",
        ],
    );
    for mode in Mode::ALL {
        let (generated, hand_written) = (Case::Generated(mode), Case::HandWritten(mode.baseline()));
        let per_tick = |case| print::ns(samples.median(case) * 1e9 / BURST_TICKS as f64);
        let ratio = samples.ratio(generated, hand_written);
        table.row(vec![
            mode.label().to_owned(),
            per_tick(generated),
            per_tick(hand_written),
            print::ratio(ratio),
        ]);
        verdicts.push((format!("{}, 1 ns burst", mode.label()), ratio));
    }
    table.print();

    let (generated, hand_written) = (Case::Generated1Ms, Case::HandWritten1Ms);
    let ratio = samples.ratio(generated, hand_written);
    let mut table = Table::new(
        format!(
            "A real 1 ms interval: process CPU time per tick over {} s, 2 workers",
            WINDOW.as_secs_f64()
        ),
        &["loop", "CPU per tick", "vs. hand-written"],
    );
    table.row(vec![
        "hand-written select! loop".to_owned(),
        print::us(samples.median(hand_written)),
        "1.00×".to_owned(),
    ]);
    table.row(vec![
        "#[background(interval = \"1ms\", shutdown)]".to_owned(),
        print::us(samples.median(generated)),
        print::ratio(ratio),
    ]);
    table.print();
    verdicts.push((
        "shutdown (finish), 1 ms interval, CPU time".to_owned(),
        ratio,
    ));

    for (what, ratio) in verdicts {
        print::target(
            format!("≤ {TARGET:.2}× the hand-written loop, {what}"),
            ratio.median <= TARGET,
            print::ratio(ratio),
        );
    }
}
