//! `#[background]`: every key's behaviour, on virtual time where timing is the subject.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{coordinator, entry, settle, within};
use lifecycle_runtime::{Outcome, Shutdown, ShutdownReason, TaskGroup, TaskState, background};

type Log = Arc<Mutex<Vec<String>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn push(log: &Log, line: impl Into<String>) {
    log.lock().unwrap().push(line.into());
}

fn lines(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

const LIMIT: Duration = Duration::from_secs(3600);

// ----- interval ---------------------------------------------------------------------------------

#[background(interval = "1s", shutdown)]
async fn count_ticks(count: Arc<AtomicU32>) {
    count.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test(start_paused = true)]
async fn interval_ticks_at_once_then_every_period_and_stops_at_shutdown() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let count = Arc::new(AtomicU32::new(0));
        let _task = count_ticks(count.clone());
        settle().await;
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "the first tick is immediate"
        );
        tokio::time::sleep(Duration::from_millis(10_500)).await;
        assert_eq!(
            count.load(Ordering::SeqCst),
            11,
            "ticks at 0s, 1s, ..., 10s"
        );
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
        assert_eq!(entry(&report, "count_ticks").outcome(), &Outcome::Stopped);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(count.load(Ordering::SeqCst), 11, "no tick after shutdown");
    })
    .await;
}

// ----- shutdown modes ---------------------------------------------------------------------------

#[background(interval = "1s", shutdown)]
async fn slow_finish(log: Log) {
    push(&log, "start");
    tokio::time::sleep(Duration::from_millis(500)).await;
    push(&log, "end");
}

#[tokio::test(start_paused = true)]
async fn shutdown_finish_lets_the_running_tick_end_and_starts_no_new_one() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log = log();
        let _task = slow_finish(log.clone());
        settle().await;
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(lines(&log), ["start", "end"]);
        assert!(report.is_clean(), "{report}");
        let took = entry(&report, "slow_finish").elapsed();
        assert_eq!(
            took,
            Duration::from_millis(500),
            "waited for the tick to finish"
        );
    })
    .await;
}

#[background(interval = "1s", shutdown = "abort")]
async fn slow_abort(log: Log) {
    push(&log, "start");
    tokio::time::sleep(Duration::from_millis(500)).await;
    push(&log, "end");
}

#[tokio::test(start_paused = true)]
async fn shutdown_abort_cancels_the_running_tick_at_its_next_await() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log = log();
        let _task = slow_abort(log.clone());
        settle().await;
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(lines(&log), ["start"], "the tick was cancelled mid-way");
        assert!(
            report.is_clean(),
            "aborting is the asked behaviour: {report}"
        );
        assert_eq!(entry(&report, "slow_abort").elapsed(), Duration::ZERO);
    })
    .await;
}

#[background(interval = "1s", shutdown = "final_tick")]
async fn flush_with_final(log: Log, shutdown: Shutdown) {
    push(
        &log,
        if shutdown.is_triggered() {
            "final"
        } else {
            "tick"
        },
    );
}

#[tokio::test(start_paused = true)]
async fn final_tick_runs_one_last_tick_after_shutdown() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log = log();
        let _task = flush_with_final(log.clone());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(lines(&log), ["tick", "tick", "final"]);
        assert!(report.is_clean(), "{report}");
    })
    .await;
}

#[background(interval = "1s", shutdown = "final_tick")]
async fn slow_final(log: Log, shutdown: Shutdown) {
    let kind = if shutdown.is_triggered() {
        "final"
    } else {
        "tick"
    };
    push(&log, format!("{kind} start"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    push(&log, format!("{kind} end"));
}

#[tokio::test(start_paused = true)]
async fn final_tick_follows_a_tick_that_was_running() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let log = log();
        let _task = slow_final(log.clone());
        settle().await;
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(
            lines(&log),
            ["tick start", "tick end", "final start", "final end"]
        );
        assert_eq!(
            entry(&report, "slow_final").elapsed(),
            Duration::from_millis(600)
        );
    })
    .await;
}

// ----- stop_timeout -----------------------------------------------------------------------------

