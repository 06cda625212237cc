//! `#[lifecycle_runtime::main]` on a `main` returning `Result<(), E: Debug>`, current-thread.
//!
//! Also included by `tests/pass_lints.rs`, so clippy lints it too.

#![deny(warnings)]
#![deny(
    unused_qualifications,
    unused_extern_crates,
    unused_results,
    trivial_casts
)]

/// Why the program could not start.
#[derive(Debug)]
struct StartError;

/// Returns `Ok`: the exit code is 0.
#[lifecycle_runtime::main(flavor = "current_thread", shutdown_timeout = "5s", drain = "10ms")]
async fn main() -> Result<(), StartError> {
    if lifecycle_runtime::shutdown_signal().is_triggered() {
        return Err(StartError);
    }
    Ok(())
}

/// Under `tests/pass_lints.rs` the generated `main` is only checked, not run: it drives the
/// process-global coordinator, which one test process cannot share between programs.
#[test]
fn has_the_std_main_signature() {
    let _main: fn() -> std::process::ExitCode = main;
}
