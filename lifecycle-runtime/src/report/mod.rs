//! The shutdown report: what was stopped and closed, how, and how long it took. Owns the words
//! the report speaks ([`EntryKind`], [`Outcome`]), why shutdown started ([`ShutdownReason`]), and
//! the timeline a person reads (`timeline.rs`).

mod format;
mod reason;
mod timeline;

use std::fmt;
use std::time::Duration;

use serde::Serialize;

pub(crate) use format::PROGRESS_NAMES;
pub use format::{REPORT_VAR, ReportFormat};
pub(crate) use reason::Location;
pub use reason::ShutdownReason;

/// What an entry of the report is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EntryKind {
    /// The drain wait (step 2).
    Drain,
    /// The body of `#[lifecycle_runtime::main]`.
    Main,
    /// A tracked tokio task (including `#[background]` loops).
    Task,
    /// An OS thread.
    Thread,
    /// A managed resource (step 4).
    Resource,
    /// One field of a `#[managed_resource]`, listed under its resource.
    Field,
    /// A managed subprocess.
    Process,
    /// A stage of a stop order (workers declared to stop after others): when it was told to
    /// stop, and until its last worker ended. Named by its number.
    Stage,
    /// The shutdown sequence itself (listed only when it failed: a panic in code it ran outside
    /// any entry's guard, or the runtime running it went away).
    Sequence,
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryKind::Drain => "drain",
            // The body of `main` is a task named "main".
            EntryKind::Main | EntryKind::Task => "task",
            EntryKind::Thread => "thread",
            EntryKind::Resource => "resource",
            EntryKind::Field => "field",
            EntryKind::Process => "process",
            EntryKind::Stage => "stage",
            EntryKind::Sequence => "shutdown",
        })
    }
}

/// How an entry ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "outcome", content = "message", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// A task or thread stopped when told to (or ended by itself during shutdown).
    Stopped,
    /// A resource, field or subprocess closed as asked.
    Closed,
    /// The drain ran its full time.
    Drained,
    /// Ended with an error (the message).
    Error(String),
    /// Did not finish within its time limit.
    TimedOut,
    /// Panicked; the panic was contained.
    Panicked,
    /// Ignored shutdown and was aborted after its stop timeout.
    Aborted,
    /// Still running after shutdown: a thread that would not stop, a task stuck in synchronous
    /// code, an OS thread started outside this crate.
    Leaked,
    /// Not reached: the shutdown budget ran out first.
    Skipped,
}

impl Outcome {
    /// Only [`Outcome::Stopped`], [`Outcome::Closed`] and [`Outcome::Drained`] are clean.
    pub fn is_clean(&self) -> bool {
        matches!(self, Outcome::Stopped | Outcome::Closed | Outcome::Drained)
    }

    /// The word the timeline prints.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Outcome::Stopped => "stopped",
            Outcome::Closed => "closed",
            Outcome::Drained => "drained",
            Outcome::Error(_) => "ERROR",
            Outcome::TimedOut => "TIMED OUT",
            Outcome::Panicked => "PANICKED",
            Outcome::Aborted => "ABORTED",
            Outcome::Leaked => "LEAKED",
            Outcome::Skipped => "SKIPPED",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    name: String,
    kind: EntryKind,
    #[serde(flatten)]
    outcome: Outcome,
    #[serde(rename = "start_secs", serialize_with = "crate::util::secs")]
    start: Duration,
    #[serde(rename = "elapsed_secs", serialize_with = "crate::util::secs")]
    elapsed: Duration,
    count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
}

impl Entry {
    pub(crate) fn new(
        name: impl fmt::Display,
        kind: EntryKind,
        outcome: Outcome,
        start: Duration,
        elapsed: Duration,
    ) -> Entry {
        Entry {
            name: name.to_string(),
            kind,
            outcome,
            start,
            elapsed,
            count: 1,
            detail: None,
            parent: None,
        }
    }

    pub(crate) fn with_detail(mut self, detail: Option<String>) -> Entry {
        self.detail = detail;
        self
    }

    pub(crate) fn with_parent(mut self, parent: Option<String>) -> Entry {
        self.parent = parent;
        self
    }

    /// Several workers of one name that ended the same way, as one entry.
    pub(crate) fn with_count(mut self, count: usize) -> Entry {
        self.count = count;
        self
    }

    /// Folds `count` more workers of the same name and outcome into this entry; `elapsed` is the
    /// longest of them.
    pub(crate) fn absorb(&mut self, count: usize, elapsed: Duration) {
        self.count += count;
        self.elapsed = self.elapsed.max(elapsed);
    }

    /// The name of the task, thread, resource or field.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the entry is.
    pub fn kind(&self) -> EntryKind {
        self.kind
    }

    /// How it ended.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// When it started, counted from the trigger.
    pub fn start(&self) -> Duration {
        self.start
    }

    /// How long it took (for folded entries, the longest).
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// How many tasks or threads of this name ended this way (1 for resources).
    pub fn count(&self) -> usize {
        self.count
    }

    /// More about the outcome: the panic message, which limit was hit, who held a connection.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// For a field, the resource it belongs to (dotted for nested resources).
    pub fn parent(&self) -> Option<&str> {
        self.parent.as_deref()
    }