#[background(interval = "1s", shutdown, stop_timeout = "3s")]
async fn ignores_shutdown() {
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[tokio::test(start_paused = true)]
async fn a_tick_that_ignores_shutdown_is_aborted_after_stop_timeout_and_named() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let task = ignores_shutdown();
        settle().await;
        let started = tokio::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(started.elapsed());
        let stuck = entry(&report, "ignores_shutdown");
        assert_eq!(stuck.outcome(), &Outcome::Aborted, "{report}");
        assert_eq!(stuck.elapsed(), Duration::from_secs(3));
        assert!(
            stuck.detail().unwrap().contains("stop timeout of 3s"),
            "{report}"
        );
        assert!(!report.is_clean());
        assert!(
            report
                .to_string()
                .contains("ABORTED   task ignores_shutdown"),
            "{report}"
        );
        assert!(task.await.is_err(), "the handle sees the cancellation");
    })
    .await;
}

#[background(interval = "1s", shutdown)]
async fn ignores_shutdown_default() {
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[tokio::test(start_paused = true)]
async fn stop_timeout_defaults_to_two_seconds() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let _task = ignores_shutdown_default();
        settle().await;
        let report = lifecycle_runtime::shutdown().await;
        let stuck = entry(&report, "ignores_shutdown_default");
        assert_eq!(stuck.outcome(), &Outcome::Aborted);
        assert_eq!(stuck.elapsed(), Duration::from_secs(2));
    })
    .await;
}

// ----- timeout ----------------------------------------------------------------------------------

#[background(interval = "1s", shutdown, timeout = "300ms")]
async fn first_tick_hangs(ticks: Arc<AtomicU32>, finished: Arc<AtomicU32>) {
    let n = ticks.fetch_add(1, Ordering::SeqCst);
    if n == 0 {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    finished.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test(start_paused = true)]
async fn an_over_long_tick_is_cancelled_counted_and_the_loop_goes_on() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let ticks = Arc::new(AtomicU32::new(0));
        let finished = Arc::new(AtomicU32::new(0));
        let _task = first_tick_hangs(ticks.clone(), finished.clone());
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 3, "ticks at 0s, 1s, 2s");
        assert_eq!(
            finished.load(Ordering::SeqCst),
            2,
            "the first tick never finished"
        );
        let snapshot = lifecycle_runtime::snapshot();
        assert_eq!(snapshot.counters.timed_out, 1);
        assert_eq!(snapshot.tasks.len(), 1, "the loop is still alive");
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
    })
    .await;
}

// ----- name -------------------------------------------------------------------------------------

#[background(interval = "1s", shutdown, name = "auto-flush")]
async fn named_loop() {}

#[tokio::test(start_paused = true)]
async fn name_is_used_in_snapshots_reports_and_handles() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let task = named_loop();
        assert_eq!(task.name(), "auto-flush");
        settle().await;
        let snapshot = lifecycle_runtime::snapshot();
        assert_eq!(snapshot.tasks[0].name, "auto-flush");
        assert_eq!(snapshot.tasks[0].ticks, 1);
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(report.entries()[0].name(), "auto-flush");
        assert!(report.entry("named_loop").is_none());
    })
    .await;
}

// ----- group ------------------------------------------------------------------------------------

