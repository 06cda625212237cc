//! `#[lifecycle_runtime::test]` and `#[lifecycle_runtime::timeout]`.
//!
//! The tests that must fail are in this binary too, `#[ignore]`d; the real tests run this binary
//! again (`--ignored --exact NAME`) as a child and check that it failed, and how.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use lifecycle_runtime::{Close, CloseError, Elapsed, Shutdown, background};

// ----- #[test]: tests that must fail, run only as children --------------------------------------

#[background(interval = "1h", shutdown, stop_timeout = "100ms", name = "deaf-loop")]
async fn deaf_loop() {
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[lifecycle_runtime::test]
#[ignore = "fails on purpose: run by culprits_fail_their_test"]
async fn culprit_task_ignores_shutdown() {
    deaf_loop();
    // Let it get into its hour-long tick.
    while lifecycle_runtime::snapshot()
        .tasks
        .first()
        .is_none_or(|task| task.ticks == 0)
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

struct StuckClose;

impl Close for StuckClose {
    async fn close(&self) -> Result<(), CloseError> {
        std::future::pending().await
    }

    fn close_timeout(&self) -> Duration {
        Duration::from_millis(100)
    }

    fn close_name(&self) -> std::borrow::Cow<'static, str> {
        "stuck-db".into()
    }
}

#[lifecycle_runtime::test]
#[ignore = "fails on purpose: run by culprits_fail_their_test"]
async fn culprit_resource_times_out() {
    let _db = lifecycle_runtime::manage(StuckClose);
}

struct FailingClose;

impl Close for FailingClose {
    async fn close(&self) -> Result<(), CloseError> {
        Err("connection reset".into())
    }

    fn close_name(&self) -> std::borrow::Cow<'static, str> {
        "flaky-cache".into()
    }
}

#[lifecycle_runtime::test]
#[ignore = "fails on purpose: run by culprits_fail_their_test"]
async fn culprit_resource_fails_to_close() {
    let _cache = lifecycle_runtime::manage(FailingClose);
}

#[background(shutdown, thread, stop_timeout = "100ms", name = "deaf-thread")]
fn deaf_thread(_shutdown: Shutdown, release: Arc<AtomicBool>) {
    while !release.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[lifecycle_runtime::test]
#[ignore = "fails on purpose: run by culprits_fail_their_test"]
async fn culprit_thread_still_alive() {
    // Released only when the process exits: it outlives the test.
    let _thread = deaf_thread(Arc::new(AtomicBool::new(false)));
}

#[lifecycle_runtime::test]
#[ignore = "fails on purpose: run by culprits_fail_their_test"]
async fn culprit_returns_an_error() -> Result<(), String> {
    Err("the fixture could not be loaded".into())
}

/// Blocks its thread (the test's only one) for 20 s before its first `.await`.
struct BlockingClose;

impl Close for BlockingClose {
    async fn close(&self) -> Result<(), CloseError> {
        std::thread::sleep(Duration::from_secs(20));
        Ok(())
    }

    fn close_name(&self) -> std::borrow::Cow<'static, str> {
        "blocking-close".into()
    }
}

#[lifecycle_runtime::test(shutdown_timeout = "500ms")]
#[ignore = "ends its process on purpose: run by a_wedged_shutdown_ends_the_test_process_in_time"]
async fn culprit_close_blocks_the_only_thread() {
    let _resource = lifecycle_runtime::manage(BlockingClose);
}

// ----- #[test]: what must pass ------------------------------------------------------------------

/// Runs one of the ignored tests above in a child process; returns (passed, output).
fn run_ignored(test: &str) -> (bool, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            test,
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the test binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn culprits_fail_their_test_naming_the_culprit() {
    let cases = [
        (
            "culprit_task_ignores_shutdown",
            "task `deaf-loop` ignored shutdown and was aborted",
        ),
        (
            "culprit_resource_times_out",
            "resource `stuck-db` timed out",
        ),
        (
            "culprit_resource_fails_to_close",
            "resource `flaky-cache` failed: connection reset",
        ),
        (
            "culprit_thread_still_alive",
            "thread `deaf-thread` is still running",
        ),
        (
            "culprit_returns_an_error",
            "returned an error: \"the fixture could not be loaded\"",
        ),
    ];
    for (test, culprit) in cases {
        let (passed, output) = run_ignored(test);
        assert!(!passed, "{test} should have failed:\n{output}");
        assert!(
            output.contains(culprit),
            "{test} should name `{culprit}`:\n{output}"
        );
        if test != "culprit_returns_an_error" {
            assert!(
                output.contains(&format!("test `{test}` did not shut down cleanly")),
                "{test}:\n{output}"
            );
        }
    }
}

#[test]
fn a_wedged_shutdown_ends_the_test_process_in_time() {
    let started = std::time::Instant::now();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "culprit_close_blocks_the_only_thread",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the test binary");
    let took = started.elapsed();
    lifecycle_tests::record_fault_time(took);
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(101), "{text}");
    // Budget 500 ms, grace 1 s; the rest is the child's start (the close alone would take 20 s).
    assert!(
        took < Duration::from_millis(2_500),
        "took {took:?}:\n{text}"
    );
    assert!(
        text.contains(
            "test `culprit_close_blocks_the_only_thread` did not shut down within its budget of 500ms (+1s): ending the test process with code 101."
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "TIMED OUT resource blocking-close — did not finish closing: still closing when the process exited"
        ),
        "{text}"
    );
}

