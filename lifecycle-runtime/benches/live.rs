//! What seeing a service live costs at 10k tasks: `snapshot()`, its JSON (what `/health/tasks`
//! and a status page read), and one pass of the metrics collector, against a baseline in the
//! same run: copying the same 10k (name, age) pairs out of a hand-kept registry (a mutex over a
//! map, what a program tracking its tasks by hand would read).
//!
//! Two crowds of 10k waiting tasks: 16 names (loops and workers), and a name per task (the
//! worst case: tasks named per request; the collector folds names past its 256 into `other`).
//! A recorder is installed (metrics-util's debugging recorder: a registry as exporters keep),
//! so the collector's gauges are real registrations, not the facade's no-op.
//!
//! With feature `sqlite` too, a third crowd: the 16 names plus an SQLite pool with
//! [`HELD`] connections checked out by tasks (the snapshot lists each with its holder, and
//! whether that holder has ended: one walk of the registry for all of them).
//!
//! `ROUNDS=15 cargo bench -p lifecycle-runtime --features metrics,sqlite --bench live`

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::print::{self, Table};
use common::rounds;
use lifecycle_runtime::Coordinator;
use lifecycle_runtime::metrics::Collector;
use metrics_util::debugging::DebuggingRecorder;

const TASKS: usize = 10_000;
/// Each case runs this many times a round; a round's value is the mean.
const REPS: u32 = 20;
const TASKS_PER_NAME_FEW: usize = TASKS / 16;
/// Connections held by tasks in the crowd with a pool.
#[cfg(feature = "sqlite")]
const HELD: u32 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Names {
    Few,
    PerTask,
}

