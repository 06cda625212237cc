//! Spawning, on a 2-worker multi-thread runtime, from a runtime worker and from the `block_on`
//! thread:
//!
//! - **waiting tasks**: the time from the first spawn until all n tasks (10,000 and 100,000) have
//!   been polled once, each then waiting for shutdown, as a server's connections and loops do;
//! - **finished tasks**: spawn + join of tasks that return in their first poll, in batches of
//!   1,000.
//!
//! Contenders: raw `tokio::spawn` (the baseline), `TaskTracker`, tokio-graceful-shutdown
//! subsystems, `lifecycle_runtime::spawn` on the global coordinator and `Coordinator::spawn` on a
//! scoped one (`common::crowd`). Target: lifecycle ≤ 1.25× raw `tokio::spawn`.
//!
//! `ROUNDS=15 cargo bench -p lifecycle-runtime --bench spawn`

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::time::{Duration, Instant};

use common::crowd::{self, Contender, Crowd, Placement, on};
use common::print::{self, Table};
use common::rounds::{self, Samples};
use lifecycle_runtime::Coordinator;
use tokio_graceful_shutdown::{NestedSubsystem, SubsystemBuilder, SubsystemHandle, Toplevel};
use tokio_util::task::TaskTracker;

const TARGET: f64 = 1.25;
const WAITING: [usize; 2] = [10_000, 100_000];
/// Tasks that finish in their first poll, per measurement.
const FINISHED: usize = 100_000;
/// Finished tasks spawned before their handles are awaited.
const BATCH: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tasks {
    Waiting(usize),
    Finished,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Case {
    tasks: Tasks,
    placement: Placement,
    contender: Contender,
}

impl Tasks {
    const ALL: [Tasks; 3] = [
        Tasks::Waiting(WAITING[0]),
        Tasks::Waiting(WAITING[1]),
        Tasks::Finished,
    ];

    fn n(self) -> usize {
        match self {
            Tasks::Waiting(n) => n,
            Tasks::Finished => FINISHED,
        }
    }
}

fn cases() -> Vec<Case> {
    Tasks::ALL
        .into_iter()
        .flat_map(|tasks| {
            crowd::placed(&Contender::ALL).map(move |(placement, contender)| Case {
                tasks,
                placement,
                contender,
            })
        })
        .collect()
}

/// Seconds for the case's n tasks.
async fn measure(case: Case) -> f64 {
    let elapsed = match case.tasks {
        Tasks::Waiting(n) => {
            let mut crowd = Crowd::prepare(case.contender, n);
            crowd.spawn::<0>(case.placement).await;
            let elapsed = crowd.all_polled().await;
            crowd.stop().await;
            elapsed
        }
        Tasks::Finished => spawn_and_join(case.contender, case.placement).await,
    };
    elapsed.as_secs_f64()
}

/// Spawns [`FINISHED`] tasks that return at once, in batches, and awaits them.
async fn spawn_and_join(contender: Contender, placement: Placement) -> Duration {
    match contender {
        Contender::Raw => {
            on(
                placement,
                batches(|n| tokio::spawn(async move { n }), |h| h),
            )
            .await
        }
        Contender::Tracker => {
            let tracker = TaskTracker::new();
            on(
                placement,
                batches(move |n| tracker.spawn(async move { n }), |h| h),
            )
            .await
        }
        Contender::Global => {
            let spawn = |n| lifecycle_runtime::spawn("finished", async move { n });
            on(placement, batches(spawn, |h| h)).await
        }
        Contender::Scoped => {
            let coordinator = Coordinator::builder().scan_os_threads(false).build();
            let spawner = coordinator.clone();
            let spawn = move |n| spawner.spawn("finished", async move { n });
            let elapsed = on(placement, batches(spawn, |h| h)).await;
            assert!(coordinator.shutdown().await.is_clean());
            elapsed
        }
        Contender::Graceful => {
            assert_eq!(placement, Placement::Worker);
            let (sender, elapsed) = tokio::sync::oneshot::channel();
            let toplevel = Toplevel::new(async move |s: &mut SubsystemHandle| {
                let start = |_| s.start(SubsystemBuilder::new("finished", finished_subsystem));
                let join = async |h: NestedSubsystem| h.join().await;
                let _ = sender.send(batches(start, join).await);
            });
            toplevel
                .handle_shutdown_requests(Duration::from_secs(60))
                .await
                .expect("the subsystems end cleanly");
            elapsed.await.expect("the toplevel subsystem ran")
        }
    }
}

async fn finished_subsystem(_: &mut SubsystemHandle) -> Result<(), Infallible> {
    Ok(())
}

/// Spawns [`FINISHED`] tasks in batches of [`BATCH`] with `spawn`, awaiting each batch's handles
/// through `join`; returns the time taken.
async fn batches<H, J, T, E>(
    mut spawn: impl FnMut(usize) -> H,
    mut join: impl FnMut(H) -> J,
) -> Duration
where
    J: Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    let start = Instant::now();
    let mut handles = Vec::with_capacity(BATCH);
    for batch in 0..FINISHED / BATCH {
        handles.extend((0..BATCH).map(|i| spawn(batch * BATCH + i)));
        for handle in handles.drain(..) {
            join(handle).await.expect("the task finished");
        }
    }
    start.elapsed()
}

