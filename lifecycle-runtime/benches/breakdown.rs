//! Where the time of a tracked task goes: spawn + first poll of 100,000 waiting tasks on a
//! one-thread runtime (no second thread to hide or add work), three ways:
//!
//! - raw `tokio::spawn`, each task waiting on a shared `Notify`;
//! - the same tasks holding 64 more bytes across their wait: the size of the guard lifecycle puts
//!   in every task (`workers/task.rs` checks it stays within eight words), so this is what the task's
//!   size alone costs;
//! - `lifecycle_runtime::spawn` on the global coordinator, the same tasks.
//!
//! The first difference is the cost of the bigger task (tokio sizes task memory in 128-byte
//! steps); the second is lifecycle's own work (counting the spawn, registering at the first wait,
//! the poll wrapper).
//!
//! `ROUNDS=15 cargo bench -p lifecycle-runtime --bench breakdown`

mod common;

use common::crowd::{Contender, Crowd, Placement};
use common::print::{self, Table};
use common::rounds;

/// Tasks per measurement.
const TASKS: usize = 100_000;

/// The size of the guard each lifecycle task carries: eight words.
const GUARD: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Raw,
    RawHoldingGuardSize,
    Lifecycle,
}

/// Seconds from the first spawn until every task was polled once.
async fn measure(case: Case) -> f64 {
    let (contender, holding) = match case {
        Case::Raw => (Contender::Raw, 0),
        Case::RawHoldingGuardSize => (Contender::Raw, GUARD),
        Case::Lifecycle => (Contender::Global, 0),
    };
    let mut crowd = Crowd::prepare(contender, TASKS);
    match holding {
        0 => crowd.spawn::<0>(Placement::BlockOn).await,
        _ => crowd.spawn::<GUARD>(Placement::BlockOn).await,
    }
    let elapsed = crowd.all_polled().await;
    crowd.stop().await;
    elapsed.as_secs_f64()
}

fn main() {
    let rounds = print::announce(
        "breakdown",
        "Where a tracked task's time goes: spawn + first poll of 100,000 waiting tasks, one thread",
        rounds::DEFAULT_ROUNDS,
    );
    let runtime = common::runtime::current_thread_runtime();
    let cases = vec![Case::Raw, Case::RawHoldingGuardSize, Case::Lifecycle];
    let samples = rounds::run(cases, rounds, |case| runtime.block_on(measure(case)));
    let per_task = |seconds: f64| seconds * 1e9 / TASKS as f64;
    let mut table = Table::new(
        "Spawn + first poll, per task",
        &["tasks", "per task", "vs. raw"],
    );
    for (case, label) in [
        (Case::Raw, "tokio::spawn + Notify"),
        (
            Case::RawHoldingGuardSize,
            "tokio::spawn + Notify, holding 64 more bytes",
        ),
        (Case::Lifecycle, "lifecycle_runtime::spawn + Notify"),
    ] {
        table.row(vec![
            label.to_owned(),
            print::ns(per_task(samples.median(case))),
            print::ratio(samples.ratio(case, Case::Raw)),
        ]);
    }
    table.print();
    let size = samples.difference(Case::RawHoldingGuardSize, Case::Raw);
    let own = samples.difference(Case::Lifecycle, Case::RawHoldingGuardSize);
    let mut split = Table::new(
        "Lifecycle's extra time per task, split (medians of per-round differences)",
        &["part", "per task"],
    );
    split.row(vec![
        "the task's bigger size (64 bytes)".to_owned(),
        print::ns(per_task(size.median)),
    ]);
    split.row(vec![
        "lifecycle's own work".to_owned(),
        print::ns(per_task(own.median)),
    ]);
    split.print();
    print::heap_check(&samples, 3 * TASKS);
}
