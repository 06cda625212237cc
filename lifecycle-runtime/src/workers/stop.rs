//! The stop signal: the moment tasks and threads are told to stop (step 3 of the sequence). Tasks
//! wait on a `CancellationToken`, OS threads on a condition variable, and loops ask a plain flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::util::lock;

/// Fires once; every way of waiting for it sees the same moment.
#[derive(Debug, Default)]
pub(crate) struct StopSignal {
    token: CancellationToken,
    /// Set before the token fires, so asking is a plain atomic load (the token's own check takes
    /// a lock).
    fired: AtomicBool,
    /// The same moment, for OS threads waiting in blocking code.
    blocking: (Mutex<bool>, Condvar),
}

impl StopSignal {
    /// Fires the signal. Idempotent.
    pub(crate) fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.token.cancel();
        let (flag, condvar) = &self.blocking;
        *lock(flag) = true;
        condvar.notify_all();
    }

    pub(crate) fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    /// The token tasks wait on.
    pub(crate) fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Blocks the calling OS thread until the signal fires or `timeout` passes. True when fired.
    pub(crate) fn wait_blocking(&self, timeout: Option<Duration>) -> bool {
        let (flag, condvar) = &self.blocking;
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
        let signal = std::sync::Arc::new(StopSignal::default());
        assert!(!signal.is_fired());
        assert!(!signal.wait_blocking(Some(Duration::from_millis(1))));
        let waiter = {
            let signal = signal.clone();
            std::thread::spawn(move || signal.wait_blocking(None))
        };
        signal.fire();
        assert!(waiter.join().unwrap());
        assert!(signal.is_fired());
        assert!(signal.token().is_cancelled());
        signal.fire();
        assert!(signal.wait_blocking(Some(Duration::ZERO)));
    }
}