    /// Whether the entry ended as asked.
    pub fn is_clean(&self) -> bool {
        self.outcome.is_clean()
    }
}

/// What shutdown did: one entry per drain, task name, thread, resource and field, with outcome and
/// time. `Display` prints a timeline a person can scan; `serde::Serialize` gives the same for
/// machines.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let coordinator = lifecycle_runtime::Coordinator::new();
/// let report = coordinator
///     .scope(async {
///         lifecycle_runtime::spawn("ticker", async {
///             lifecycle_runtime::shutdown_signal().triggered().await;
///         });
///         lifecycle_runtime::shutdown().await
///     })
///     .await;
/// assert!(report.is_clean());
/// assert_eq!(report.entries()[0].name(), "ticker");
/// println!("{report}");
/// # }
/// ```
#[derive(Clone, Debug, Serialize)]
pub struct ShutdownReport {
    reason: ShutdownReason,
    #[serde(rename = "budget_secs", serialize_with = "crate::util::secs")]
    budget: Duration,
    #[serde(rename = "elapsed_secs", serialize_with = "crate::util::secs")]
    elapsed: Duration,
    clean: bool,
    entries: Vec<Entry>,
    lingering_threads: Vec<String>,
}

impl ShutdownReport {
    pub(crate) fn new(
        reason: ShutdownReason,
        budget: Duration,
        elapsed: Duration,
        entries: Vec<Entry>,
        lingering_threads: Vec<String>,
    ) -> ShutdownReport {
        let clean = entries.iter().all(Entry::is_clean) && lingering_threads.is_empty();
        ShutdownReport {
            reason,
            budget,
            elapsed,
            clean,
            entries,
            lingering_threads,
        }
    }

    /// The report of a sequence that could not finish: it panicked, or the runtime running it
    /// went away. What it had not reached yet is not known, so the one entry says only that.
    pub(crate) fn sequence_failed(
        reason: ShutdownReason,
        budget: Duration,
        elapsed: Duration,
        outcome: Outcome,
        why: &str,
    ) -> ShutdownReport {
        let entry = Entry::new(
            "shutdown sequence",
            EntryKind::Sequence,
            outcome,
            Duration::ZERO,
            elapsed,
        )
        .with_detail(Some(format!(
            "{why}; tasks and resources it had not reached were left as they were"
        )));
        ShutdownReport::new(reason, budget, elapsed, vec![entry], Vec::new())
    }

    /// Why shutdown started.
    pub fn reason(&self) -> &ShutdownReason {
        &self.reason
    }

    /// The global budget in force.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// How long the whole sequence took, from the trigger to the report.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Every entry, in the order shutdown dealt with them.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Entries that did not end as asked.
    pub fn problems(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|entry| !entry.is_clean())
    }

    /// The first entry with this name, if any.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    /// Names of OS threads still alive after shutdown that were not started through this crate
    /// (Linux only; empty where the coordinator does not scan).
    pub fn lingering_threads(&self) -> &[String] {
        &self.lingering_threads
    }

    /// True when every entry stopped, closed or drained as asked and no thread lingers.
    pub fn is_clean(&self) -> bool {
        self.clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_outcomes_and_seconds() {
        let report = ShutdownReport::new(
            ShutdownReason::MainReturned,
            Duration::from_secs(30),
            Duration::from_secs(2),
            vec![Entry::new(
                "db",
                EntryKind::Resource,
                Outcome::Error("refused".into()),
                Duration::ZERO,
                Duration::from_millis(500),
            )],
            Vec::new(),
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["clean"], false);
        assert_eq!(json["reason"]["kind"], "main_returned");
        assert_eq!(json["entries"][0]["outcome"], "error");
        assert_eq!(json["entries"][0]["message"], "refused");
        assert_eq!(json["entries"][0]["elapsed_secs"], 0.5);
        assert_eq!(json["entries"][0]["kind"], "resource");
    }

    #[test]
    fn only_stopped_closed_and_drained_are_clean() {
        for clean in [Outcome::Stopped, Outcome::Closed, Outcome::Drained] {
            assert!(clean.is_clean(), "{clean:?}");
        }
        for unclean in [
            Outcome::Error("x".into()),
            Outcome::TimedOut,
            Outcome::Panicked,
            Outcome::Aborted,
            Outcome::Leaked,
            Outcome::Skipped,
        ] {
            assert!(!unclean.is_clean(), "{unclean:?}");
        }
    }

    #[test]
    fn a_failed_sequence_says_what_it_did_not_reach() {
        let report = ShutdownReport::sequence_failed(
            ShutdownReason::TestFinished,
            Duration::from_secs(5),
            Duration::from_millis(3),
            Outcome::Panicked,
            "it panicked: boom",
        );
        assert!(!report.is_clean());
        let entry = &report.entries()[0];
        assert_eq!(entry.kind(), EntryKind::Sequence);
        assert_eq!(entry.name(), "shutdown sequence");
        assert!(
            entry
                .detail()
                .unwrap()
                .starts_with("it panicked: boom; tasks and resources")
        );
    }
}