struct Concurrency {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Concurrency {
    fn new() -> Arc<Concurrency> {
        Arc::new(Concurrency {
            now: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    async fn hold(&self, duration: Duration) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(duration).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[background(interval = "1s", shutdown, group = "db")]
async fn db_user_a(seen: Arc<Concurrency>) {
    seen.hold(Duration::from_millis(600)).await;
}

#[background(interval = "1s", shutdown, group = "db")]
async fn db_user_b(seen: Arc<Concurrency>) {
    seen.hold(Duration::from_millis(600)).await;
}

#[background(interval = "1s", shutdown)]
async fn ungrouped_a(seen: Arc<Concurrency>) {
    seen.hold(Duration::from_millis(600)).await;
}

#[background(interval = "1s", shutdown)]
async fn ungrouped_b(seen: Arc<Concurrency>) {
    seen.hold(Duration::from_millis(600)).await;
}

#[tokio::test(start_paused = true)]
async fn each_tick_holds_a_permit_of_its_group() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let _db = TaskGroup::new("db").max_concurrent(1);
        let seen = Concurrency::new();
        let _a = db_user_a(seen.clone());
        let _b = db_user_b(seen.clone());
        settle().await;
        let group = lifecycle_runtime::snapshot()
            .groups
            .into_iter()
            .find(|g| g.name == "db")
            .unwrap();
        assert_eq!(
            (group.in_use, group.waiting, group.max_concurrent),
            (1, 1, Some(1))
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(
            seen.peak.load(Ordering::SeqCst),
            1,
            "never two ticks of group `db` at once"
        );
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
    })
    .await;

    // The same loops without a group do overlap: the cap above is the group's doing.
    let coordinator = common::coordinator();
    within(&coordinator, LIMIT, async {
        let seen = Concurrency::new();
        let _a = ungrouped_a(seen.clone());
        let _b = ungrouped_b(seen.clone());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(seen.peak.load(Ordering::SeqCst), 2);
        lifecycle_runtime::shutdown().await;
    })
    .await;
}

// ----- errors, panics, critical -----------------------------------------------------------------

#[background(interval = "1s", shutdown)]
async fn panics_first(ticks: Arc<AtomicU32>) {
    if ticks.fetch_add(1, Ordering::SeqCst) == 0 {
        panic!("first tick fails");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_tick_is_counted_and_the_loop_goes_on() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let ticks = Arc::new(AtomicU32::new(0));
        let _task = panics_first(ticks.clone());
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 3);
        let snapshot = lifecycle_runtime::snapshot();
        assert_eq!(snapshot.counters.panicked, 1);
        assert_eq!(snapshot.tasks.len(), 1, "still running");
        assert!(!coordinator.is_shutting_down(), "not critical: no shutdown");
        let started = tokio::time::Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(started.elapsed());
        assert!(report.is_clean(), "{report}");
    })
    .await;
}

#[background(interval = "1s", shutdown)]
async fn fails_every_tick(ticks: Arc<AtomicU32>) -> Result<(), String> {
    ticks.fetch_add(1, Ordering::SeqCst);
    Err("disk full".to_owned())
}

#[tokio::test(start_paused = true)]
async fn a_failing_tick_is_counted_and_the_loop_goes_on() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let ticks = Arc::new(AtomicU32::new(0));
        let _task = fails_every_tick(ticks.clone());
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 4);
        assert_eq!(lifecycle_runtime::snapshot().counters.failed, 4);
        assert!(!coordinator.is_shutting_down());
        lifecycle_runtime::shutdown().await;
    })
    .await;
}

#[background(interval = "1s", shutdown, critical)]
async fn critical_fails_third(ticks: Arc<AtomicU32>) -> Result<(), String> {
    if ticks.fetch_add(1, Ordering::SeqCst) == 2 {
        return Err("lost the database".to_owned());
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_critical_failure_starts_shutdown_naming_the_task() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let ticks = Arc::new(AtomicU32::new(0));
        let started = tokio::time::Instant::now();
        let _task = critical_fails_third(ticks.clone());
        let report = coordinator.report().await;
        lifecycle_tests::record_fault_time(started.elapsed());
        assert_eq!(ticks.load(Ordering::SeqCst), 3);
        assert_eq!(
            report.reason(),
            &ShutdownReason::CriticalTaskFailed {
                task: "critical_fails_third".to_owned(),
                error: "lost the database".to_owned(),
            }
        );
        assert!(
            report.to_string().starts_with(
                "shutdown: critical task `critical_fails_third` failed: lost the database"
            ),
            "{report}"
        );
    })
    .await;
}

#[background(interval = "1s", shutdown, critical, name = "critical-hostile")]
async fn critical_fails_with_a_hostile_error() -> Result<(), common::HostileError> {
    Err(common::HostileError)
}

#[tokio::test(start_paused = true)]
async fn a_tick_error_whose_display_panics_is_still_named_and_still_critical() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let started = tokio::time::Instant::now();
        let _task = critical_fails_with_a_hostile_error();
        let report = coordinator.report().await;
        lifecycle_tests::record_fault_time(started.elapsed());
        assert_eq!(
            report.reason(),
            &ShutdownReason::CriticalTaskFailed {
                task: "critical-hostile".to_owned(),
                error: "<error display panicked: display of the error exploded>".to_owned(),
            },
            "{report}"
        );
    })
    .await;
}

