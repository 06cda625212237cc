//! Where the fields of a `#[managed_resource]` report to while shutdown closes their resource: a
//! task-local sink the close runs in, turned into report entries under the resource afterwards.
//! (The code the macro generates, `ClosingFields`, is in `macro_support/fields.rs`.)

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::report::{Entry, EntryKind, Outcome};
use crate::util::lock;

/// How one field closed.
pub(crate) struct FieldRecord {
    /// The field names leading to this field's resource, for nested resources.
    pub(crate) path: Vec<String>,
    pub(crate) name: String,
    pub(crate) outcome: Outcome,
    pub(crate) detail: Option<String>,
    pub(crate) start: Instant,
    pub(crate) elapsed: Duration,
}

/// The records of one resource's close.
#[derive(Clone, Default)]
pub(crate) struct FieldSink(Arc<Mutex<Vec<FieldRecord>>>);

impl FieldSink {
    fn push(&self, record: FieldRecord) {
        lock(&self.0).push(record);
    }

    /// The records as entries under `resource`.
    pub(crate) fn take(&self, sequence_start: Instant, resource: &str) -> Vec<Entry> {
        let records = std::mem::take(&mut *lock(&self.0));
        records
            .into_iter()
            .map(|record| {
                let mut parent = resource.to_owned();
                for segment in &record.path {
                    parent.push('.');
                    parent.push_str(segment);
                }
                Entry::new(
                    record.name,
                    EntryKind::Field,
                    record.outcome,
                    record.start.saturating_duration_since(sequence_start),
                    record.elapsed,
                )
                .with_detail(record.detail)
                .with_parent(Some(parent))
            })
            .collect()
    }
}

tokio::task_local! {
    /// The sink of the resource shutdown is closing.
    pub(crate) static FIELDS: FieldSink;
    /// The field names leading to the resource being closed, for nested `#[managed_resource]`s.
    static FIELD_PATH: Vec<String>;
}

/// Records a field's close, when shutdown is closing its resource. Outside a shutdown (an early
/// `close()`) there is no report to add to; the close's own result still says what failed.
pub(crate) fn record(record: FieldRecord) {
    let _ = FIELDS.try_with(|sink| sink.push(record));
}

/// The field names leading to the resource being closed here.
pub(crate) fn current_path() -> Vec<String> {
    FIELD_PATH.try_with(Clone::clone).unwrap_or_default()
}

/// Runs `close` with `path` as the way to the resource it closes.
pub(crate) async fn with_path<F: Future>(path: Vec<String>, close: F) -> F::Output {
    FIELD_PATH.scope(path, close).await
}
