//! Named time limits: [`timeout`] and the [`Elapsed`] error that `#[timeout]` returns.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use crate::util::format_duration;

/// An operation ran past its limit. Names the operation and the limit.
///
/// `#[lifecycle_runtime::timeout]` needs the fn's error type to implement `From<Elapsed>`;
/// `std::io::Error` does (as [`std::io::ErrorKind::TimedOut`]).
///
/// ```
/// use std::time::Duration;
/// use lifecycle_runtime::Elapsed;
///
/// let elapsed = Elapsed::new("fetch_user", Duration::from_secs(10));
/// assert_eq!(elapsed.to_string(), "`fetch_user` timed out after 10s");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{operation}` timed out after {}", format_duration(*.limit))]
pub struct Elapsed {
    operation: Cow<'static, str>,
    limit: Duration,
}

impl Elapsed {
    /// An `Elapsed` for `operation` and its `limit`.
    pub fn new(operation: impl Into<Cow<'static, str>>, limit: Duration) -> Elapsed {
        Elapsed {
            operation: operation.into(),
            limit,
        }
    }

    /// The operation that ran too long.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// Its limit.
    pub fn limit(&self) -> Duration {
        self.limit
    }
}

impl From<Elapsed> for std::io::Error {
    fn from(elapsed: Elapsed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, elapsed)
    }
}

/// Runs `fut` for at most `limit`; past it, the future is dropped and [`Elapsed`] names `name`.
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let slow = lifecycle_runtime::timeout("slow", Duration::from_millis(10), std::future::pending::<()>());
/// assert_eq!(slow.await.unwrap_err().to_string(), "`slow` timed out after 10ms");
/// let quick = lifecycle_runtime::timeout("quick", Duration::from_secs(1), async { 5 });
/// assert_eq!(quick.await, Ok(5));
/// # }
/// ```
pub async fn timeout<F: Future>(
    name: impl Into<Cow<'static, str>>,
    limit: Duration,
    fut: F,
) -> Result<F::Output, Elapsed> {
    let name = name.into();
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| Elapsed::new(name, limit))
}