#[background(interval = "1s", shutdown, critical, name = "critical-panic")]
async fn critical_panics() {
    panic!("invariant broken");
}

#[tokio::test(start_paused = true)]
async fn a_critical_panic_starts_shutdown() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let _task = critical_panics();
        let report = coordinator.report().await;
        assert!(
            matches!(report.reason(), ShutdownReason::CriticalTaskFailed { task, error } if task == "critical-panic" && error.contains("invariant broken")),
            "{report}"
        );
    })
    .await;
}

#[background(shutdown, critical, name = "critical-service")]
async fn critical_service(shutdown: Shutdown) -> Result<(), String> {
    if shutdown.sleep(Duration::from_secs(5)).await {
        return Err("upstream closed the stream".to_owned());
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_critical_service_returning_an_error_starts_shutdown() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let task = critical_service();
        let report = coordinator.report().await;
        assert!(
            matches!(report.reason(), ShutdownReason::CriticalTaskFailed { task, error } if task == "critical-service" && error == "upstream closed the stream"),
            "{report}"
        );
        let error = task.await.unwrap_err();
        assert_eq!(error.to_string(), "task `critical-service` failed: upstream closed the stream");
    })
    .await;
}

// ----- services ---------------------------------------------------------------------------------

#[background(shutdown)]
async fn server(requests: Arc<AtomicU32>, shutdown: Shutdown) {
    while shutdown.sleep(Duration::from_millis(100)).await {
        requests.fetch_add(1, Ordering::SeqCst);
    }
    // Drain: finish what is in flight.
    tokio::time::sleep(Duration::from_millis(250)).await;
    requests.fetch_add(1000, Ordering::SeqCst);
}

#[tokio::test(start_paused = true)]
async fn a_service_runs_once_and_drains_when_its_shutdown_fires() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let requests = Arc::new(AtomicU32::new(0));
        let task = server(requests.clone());
        tokio::time::sleep(Duration::from_millis(1050)).await;
        assert_eq!(requests.load(Ordering::SeqCst), 10);
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(
            requests.load(Ordering::SeqCst),
            1010,
            "drained before stopping"
        );
        assert_eq!(
            entry(&report, "server").elapsed(),
            Duration::from_millis(250)
        );
        assert!(report.is_clean(), "{report}");
        assert_eq!(task.await, Ok(()));
    })
    .await;
}

#[background(shutdown = "abort")]
async fn abortable_server(_shutdown: Shutdown, finished: Arc<AtomicBool>) {
    tokio::time::sleep(Duration::from_secs(3600)).await;
    finished.store(true, Ordering::SeqCst);
}

#[tokio::test(start_paused = true)]
async fn an_abort_mode_service_is_cancelled_at_shutdown() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let finished = Arc::new(AtomicBool::new(false));
        let _task = abortable_server(finished.clone());
        settle().await;
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
        assert!(!finished.load(Ordering::SeqCst));
        assert_eq!(entry(&report, "abortable_server").elapsed(), Duration::ZERO);
    })
    .await;
}

// ----- missed_tick ------------------------------------------------------------------------------

macro_rules! slow_first_tick {
    ($name:ident, $behaviour:literal) => {
        #[background(interval = "1s", shutdown, missed_tick = $behaviour)]
        async fn $name(ticks: Arc<AtomicU32>) {
            if ticks.fetch_add(1, Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(2500)).await;
            }
        }
    };
}

slow_first_tick!(bursty, "burst");
slow_first_tick!(skippy, "skip");
slow_first_tick!(delayed, "delay");

