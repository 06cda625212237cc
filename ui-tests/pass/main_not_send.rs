//! `#[lifecycle_runtime::main]` accepts a body that is not `Send`, as `#[tokio::main]` does: it
//! runs on the thread that starts the runtime. Here an `Rc` and `std::env::Args` are held across
//! an `.await`, on the multi-thread runtime.
//!
//! Also included by `tests/pass_lints.rs`, so clippy lints it too.

#![deny(warnings)]

use std::rc::Rc;
use std::time::Duration;

#[lifecycle_runtime::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let shared = Rc::new(std::cell::Cell::new(0));
    let args = std::env::args();
    // Not `Send` across this wait: an `Rc` and an `Args` are alive.
    let _ = lifecycle_runtime::shutdown_signal()
        .sleep(Duration::from_millis(1))
        .await;
    shared.set(args.count());
    assert!(shared.get() >= 1, "the program's name is an argument");
    // Tasks it spawns still run on the runtime's workers.
    let task = lifecycle_runtime::spawn("worker", async { 6 * 7 });
    assert_eq!(task.await, Ok(42));
}

/// Under `tests/pass_lints.rs` the generated `main` is only checked, not run.
#[test]
fn has_the_std_main_signature() {
    let _main: fn() -> std::process::ExitCode = main;
}
