//! OS threads: `#[background(thread)]` and `spawn_thread`. Real time (threads cannot use tokio's
//! paused clock); assertions are about outcomes, not durations.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Watchdog, coordinator, entry};
use lifecycle_runtime::{Coordinator, Outcome, Shutdown, ShutdownReason, TaskState, background};

const HANG: Duration = Duration::from_secs(60);

/// Waits (really) until `condition` holds, up to 10s.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

fn os_name_of_current_thread() -> Option<String> {
    std::fs::read_to_string("/proc/thread-self/comm")
        .ok()
        .map(|name| name.trim_end().to_owned())
}

/// What a thread saw of its own name: std's, and the kernel's.
type SeenNames = Arc<Mutex<Vec<(Option<String>, Option<String>)>>>;

#[background(interval = "1h", shutdown, thread, name = "metrics-sampler-1")]
fn hourly_sampler(seen: SeenNames) {
    let thread = std::thread::current();
    seen.lock().unwrap().push((
        thread.name().map(str::to_owned),
        os_name_of_current_thread(),
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_loop_runs_on_a_named_thread_and_its_wait_is_cut_short_by_shutdown() {
    let _watchdog = Watchdog::new("thread_loop_named", HANG);
    let coordinator = coordinator();
    coordinator
        .scope(async {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let handle = hourly_sampler(seen.clone());
            assert_eq!(handle.name(), "metrics-sampler-1");
            eventually("the first tick ran", || !seen.lock().unwrap().is_empty()).await;
            let (name, os_name) = seen.lock().unwrap()[0].clone();
            assert_eq!(name.as_deref(), Some("metrics-sampler-1"));
            if let Some(os_name) = os_name {
                assert_eq!(os_name, "metrics-sampler", "Linux keeps the first 15 bytes");
            }
            let snapshot = lifecycle_runtime::snapshot();
            assert_eq!(snapshot.threads.len(), 1);
            assert_eq!(snapshot.threads[0].name, "metrics-sampler-1");
            eventually("the thread is waiting", || {
                lifecycle_runtime::snapshot().threads[0].state == TaskState::Idle
            })
            .await;

            // The next tick is an hour away: only an interruptible wait lets it stop in time.
            let report = lifecycle_runtime::shutdown().await;
            assert_eq!(
                entry(&report, "metrics-sampler-1").outcome(),
                &Outcome::Stopped,
                "{report}"
            );
            assert!(report.is_clean(), "{report}");
            assert_eq!(handle.wait().await, Ok(()));
            assert_eq!(seen.lock().unwrap().len(), 1);
        })
        .await;
}

#[background(interval = "20ms", shutdown = "final_tick", thread)]
fn thread_flusher(log: Arc<Mutex<Vec<&'static str>>>, shutdown: Shutdown) {
    log.lock().unwrap().push(if shutdown.is_triggered() {
        "final"
    } else {
        "tick"
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_loop_can_run_a_final_tick() {
    let _watchdog = Watchdog::new("thread_final_tick", HANG);
    let coordinator = coordinator();
    coordinator
        .scope(async {
            let log = Arc::new(Mutex::new(Vec::new()));
            let _handle = thread_flusher(log.clone());
            eventually("two ticks", || log.lock().unwrap().len() >= 2).await;
            let report = lifecycle_runtime::shutdown().await;
            assert!(report.is_clean(), "{report}");
            let log = log.lock().unwrap();
            assert_eq!(log.last(), Some(&"final"));
            assert_eq!(log.iter().filter(|line| **line == "final").count(), 1);
            assert!(log[..log.len() - 1].iter().all(|line| *line == "tick"));
        })
        .await;
}

#[background(interval = "10ms", shutdown, thread)]
fn thread_panics_once(ticks: Arc<AtomicU32>) {
    if ticks.fetch_add(1, Ordering::SeqCst) == 0 {
        panic!("sensor unplugged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_thread_tick_is_counted_and_the_loop_goes_on() {
    let _watchdog = Watchdog::new("thread_panics_once", HANG);
    let coordinator = coordinator();
    coordinator
        .scope(async {
            let ticks = Arc::new(AtomicU32::new(0));
            let _handle = thread_panics_once(ticks.clone());
            eventually("ticks after the panic", || {
                ticks.load(Ordering::SeqCst) >= 3
            })
            .await;
            assert_eq!(lifecycle_runtime::snapshot().counters.panicked, 1);
            assert_eq!(lifecycle_runtime::snapshot().threads.len(), 1);
            let started = Instant::now();
            let report = lifecycle_runtime::shutdown().await;
            lifecycle_tests::record_fault_time(started.elapsed());
            assert!(report.is_clean(), "{report}");
        })
        .await;
}

#[background(shutdown, thread, stop_timeout = "200ms", name = "deaf-thread")]
fn deaf_thread(_shutdown: Shutdown, release: Arc<AtomicBool>) {
    // Ignores shutdown until the test releases it.
    while !release.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_that_will_not_stop_is_named_as_leaked_and_does_not_block_shutdown() {
    let _watchdog = Watchdog::new("deaf_thread", HANG);
    let coordinator = common::coordinator_with_budget(Duration::from_secs(30));
    let release = Arc::new(AtomicBool::new(false));
    let handle = coordinator
        .scope(async { deaf_thread(release.clone()) })
        .await;
    let started = Instant::now();
    let report = coordinator.shutdown().await;
    let took = started.elapsed();
    lifecycle_tests::record_fault_time(took);
    let leaked = entry(&report, "deaf-thread");
    assert_eq!(leaked.outcome(), &Outcome::Leaked, "{report}");
    assert!(
        leaked
            .detail()
            .unwrap()
            .contains("whole stop timeout of 200ms; left running"),
        "{report}"
    );
    assert!(!handle.is_finished(), "it really is still running");
    // Its stop timeout is 200ms: shutdown gives up on it then, not at the 30s budget.
    assert!(
        took >= Duration::from_millis(200),
        "shutdown gave up before the thread's stop timeout ({took:?}): {report}"
    );
    assert!(
        took < Duration::from_millis(700),
        "shutdown waited {took:?} for a thread with a 200ms stop timeout: {report}"
    );
    assert!(report.elapsed() <= took, "{report}");
    assert!(
        report.to_string().contains("LEAKED    thread deaf-thread"),
        "{report}"
    );
    release.store(true, Ordering::SeqCst);
    assert_eq!(handle.wait().await, Ok(()));
}

#[background(
    interval = "10ms",
    shutdown,
    thread,
    critical,
    name = "critical-thread"
)]
fn critical_thread(ticks: Arc<AtomicU32>) -> Result<(), String> {
    if ticks.fetch_add(1, Ordering::SeqCst) == 2 {
        return Err("device vanished".into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_thread_failure_starts_shutdown() {
    let _watchdog = Watchdog::new("critical_thread", HANG);
    let coordinator = coordinator();
    coordinator
        .scope(async {
            let _handle = critical_thread(Arc::new(AtomicU32::new(0)));
            let report = coordinator.report().await;
            assert_eq!(
                report.reason(),
                &ShutdownReason::CriticalTaskFailed {
                    task: "critical-thread".into(),
                    error: "device vanished".into()
                }
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_thread_returns_its_value_and_its_blocking_sleep_wakes_at_shutdown() {
    let _watchdog = Watchdog::new("spawn_thread_value", HANG);
    let coordinator = coordinator();
    let sampler = coordinator
        .scope(async {
            lifecycle_runtime::spawn_thread("long-sleeper", |shutdown: Shutdown| {
                let mut full_sleeps = 0;
                while shutdown.sleep_blocking(Duration::from_secs(3600)) {
                    full_sleeps += 1;
                }
                // It can still reach its coordinator from the thread.
                assert!(Coordinator::current().is_shutting_down());
                full_sleeps
            })
        })
        .await;
    let report = coordinator.shutdown().await;
    assert!(report.is_clean(), "{report}");
    assert_eq!(sampler.wait().await, Ok(0));
}

#[test]
fn a_panicking_thread_is_caught_and_returned_from_join() {
    let _watchdog = Watchdog::new("panicking_thread", HANG);
    let coordinator = coordinator();
    let _guard = coordinator.enter();
    let handle =
        lifecycle_runtime::spawn_thread("boom-thread", |_| -> u32 { panic!("bad sample") });
    let started = Instant::now();
    let error = handle.join().unwrap_err();
    lifecycle_tests::record_fault_time(started.elapsed());
    assert_eq!(error.to_string(), "task `boom-thread` panicked: bad sample");
    assert_eq!(coordinator.snapshot().counters.panicked, 1);
}
