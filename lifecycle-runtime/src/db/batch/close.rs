//! The writer's entry in the shutdown report. A writer registers a resource named
//! `batch-writer <name>` when it starts, after the database it writes to, so step 4 closes it
//! before the pool; by then step 3 has let its task finish the final flush or cut it off. Its
//! close says what became of every accepted item: clean when all were written, an error with the
//! counts and the cause otherwise.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use super::ledger::{Account, Ledger};
use crate::resources::{Close, CloseError};

/// How long the close waits for the writer task to be gone. Step 3 has stopped or cut off every
/// task before resources close, so only a task stuck in synchronous code takes this long.
const TASK_GONE_WAIT: Duration = Duration::from_secs(1);

/// The resource that stands for a writer in the report. It holds the ledger, not the writer's
/// shared state: that holds the coordinator, which holds this until shutdown.
pub(super) struct Accounts<T> {
    pub(super) name: String,
    pub(super) ledger: Arc<Ledger<T>>,
}

impl<T: Send + Sync + 'static> Close for Accounts<T> {
    async fn close(&self) -> Result<(), CloseError> {
        let ledger = &self.ledger;
        let gone = tokio::time::timeout(TASK_GONE_WAIT, ledger.finished())
            .await
            .is_ok();
        let account = ledger.account();
        match describe(&account, gone) {
            None => Ok(()),
            Some(problem) => Err(problem.into()),
        }
    }

    fn close_timeout(&self) -> Duration {
        // Our own wait ends first, so the counts are reported before the coordinator gives up.
        TASK_GONE_WAIT + Duration::from_millis(250)
    }

    fn close_name(&self) -> Cow<'static, str> {
        Cow::Owned(format!("batch-writer {}", self.name))
    }

    fn unclosed_detail(&self) -> Option<String> {
        let ledger = &self.ledger;
        describe(&ledger.account(), ledger.is_finished())
    }
}

/// What went wrong, in one line that carries every count: `None` when every accepted item was
/// written. `gone`: the writer task has finished and its counts are final.
fn describe(account: &Account, gone: bool) -> Option<String> {
    let stats = &account.stats;
    let accepted = stats.accepted;
    let last_error = account.last_error.as_deref().unwrap_or("no error recorded");
    if !gone {
        return Some(format!(
            "the writer task had not finished: {} of {accepted} accepted items still pending; written {}, failed {}, not written {}",
            stats.pending, stats.written, stats.failed, stats.not_written
        ));
    }
    if stats.not_written > 0 {
        let cause = account.cause.as_deref().unwrap_or("cause not recorded");
        let mut text = format!(
            "{} of {accepted} accepted items not written ({cause}); written {}, failed {}",
            stats.not_written, stats.written, stats.failed
        );
        // The cause names the last error already when it came during the final flush.
        if stats.failed > 0 && !cause.contains(last_error) {
            text.push_str(&format!(" (last error: {last_error})"));
        }
        return Some(text);
    }
    if stats.failed > 0 {
        return Some(format!(
            "{} of {accepted} accepted items could not be written (last error: {last_error}); written {}, not written 0",
            stats.failed, stats.written
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::BatchStats;

    fn account(written: u64, failed: u64, not_written: u64, pending: u64) -> Account {
        Account {
            stats: BatchStats {
                accepted: written + failed + not_written + pending,
                written,
                failed,
                not_written,
                pending,
            },
            cause: (not_written > 0).then(|| "the flush timeout of 5s ran out".to_owned()),
            last_error: (failed > 0).then(|| "connection refused".to_owned()),
        }
    }

    #[test]
    fn all_written_is_clean() {
        assert_eq!(describe(&account(10, 0, 0, 0), true), None);
    }

    #[test]
    fn not_written_names_the_counts_and_the_cause() {
        assert_eq!(
            describe(&account(286_233, 0, 713_767, 0), true).as_deref(),
            Some(
                "713767 of 1000000 accepted items not written (the flush timeout of 5s ran out); written 286233, failed 0"
            )
        );
        assert_eq!(
            describe(&account(5, 2, 3, 0), true).as_deref(),
            Some(
                "3 of 10 accepted items not written (the flush timeout of 5s ran out); written 5, failed 2 (last error: connection refused)"
            )
        );
    }

    #[test]
    fn failed_names_the_counts_and_the_last_error() {
        assert_eq!(
            describe(&account(3, 7, 0, 0), true).as_deref(),
            Some(
                "7 of 10 accepted items could not be written (last error: connection refused); written 3, not written 0"
            )
        );
    }

    #[test]
    fn a_task_still_running_is_not_clean_even_without_losses_yet() {
        assert_eq!(
            describe(&account(1, 0, 0, 4), false).as_deref(),
            Some(
                "the writer task had not finished: 4 of 5 accepted items still pending; written 1, failed 0, not written 0"
            )
        );
    }
}
