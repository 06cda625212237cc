//! What `#[timeout]` expands to: the check that the fn's error can carry an [`Elapsed`], and a
//! fixer of the wrapped future's output type.

use std::future::Future;

use crate::timeout::Elapsed;

/// What `#[timeout]` needs of the fn's return type: `Result<T, E>` with `E: From<Elapsed>`.
#[diagnostic::on_unimplemented(
    message = "`#[timeout]` needs the fn to return `Result<T, E>` where `E: From<lifecycle_runtime::Elapsed>`; `{Self}` does not fit",
    label = "the timeout's `Elapsed` error cannot become this type",
    note = "add `impl From<lifecycle_runtime::Elapsed> for YourError`, or return `std::io::Error`, which already converts"
)]
pub trait TimeoutResult {
    /// The value to return when the limit passed.
    fn from_elapsed(elapsed: Elapsed) -> Self;
}

// Reported as `TimeoutResult` (whose message names `Elapsed` and the fix), not as a bare
// `From<Elapsed>` bound.
#[diagnostic::do_not_recommend]
impl<T, E: From<Elapsed>> TimeoutResult for Result<T, E> {
    fn from_elapsed(elapsed: Elapsed) -> Self {
        Err(E::from(elapsed))
    }
}

/// Fixes the output type of the future `#[timeout]` wraps, so `?` in the body knows its target.
pub fn returning<R, F: Future<Output = R>>(future: F) -> F {
    future
}
