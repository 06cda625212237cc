//! Small helpers every part of the runtime needs: a poison-tolerant lock, overflow-free
//! deadlines, a back-off for polling, duration formatting, panic catching. Nothing here imports
//! anything from the rest of the crate, so these helpers never tie two modules together.

mod format;
#[cfg(unix)]
mod output;
mod panic;
pub(crate) mod sync;

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub(crate) use format::{format_duration, format_offset, opt_secs, secs};
#[cfg(unix)]
pub(crate) use output::{write_stderr, write_stderr_unless_busy};
pub(crate) use panic::{CatchUnwind, catch, debug_guarded, display_guarded};

/// Locks a mutex, recovering from poisoning: every critical section in this crate leaves its data
/// consistent (plain inserts, removals and counter updates), so a panic elsewhere while holding
/// the lock cannot leave it half-updated.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Far enough ahead to mean "never" (what tokio itself uses for an unbounded sleep).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `at + by`, where a sum past what `Instant` can hold means "never" instead of a panic: budgets
/// and timeouts come from configuration, and `Duration::MAX` is a natural way to write "no limit".
pub(crate) fn after(at: tokio::time::Instant, by: Duration) -> tokio::time::Instant {
    at.checked_add(by)
        .or_else(|| at.checked_add(FAR_FUTURE))
        .unwrap_or(at)
}

/// [`after`] on the std clock.
pub(crate) fn after_std(at: std::time::Instant, by: Duration) -> std::time::Instant {
    after(at.into(), by).into_std()
}

/// Pauses that grow from `first` to `max` by doubling: for the few places that must poll a
/// condition nobody can wake them for (a task gone after an abort, a process group gone).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { next: first, max }
    }

    /// Sleeps for the next pause.
    pub(crate) async fn pause(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }
}

/// Waits until `done()` holds, polling with a back-off from 100 µs to 20 ms. The caller's timeout
/// bounds it.
pub(crate) async fn wait_until(done: impl Fn() -> bool) {
    let mut backoff = Backoff::new(Duration::from_micros(100), Duration::from_millis(20));
    while !done() {
        backoff.pause().await;
    }
}

/// Nanoseconds on a cheap monotonic clock with a resolution of a few milliseconds (Linux's
/// `CLOCK_MONOTONIC_COARSE`, a few nanoseconds to read; elsewhere the ordinary clock since the
/// first call). For ages shown to people, never for deadlines.
pub(crate) fn coarse_now() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes only into `now`; this clock id exists on every Linux since 2.6.32.
        if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) } == 0 {
            let secs = u64::try_from(now.tv_sec).unwrap_or(0);
            let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
            return secs.saturating_mul(1_000_000_000).saturating_add(nanos);
        }
    }
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let elapsed = EPOCH.get_or_init(std::time::Instant::now).elapsed();
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

/// `my_crate::store::Store<u8>` → `Store<u8>`.
pub(crate) fn short_type_name(full: &'static str) -> &'static str {
    let generic_start = full.find('<').unwrap_or(full.len());
    match full[..generic_start].rfind("::") {
        Some(at) => &full[at + 2..],
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_type_names_drop_the_path() {
        assert_eq!(short_type_name("my_crate::store::Store"), "Store");
        assert_eq!(
            short_type_name("my_crate::Wrapper<alloc::string::String>"),
            "Wrapper<alloc::string::String>"
        );
        assert_eq!(short_type_name("u8"), "u8");
    }

    #[test]
    fn deadlines_past_the_clock_mean_never() {
        let now = tokio::time::Instant::now();
        assert!(after(now, Duration::MAX) > after(now, Duration::from_secs(86_400 * 365)));
        assert_eq!(
            after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
    }

    #[test]
    fn the_coarse_clock_moves_forward() {
        let before = coarse_now();
        std::thread::sleep(Duration::from_millis(30));
        let after = coarse_now();
        assert!(after >= before + 20_000_000, "{before} → {after}");
    }

    #[test]
    fn a_poisoned_lock_still_opens() {
        let mutex = std::sync::Arc::new(Mutex::new(1));
        let poisoner = mutex.clone();
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(mutex.is_poisoned());
        assert_eq!(*lock(&mutex), 1);
    }
}
