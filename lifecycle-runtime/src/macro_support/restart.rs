//! Supervision of `#[background(restart = ...)]` services, as Erlang/OTP supervisors do it: which
//! ends of a run start it again, the pause before the restart, and the intensity limit past which
//! the failure escalates instead.
//!
//! The arithmetic is kept apart from the tickers, which wait and log: [`Supervisor::decide`]
//! takes how a run ended and the time, and says what comes next.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::defaults::{RESTART_BACKOFF_FIRST, RESTART_BACKOFF_MAX};
use crate::util::format_duration;

/// Which ends of a service's run start it again (`restart = "..."`; `"never"` is a service
/// without a [`RestartSpec`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// When the body returns `Err` or panics.
    OnFailure,
    /// Also when the body returns by itself before shutdown began.
    Always,
}

/// Everything `#[background(restart = ..., max_restarts = ...)]` said, as constants.
#[derive(Clone, Copy, Debug)]
pub struct RestartSpec {
    /// Which ends of a run start it again.
    pub restart: Restart,
    /// The most restarts within any `period`; one more escalates the failure.
    pub max_restarts: u32,
    /// The window `max_restarts` counts restarts in.
    pub period: Duration,
}

/// What follows the end of a supervised run.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// Not started again: the run's end is the task's end.
    Done,
    /// Started again after this pause.
    Restart(Duration),
    /// Past the limit: the task ends failed with this message.
    GiveUp(String),
}

/// The restarts of one supervised service.
#[derive(Debug)]
pub(super) struct Supervisor {
    spec: RestartSpec,
    /// When each restart within the last `period` was decided, oldest first (at most
    /// `max_restarts` of them).
    recent: VecDeque<Instant>,
    /// The pause before the next run, once a restart was decided.
    pending: Option<Duration>,
}

impl Supervisor {
    pub(super) fn new(spec: RestartSpec) -> Supervisor {
        Supervisor {
            spec,
            recent: VecDeque::new(),
            pending: None,
        }
    }

    /// What follows a run that ended at `now`: `failure` says how it failed (`None`: it returned
    /// by itself). Nothing is restarted once shutdown has begun. A restart past `max_restarts`
    /// within `period` gives up; otherwise the pause is 100 ms, doubled for each restart already
    /// within the window, at most 5 s, so a service that ran quietly for a whole period starts
    /// again from 100 ms.
    pub(super) fn decide(
        &mut self,
        failure: Option<&str>,
        shutting_down: bool,
        now: Instant,
    ) -> Decision {
        if shutting_down || (failure.is_none() && self.spec.restart == Restart::OnFailure) {
            return Decision::Done;
        }
        let period = self.spec.period;
        while let Some(&oldest) = self.recent.front() {
            if now.saturating_duration_since(oldest) < period {
                break;
            }
            self.recent.pop_front();
        }
        let limit = usize::try_from(self.spec.max_restarts).unwrap_or(usize::MAX);
        if self.recent.len() >= limit {
            let times = if limit == 1 { "time" } else { "times" };
            return Decision::GiveUp(format!(
                "restarted {limit} {times} in {}, the most `max_restarts` allows; last failure: {}",
                format_duration(period),
                failure.unwrap_or(RETURNED),
            ));
        }
        let pause = backoff(self.recent.len());
        self.recent.push_back(now);
        self.pending = Some(pause);
        Decision::Restart(pause)
    }

    /// The pause before the next run, if a restart was decided; taken once.
    pub(super) fn take_pending(&mut self) -> Option<Duration> {
        self.pending.take()
    }
}

/// What a run that returned by itself before shutdown "failed" with, for `restart = "always"`.
pub(super) const RETURNED: &str = "returned before shutdown began";