async fn ticks_by(start: impl FnOnce(Arc<AtomicU32>) -> lifecycle_runtime::TaskHandle) -> u32 {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let ticks = Arc::new(AtomicU32::new(0));
        let _task = start(ticks.clone());
        tokio::time::sleep(Duration::from_millis(5200)).await;
        lifecycle_runtime::shutdown().await;
        ticks.load(Ordering::SeqCst)
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn missed_tick_chooses_how_a_late_loop_catches_up() {
    // The first tick takes 2.5 periods. By 5.2s:
    // burst runs the missed ticks back to back: 0, 2.5, 2.5, 3, 4, 5;
    assert_eq!(ticks_by(bursty).await, 6);
    // skip ticks once at once, then keeps the original schedule: 0, 2.5, 3, 4, 5;
    assert_eq!(ticks_by(skippy).await, 5);
    // delay restarts the schedule from the late tick: 0, 2.5, 3.5, 4.5.
    assert_eq!(ticks_by(delayed).await, 4);
}

// ----- trigger during start-up ------------------------------------------------------------------

#[background(interval = "1s", shutdown)]
async fn late_loop(ticks: Arc<AtomicU32>) {
    ticks.fetch_add(1, Ordering::SeqCst);
}

#[background(interval = "1s", shutdown = "final_tick")]
async fn late_flusher(ticks: Arc<AtomicU32>) {
    ticks.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test(start_paused = true)]
async fn loops_started_after_a_trigger_do_no_work_but_a_final_flush() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        // A signal arrives while the program is still starting up (say, connecting somewhere).
        lifecycle_runtime::trigger_shutdown();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ticks = Arc::new(AtomicU32::new(0));
        let flushed = Arc::new(AtomicU32::new(0));
        let late = late_loop(ticks.clone());
        let flusher = late_flusher(flushed.clone());
        assert_eq!(late.await, Ok(()));
        assert_eq!(flusher.await, Ok(()));
        assert_eq!(
            ticks.load(Ordering::SeqCst),
            0,
            "no regular tick once shutdown began"
        );
        assert_eq!(
            flushed.load(Ordering::SeqCst),
            1,
            "a flusher still flushes once"
        );
        assert!(lifecycle_runtime::snapshot().tasks.is_empty());
        let report = coordinator.report().await;
        assert!(report.is_clean(), "{report}");
    })
    .await;
}

// ----- crate = "..." ----------------------------------------------------------------------------

mod renamed {
    // A user who renamed the dependency points the macros at it.
    pub use lifecycle_runtime as lc;
}

#[background(interval = "1s", shutdown, crate = "renamed::lc", name = "renamed")]
async fn through_renamed_crate(ticks: Arc<AtomicU32>) {
    ticks.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test(start_paused = true)]
async fn crate_key_reaches_a_renamed_runtime() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let ticks = Arc::new(AtomicU32::new(0));
        let task: renamed::lc::TaskHandle = through_renamed_crate(ticks.clone());
        settle().await;
        assert_eq!(ticks.load(Ordering::SeqCst), 1);
        assert_eq!(task.name(), "renamed");
        lifecycle_runtime::shutdown().await;
    })
    .await;
}

// ----- waking loops at shutdown -----------------------------------------------------------------

