//! Speaking to systemd (feature `systemd`, under `#[main]` only): `READY=1` when the program marks
//! itself ready, `STOPPING=1` with the reason when shutdown starts, `EXTEND_TIMEOUT_USEC` covering
//! what is left of the budget while the sequence goes on, `STATUS=` naming what it waits for, and
//! `WATCHDOG=1` at half of `WATCHDOG_USEC`, sent by a task on the runtime, so a wedged runtime
//! stops the pings and systemd restarts the service.
//!
//! Without `NOTIFY_SOCKET` every call is a no-op. A send that fails is logged once, never fatal:
//! the service keeps running whatever the service manager does.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

/// Whether this process speaks to systemd: only `#[main]` turns it on, for the global coordinator.
static ENABLED: OnceLock<()> = OnceLock::new();

/// A failed send is logged once.
static FAILED: AtomicBool = AtomicBool::new(false);

/// Turns the notifications on (the runner of `#[main]` calls it once).
pub(crate) fn enable() {
    let _ = ENABLED.set(());
}

fn enabled() -> bool {
    ENABLED.get().is_some() && std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// A `STATUS=` value on one line (the protocol is one assignment per line) and of a sane length.
fn one_line(status: &str) -> String {
    let mut line: String = status
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > 400 {
        let mut end = 400;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push('…');
    }
    line
}

fn send(states: &[NotifyState<'_>]) {
    if !enabled() {
        return;
    }
    if let Err(error) = sd_notify::notify(false, states)
        && !FAILED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(%error, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// Orders `READY=1` and `STOPPING=1`: a `mark_ready` racing the start of shutdown must not tell
/// systemd "ready" after "stopping". True once `STOPPING=1` was sent.
static STOPPING_SENT: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

/// `READY=1`: start-up is done (unless shutdown already said `STOPPING=1`).
pub(crate) fn ready() {
    let stopping = STOPPING_SENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !*stopping {
        send(&[NotifyState::Ready, NotifyState::Status("ready")]);
    }
}

/// `STOPPING=1` as shutdown starts, with the time it may take (`budget` plus the watchdog's
/// grace) and why it started.
pub(crate) fn stopping(reason: &str, budget: Duration) {
    let status = one_line(&format!("shutting down: {reason}"));
    let mut stopping = STOPPING_SENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *stopping = true;
    send(&[
        NotifyState::Stopping,
        NotifyState::ExtendTimeoutUsec(usec(budget)),
        NotifyState::Status(&status),
    ]);
}

/// While the sequence goes on: more time (what is left of the budget, plus the watchdog's
/// grace) and what it still waits for.
pub(crate) fn progress(left: Duration, waiting_for: &[String]) {
    let status = one_line(&match waiting_for.is_empty() {
        true => "shutting down: writing the report".to_owned(),
        false => format!("shutting down: waiting for {}", waiting_for.join(", ")),
    });
    send(&[
        NotifyState::ExtendTimeoutUsec(usec(left)),
        NotifyState::Status(&status),
    ]);
}

/// Starts the pings when systemd asked for them (`WATCHDOG_USEC`, and `WATCHDOG_PID` naming
/// this process if set): a task on the runtime sends `WATCHDOG=1` every half of the interval. It
/// is a task, not a thread, on purpose: a runtime that no longer polls its tasks stops pinging.
pub(crate) fn start_watchdog_pings(runtime: &tokio::runtime::Handle) {
    if !enabled() {
        return;
    }
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let every = Duration::from_micros(usec) / 2;
    drop(runtime.spawn(async move {
        loop {
            send(&[NotifyState::Watchdog]);
            tokio::time::sleep(every).await;
        }
    }));
}

/// Microseconds, as systemd takes them (saturating at `u32::MAX`, about 71 minutes).
fn usec(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_status_is_one_line_of_a_sane_length() {
        assert_eq!(
            one_line("failed: refused\n\nCaused by:\n  0: timeout"),
            "failed: refused  Caused by:   0: timeout"
        );
        let long = one_line(&"é".repeat(1000));
        assert!(long.len() <= 404 && long.ends_with('…'), "{long}");
        assert!(!long.contains('\n'));
    }
}
