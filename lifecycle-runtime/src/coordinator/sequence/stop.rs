//! Step 3, stopping workers: every worker was told to stop at once; wait for each up to its stop
//! timeout (capped by the budget), abort the tasks that are late and give up on the threads that
//! are late; then give aborted tasks a short grace and call those still there stuck. The
//! arithmetic is `workers/policy.rs`; this is the waiting.
//!
//! The registry is not scanned while workers are stopping as they should: the first look is at
//! the least stop timeout registered, a lower bound of every worker's due time (a worker that
//! registers late is due later still). With a stop order (`workers/order.rs`) it is: every few
//! milliseconds while a stage waits for the ones before it.

use std::time::Duration;

use tokio::time::Instant;

use crate::workers::{
    BudgetEnd, MAX_ROUNDS_PAST_BUDGET, StageStart, StopPolicy, Unpolled, Wait, Workers,
};

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
        // Aborted tasks go at their next poll: wait while they keep going (a million of them take
        // a while, in proportion to their number), up to the budget. Those still here once none
        // went for a whole grace are stuck.
        // Aborted tasks the budget left unwoken cannot have been polled: whatever else is seen,
        // they were not dropped for lack of time, not because a thread is blocked. And once the
        // budget has run out, the grace is a few milliseconds: many tasks not dropped in it say
        // nothing about their threads.
        let mut left = workers.linked();
        let budget = loop {
            let grace = policy.abort_grace(Instant::now());
            if workers.wait_settled_until(grace, false).await == Wait::Settled {
                return;
            }
            let now_left = workers.linked();
            let went = now_left < left;
            left = now_left;
            let out_of_budget = Instant::now() >= deadline;
            if workers.has_deferred_wakes() || (went && out_of_budget) {
                break BudgetEnd::WhileAbortedWent;
            }
            if !went {
                // A few woken tasks are polled within microseconds on a runtime whose threads
                // are free, so even a short grace tells a blocked thread; thousands queued behind
                // each other may not all get a turn in it.
                break match out_of_budget && now_left > WAKE_BATCH {
                    true => BudgetEnd::NoTimeToTell,
                    false => BudgetEnd::NotReached,
                };
            }
        };
        // A task seen dropping may just be in the middle of an ordinary drop: only one still
        // dropping a moment later is blocked in its destructor.
        let dropping = workers.dropping_now();
        if !dropping.is_empty() {
            tokio::time::sleep(DROPPING_CHECK).await;
        }
        if Instant::now() >= deadline {
            rounds_past_deadline += 1;
        }
        // Workers that joined during the grace are judged by their own stop timeout in another
        // round, unless the budget is long gone and they keep coming.
        let give_up = rounds_past_deadline > MAX_ROUNDS_PAST_BUDGET;
        if !workers.leak_stragglers(give_up, budget, &dropping) {
            return;
        }
    }
}

/// Waits for workers up to their due times and cuts off the late ones, until every worker left is
/// judged. Returns true when nothing is left to wait for.
async fn cut_off_the_late(workers: &Workers, policy: &StopPolicy) -> bool {
    // No worker not judged yet is due before `bound`; `None` once every one is judged.
    let mut bound = Some(policy.first_look(workers.least_stop_timeout()));
    // With a stop order, stages wait for the ones before them: look at once, and then often.
    if workers.order().has_held() {
        bound = Some(Instant::now());
    }
    loop {
        let now = Instant::now();
        if bound.is_some_and(|at| now >= at) {
            // Workers that register meanwhile make the wait below return `Rescan`.
            let cut = workers.cut_off_due(policy, now);
            wake_in_batches(workers, cut.aborted, policy.deadline).await;
            bound = cut.next;
            if workers.order().has_held() {
                bound = Some(start_stages(workers, policy, cut.lowest_stage, bound));
            }
        }
        let recheck = if workers.unpolled_pending() {
            match policy.unpolled(now, workers.unpolled_since(now)) {
                Unpolled::GiveUp => {
                    workers.give_up_unpolled();
                    continue;
                }
                Unpolled::LookAgainAt(at) => Some(at),
            }
        } else {
            workers.no_unpolled_seen();
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

/// Tells the next stages of a stop order to stop when nothing of an earlier stage is left
/// unjudged (or the budget ran out); returns when to look again.
fn start_stages(
    workers: &Workers,
    policy: &StopPolicy,
    lowest_stage: Option<usize>,
    bound: Option<Instant>,
) -> Instant {
    let now = Instant::now();
    // A task not polled yet may be of any stage: wait until it is (or step 3 gave up on it).
    let (through, why) = match lowest_stage {
        _ if now >= policy.deadline => (usize::MAX, StageStart::Budget),
        _ if workers.unpolled_pending() => (0, StageStart::EarlierDone),
        Some(lowest) => (lowest, StageStart::EarlierDone),
        None => (usize::MAX, StageStart::EarlierDone),
    };
    if workers.start_stages_through(through, now, why) {
        // Their stop timeouts run from now: look again at once.
        return now;
    }
    let again = now + STAGE_LOOK;
    bound.map_or(again, |at| at.min(again))
}

/// How often step 3 looks whether the next stage of a stop order may be told to stop.
const STAGE_LOOK: Duration = Duration::from_millis(5);

/// How long a task seen dropping its future gets before it counts as blocked in its destructor.
const DROPPING_CHECK: Duration = Duration::from_millis(5);

/// How many aborted tasks are woken at once before the sequence lets them run.
const WAKE_BATCH: usize = 1024;

/// Wakes aborted tasks a batch at a time, yielding between batches: a million woken at once would
/// queue ahead of the sequence itself, which could then not keep its own deadline. What the budget
/// leaves unwoken is woken after the report.
async fn wake_in_batches(workers: &Workers, wakers: Vec<std::task::Waker>, deadline: Instant) {
    let mut wakers = wakers.into_iter().peekable();
    let mut first = true;
    while wakers.peek().is_some() {
        // The first batch is woken even at the deadline: tasks the budget cut off there must
        // hear of their abort, or nothing could tell one blocked in its destructor.
        if !std::mem::take(&mut first) && Instant::now() >= deadline {
            workers.defer_wakes(wakers.collect());
            return;
        }
        wakers
            .by_ref()
            .take(WAKE_BATCH)
            .for_each(std::task::Waker::wake);
        if wakers.peek().is_some() {
            tokio::task::yield_now().await;
        }
    }
}