#[background(interval = "1h", shutdown, stop_timeout = "5s", name = "hourly")]
async fn hourly(ticks: Arc<AtomicU32>) {
    ticks.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn loops_waiting_for_a_distant_tick_stop_at_once_even_when_registering_during_shutdown() {
    let _watchdog =
        common::Watchdog::new("loops_waiting_for_a_distant_tick", Duration::from_secs(120));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for round in 0..20 {
        let coordinator = coordinator();
        let ticks = Arc::new(AtomicU32::new(0));
        let report = runtime.block_on(coordinator.scope(async {
            // Some loops are well asleep, others still starting when shutdown begins.
            for _ in 0..50 {
                let _loop = hourly(ticks.clone());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            let late = ticks.clone();
            let spawner = tokio::spawn(coordinator.clone().scope(async move {
                for _ in 0..50 {
                    let _loop = hourly(late.clone());
                    tokio::task::yield_now().await;
                }
            }));
            let report = lifecycle_runtime::shutdown().await;
            spawner.await.unwrap();
            report
        }));
        // Without the wake, a loop would sleep until its next hourly tick and be aborted after
        // its 5s stop timeout.
        assert!(report.is_clean(), "round {round}: {report}");
        assert!(
            report.elapsed() < Duration::from_secs(5),
            "round {round}: {report}"
        );
    }
}

// ----- supervision: restart, max_restarts -------------------------------------------------------

/// When each run of a supervised service started, on the (paused) clock from its creation.
#[derive(Clone)]
struct Runs {
    created: tokio::time::Instant,
    at: Arc<Mutex<Vec<Duration>>>,
}

impl Runs {
    fn new() -> Runs {
        Runs {
            created: tokio::time::Instant::now(),
            at: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A run starts; returns its number, from 1.
    fn start(&self) -> usize {
        let mut at = self.at.lock().unwrap();
        at.push(self.created.elapsed());
        at.len()
    }

    fn at(&self) -> Vec<Duration> {
        self.at.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.at.lock().unwrap().len()
    }
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Its first three runs fail at once; the fourth serves until shutdown.
#[background(shutdown, restart = "on_failure", name = "flaky-feed")]
async fn flaky_feed(runs: Runs, shutdown: Shutdown) -> Result<(), String> {
    let run = runs.start();
    if run <= 3 {
        return Err(format!("connection refused #{run}"));
    }
    shutdown.triggered().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_failing_service_is_restarted_after_a_backoff_that_doubles() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let runs = Runs::new();
        let _task = flaky_feed(runs.clone());
        // A plain task of the same name, which the report folds as usual.
        let _twin = lifecycle_runtime::spawn("flaky-feed", async {
            lifecycle_runtime::shutdown_signal().triggered().await;
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            runs.at(),
            [ms(0), ms(100), ms(300), ms(700)],
            "restarted after 100 ms, 200 ms, 400 ms"
        );
        let snapshot = lifecycle_runtime::snapshot();
        let feed = snapshot
            .tasks
            .iter()
            .find(|task| task.restarts > 0)
            .expect("the supervised service in the snapshot");
        assert_eq!(feed.name, "flaky-feed");
        assert_eq!(feed.restarts, 3);
        assert_eq!(feed.last_failure.as_deref(), Some("connection refused #3"));
        assert_eq!(feed.state, TaskState::Running);
        assert_eq!(snapshot.counters.failed, 3, "each failure is counted");
        let json = serde_json::to_value(&snapshot).unwrap();
        let feed = json["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|task| task["restarts"] == 3)
            .expect("restarts serialized");
        assert_eq!(feed["last_failure"], "connection refused #3");
        assert!(!coordinator.is_shutting_down(), "restarts escalate nothing");

        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
        let feeds: Vec<&lifecycle_runtime::Entry> = report
            .entries()
            .iter()
            .filter(|entry| entry.name() == "flaky-feed")
            .collect();
        assert_eq!(
            feeds.len(),
            2,
            "the restarted service keeps a line of its own:\n{report}"
        );
        let restarted = feeds
            .iter()
            .find(|entry| entry.detail().is_some())
            .expect("an entry with the restarts");
        assert_eq!(restarted.outcome(), &Outcome::Stopped);
        assert_eq!(restarted.count(), 1);
        assert_eq!(
            restarted.detail(),
            Some("restarted 3 times; last failure: connection refused #3")
        );
        assert!(
            report.to_string().contains(
                "task flaky-feed — restarted 3 times; last failure: connection refused #3"
            ),
            "{report}"
        );
        assert_eq!(runs.count(), 4, "no run after shutdown");
    })
    .await;
}

/// Its first run panics; the second serves until shutdown.
#[background(shutdown, restart = "on_failure")]
async fn panics_once(runs: Runs, shutdown: Shutdown) {
    if runs.start() == 1 {
        panic!("bad frame");
    }
    shutdown.triggered().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_service_is_restarted() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let runs = Runs::new();
        let task = panics_once(runs.clone());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(runs.at(), [ms(0), ms(100)]);
        let snapshot = lifecycle_runtime::snapshot();
        assert_eq!(snapshot.counters.panicked, 1);
        assert_eq!(snapshot.tasks[0].restarts, 1);
        assert_eq!(
            snapshot.tasks[0].last_failure.as_deref(),
            Some("panicked: bad frame")
        );
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
        assert_eq!(
            entry(&report, "panics_once").detail(),
            Some("restarted 1 time; last failure: panicked: bad frame")
        );
        assert_eq!(task.await, Ok(()));
    })
    .await;
}

/// Returns by itself at once.
#[background(shutdown, restart = "on_failure")]
async fn finishes_by_itself(runs: Runs, _shutdown: Shutdown) -> Result<(), String> {
    runs.start();
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn on_failure_does_not_restart_a_service_that_returns_ok() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let runs = Runs::new();
        let task = finishes_by_itself(runs.clone());
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(runs.count(), 1);
        assert!(task.is_finished());
        assert_eq!(task.await, Ok(()));
        assert!(lifecycle_runtime::snapshot().tasks.is_empty());
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
    })
    .await;
}

/// Returns by itself after a second (or at once when shutdown comes).
#[background(shutdown, restart = "always", max_restarts = "10/1m")]
async fn returns_early(runs: Runs, shutdown: Shutdown) {
    runs.start();
    shutdown.sleep(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn always_restarts_a_service_that_returns_before_shutdown_but_not_during_it() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let runs = Runs::new();
        let task = returns_early(runs.clone());
        tokio::time::sleep(Duration::from_millis(2500)).await;
        // Returned at 1 s and 2.1 s; restarted after 100 ms, then 200 ms.
        assert_eq!(runs.at(), [ms(0), ms(1100), ms(2300)]);
        assert_eq!(
            lifecycle_runtime::snapshot().counters.failed,
            0,
            "returning is no failure"
        );
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
        assert_eq!(
            entry(&report, "returns_early").detail(),
            Some("restarted 2 times; last failure: returned before shutdown began")
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(runs.count(), 3, "the return at shutdown is the end");
        assert_eq!(task.await, Ok(()));
    })
    .await;
}

/// Never gets through.
#[background(
    shutdown,
    critical,
    restart = "on_failure",
    max_restarts = "2/1m",
    name = "critical-feed"
)]
async fn always_refused(runs: Runs, _shutdown: Shutdown) -> Result<(), String> {
    Err(format!("connection refused #{}", runs.start()))
}