impl Names {
    fn label(self) -> &'static str {
        match self {
            Names::Few => "16 names",
            Names::PerTask => "a name per task",
        }
    }

    fn name(self, index: usize) -> String {
        match self {
            Names::Few => format!("worker-{}", index / TASKS_PER_NAME_FEW),
            Names::PerTask => format!("http GET /items/{index}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    /// The baseline: 10k (name, age) pairs copied out of a `Mutex<HashMap>`.
    HandKept,
    Snapshot,
    Json,
    /// One collector pass over a snapshot already taken.
    CollectorPass,
    /// What the collector does each period: a snapshot and a pass.
    CollectorPeriod,
}

impl Case {
    const ALL: [Case; 5] = [
        Case::HandKept,
        Case::Snapshot,
        Case::Json,
        Case::CollectorPass,
        Case::CollectorPeriod,
    ];

    fn label(self) -> &'static str {
        match self {
            Case::HandKept => "baseline: copy 10k (name, age) from a Mutex<HashMap>",
            Case::Snapshot => "snapshot()",
            Case::Json => "serde_json::to_string(&snapshot)",
            Case::CollectorPass => "collector: one pass over a snapshot",
            Case::CollectorPeriod => "collector: snapshot() + one pass",
        }
    }
}

/// 10k tasks waiting for shutdown under `coordinator`, and the same names in a hand-kept map.
fn crowd(
    runtime: &tokio::runtime::Runtime,
    coordinator: &Coordinator,
    names: Names,
) -> Mutex<HashMap<u64, (Arc<str>, Instant)>> {
    runtime.block_on(coordinator.scope(async {
        for index in 0..TASKS {
            let shutdown = lifecycle_runtime::shutdown_signal();
            // Detached: the tasks run until the coordinator's shutdown.
            drop(lifecycle_runtime::spawn(names.name(index), async move {
                shutdown.triggered().await;
            }));
        }
        let started = Instant::now();
        while lifecycle_runtime::snapshot().tasks.len() < TASKS {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "tasks never all waited"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }));
    let now = Instant::now();
    Mutex::new(
        (0..TASKS)
            .map(|index| (index as u64, (Arc::from(names.name(index)), now)))
            .collect(),
    )
}

/// An SQLite pool under `coordinator` with [`HELD`] connections checked out, each by a task of
/// its own that keeps it until shutdown.
#[cfg(feature = "sqlite")]
fn hold_connections(runtime: &tokio::runtime::Runtime, coordinator: &Coordinator) {
    use lifecycle_runtime::db::{Database, DatabaseOptions};

    let file = std::env::temp_dir().join(format!(
        "lifecycle-bench-live-{}.sqlite",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&file);
    runtime.block_on(coordinator.scope(async {
        let db = Database::connect(DatabaseOptions::sqlite(&file, "bench").max_connections(HELD))
            .await
            .expect("an SQLite pool");
        for index in 0..HELD {
            let db = db.clone();
            let shutdown = lifecycle_runtime::shutdown_signal();
            drop(lifecycle_runtime::spawn(
                format!("holder-{index}"),
                async move {
                    let connection = db.acquire().await.expect("a connection");
                    shutdown.triggered().await;
                    drop(connection);
                },
            ));
        }
        let started = Instant::now();
        while lifecycle_runtime::snapshot().pools[0].held.len() < HELD as usize {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "never all held"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }));
}

/// Mean nanoseconds of `op` over [`REPS`] runs.
fn mean_ns(mut op: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..REPS {
        op();
    }
    started.elapsed().as_nanos() as f64 / f64::from(REPS)
}

fn main() {
    let rounds = print::announce(
        // `announce` prints `--bench {this}`: the feature the bench needs goes along.
        "live --features metrics,sqlite",
        "The live view's cost at 10k waiting tasks: snapshot, JSON, metrics collector (2 workers)",
        rounds::DEFAULT_ROUNDS,
    );
    metrics::set_global_recorder(DebuggingRecorder::new()).expect("the only recorder");
    let runtime = common::runtime::two_worker_runtime();
    let mut crowds = vec![(Names::Few, false), (Names::PerTask, false)];
    if cfg!(feature = "sqlite") {
        crowds.push((Names::Few, true));
    }
    for (names, pool) in crowds {
        let coordinator = Coordinator::builder().scan_os_threads(false).build();
        let hand_kept = crowd(&runtime, &coordinator, names);
        #[cfg(feature = "sqlite")]
        if pool {
            hold_connections(&runtime, &coordinator);
        }
        let taken = coordinator.snapshot();
        assert!(taken.tasks.len() >= TASKS);
        let bytes = serde_json::to_string(&taken).expect("JSON").len();
        let mut collector = Collector::new();
        let samples = rounds::run(Case::ALL.to_vec(), rounds, |case| match case {
            Case::HandKept => mean_ns(|| {
                let copied: Vec<(String, Duration)> = hand_kept
                    .lock()
                    .unwrap()
                    .values()
                    .map(|(name, since)| (name.to_string(), since.elapsed()))
                    .collect();
                black_box(copied);
            }),
            Case::Snapshot => mean_ns(|| {
                black_box(coordinator.snapshot());
            }),
            Case::Json => mean_ns(|| {
                black_box(serde_json::to_string(&taken).expect("JSON"));
            }),
            Case::CollectorPass => mean_ns(|| collector.collect(&taken)),
            Case::CollectorPeriod => mean_ns(|| collector.collect(&coordinator.snapshot())),
        });
        let mut table = Table::new(
            format!(
                "10k tasks, {}{} (JSON: {} bytes, {:.0} per task)",
                names.label(),
                if pool {
                    ", a pool with its connections held by tasks"
                } else {
                    ""
                },
                bytes,
                bytes as f64 / TASKS as f64
            ),
            &["case", "time", "per task", "vs baseline"],
        );
        for case in Case::ALL {
            let median = samples.median(case);
            let ratio = if case == Case::HandKept {
                "1".to_owned()
            } else {
                print::ratio(samples.ratio(case, Case::HandKept))
            };
            table.row(vec![
                case.label().to_owned(),
                print::us(median),
                print::ns(median / TASKS as f64),
                ratio,
            ]);
        }
        table.print();
        let report = runtime.block_on(coordinator.shutdown());
        assert!(report.is_clean(), "{report}");
    }
}
