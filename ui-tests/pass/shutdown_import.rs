//! `Shutdown` imported by name and used only as a `#[background]` parameter type: the import
//! must stay used after expansion.
//!
//! Also included by `tests/pass_lints.rs`, so clippy lints it too.

#![deny(warnings)]

use lifecycle_runtime::Shutdown;
use lifecycle_runtime::background;

/// A service that waits for shutdown.
#[background(shutdown)]
async fn serve(shutdown: Shutdown) {
    shutdown.triggered().await;
}

/// A thread service that waits for shutdown.
#[background(shutdown, thread)]
fn watch(stop: Shutdown) {
    stop.wait_blocking();
}

fn run() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let coordinator = lifecycle_runtime::Coordinator::builder()
        .scan_os_threads(false)
        .build();
    let report = runtime.block_on(coordinator.scope(async {
        let _service = serve();
        let _thread = watch();
        lifecycle_runtime::shutdown().await
    }));
    assert!(report.is_clean(), "{report}");
}

fn main() {
    run();
}

/// Under `tests/pass_lints.rs` the program runs as a test.
#[test]
fn runs_and_stops_cleanly() {
    main();
}
