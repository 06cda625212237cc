//! Feature `metrics`: what a recorder sees. Each test installs metrics-util's debugging recorder
//! as its thread's recorder and runs a current-thread runtime on that thread, so every task of
//! the test records into it and tests running in parallel never see each other's metrics.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use common::{Watchdog, coordinator};
use lifecycle_runtime::db::{Database, DatabaseOptions, DbError};
use lifecycle_runtime::metrics::{Collector, spawn_collector};
use lifecycle_runtime::{Shutdown, TaskGroup, background, shutdown_signal, snapshot, spawn};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

const HANG: Duration = Duration::from_secs(30);
/// The outer limit of each test's body.
const BODY: Duration = Duration::from_secs(15);

/// What the recorder has seen, accumulated across its (draining) snapshots. Keys are written
/// `name{label=value,...}`, labels sorted.
#[derive(Debug, Default)]
struct Seen {
    counters: HashMap<String, u64>,
    gauges: HashMap<String, f64>,
    histograms: HashMap<String, Vec<f64>>,
}

impl Seen {
    fn read(&mut self, snapshotter: &Snapshotter) -> &mut Seen {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let mut labels: Vec<String> = key
                .key()
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            labels.sort();
            let text = if labels.is_empty() {
                key.key().name().to_owned()
            } else {
                format!("{}{{{}}}", key.key().name(), labels.join(","))
            };
            match value {
                DebugValue::Counter(count) => *self.counters.entry(text).or_default() += count,
                DebugValue::Gauge(value) => {
                    self.gauges.insert(text, value.into_inner());
                }
                DebugValue::Histogram(values) => self
                    .histograms
                    .entry(text)
                    .or_default()
                    .extend(values.into_iter().map(|value| value.into_inner())),
            }
        }
        self
    }

    fn counter(&self, key: &str) -> u64 {
        self.counters.get(key).copied().unwrap_or(0)
    }

    fn gauge(&self, key: &str) -> f64 {
        *self
            .gauges
            .get(key)
            .unwrap_or_else(|| panic!("no gauge `{key}`; gauges: {:#?}", self.gauges))
    }

    fn histogram(&self, key: &str) -> &[f64] {
        self.histograms.get(key).map_or(&[], Vec::as_slice)
    }
}

/// Runs `body` in a coordinator of its own on a current-thread runtime of this thread, with a
/// fresh debugging recorder as the thread's recorder; returns what it recorded.
fn recorded<F: Future<Output = ()>>(
    test: &'static str,
    body: impl FnOnce(Snapshotter) -> F,
) -> Seen {
    let _watchdog = Watchdog::new(test, HANG);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(BODY, coordinator().scope(body(snapshotter.clone())))
            .await
            .unwrap_or_else(|_| panic!("`{test}` did not finish within {BODY:?}"));
    });
    let mut seen = Seen::default();
    seen.read(&snapshotter);
    seen
}

#[background(interval = "10ms", shutdown, name = "metrics-failing")]
async fn failing() -> Result<(), String> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    Err("the upstream said no".to_owned())
}

#[background(interval = "10ms", shutdown, name = "metrics-panicking")]
async fn panicking() {
    panic!("a bug in the loop");
}

#[test]
fn a_failing_loop_counts_its_failures_and_its_ticks_with_their_durations() {
    let seen = recorded("failing_loop", |_| async {
        failing();
        tokio::time::sleep(Duration::from_millis(65)).await;
        lifecycle_runtime::shutdown().await;
    });
    let failures = seen.counter("lifecycle_task_failures_total{name=metrics-failing}");
    let ticks = seen.counter("lifecycle_ticks_total{name=metrics-failing}");
    assert!(failures >= 3, "{seen:#?}");
    assert_eq!(ticks, failures, "every tick failed: {seen:#?}");
    let durations = seen.histogram("lifecycle_tick_duration_seconds{name=metrics-failing}");
    assert_eq!(durations.len() as u64, ticks, "{seen:#?}");
    assert!(
        durations.iter().all(|&took| (0.002..1.0).contains(&took)),
        "each tick sleeps 2ms: {durations:?}"
    );
    assert_eq!(
        seen.counter("lifecycle_task_panics_total{name=metrics-failing}"),
        0
    );
}

#[test]
fn a_panicking_loop_counts_its_panics_apart_from_failures() {
    let seen = recorded("panicking_loop", |_| async {
        panicking();
        // The first tick is immediate, the second 10ms later.
        tokio::time::sleep(Duration::from_millis(15)).await;
        lifecycle_runtime::shutdown().await;
    });
    let panics = seen.counter("lifecycle_task_panics_total{name=metrics-panicking}");
    assert!(panics >= 1, "{seen:#?}");
    assert_eq!(
        seen.counter("lifecycle_ticks_total{name=metrics-panicking}"),
        panics
    );
    assert_eq!(
        seen.counter("lifecycle_task_failures_total{name=metrics-panicking}"),
        0
    );
}

#[background(interval = "10ms", shutdown, name = "metrics-slow")]
async fn slow() {
    tokio::time::sleep(Duration::from_millis(35)).await;
}

