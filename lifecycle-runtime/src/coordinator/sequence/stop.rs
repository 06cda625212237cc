//! Step 3, stopping workers: every worker was told to stop at once; wait for each up to its stop
//! timeout (capped by the budget), abort the tasks that are late and give up on the threads that
//! are late; then give aborted tasks a short grace and call those still there stuck. The
//! arithmetic is `workers/policy.rs`; this is the waiting.
//!
//! The registry is not scanned while workers are stopping as they should: the first look is at
//! the least stop timeout registered, a lower bound of every worker's due time (a worker that
//! registers late is due later still).

use tokio::time::Instant;

use crate::workers::{MAX_ROUNDS_PAST_BUDGET, StopPolicy, Unpolled, Wait, Workers};

/// Runs step 3 until nothing is left to wait for.
pub(super) async fn run(workers: &Workers, deadline: Instant) {
    let policy = StopPolicy {
        stop_started: workers.stop_started().unwrap_or_else(Instant::now),
        deadline,
    };
    let mut rounds_past_deadline = 0;
    loop {
        if cut_off_the_late(workers, &policy).await {
            return;
        }
        // Aborted tasks go at their next `.await`. Those still here are stuck in synchronous code.
        let grace = policy.abort_grace(Instant::now());
        if workers.wait_settled_until(grace, false).await == Wait::Settled {
            return;
        }
        if Instant::now() >= deadline {
            rounds_past_deadline += 1;
        }
        // Workers that joined during the grace are judged by their own stop timeout in another
        // round, unless the budget is long gone and they keep coming.
        let give_up = rounds_past_deadline > MAX_ROUNDS_PAST_BUDGET;
        if !workers.leak_stragglers(give_up) {
            return;
        }
    }
}

/// Waits for workers up to their due times and cuts off the late ones, until every worker left is
/// judged. Returns true when nothing is left to wait for.
async fn cut_off_the_late(workers: &Workers, policy: &StopPolicy) -> bool {
    // No worker not judged yet is due before `bound`; `None` once every one is judged.
    let mut bound = Some(policy.first_look(workers.least_stop_timeout()));
    loop {
        let now = Instant::now();
        if bound.is_some_and(|at| now >= at) {
            workers.cut_off_due(policy, now);
            bound = workers.next_due(policy);
        }
        let recheck = if workers.unpolled_pending() {
            match policy.unpolled(now) {
                Unpolled::GiveUp => {
                    workers.give_up_unpolled();
                    continue;
                }
                Unpolled::LookAgainAt(at) => Some(at),
            }
        } else {
            None
        };
        let wake = match (bound, recheck) {
            (None, None) => return workers.settled(),
            (Some(at), None) | (None, Some(at)) => at,
            (Some(at), Some(again)) => at.min(again),
        };
        match workers.wait_settled_until(wake, true).await {
            Wait::Settled => return true,
            Wait::Rescan => {
                let late = policy.first_look(workers.least_stop_timeout());
                bound = Some(bound.map_or(late, |at| at.min(late)));
            }
            Wait::Deadline => {}
        }
    }
}
