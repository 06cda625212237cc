//! After step 4, the work it started: closes that spawn tasks or manage resources (a cleanup
//! task, a resource opened to flush into) leave work that must not be dropped in silence. It is
//! stopped and closed like the rest, within what is left of the budget, in a few rounds; what
//! is still registered after them is reported as not closed.

use std::time::Duration;

use tokio::time::Instant;

use super::{close, offset, stop};
use crate::coordinator::Coordinator;
use crate::report::{Entry, Outcome};

/// Rounds of "stop the late workers, close the late resources": each round's closes may start
/// more; past this many, what is left is reported instead of waited for.
const MAX_LATE_ROUNDS: u32 = 3;

pub(super) async fn run(coordinator: &Coordinator, started: Instant, deadline: Instant) {
    let state = &coordinator.state;
    let (workers, resources, sequence) = (&state.workers, &state.resources, &state.sequence);
    for _ in 0..MAX_LATE_ROUNDS {
        let late_workers = !workers.settled();
        let late_resources = resources.has_open();
        if !late_workers && !late_resources {
            return;
        }
        if late_workers {
            stop::run(workers, deadline).await;
            sequence.record(workers.take_entries(started));
        }
        close::run(coordinator, started, deadline).await;
    }
    for resource in resources.take_for_shutdown() {
        let mut detail = format!(
            "registered while shutdown closed resources, after {MAX_LATE_ROUNDS} rounds of late work: not closed"
        );
        if let Some(more) = resource.unclosed_detail() {
            detail = format!("{detail}; {more}");
        }
        sequence.record(vec![
            Entry::new(
                resource.name(),
                resource.kind(),
                Outcome::Skipped,
                offset(started),
                Duration::ZERO,
            )
            .with_detail(Some(detail)),
        ]);
        resource.mark_skipped();
        resources.reached(&resource);
    }
}
