//! Memory per waiting task: live heap bytes per task once 100,000 tasks have been spawned and
//! every one was polled once (each counts itself), on a 2-worker multi-thread runtime, for each
//! contender (`common::crowd`).
//!
//! tokio allocates a task's cell (header, future, trailer) aligned to 128 bytes, so a wrapper
//! costs nothing at one future size and a whole step at another. The futures therefore hold 0,
//! 32, 64 and 96 bytes across their wait (one 128-byte period in even steps, whose mean is the
//! expected cost) and 200 and 1,000 bytes (a small and a larger buffer).
//!
//! A counting global allocator counts the bytes. A warm-up round runs first and the rounds
//! interleave the contenders. What a contender still holds once its tasks are gone (the global
//! coordinator's registry keeps its capacity) is memory it holds for its next tasks: it is
//! counted in every later figure of that contender, so warming up hides nothing.
//! Target: lifecycle ≤ 128 bytes per task over raw `tokio::spawn` at each size.
//!
//! `ROUNDS=5 cargo bench -p lifecycle-runtime --bench memory`

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use common::crowd::{Contender, Crowd, Placement};
use common::print::{self, Table};
use common::rounds::{self, Spread};

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const TASKS: usize = 100_000;
const TARGET: f64 = 128.0;
/// Bytes each task's future holds across its wait.
const HELD: [usize; 6] = [0, 32, 64, 96, 200, 1_000];
/// The sizes that sweep one 128-byte period.
const PERIOD: [usize; 4] = [0, 32, 64, 96];
/// Memory figures hardly vary: fewer rounds than the timing benches.
const DEFAULT_ROUNDS: usize = 5;
/// After the last first poll, time for the last tasks to finish that poll (lifecycle registers a
/// task when its first poll returns). The count, not this, says when every task has started.
const SETTLE: Duration = Duration::from_millis(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Case {
    held: usize,
    contender: Contender,
}

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// One run of [`TASKS`] waiting tasks.
struct Run {
    /// Bytes allocated while the tasks waited.
    waiting: isize,
    /// Bytes still allocated once they were gone, the contender's set-up included.
    kept: isize,
    future_size: Option<usize>,
}

/// Spawns [`TASKS`] tasks holding `N` bytes and counts the heap once all wait, and once all are
/// gone. What the contender sets up before its first spawn (the raw handles' vector) is left out
/// of `waiting`.
async fn run<const N: usize>(contender: Contender) -> Run {
    let at_rest = live();
    let mut crowd = Crowd::prepare(contender, TASKS);
    let before = live();
    crowd.spawn::<N>(Placement::Worker).await;
    crowd.all_polled().await;
    tokio::time::sleep(SETTLE).await;
    let waiting = live() - before;
    let future_size = crowd.future_size();
    crowd.stop().await;
    Run {
        waiting,
        kept: live() - at_rest,
        future_size,
    }
}

async fn measure(case: Case) -> Run {
    match case.held {
        0 => run::<0>(case.contender).await,
        32 => run::<32>(case.contender).await,
        64 => run::<64>(case.contender).await,
        96 => run::<96>(case.contender).await,
        200 => run::<200>(case.contender).await,
        1_000 => run::<1_000>(case.contender).await,
        held => panic!("no future holding {held} bytes is compiled in; add it to `measure`"),
    }
}

fn main() {
    let rounds = print::announce(
        "memory",
        "Memory per waiting task: live heap bytes per task, 100,000 tasks all polled once",
        DEFAULT_ROUNDS,
    );
    let runtime = common::runtime::two_worker_runtime();
    let cases: Vec<Case> = HELD
        .into_iter()
        .flat_map(|held| Contender::ALL.map(|contender| Case { held, contender }))
        .collect();
    let mut future_sizes = HashMap::new();
    // Bytes each contender still held after its runs so far: charged to its next runs.
    let mut kept: HashMap<Contender, isize> = HashMap::new();
    // Per case, what each run was charged for it; the first run is the warm-up round's.
    let mut charged: HashMap<Case, Vec<f64>> = HashMap::new();
    let samples = rounds::run(cases, rounds, |case| {
        let earlier = kept.get(&case.contender).copied().unwrap_or(0) as f64 / TASKS as f64;
        let run = runtime.block_on(measure(case));
        *kept.entry(case.contender).or_default() += run.kept;
        future_sizes.insert(case, run.future_size);
        charged.entry(case).or_default().push(earlier);
        run.waiting as f64 / TASKS as f64 + earlier
    });
    let over_raw = |held, contender| {
        let raw = Case {
            held,
            contender: Contender::Raw,
        };
        samples.difference(Case { held, contender }, raw)
    };

    let mut verdicts = Vec::new();
    for held in HELD {
        let mut table = Table::new(
            format!(
                "{} waiting tasks, each holding {held} bytes across its wait",
                print::count(TASKS)
            ),
            &[
                "spawned with",
                "future handed to spawn",
                "bytes per task",
                "of which kept since earlier tasks",
                "over raw",
            ],
        );
        for contender in Contender::ALL {
            let case = Case { held, contender };
            table.row(vec![
                contender.label(),
                future_sizes[&case].map_or("built inside".to_owned(), |size| format!("{size} B")),
                print::bytes(samples.median(case)),
                print::bytes(Spread::of(charged[&case][1..].to_vec()).median),
                match contender {
                    Contender::Raw => "—".to_owned(),
                    _ => print::difference(over_raw(held, contender)),
                },
            ]);
            if matches!(contender, Contender::Global | Contender::Scoped) {
                verdicts.push((
                    format!("{}, holding {held} bytes", contender.label()),
                    over_raw(held, contender),
                ));
            }
        }
        table.print();
    }
    let mut table = Table::new(
        "Mean over one 128-byte period of future sizes (0, 32, 64, 96 bytes held)",
        &["spawned with", "bytes per task over raw"],
    );
    for contender in Contender::ALL.into_iter().skip(1) {
        let mean = PERIOD
            .iter()
            .map(|&held| over_raw(held, contender).median)
            .sum::<f64>()
            / PERIOD.len() as f64;
        table.row(vec![contender.label(), format!("{mean:+.1}")]);
    }
    table.print();
    for (what, over_raw) in verdicts {
        print::target(
            format!("≤ {TARGET:.0} bytes per task over raw tokio::spawn, {what}"),
            // As printed: a tenth of a byte per task is the resolution of 100,000 tasks' worth
            // of heap counted against a baseline with its own few bytes of bookkeeping.
            (over_raw.median * 10.0).round() / 10.0 <= TARGET,
            format!("{} bytes", print::difference(over_raw)),
        );
    }
    print::heap_check(&samples, samples.cases().len() * TASKS);
}