/// The sibling task `mine` of [`each_test_has_a_coordinator_of_its_own`] has not run yet.
const SIBLING_NOT_STARTED: u8 = 0;
/// It runs, waiting for shutdown.
const SIBLING_RUNNING: u8 = 1;
/// It heard the test's shutdown and returned.
const SIBLING_STOPPED: u8 = 2;

thread_local! {
    /// What became of `mine`, per thread running the test (the body runs on the calling thread,
    /// so a direct call of the test sees its own state, not that of the harness's run).
    static SIBLING_TASK_RUNNING: Arc<AtomicU8> = Arc::new(AtomicU8::new(SIBLING_NOT_STARTED));
}

#[lifecycle_runtime::test]
async fn a_test_that_stops_cleanly_passes() {
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = stopped.clone();
    let _worker = lifecycle_runtime::spawn("worker", async move {
        lifecycle_runtime::shutdown_signal().triggered().await;
        flag.store(true, Ordering::SeqCst);
    });
    tokio::task::yield_now().await;
    assert!(!stopped.load(Ordering::SeqCst));
}

#[lifecycle_runtime::test(flavor = "multi_thread", worker_threads = 2, shutdown_timeout = "2s")]
async fn each_test_has_a_coordinator_of_its_own() {
    let sibling = SIBLING_TASK_RUNNING.with(Arc::clone);
    sibling.store(SIBLING_NOT_STARTED, Ordering::SeqCst);
    let state = sibling.clone();
    let _mine = lifecycle_runtime::spawn("mine", async move {
        state.store(SIBLING_RUNNING, Ordering::SeqCst);
        lifecycle_runtime::shutdown_signal().triggered().await;
        state.store(SIBLING_STOPPED, Ordering::SeqCst);
    });
    // Until it waits for shutdown (registered at its first wait).
    for _ in 0..100_000 {
        if lifecycle_runtime::snapshot().starting == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(sibling.load(Ordering::SeqCst), SIBLING_RUNNING);
    let snapshot = lifecycle_runtime::snapshot();
    let names: Vec<&str> = snapshot
        .tasks
        .iter()
        .map(|task| task.name.as_str())
        .collect();
    assert!(
        names.iter().all(|name| *name == "mine"),
        "sees only its own tasks: {names:?}"
    );
    assert!(names.contains(&"mine"), "{names:?}");
    assert!(
        !lifecycle_runtime::Coordinator::global()
            .snapshot()
            .tasks
            .iter()
            .any(|task| task.name == "mine")
    );
}

#[test]
fn a_sibling_task_is_stopped_by_the_tests_shutdown_when_the_test_ends() {
    // The whole test, shutdown included, on this thread.
    each_test_has_a_coordinator_of_its_own();
    let state = SIBLING_TASK_RUNNING.with(|state| state.load(Ordering::SeqCst));
    assert_eq!(
        state, SIBLING_STOPPED,
        "`mine` was not stopped by the test's shutdown (1: still running when the test ended)"
    );
}

#[lifecycle_runtime::test(start_paused = true)]
async fn start_paused_gives_the_paused_clock() {
    let before = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(before.elapsed(), Duration::from_secs(3600));
}

#[lifecycle_runtime::test]
#[should_panic(expected = "the body's own panic")]
async fn a_panicking_body_fails_with_its_own_panic() {
    panic!("the body's own panic");
}

// ----- #[timeout] -------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
enum FetchError {
    Timeout(String),
    NotFound,
}

impl From<Elapsed> for FetchError {
    fn from(elapsed: Elapsed) -> Self {
        FetchError::Timeout(elapsed.to_string())
    }
}

#[lifecycle_runtime::timeout("2s")]
async fn fetch(delay: Duration, found: bool) -> Result<u32, FetchError> {
    tokio::time::sleep(delay).await;
    if !found {
        return Err(FetchError::NotFound);
    }
    Ok(42)
}

struct Client {
    limit_hits: u32,
}

impl Client {
    #[lifecycle_runtime::timeout(duration = "500ms", name = "client.ping")]
    async fn ping(&self, delay: Duration) -> std::io::Result<u32> {
        tokio::time::sleep(delay).await;
        Ok(self.limit_hits)
    }
}

#[lifecycle_runtime::test(start_paused = true)]
async fn timeout_passes_through_results_in_time() {
    assert_eq!(fetch(Duration::from_millis(1999), true).await, Ok(42));
    assert_eq!(
        fetch(Duration::from_millis(10), false).await,
        Err(FetchError::NotFound)
    );
}

#[lifecycle_runtime::test(start_paused = true)]
async fn timeout_fires_with_the_name_and_limit() {
    let started = tokio::time::Instant::now();
    assert_eq!(
        fetch(Duration::from_secs(60), true).await,
        Err(FetchError::Timeout("`fetch` timed out after 2s".to_owned()))
    );
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "cancelled at the limit"
    );
    let client = Client { limit_hits: 7 };
    assert_eq!(client.ping(Duration::from_millis(100)).await.unwrap(), 7);
    let error = client.ping(Duration::from_secs(1)).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(error.to_string(), "`client.ping` timed out after 500ms");
}
