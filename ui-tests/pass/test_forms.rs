//! Every form of `#[lifecycle_runtime::test]`.
//!
//! trybuild compiles this file as a program, where tests are left out: it only proves the
//! arguments are accepted. `tests/pass_lints.rs` includes it as a module, where the tests run and
//! clippy lints what they expand to. Everything is written inside the tests, so the program has
//! nothing unused.

#![deny(warnings)]
#![deny(
    elided_lifetimes_in_paths,
    let_underscore_drop,
    missing_debug_implementations,
    missing_docs,
    single_use_lifetimes,
    trivial_casts,
    trivial_numeric_casts,
    unreachable_pub,
    unsafe_code,
    unused_extern_crates,
    unused_import_braces,
    unused_lifetimes,
    unused_qualifications,
    unused_results
)]

/// The default: current thread, a coordinator of the test's own.
#[lifecycle_runtime::test]
async fn default_form() {
    let task = lifecycle_runtime::spawn("short", async {});
    assert_eq!(task.await, Ok(()));
}

/// A multi-thread runtime with two workers.
#[lifecycle_runtime::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_thread() {
    let task = lifecycle_runtime::spawn("on-a-worker", async { 1 + 1 });
    assert!(task.await.is_ok());
}

/// A body that is not `Send` (an `Rc` and `std::env::Args` held across an `.await`), on a
/// multi-thread runtime: the body runs on the test's thread, as `#[tokio::test]`'s does.
#[lifecycle_runtime::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_send() {
    let shared = std::rc::Rc::new(std::cell::Cell::new(0));
    let args = std::env::args();
    let _ = lifecycle_runtime::shutdown_signal()
        .sleep(std::time::Duration::from_millis(1))
        .await;
    shared.set(args.count());
    assert!(shared.get() >= 1);
}

/// The current-thread flavor written out, and a shutdown budget.
#[lifecycle_runtime::test(flavor = "current_thread", shutdown_timeout = "2s")]
async fn shutdown_budget() {
    let shutdown = lifecycle_runtime::shutdown_signal();
    let _service = lifecycle_runtime::spawn("service", async move {
        shutdown.triggered().await;
    });
}

/// tokio's paused clock: an hour passes at once.
#[lifecycle_runtime::test(start_paused = true)]
async fn paused_clock() {
    let start = tokio::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    assert!(start.elapsed() >= std::time::Duration::from_secs(3600));
}

/// A test may return `Result<(), E: Debug>`.
#[lifecycle_runtime::test]
async fn returns_result() -> Result<(), std::io::Error> {
    let value: u32 = "7"
        .parse()
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))?;
    assert_eq!(value, 7);
    Ok(())
}

/// Every key, `crate` included.
#[lifecycle_runtime::test(
    crate = "::lifecycle_runtime",
    flavor = "multi_thread",
    worker_threads = 1,
    shutdown_timeout = "1s",
    start_paused = false
)]
async fn every_key() {
    assert!(!lifecycle_runtime::shutdown_signal().is_triggered());
}

/// trybuild compiles this file as a program; the tests above are left out of it.
#[cfg(not(test))]
fn main() {}
