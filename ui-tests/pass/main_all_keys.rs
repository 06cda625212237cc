//! `#[lifecycle_runtime::main]` with every key, through a renamed runtime path.
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

/// Returns: shutdown runs with nothing to stop and exits 0.
#[lc::main(
    crate = "lc",
    shutdown_timeout = "30s",
    drain = "0s",
    stop_timeout = "2s",
    ready = "at_start",
    report = "text",
    worker_threads = 2,
    flavor = "multi_thread"
)]
async fn main() {
    // `ready = "at_start"`: ready from the start, without `mark_ready()`.
    assert_eq!(lc::snapshot().readiness, lc::Readiness::Ready);
    // Returns at once: the runtime's own worker threads, some maybe not started yet, must not
    // be reported as leaked.
}

/// Under `tests/pass_lints.rs` the generated `main` is only checked, not run: it drives the
/// process-global coordinator, which one test process cannot share between programs.
#[test]
fn has_the_std_main_signature() {
    let _main: fn() -> std::process::ExitCode = main;
}