fn main() {
    let rounds = print::announce(
        "spawn",
        "Spawn: waiting tasks (spawn until every task was polled once) and finished tasks \
         (spawn + join), on 2 workers",
        rounds::DEFAULT_ROUNDS,
    );
    let runtime = common::runtime::two_worker_runtime();
    let samples = rounds::run(cases(), rounds, |case| runtime.block_on(measure(case)));

    let mut verdicts = Vec::new();
    for tasks in Tasks::ALL {
        for placement in Placement::BOTH {
            let title = match tasks {
                Tasks::Waiting(n) => format!(
                    "{} waiting tasks, spawned {} (first spawn → all polled once)",
                    print::count(n),
                    placement.label()
                ),
                Tasks::Finished => format!(
                    "{} finished tasks, spawned {} (spawn + join, batches of {})",
                    print::count(FINISHED),
                    placement.label(),
                    print::count(BATCH)
                ),
            };
            verdicts.extend(table(&samples, tasks, placement, title));
        }
    }
    for (what, spread) in verdicts {
        print::target(
            format!("≤ {TARGET:.2}× raw tokio::spawn, {what}"),
            spread.median <= TARGET,
            print::ratio(spread),
        );
    }
    let tasks_per_round = samples.cases().iter().map(|case| case.tasks.n()).sum();
    print::heap_check(&samples, tasks_per_round);
}

/// Prints the table of one kind of task and placement; returns lifecycle's ratios to raw.
fn table(
    samples: &Samples<Case>,
    tasks: Tasks,
    placement: Placement,
    title: String,
) -> Vec<(String, rounds::Spread)> {
    let case = |contender| Case {
        tasks,
        placement,
        contender,
    };
    let mut table = Table::new(title, &["spawned with", "per task", "vs. raw"]);
    let mut verdicts = Vec::new();
    for contender in Contender::ALL.into_iter().filter(|&c| samples.ran(case(c))) {
        let ratio = samples.ratio(case(contender), case(Contender::Raw));
        let per_task = samples.median(case(contender)) * 1e9 / tasks.n() as f64;
        let label = match tasks {
            Tasks::Waiting(_) => contender.label(),
            Tasks::Finished => contender.spawner().to_owned(),
        };
        table.row(vec![
            label.clone(),
            print::ns(per_task),
            print::ratio(ratio),
        ]);
        if matches!(contender, Contender::Global | Contender::Scoped) {
            let what = match tasks {
                Tasks::Waiting(n) => format!("{} waiting", print::count(n)),
                Tasks::Finished => "finished".to_owned(),
            };
            verdicts.push((format!("{label}, {what}, {}", placement.label()), ratio));
        }
    }
    table.print();
    verdicts
}