/// The pause before a restart when `earlier` restarts are within the window.
fn backoff(earlier: usize) -> Duration {
    u32::try_from(earlier)
        .ok()
        .and_then(|doublings| 1_u32.checked_shl(doublings))
        .and_then(|factor| RESTART_BACKOFF_FIRST.checked_mul(factor))
        .map_or(RESTART_BACKOFF_MAX, |pause| pause.min(RESTART_BACKOFF_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supervisor(restart: Restart, max_restarts: u32, period_secs: u64) -> Supervisor {
        Supervisor::new(RestartSpec {
            restart,
            max_restarts,
            period: Duration::from_secs(period_secs),
        })
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn the_backoff_doubles_from_100ms_up_to_5s() {
        let pauses: Vec<Duration> = (0..9).map(backoff).collect();
        assert_eq!(
            pauses,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(5000),
                ms(5000),
                ms(5000)
            ]
        );
        assert_eq!(backoff(40), RESTART_BACKOFF_MAX);
        assert_eq!(backoff(usize::MAX), RESTART_BACKOFF_MAX);
    }

    #[test]
    fn failures_restart_until_the_limit_then_give_up_naming_it() {
        let start = Instant::now();
        let mut supervisor = supervisor(Restart::OnFailure, 2, 60);
        assert_eq!(
            supervisor.decide(Some("refused"), false, start),
            Decision::Restart(ms(100))
        );
        assert_eq!(supervisor.take_pending(), Some(ms(100)));
        assert_eq!(supervisor.take_pending(), None, "taken once");
        assert_eq!(
            supervisor.decide(Some("refused"), false, start + ms(100)),
            Decision::Restart(ms(200))
        );
        assert_eq!(
            supervisor.decide(Some("panicked: boom"), false, start + ms(300)),
            Decision::GiveUp(
                "restarted 2 times in 60s, the most `max_restarts` allows; last failure: panicked: boom"
                    .to_owned()
            )
        );
    }

    #[test]
    fn restarts_older_than_the_period_no_longer_count_and_the_backoff_starts_again() {
        let start = Instant::now();
        let mut supervisor = supervisor(Restart::OnFailure, 2, 10);
        assert_eq!(
            supervisor.decide(Some("x"), false, start),
            Decision::Restart(ms(100))
        );
        assert_eq!(
            supervisor.decide(Some("x"), false, start + ms(100)),
            Decision::Restart(ms(200))
        );
        // 10 s after the first restart, only the second is within the window.
        assert_eq!(
            supervisor.decide(Some("x"), false, start + Duration::from_secs(10)),
            Decision::Restart(ms(200))
        );
        // Quiet for a whole period: none is.
        assert_eq!(
            supervisor.decide(Some("x"), false, start + Duration::from_secs(30)),
            Decision::Restart(ms(100))
        );
    }

    #[test]
    fn a_run_that_returns_is_restarted_only_with_always() {
        let now = Instant::now();
        assert_eq!(
            supervisor(Restart::OnFailure, 5, 60).decide(None, false, now),
            Decision::Done
        );
        assert_eq!(
            supervisor(Restart::Always, 5, 60).decide(None, false, now),
            Decision::Restart(ms(100))
        );
        let mut once = supervisor(Restart::Always, 1, 60);
        assert_eq!(once.decide(None, false, now), Decision::Restart(ms(100)));
        assert_eq!(
            once.decide(None, false, now),
            Decision::GiveUp(
                "restarted 1 time in 60s, the most `max_restarts` allows; last failure: returned before shutdown began"
                    .to_owned()
            )
        );
    }

    #[test]
    fn nothing_is_restarted_once_shutdown_has_begun() {
        let now = Instant::now();
        for restart in [Restart::OnFailure, Restart::Always] {
            let mut supervisor = supervisor(restart, 5, 60);
            assert_eq!(supervisor.decide(Some("x"), true, now), Decision::Done);
            assert_eq!(supervisor.decide(None, true, now), Decision::Done);
            assert_eq!(supervisor.take_pending(), None);
        }
    }
}
