//! Shutdown of n waiting tasks (10,000 and 100,000) on a 2-worker multi-thread runtime, tasks
//! spawned from a runtime worker and from the `block_on` thread. The clock starts once every task
//! was polled once (each counts itself) and runs from the trigger until the contender says its
//! tasks are done:
//!
//! - lifecycle: `Coordinator::shutdown()` on a fresh scoped coordinator, until its report (checked
//!   clean, folding the n tasks into one entry);
//! - `CancellationToken` + `TaskTracker`: `cancel()`, `close()`, `wait()`, the baseline;
//! - raw `tokio::spawn` + `Notify`: `notify_waiters()`, then every `JoinHandle` awaited;
//! - tokio-graceful-shutdown: the shutdown token cancelled, until its toplevel returns.
//!
//! Targets: lifecycle ≤ 1.30× the baseline, and its growth from 10k to 100k tasks ≤ 1.05× the
//! baseline's growth in the same rounds.
//!
//! `ROUNDS=15 cargo bench -p lifecycle-runtime --bench shutdown`

mod common;

use std::time::Duration;

use common::crowd::{self, Contender, Crowd, Placement};
use common::print::{self, Table};
use common::rounds::{self, Spread};

const RATIO_TARGET: f64 = 1.30;
const GROWTH_TARGET: f64 = 1.05;
const SMALL: usize = 10_000;
const LARGE: usize = 100_000;
/// After the last first poll, time for the last tasks to finish that poll (lifecycle registers a
/// task when its first poll returns). The count, not this, says when every task has started.
const SETTLE: Duration = Duration::from_millis(2);

const CONTENDERS: [Contender; 4] = [
    Contender::Tracker,
    Contender::Raw,
    Contender::Graceful,
    Contender::Scoped,
];
const BASELINE: Contender = Contender::Tracker;
const LIFECYCLE: Contender = Contender::Scoped;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Case {
    n: usize,
    placement: Placement,
    contender: Contender,
}

fn cases() -> Vec<Case> {
    [SMALL, LARGE]
        .into_iter()
        .flat_map(|n| {
            crowd::placed(&CONTENDERS).map(move |(placement, contender)| Case {
                n,
                placement,
                contender,
            })
        })
        .collect()
}

/// Seconds from the trigger until the tasks are done.
async fn measure(case: Case) -> f64 {
    let mut crowd = Crowd::prepare(case.contender, case.n);
    crowd.spawn::<0>(case.placement).await;
    crowd.all_polled().await;
    tokio::time::sleep(SETTLE).await;
    crowd.stop().await.as_secs_f64()
}

fn main() {
    let rounds = print::announce(
        "shutdown",
        "Shutdown of n waiting tasks, trigger → done (lifecycle: → report), on 2 workers",
        rounds::DEFAULT_ROUNDS,
    );
    let runtime = common::runtime::two_worker_runtime();
    let samples = rounds::run(cases(), rounds, |case| runtime.block_on(measure(case)));

    let mut verdicts = Vec::new();
    for placement in Placement::BOTH {
        let mut table = Table::new(
            format!("Shutdown of n waiting tasks spawned {}", placement.label()),
            &[
                "contender",
                "10,000",
                "100,000",
                "vs. baseline at 10k",
                "vs. baseline at 100k",
                "growth 10k → 100k",
            ],
        );
        let case = |n, contender| Case {
            n,
            placement,
            contender,
        };
        // Per round: time at 100k / time at 10k.
        let growth = |contender| {
            let (small, large) = (case(SMALL, contender), case(LARGE, contender));
            rounds::paired(samples.of(large), samples.of(small), |a, b| a / b)
        };
        let running = CONTENDERS
            .into_iter()
            .filter(|&c| samples.ran(case(SMALL, c)));
        for contender in running {
            let (small, large) = (case(SMALL, contender), case(LARGE, contender));
            table.row(vec![
                label(contender),
                print::ms(samples.median(small)),
                print::ms(samples.median(large)),
                print::ratio(samples.ratio(small, case(SMALL, BASELINE))),
                print::ratio(samples.ratio(large, case(LARGE, BASELINE))),
                format!("{:.2}×", Spread::of(growth(contender)).median),
            ]);
        }
        table.print();
        for n in [SMALL, LARGE] {
            verdicts.push((
                format!(
                    "≤ {RATIO_TARGET:.2}× the baseline at {}, spawned {}",
                    print::count(n),
                    placement.label()
                ),
                samples.ratio(case(n, LIFECYCLE), case(n, BASELINE)),
                RATIO_TARGET,
            ));
        }
        let (lifecycle, base) = (growth(LIFECYCLE), growth(BASELINE));
        let relative = Spread::of(rounds::paired(&lifecycle, &base, |a, b| a / b));
        verdicts.push((
            format!(
                "growth 10k → 100k ≤ {GROWTH_TARGET:.2}× the baseline's, spawned {} (lifecycle \
                 {:.2}×, baseline {:.2}×; their ratio per round)",
                placement.label(),
                Spread::of(lifecycle).median,
                Spread::of(base).median,
            ),
            relative,
            GROWTH_TARGET,
        ));
    }
    for (what, spread, limit) in verdicts {
        print::target(what, spread.median <= limit, print::ratio(spread));
    }
    let tasks_per_round = samples.cases().iter().map(|case| case.n).sum();
    print::heap_check(&samples, tasks_per_round);
}

fn label(contender: Contender) -> String {
    let role = match contender {
        BASELINE => " (baseline)",
        Contender::Scoped => ": shutdown() → report",
        _ => "",
    };
    format!("{}{role}", contender.label())
}
