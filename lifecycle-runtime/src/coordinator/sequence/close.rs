//! Step 4, closing resources: newest first (later resources depend on earlier ones), each under
//! its own limit capped by what is left of the budget, each in a task of its own (a close that
//! blocks its thread is left behind at its limit, the sequence goes on); what the budget cannot
//! reach is skipped and reported (with what it still says about itself), never waited on. Each
//! resource's entries are recorded as soon as it is done, for a report written at the hard
//! deadline.

use std::time::Duration;

use tokio::time::Instant;

use super::offset;
use crate::coordinator::Coordinator;
use crate::report::{Entry, Outcome};
use crate::resources::ClosingTask;

/// Closes every registered resource, recording their entries (with their fields' under them).
pub(super) async fn run(coordinator: &Coordinator, started: Instant, deadline: Instant) {
    let resources = &coordinator.state.resources;
    let record = |entries| coordinator.state.sequence.record(entries);
    for resource in resources.take_for_shutdown() {
        if Instant::now() >= deadline {
            let skipped = "shutdown budget exhausted before it could close";
            let detail = match resource.unclosed_detail() {
                Some(more) => format!("{skipped}; {more}"),
                None => skipped.to_owned(),
            };
            record(vec![
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
            continue;
        }
        // In the coordinator's scope: what a close spawns or manages belongs to it.
        let spawn = |closing: ClosingTask| tokio::spawn(coordinator.scope(closing));
        record(
            resources
                .close_for_shutdown(&resource, deadline, started, spawn)
                .await,
        );
    }
}
