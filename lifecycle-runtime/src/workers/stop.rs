//! The stop signal: the moment tasks and threads are told to stop (step 3 of the sequence). Tasks
//! wait on a `Notify` (as cheap to wait on as it gets: every waiting task pays it), OS threads on
//! a condition variable, and loops ask a plain flag.

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::util::lock;
use crate::util::sync::{AtomicBool, Notify, Ordering};

/// Fires once; every way of waiting for it sees the same moment. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct StopSignal {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Set before waiters are woken, so asking is a plain atomic load.
    fired: AtomicBool,
    notify: Notify,
    /// The same moment, for OS threads waiting in blocking code.
    blocking: (Mutex<bool>, Condvar),
}

impl StopSignal {
    /// Fires the signal. Idempotent.
    pub(crate) fn fire(&self) {
        let inner = &*self.inner;
        inner.fired.store(true, Ordering::SeqCst);
        inner.notify.notify_waiters();
        let (flag, condvar) = &inner.blocking;
        *lock(flag) = true;
        condvar.notify_all();
    }

    /// Whether both are the same signal.
    pub(crate) fn same_as(&self, other: &StopSignal) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.inner.fired.load(Ordering::Acquire)
    }

    /// Completes when the signal fires (at once if it has).
    pub(crate) fn fired(&self) -> impl Future<Output = ()> + Send + '_ {
        self.fired_owned()
    }

    /// Like [`fired`](Self::fired), owning what it needs.
    ///
    /// One future holding the `Arc`, not one around a call taking `&Inner`: that would keep a
    /// second state and a reference beside the `Arc`, and every waiting task carries this.
    /// A `Notified` receives `notify_waiters` from the moment it is created, so checking the flag
    /// after creating it cannot miss the signal.
    pub(crate) fn fired_owned(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let inner = Arc::clone(&self.inner);
        async move {
            if inner.fired.load(Ordering::Acquire) {
                return;
            }
            let notified = inner.notify.notified();
            if inner.fired.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Blocks the calling OS thread until the signal fires or `timeout` passes. True when fired.
    pub(crate) fn wait_blocking(&self, timeout: Option<Duration>) -> bool {
        let (flag, condvar) = &self.inner.blocking;
        let guard = lock(flag);
        let guard = match timeout {
            None => condvar
                .wait_while(guard, |fired| !*fired)
                .unwrap_or_else(|poison| poison.into_inner()),
            Some(timeout) => {
                condvar
                    .wait_timeout_while(guard, timeout, |fired| !*fired)
                    .unwrap_or_else(|poison| poison.into_inner())
                    .0
            }
        };
        *guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_waiter_sees_the_same_moment() {
        let signal = StopSignal::default();
        assert!(!signal.is_fired());
        assert!(!signal.wait_blocking(Some(Duration::from_millis(1))));
        let waiter = {
            let signal = signal.clone();
            std::thread::spawn(move || signal.wait_blocking(None))
        };
        signal.fire();
        assert!(waiter.join().unwrap());
        assert!(signal.is_fired());
        signal.fire();
        assert!(signal.wait_blocking(Some(Duration::ZERO)));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waiters_made_before_or_after_the_signal_complete() {
        let signal = StopSignal::default();
        let before = tokio::spawn(signal.fired_owned());
        tokio::task::yield_now().await;
        assert!(!before.is_finished());
        signal.fire();
        before.await.unwrap();
        signal.fired().await;
        signal.fired_owned().await;
    }
}
