//! The [`Close`] trait: how a resource is released at shutdown, and its impls for std values,
//! containers and tokio handles.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::defaults::DEFAULT_CLOSE_TIMEOUT;
use crate::util::display_guarded;

/// The error a [`Close`] implementation returns.
pub type CloseError = Box<dyn std::error::Error + Send + Sync>;

/// Something that must be released at shutdown: flush buffers, say goodbye to peers, return
/// connections.
///
/// Implement the one async method; the coordinator calls it under a timeout, contains panics and
/// errors, and reports the outcome. `close` takes `&self` because shared handles are closed
/// through a reference; make it idempotent.
///
/// ```
/// use lifecycle_runtime::{Close, CloseError};
///
/// struct Client;
///
/// impl Client {
///     async fn bye(&self) -> std::io::Result<()> {
///         Ok(())
///     }
/// }
///
/// impl Close for Client {
///     async fn close(&self) -> Result<(), CloseError> {
///         self.bye().await?;
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `Close`, so nothing knows how to release it at shutdown",
    label = "`{Self}` has no `Close` implementation",
    note = "implement `lifecycle_runtime::Close` for `{Self}` (one async method), or, if it holds nothing to release, opt in with `impl lifecycle_runtime::NoCleanup for {Self} {{}}`",
    note = "on a `#[managed_resource]` field, `#[close(with = path)]` closes it with your own `async fn(&T)`, and `#[close(skip = \"why\")]` says it needs no cleanup"
)]
pub trait Close: Send + Sync {
    /// Releases the resource.
    fn close(&self) -> impl Future<Output = Result<(), CloseError>> + Send;

    /// How long the coordinator waits for [`close`](Close::close) when this value is managed.
    /// Default: [`DEFAULT_CLOSE_TIMEOUT`].
    fn close_timeout(&self) -> Duration {
        DEFAULT_CLOSE_TIMEOUT
    }

    /// The name under which the report lists this value when it is managed. Default: the last
    /// segment of the type's name.
    fn close_name(&self) -> Cow<'static, str> {
        Cow::Borrowed(crate::util::short_type_name(std::any::type_name::<Self>()))
    }

    /// What the report should still say about this value when it is managed and shutdown could
    /// not close it: the budget ran out before its turn, or its close ran past its limit and was
    /// left behind. A short account of what it still holds, read without waiting (it is called
    /// while the close may still be running). Default: nothing.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use lifecycle_runtime::{Close, CloseError};
    ///
    /// struct Outbox {
    ///     unsent: AtomicU64,
    /// }
    ///
    /// impl Close for Outbox {
    ///     async fn close(&self) -> Result<(), CloseError> {
    ///         Ok(())
    ///     }
    ///
    ///     fn unclosed_detail(&self) -> Option<String> {
    ///         let unsent = self.unsent.load(Ordering::Relaxed);
    ///         (unsent > 0).then(|| format!("{unsent} messages unsent"))
    ///     }
    /// }
    /// ```
    fn unclosed_detail(&self) -> Option<String> {
        None
    }
}

/// Marks a type that holds nothing to release: it then implements [`Close`] as a no-op, so it can
/// be a `#[managed_resource]` field without `#[close(skip = "...")]`.
///
/// Implemented for plain std values (numbers, `bool`, `char`, `String`, `Duration`, `PathBuf`,
/// addresses, ...). Your own plain types opt in with one line:
///
/// ```
/// #[derive(Clone, Debug)]
/// struct Config {
///     retries: u32,
/// }
///
/// impl lifecycle_runtime::NoCleanup for Config {}
///
/// # async fn check() {
/// use lifecycle_runtime::Close;
/// assert!(Config { retries: 3 }.close().await.is_ok());
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `Close`, so nothing knows how to release it at shutdown",
    label = "`{Self}` has no `Close` implementation",
    note = "implement `lifecycle_runtime::Close` for `{Self}` (one async method), or, if it holds nothing to release, opt in with `impl lifecycle_runtime::NoCleanup for {Self} {{}}`",
    note = "on a `#[managed_resource]` field, `#[close(with = path)]` closes it with your own `async fn(&T)`, and `#[close(skip = \"why\")]` says it needs no cleanup"
)]
pub trait NoCleanup: Send + Sync {}

// Not offered as the fix when `Close` is missing: the message of `Close` itself names all three.
#[diagnostic::do_not_recommend]
impl<T: NoCleanup> Close for T {
    async fn close(&self) -> Result<(), CloseError> {
        Ok(())
    }
}

macro_rules! no_cleanup {
    ($($ty:ty),* $(,)?) => {
        $(impl NoCleanup for $ty {})*
    };
}

no_cleanup!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    &'static str,
    Box<str>,
    Cow<'static, str>,
    Duration,
    std::time::Instant,
    std::time::SystemTime,
    std::path::PathBuf,
    std::ffi::OsString,
    std::net::IpAddr,
    std::net::Ipv4Addr,
    std::net::Ipv6Addr,
    std::net::SocketAddr,
    std::num::NonZeroU32,
    std::num::NonZeroU64,
    std::num::NonZeroUsize,
);

/// Closes the value if there is one.
impl<T: Close> Close for Option<T> {
    async fn close(&self) -> Result<(), CloseError> {
        match self {
            Some(value) => value.close().await,
            None => Ok(()),
        }
    }
}

/// Closes every element in order, all of them even when some fail; the error names the failed
/// indexes.
impl<T: Close> Close for Vec<T> {
    async fn close(&self) -> Result<(), CloseError> {
        let mut failures = Vec::new();
        for (index, value) in self.iter().enumerate() {
            if let Err(error) = value.close().await {
                failures.push(format!("[{index}]: {}", display_guarded(&error)));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; ").into())
        }
    }
}

/// Closes the shared value (make its `close` idempotent: every clone closes it).
impl<T: Close + ?Sized> Close for Arc<T> {
    async fn close(&self) -> Result<(), CloseError> {
        (**self).close().await
    }
}

/// Cancels the token.
impl Close for tokio_util::sync::CancellationToken {
    async fn close(&self) -> Result<(), CloseError> {
        self.cancel();
        Ok(())
    }
}

/// Aborts the task and waits (up to the close timeout) until it is gone.
impl<T: Send + 'static> Close for tokio::task::JoinHandle<T> {
    async fn close(&self) -> Result<(), CloseError> {
        self.abort();
        crate::util::wait_until(|| self.is_finished()).await;
        Ok(())
    }
}
