//! Step 5's look at the process: OS threads still alive that nothing in lifecycle started (and
//! that were not there when the coordinator was made) are named in the report.

use std::time::Duration;

use tokio::time::Instant;

use super::offset;
use crate::os_threads::{self, OsThread};
use crate::report::{Entry, EntryKind, Outcome};
use crate::workers::Workers;

/// The lingering threads: their entries, and their names for the report.
#[derive(Default)]
pub(super) struct Lingering {
    pub(super) entries: Vec<Entry>,
    pub(super) names: Vec<String>,
}

pub(super) async fn run(
    workers: &Workers,
    baseline: &[OsThread],
    started: Instant,
    deadline: Instant,
) -> Lingering {
    let mut known = Vec::new();
    workers.for_each(|worker| known.push(worker.name().to_string()));
    let threads = os_threads::lingering(baseline, &known, deadline).await;
    let entries = threads
        .iter()
        .map(|thread| {
            Entry::new(
                &thread.name,
                EntryKind::Thread,
                Outcome::Leaked,
                offset(started),
                Duration::ZERO,
            )
            .with_detail(Some(format!(
                "OS thread {} (tid {}) was not started through lifecycle and is still running",
                thread.name, thread.tid
            )))
        })
        .collect();
    Lingering {
        entries,
        names: threads.into_iter().map(|thread| thread.name).collect(),
    }
}
