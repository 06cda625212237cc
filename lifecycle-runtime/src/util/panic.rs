//! Catching panics of futures and closures, and turning their payloads into messages.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

pin_project_lite::pin_project! {
    /// Polls the inner future and turns a panic into `Err(message)`.
    #[derive(Debug)]
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F> CatchUnwind<F> {
    #[inline]
    pub(crate) fn new(inner: F) -> Self {
        CatchUnwind { inner }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        // The future is not polled again after a panic (the result is returned and the future
        // dropped), so no broken invariant of it can be observed: asserting unwind safety is sound.
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(payload) => Poll::Ready(Err(message(payload.as_ref()))),
        }
    }
}

/// Runs `f`, turning a panic into `Err(message)`.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| message(payload.as_ref()))
}

/// `value` as displayed, or a placeholder when its `Display` panics: user errors are formatted
/// inside the shutdown machinery, where a panic must not take the sequence (or a caller's early
/// close) down with it.
pub(crate) fn display_guarded(value: &(impl fmt::Display + ?Sized)) -> String {
    catch(|| value.to_string()).unwrap_or_else(|panic| format!("<error display panicked: {panic}>"))
}

/// `value` as `{:?}` formats it, or a placeholder when its `Debug` panics.
pub(crate) fn debug_guarded(value: &(impl fmt::Debug + ?Sized)) -> String {
    catch(|| format!("{value:?}"))
        .unwrap_or_else(|panic| format!("<error debug panicked: {panic}>"))
}

/// The text of a panic payload (`panic!("...")` gives `&str` or `String`).
pub(crate) fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Hostile;

    impl fmt::Display for Hostile {
        fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
            panic!("display exploded")
        }
    }

    impl fmt::Debug for Hostile {
        fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
            panic!("debug exploded")
        }
    }

    #[test]
    fn a_panicking_display_or_debug_becomes_a_placeholder() {
        assert_eq!(
            display_guarded(&Hostile),
            "<error display panicked: display exploded>"
        );
        assert_eq!(
            debug_guarded(&Hostile),
            "<error debug panicked: debug exploded>"
        );
        assert_eq!(display_guarded("fine"), "fine");
        assert_eq!(debug_guarded("fine"), "\"fine\"");
    }
}
