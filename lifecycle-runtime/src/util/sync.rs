//! The synchronization the registry and the close claim are made of, behind one name so that the
//! model-checking build (`--cfg lifecycle_loom`, see DESIGN.md, "Model checking") can swap in
//! loom's instrumented versions. In an ordinary build everything here is exactly the std (or
//! tokio) type: re-exports, and an `UnsafeCell` that is a transparent wrapper whose accessors
//! inline to a pointer cast.
//!
//! Only the protocol's shared state goes through here: the shard locks and counters, a node's
//! links, waker and verdict, the stop flag and its `Notify`, the close claim. Statics and
//! thread-locals stay std.

#[cfg(not(lifecycle_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
#[cfg(not(lifecycle_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
#[cfg(not(lifecycle_loom))]
pub(crate) use tokio::sync::Notify;

#[cfg(lifecycle_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
#[cfg(lifecycle_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(lifecycle_loom)]
pub(crate) use model::Notify;

/// Locks a mutex, recovering from poisoning (as [`crate::util::lock`], for this module's
/// `Mutex`).
#[inline]
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// `std::cell::UnsafeCell` with loom's accessors: `with` for a read, `with_mut` for a write. Under
/// loom every access is checked against the others (a write not ordered after every earlier
/// access, or a read not ordered after every earlier write, is a data race), which is how the
/// models catch a node touched after its owner freed it.
#[cfg(not(lifecycle_loom))]
#[derive(Default)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(lifecycle_loom))]
impl<T> UnsafeCell<T> {
    #[inline(always)]
    pub(crate) const fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(lifecycle_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// What loom cannot run as is.
#[cfg(lifecycle_loom)]
mod model {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use loom::sync::Mutex;

    /// tokio's `Notify` as this crate uses it (`notify_waiters` and `notified`, never permits),
    /// on loom's mutex: tokio's own is not instrumented, so loom would not see the ordering it
    /// gives. Keeps the one guarantee the crate relies on: a `Notified` receives every
    /// `notify_waiters` made after it was created, whether or not it was polled or enabled
    /// before.
    #[derive(Debug, Default)]
    pub(crate) struct Notify {
        state: Mutex<State>,
    }

    #[derive(Debug, Default)]
    struct State {
        /// `notify_waiters` calls so far.
        calls: u64,
        waiters: Vec<Waker>,
    }

    impl Notify {
        pub(crate) fn new() -> Notify {
            Notify::default()
        }

        pub(crate) fn notify_waiters(&self) {
            let waiters = {
                let mut state = self.state.lock().unwrap();
                state.calls += 1;
                std::mem::take(&mut state.waiters)
            };
            waiters.into_iter().for_each(Waker::wake);
        }

        pub(crate) fn notified(&self) -> Notified<'_> {
            Notified {
                notify: self,
                calls: self.state.lock().unwrap().calls,
            }
        }
    }

    #[derive(Debug)]
    pub(crate) struct Notified<'a> {
        notify: &'a Notify,
        calls: u64,
    }

    impl Notified<'_> {
        /// tokio's `enable`: the count taken at creation already does its work here.
        pub(crate) fn enable(self: Pin<&mut Self>) -> bool {
            true
        }
    }

    impl Future for Notified<'_> {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let mut state = self.notify.state.lock().unwrap();
            if state.calls != self.calls {
                return Poll::Ready(());
            }
            state.waiters.push(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// Runs a loom model: every interleaving of its threads up to `LOOM_MAX_PREEMPTIONS` preemptions
/// (3 unless set), so that every model finishes in seconds in CI.
#[cfg(all(test, lifecycle_loom))]
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}
