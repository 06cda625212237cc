//! Step 2, the drain: readiness went false at the start; wait the drain time (cut short by the
//! budget) so a load balancer stops sending traffic before tasks are told to stop.

use std::time::Duration;

use tokio::time::Instant;

use crate::report::{Entry, EntryKind, Outcome};

/// Waits the drain; its report entry, if there is a drain.
pub(super) async fn run(drain: Duration, deadline: Instant) -> Vec<Entry> {
    if drain.is_zero() {
        return Vec::new();
    }
    let wait = drain.min(deadline.saturating_duration_since(Instant::now()));
    tokio::time::sleep(wait).await;
    let (outcome, detail) = if wait < drain {
        (
            Outcome::Skipped,
            Some("drain cut short by the shutdown budget".to_owned()),
        )
    } else {
        (Outcome::Drained, None)
    };
    vec![Entry::new("drain", EntryKind::Drain, outcome, Duration::ZERO, wait).with_detail(detail)]
}