#[test]
fn a_loop_slower_than_its_period_counts_missed_ticks() {
    let seen = recorded("missed_ticks", |_| async {
        slow();
        // Ticks start at 0, 35 (due at 10: 2 periods late) and 70 (due at 40: 3 periods late).
        tokio::time::sleep(Duration::from_millis(90)).await;
        lifecycle_runtime::shutdown().await;
    });
    let missed = seen.counter("lifecycle_missed_ticks_total{name=metrics-slow}");
    assert!(missed >= 2, "{seen:#?}");
    let on_time = seen.counter("lifecycle_missed_ticks_total{name=metrics-failing}");
    assert_eq!(on_time, 0);
}

#[background(interval = "10ms", shutdown, timeout = "5ms", name = "metrics-hanging")]
async fn hanging() {
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[test]
fn a_tick_cut_off_at_its_timeout_counts_as_timed_out_not_failed() {
    let seen = recorded("timed_out_tick", |_| async {
        hanging();
        // Ticks start at 0, 10 and 20 ms, each cut off 5 ms later.
        tokio::time::sleep(Duration::from_millis(28)).await;
        lifecycle_runtime::shutdown().await;
    });
    let timed_out = seen.counter("lifecycle_task_timeouts_total{name=metrics-hanging}");
    assert!(timed_out >= 2, "{seen:#?}");
    assert_eq!(
        seen.counter("lifecycle_ticks_total{name=metrics-hanging}"),
        timed_out,
        "every tick was cut off: {seen:#?}"
    );
    assert_eq!(
        seen.counter("lifecycle_task_failures_total{name=metrics-hanging}"),
        0,
        "a timeout is counted apart from failures"
    );
}

/// A resource with nothing to release.
struct Cache;
impl lifecycle_runtime::NoCleanup for Cache {}

#[test]
fn the_collector_sets_task_group_resource_and_readiness_gauges_and_zeroes_what_is_gone() {
    let seen = recorded("collector_gauges", |snapshotter| async move {
        let group = TaskGroup::new("metrics-writers").max_concurrent(1);
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let holder = group.spawn("metrics-writer", async move {
            let _ = released.await;
        });
        let waiter = group.spawn("metrics-writer", async {});
        let idlers: Vec<_> = (0..3)
            .map(|_| {
                spawn("metrics-idle", async {
                    shutdown_signal().triggered().await
                })
            })
            .collect();
        let _cache = lifecycle_runtime::manage(Cache);
        tokio::time::sleep(Duration::from_millis(10)).await;

        let mut collector = Collector::new();
        collector.collect(&snapshot());
        let mut first = Seen::default();
        first.read(&snapshotter);
        assert_eq!(
            first.gauge("lifecycle_tasks{name=metrics-idle,state=running}"),
            3.0
        );
        // The holder runs; the waiter waits for the permit (a task from its spawn).
        assert_eq!(
            first.gauge("lifecycle_tasks{name=metrics-writer,state=running}"),
            2.0
        );
        assert_eq!(
            first.gauge("lifecycle_group_permits_in_use{group=metrics-writers}"),
            1.0
        );
        assert_eq!(
            first.gauge("lifecycle_group_permits_waiting{group=metrics-writers}"),
            1.0
        );
        assert_eq!(
            first.gauge("lifecycle_group_permits_max{group=metrics-writers}"),
            1.0
        );
        assert_eq!(first.gauge("lifecycle_readiness{phase=starting}"), 1.0);
        assert_eq!(first.gauge("lifecycle_readiness{phase=ready}"), 0.0);
        assert_eq!(first.gauge("lifecycle_resources_open"), 1.0);
        assert_eq!(first.counter("lifecycle_tasks_spawned_total"), 5);

        lifecycle_runtime::mark_ready();
        release.send(()).unwrap();
        holder.await.unwrap();
        waiter.await.unwrap();
        for idler in idlers {
            idler.abort();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        collector.collect(&snapshot());
    });
    // The second pass: the writers and the idlers are gone (zeroed), the program is ready.
    assert_eq!(
        seen.gauge("lifecycle_tasks{name=metrics-idle,state=running}"),
        0.0
    );
    assert_eq!(
        seen.gauge("lifecycle_tasks{name=metrics-writer,state=running}"),
        0.0
    );
    assert_eq!(
        seen.gauge("lifecycle_group_permits_in_use{group=metrics-writers}"),
        0.0
    );
    assert_eq!(
        seen.gauge("lifecycle_group_permits_waiting{group=metrics-writers}"),
        0.0
    );
    assert_eq!(seen.gauge("lifecycle_readiness{phase=ready}"), 1.0);
    assert_eq!(seen.gauge("lifecycle_readiness{phase=starting}"), 0.0);
    assert_eq!(seen.counter("lifecycle_tasks_cancelled_total"), 3);
}

fn sqlite_file(test: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "lifecycle-metrics-{test}-{}.sqlite",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn a_pool_records_acquire_and_usage_times_timeouts_leaks_and_its_connections() {
    let file = sqlite_file("pool");
    let seen = recorded("pool", |snapshotter| {
        let file = file.clone();
        async move {
            let db = Database::connect(
                DatabaseOptions::sqlite(&file, "metrics-orders")
                    .max_connections(1)
                    .acquire_timeout(Duration::from_millis(100))
                    .leak_threshold(Duration::from_millis(100)),
            )
            .await
            .unwrap();
            let held = db.acquire().await.unwrap();
            let waiter = spawn("metrics-acquirer", {
                let db = db.clone();
                async move { db.acquire().await.map(drop) }
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut collector = Collector::new();
            collector.collect(&snapshot());
            let mut during = Seen::default();
            during.read(&snapshotter);
            assert_eq!(
                during.gauge("lifecycle_pool_connections_active{pool=metrics-orders}"),
                1.0
            );
            assert_eq!(
                during.gauge("lifecycle_pool_connections_idle{pool=metrics-orders}"),
                0.0
            );
            assert_eq!(
                during.gauge("lifecycle_pool_connections{pool=metrics-orders}"),
                1.0
            );
            assert_eq!(
                during.gauge("lifecycle_pool_connections_max{pool=metrics-orders}"),
                1.0
            );
            assert_eq!(
                during.gauge("lifecycle_pool_pending_acquires{pool=metrics-orders}"),
                1.0
            );
            let first = during.histogram("lifecycle_pool_acquire_seconds{pool=metrics-orders}");
            assert_eq!(first.len(), 1, "the first acquire: {during:#?}");
            assert!(first[0] < 0.1, "a free connection comes at once: {first:?}");

            let timed_out = waiter.await.unwrap();
            assert!(
                matches!(timed_out, Err(DbError::AcquireTimedOut { .. })),
                "{timed_out:?}"
            );
            // Held past the leak threshold: the checker (every 50ms) logs it once.
            tokio::time::sleep(Duration::from_millis(120)).await;
            drop(held);
            // sqlx gives the connection back to its idle list in a task of its own.
            tokio::time::sleep(Duration::from_millis(20)).await;
            collector.collect(&snapshot());
        }
    });
    // Read since the first pass: the acquire that timed out.
    let waits = seen.histogram("lifecycle_pool_acquire_seconds{pool=metrics-orders}");
    assert_eq!(waits.len(), 1, "{seen:#?}");
    assert!(
        waits[0] >= 0.1,
        "the timed-out acquire waited 100ms: {waits:?}"
    );
    assert_eq!(
        seen.gauge("lifecycle_pool_pending_acquires{pool=metrics-orders}"),
        0.0
    );
    assert_eq!(
        seen.counter("lifecycle_pool_acquire_timeouts_total{pool=metrics-orders}"),
        1
    );
    assert_eq!(
        seen.counter("lifecycle_pool_suspected_leaks_total{pool=metrics-orders}"),
        1
    );
    let usage = seen.histogram("lifecycle_pool_usage_seconds{pool=metrics-orders}");
    assert_eq!(usage.len(), 1, "{seen:#?}");
    assert!(
        usage[0] >= 0.2,
        "held through the 100ms the other acquire waited, and 120ms more: {usage:?}"
    );
    assert_eq!(
        seen.gauge("lifecycle_pool_connections_active{pool=metrics-orders}"),
        0.0
    );
    assert_eq!(
        seen.gauge("lifecycle_pool_connections_idle{pool=metrics-orders}"),
        1.0
    );
    let _ = std::fs::remove_file(&file);
}

/// A service that ignores shutdown: aborted after its stop timeout.
#[background(shutdown, stop_timeout = "50ms", name = "metrics-stubborn")]
async fn stubborn(_shutdown: Shutdown) {
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[test]
fn the_report_records_each_entry_by_kind_and_outcome_and_the_collector_its_last_pass() {
    let seen = recorded("report", |_| async {
        stubborn();
        let _cache = lifecycle_runtime::manage(Cache);
        let _polite = spawn("metrics-polite", async {
            shutdown_signal().triggered().await
        });
        let _collector = spawn_collector(Duration::from_secs(3600));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let report = lifecycle_runtime::shutdown().await;
        assert!(!report.is_clean(), "{report}");
    });
    // The polite task and the collector itself stopped; the stubborn one was aborted.
    assert_eq!(
        seen.counter("lifecycle_shutdown_entries_total{kind=task,outcome=stopped}"),
        2,
        "{seen:#?}"
    );
    assert_eq!(
        seen.counter("lifecycle_shutdown_entries_total{kind=task,outcome=aborted}"),
        1
    );
    assert_eq!(
        seen.counter("lifecycle_shutdown_entries_total{kind=resource,outcome=closed}"),
        1
    );
    let aborted =
        seen.histogram("lifecycle_shutdown_entry_duration_seconds{kind=task,outcome=aborted}");
    assert_eq!(aborted.len(), 1);
    assert!(
        aborted[0] >= 0.05,
        "waited its 50ms stop timeout: {aborted:?}"
    );
    assert_eq!(
        seen.histogram("lifecycle_shutdown_duration_seconds").len(),
        1
    );
    // The collector's pass as it was told to stop.
    assert_eq!(
        seen.gauge("lifecycle_readiness{phase=stopping}"),
        1.0,
        "{seen:#?}"
    );
}
