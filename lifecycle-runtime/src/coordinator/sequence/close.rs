//! Step 4, closing resources: newest first (later resources depend on earlier ones), each under
//! its own limit capped by what is left of the budget; what the budget cannot reach is skipped
//! and reported (with what it still says about itself), never waited on.

use std::time::Duration;

use tokio::time::Instant;

use super::offset;
use crate::report::{Entry, Outcome};
use crate::resources::Resources;

/// Closes every registered resource; their entries, with their fields' under them.
pub(super) async fn run(resources: &Resources, started: Instant, deadline: Instant) -> Vec<Entry> {
    let mut entries = Vec::new();
    for resource in resources.take_for_shutdown() {
        if Instant::now() >= deadline {
            let skipped = "shutdown budget exhausted before it could close";
            let detail = match resource.skipped_detail() {
                Some(more) => format!("{skipped}; {more}"),
                None => skipped.to_owned(),
            };
            entries.push(
                Entry::new(
                    resource.name(),
                    resource.kind(),
                    Outcome::Skipped,
                    offset(started),
                    Duration::ZERO,
                )
                .with_detail(Some(detail)),
            );
            resource.mark_skipped();
            continue;
        }
        entries.extend(
            resources
                .close_for_shutdown(&resource, deadline, started)
                .await,
        );
    }
    entries
}
