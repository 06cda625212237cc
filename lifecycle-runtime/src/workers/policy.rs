//! The stop policy of step 3: when each worker is due, who is cut off by the budget rather than
//! by its own stop timeout, how long aborted tasks get to go, and when step 3 gives up on what it
//! cannot even name. Pure arithmetic on instants, so it is tested on its own.

use std::time::Duration;

use tokio::time::Instant;

use crate::defaults::DEFAULT_STOP_TIMEOUT;
use crate::util::after;

/// How long aborted tasks get to go before they count as stuck. An abort takes effect at the
/// task's next `.await`; a task still present after this blocks its thread in synchronous code.
const ABORT_GRACE: Duration = Duration::from_millis(100);

/// The least time aborted tasks get even when the budget is spent: enough for the runtime to poll
/// (and so drop) them once.
const MIN_ABORT_GRACE: Duration = Duration::from_millis(5);

/// How soon step 3 looks again when tasks spawned just before it have not been polled yet.
const UNPOLLED_RECHECK: Duration = Duration::from_millis(1);

/// How many more rounds step 3 gives workers that keep registering after the budget ran out
/// (tasks spawned by the drops of aborted tasks) before it stops waiting for them.
pub(crate) const MAX_ROUNDS_PAST_BUDGET: u32 = 3;

/// The two instants every decision of step 3 is made against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StopPolicy {
    /// When tasks were told to stop.
    pub(crate) stop_started: Instant,
    /// When the shutdown budget runs out.
    pub(crate) deadline: Instant,
}

/// When a worker must be gone, and why then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Due {
    pub(crate) at: Instant,
    /// The budget, not the worker's own stop timeout, set `at`.
    pub(crate) cut_by_budget: bool,
}

impl StopPolicy {
    /// A worker's stop timeout runs from the stop signal, or from its registration when it
    /// registered later (`registered_late`: a cleanup task spawned on the way out); the budget
    /// caps it.
    pub(crate) fn due(&self, registered_late: Option<Instant>, stop_timeout: Duration) -> Due {
        let from = registered_late.map_or(self.stop_started, |at| at.max(self.stop_started));
        let own = after(from, stop_timeout);
        Due {
            at: own.min(self.deadline),
            cut_by_budget: own > self.deadline,
        }
    }

    /// When step 3 first looks at the registry again: the earliest any worker could be due,
    /// from the least stop timeout registered. Nothing is scanned before then; usually every
    /// worker has stopped long before.
    pub(crate) fn first_look(&self, least_stop_timeout: Option<Duration>) -> Instant {
        match least_stop_timeout {
            Some(timeout) => after(self.stop_started, timeout).min(self.deadline),
            None => self.deadline,
        }
    }

    /// Until when tasks aborted at `now` get to go: a grace, within the budget, but never less
    /// than one poll's worth.
    pub(crate) fn abort_grace(&self, now: Instant) -> Instant {
        after(now, ABORT_GRACE).min(self.deadline.max(after(now, MIN_ABORT_GRACE)))
    }

    /// Tasks spawned but still in their first poll cannot be named. They register (or end) at
    /// the end of that poll, normally moments away: step 3 looks again soon, and gives up on them
    /// once one has been in it for the default stop timeout since `since` (they block their
    /// threads), or at the deadline.
    pub(crate) fn unpolled(&self, now: Instant, since: Instant) -> Unpolled {
        let give_up = after(since.max(self.stop_started), DEFAULT_STOP_TIMEOUT).min(self.deadline);
        if now >= give_up {
            Unpolled::GiveUp
        } else {
            Unpolled::LookAgainAt(after(now, UNPOLLED_RECHECK).min(give_up))
        }
    }
}

/// What to do about tasks still in their first poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unpolled {
    LookAgainAt(Instant),
    GiveUp,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn policy(budget_secs: u64) -> StopPolicy {
        let stop_started = Instant::now();
        StopPolicy {
            stop_started,
            deadline: stop_started + SEC * budget_secs as u32,
        }
    }

    #[test]
    fn a_worker_is_due_its_stop_timeout_after_the_stop_signal() {
        let policy = policy(30);
        let due = policy.due(None, SEC * 2);
        assert_eq!(due.at, policy.stop_started + SEC * 2);
        assert!(!due.cut_by_budget);
    }

    #[test]
    fn a_late_worker_is_due_its_stop_timeout_after_it_registered() {
        let policy = policy(30);
        let registered_late = policy.stop_started + SEC * 3;
        assert_eq!(
            policy.due(Some(registered_late), SEC * 2).at,
            policy.stop_started + SEC * 5
        );
    }

    #[test]
    fn the_budget_cuts_a_long_stop_timeout_and_says_so() {
        let policy = policy(3);
        let due = policy.due(None, SEC * 10);
        assert_eq!(due.at, policy.deadline);
        assert!(due.cut_by_budget);
        assert!(!policy.due(None, SEC * 3).cut_by_budget);
    }

    #[test]
    fn no_limit_means_never_not_a_panic() {
        let policy = StopPolicy {
            stop_started: Instant::now(),
            deadline: after(Instant::now(), Duration::MAX),
        };
        let due = policy.due(None, Duration::MAX);
        assert!(due.at > policy.stop_started + SEC * 86_400 * 365);
    }

    #[test]
    fn the_first_look_is_the_least_stop_timeout_within_the_budget() {
        let policy = policy(30);
        assert_eq!(
            policy.first_look(Some(SEC * 2)),
            policy.stop_started + SEC * 2
        );
        assert_eq!(policy.first_look(Some(SEC * 60)), policy.deadline);
        assert_eq!(policy.first_look(None), policy.deadline);
    }

    #[test]
    fn aborted_tasks_get_a_grace_within_the_budget_but_at_least_one_poll() {
        let policy = policy(30);
        let now = policy.stop_started + SEC;
        assert_eq!(policy.abort_grace(now), now + ABORT_GRACE);
        let spent = policy.deadline + SEC;
        assert_eq!(policy.abort_grace(spent), spent + MIN_ABORT_GRACE);
        let almost = policy.deadline - Duration::from_millis(20);
        assert_eq!(policy.abort_grace(almost), policy.deadline);
    }

    #[test]
    fn unpolled_tasks_are_looked_at_again_then_given_up_on() {
        let policy = policy(30);
        let start = policy.stop_started;
        assert_eq!(
            policy.unpolled(start, start),
            Unpolled::LookAgainAt(start + UNPOLLED_RECHECK)
        );
        let near = start + DEFAULT_STOP_TIMEOUT - Duration::from_micros(10);
        assert_eq!(
            policy.unpolled(near, start),
            Unpolled::LookAgainAt(start + DEFAULT_STOP_TIMEOUT)
        );
        assert_eq!(
            policy.unpolled(start + DEFAULT_STOP_TIMEOUT, start),
            Unpolled::GiveUp
        );
        // A task in its first poll since later (spawned later in the stop) gets the same time
        // from then.
        let later = start + SEC * 5;
        assert_eq!(
            policy.unpolled(later, later),
            Unpolled::LookAgainAt(later + UNPOLLED_RECHECK)
        );
        assert_eq!(
            policy.unpolled(later + DEFAULT_STOP_TIMEOUT, later),
            Unpolled::GiveUp
        );
        let short = StopPolicy {
            deadline: start + Duration::from_millis(500),
            ..policy
        };
        assert_eq!(
            short.unpolled(short.deadline, start),
            Unpolled::GiveUp,
            "the budget caps it"
        );
    }
}