#[tokio::test(start_paused = true)]
async fn past_its_limit_a_critical_service_starts_shutdown_naming_its_restarts() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let runs = Runs::new();
        let started = tokio::time::Instant::now();
        let task = always_refused(runs.clone());
        let report = coordinator.report().await;
        lifecycle_tests::record_fault_time(started.elapsed());
        assert_eq!(runs.at(), [ms(0), ms(100), ms(300)]);
        let error = "restarted 2 times in 60s, the most `max_restarts` allows; last failure: \
                     connection refused #3";
        assert_eq!(
            report.reason(),
            &ShutdownReason::CriticalTaskFailed {
                task: "critical-feed".to_owned(),
                error: error.to_owned(),
            }
        );
        assert!(
            report.to_string().starts_with(&format!(
                "shutdown: critical task `critical-feed` failed: {error}"
            )),
            "{report}"
        );
        let feed = entry(&report, "critical-feed");
        assert_eq!(feed.outcome(), &Outcome::Error(error.to_owned()));
        assert_eq!(feed.detail(), None, "the error says it all");
        assert_eq!(
            task.await.unwrap_err().to_string(),
            format!("task `critical-feed` failed: {error}")
        );
    })
    .await;
}

/// Never gets through either, and nobody depends on it.
#[background(shutdown, restart = "on_failure", max_restarts = "2/10s")]
async fn never_connects(runs: Runs, _shutdown: Shutdown) -> Result<(), String> {
    Err(format!("connection refused #{}", runs.start()))
}

#[tokio::test(start_paused = true)]
async fn past_its_limit_a_service_that_is_not_critical_ends_failed_and_is_counted() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let runs = Runs::new();
        let task = never_connects(runs.clone());
        assert_eq!(
            task.await.unwrap_err().to_string(),
            "task `never_connects` failed: restarted 2 times in 10s, the most `max_restarts` \
             allows; last failure: connection refused #3"
        );
        assert_eq!(runs.at(), [ms(0), ms(100), ms(300)]);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(runs.count(), 3, "given up for good");
        let snapshot = lifecycle_runtime::snapshot();
        assert_eq!(
            snapshot.counters.failed, 3,
            "two restarted failures and the last"
        );
        assert!(snapshot.tasks.is_empty());
        assert!(!coordinator.is_shutting_down(), "not critical");
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
    })
    .await;
}

