//! `#[lifecycle_runtime::main]` with no arguments.
//!
//! Also included by `tests/pass_lints.rs`, so clippy lints it too.

#![deny(warnings)]

#[lifecycle_runtime::main]
async fn main() {
    // Returns at once: the runtime's own worker threads, some maybe not started yet, must not
    // be reported as leaked.
}

/// Under `tests/pass_lints.rs` the generated `main` is only checked, not run: it drives the
/// process-global coordinator, which one test process cannot share between programs.
#[test]
fn has_the_std_main_signature() {
    let _main: fn() -> std::process::ExitCode = main;
}
