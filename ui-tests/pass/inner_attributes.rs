//! Inner attributes at the top of a body (`#![allow(...)]`) stay at the top of the body each
//! attribute generates: emitted before the fn, they would not compile.
//!
//! Also included by `tests/pass_lints.rs`, so clippy lints it too.

#![deny(warnings)]

use lifecycle_runtime::{Elapsed, Shutdown, background, timeout};

/// A service whose body allows an unused variable.
#[background(shutdown)]
async fn serve(shutdown: Shutdown) {
    #![allow(unused_variables)]
    let unused = 1;
    shutdown.triggered().await;
}

/// A loop on a thread, the same.
#[background(interval = "10ms", shutdown, thread)]
fn poll() {
    #![allow(unused_variables)]
    let unused = 1;
}

/// A limited call, the same.
#[timeout("1s")]
async fn limited() -> Result<(), Elapsed> {
    #![allow(unused_variables)]
    let unused = 1;
    Ok(())
}

/// Starts both, calls the limited fn and returns: shutdown stops them.
#[lifecycle_runtime::main]
async fn main() -> Result<(), Elapsed> {
    #![allow(unused_variables)]
    let unused = 1;
    let _service = serve();
    let _thread = poll();
    limited().await
}

/// A test, the same.
#[lifecycle_runtime::test]
async fn in_a_test() {
    #![allow(unused_variables)]
    let unused = 1;
}

/// Under `tests/pass_lints.rs` the generated `main` is only checked, not run: it drives the
/// process-global coordinator, which one test process cannot share between programs.
#[test]
fn has_the_std_main_signature() {
    let _main: fn() -> std::process::ExitCode = main;
}
