//! `crate = "..."` for a runtime reached under another name, with every key of `#[background]`.
//!
//! Also included by `tests/pass_lints.rs`, so clippy lints it too.

#![deny(warnings)]
#![deny(
    unused_qualifications,
    unused_extern_crates,
    unused_results,
    trivial_casts
)]

use lifecycle_runtime as lc;

/// Every key of an async loop.
#[lc::background(
    crate = "lc",
    interval = "1m 30s",
    shutdown = "final_tick",
    stop_timeout = "250ms",
    timeout = "10s",
    name = "renamed",
    group = "io",
    critical,
    missed_tick = "burst"
)]
async fn renamed_loop(shutdown: lc::Shutdown) {
    let _last = shutdown.is_triggered();
}

/// Every key a thread may take.
#[lc::background(
    crate = "lc",
    interval = "1500us",
    shutdown,
    stop_timeout = "3s",
    name = "renamed-thread",
    critical,
    missed_tick = "delay",
    thread
)]
fn renamed_thread() {}

/// A service through the renamed path.
#[lc::background(crate = "lc", shutdown)]
async fn renamed_service(shutdown: lc::Shutdown) {
    shutdown.triggered().await;
}

/// Starts the three under a coordinator of their own and shuts down.
fn run() -> lc::ShutdownReport {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let coordinator = lc::Coordinator::builder().scan_os_threads(false).build();
    runtime.block_on(coordinator.scope(async {
        let task = renamed_loop();
        let thread = renamed_thread();
        let service = renamed_service();
        let report = lc::shutdown().await;
        assert_eq!(task.name(), "renamed");
        assert_eq!(thread.name(), "renamed-thread");
        assert_eq!(service.name(), "renamed_service");
        report
    }))
}

fn main() {
    let report = run();
    assert!(report.is_clean(), "{report}");
}

/// Under `tests/pass_lints.rs` the program runs as a test.
#[test]
fn runs_and_stops_cleanly() {
    main();
}