/// Fails at once, every time.
#[background(shutdown, restart = "on_failure")]
async fn fails_at_once(runs: Runs, _shutdown: Shutdown) -> Result<(), String> {
    runs.start();
    Err("refused".to_owned())
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_the_backoff_ends_the_service_cleanly_without_a_restart() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let runs = Runs::new();
        let task = fails_at_once(runs.clone());
        tokio::time::sleep(ms(50)).await;
        let snapshot = lifecycle_runtime::snapshot();
        assert_eq!(snapshot.tasks[0].state, TaskState::Restarting);
        assert_eq!(snapshot.tasks[0].restarts, 0, "not restarted yet");
        assert_eq!(snapshot.tasks[0].last_failure.as_deref(), Some("refused"));
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
        let entry = entry(&report, "fails_at_once");
        assert_eq!(entry.outcome(), &Outcome::Stopped);
        assert_eq!(entry.elapsed(), Duration::ZERO, "ended at once");
        assert_eq!(entry.detail(), None, "never restarted");
        assert_eq!(task.await, Ok(()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(runs.count(), 1);
    })
    .await;
}

/// Fails only once shutdown has begun.
#[background(shutdown, restart = "always")]
async fn fails_on_the_way_out(runs: Runs, shutdown: Shutdown) -> Result<(), String> {
    runs.start();
    shutdown.triggered().await;
    Err("lost the last batch".to_owned())
}

#[tokio::test(start_paused = true)]
async fn a_failure_during_shutdown_is_reported_not_restarted() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let runs = Runs::new();
        let task = fails_on_the_way_out(runs.clone());
        settle().await;
        let report = lifecycle_runtime::shutdown().await;
        assert_eq!(
            entry(&report, "fails_on_the_way_out").outcome(),
            &Outcome::Error("lost the last batch".to_owned()),
            "{report}"
        );
        assert!(task.await.is_err());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(runs.count(), 1);
    })
    .await;
}

/// Runs 1 and 2 fail at once, run 3 after 20 s of work, run 4 at once; run 5 serves.
#[background(shutdown, restart = "on_failure", max_restarts = "2/10s")]
async fn fails_in_bursts(runs: Runs, shutdown: Shutdown) -> Result<(), String> {
    match runs.start() {
        3 => {
            shutdown.sleep(Duration::from_secs(20)).await;
            Err("worked a while, then failed".to_owned())
        }
        1 | 2 | 4 => Err("failed at once".to_owned()),
        _ => {
            shutdown.triggered().await;
            Ok(())
        }
    }
}

#[tokio::test(start_paused = true)]
async fn restarts_older_than_the_period_no_longer_count_and_the_backoff_starts_again() {
    let coordinator = coordinator();
    within(&coordinator, LIMIT, async {
        let runs = Runs::new();
        let _task = fails_in_bursts(runs.clone());
        tokio::time::sleep(Duration::from_secs(30)).await;
        // The third failure, at 20.3 s, finds no restart within the last 10 s: restarted after
        // 100 ms again, not given up on.
        assert_eq!(runs.at(), [ms(0), ms(100), ms(300), ms(20_400), ms(20_600)]);
        assert_eq!(lifecycle_runtime::snapshot().tasks[0].restarts, 4);
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
    })
    .await;
}

/// A service on an OS thread: its first two runs fail.
#[background(shutdown, thread, restart = "on_failure", name = "flaky-reader")]
fn flaky_reader(runs: Arc<AtomicU32>, shutdown: Shutdown) -> Result<(), String> {
    let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
    if run <= 2 {
        return Err(format!("device busy #{run}"));
    }
    shutdown.wait_blocking();
    Ok(())
}

#[tokio::test]
async fn a_thread_service_is_restarted_too() {
    let coordinator = coordinator();
    within(&coordinator, Duration::from_secs(30), async {
        let runs = Arc::new(AtomicU32::new(0));
        let started = std::time::Instant::now();
        let thread = flaky_reader(runs.clone());
        while runs.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(ms(10)).await;
        }
        assert!(
            started.elapsed() >= ms(300),
            "waited 100 ms, then 200 ms: {:?}",
            started.elapsed()
        );
        let snapshot = lifecycle_runtime::snapshot();
        assert_eq!(snapshot.threads[0].restarts, 2);
        assert_eq!(
            snapshot.threads[0].last_failure.as_deref(),
            Some("device busy #2")
        );
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
        let reader = entry(&report, "flaky-reader");
        assert_eq!(reader.kind(), lifecycle_runtime::EntryKind::Thread);
        assert_eq!(
            reader.detail(),
            Some("restarted 2 times; last failure: device busy #2")
        );
        assert_eq!(thread.wait().await, Ok(()));
    })
    .await;
}
