//! The shutdown report: what was stopped and closed, how, and how long it took.

use std::fmt::{self, Write as _};
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::shutdown::ShutdownReason;

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
    /// The shutdown sequence itself (listed only when it failed, say by a panic in code it ran
    /// outside any entry's guard).
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
            EntryKind::Sequence => "shutdown",
        })
    }
}

/// How an entry ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "outcome", content = "message", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Stopped or closed as asked.
    Closed,
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
    /// Only [`Outcome::Closed`] is clean.
    pub fn is_clean(&self) -> bool {
        matches!(self, Outcome::Closed)
    }

    fn label(&self, kind: EntryKind) -> &'static str {
        match self {
            Outcome::Closed => match kind {
                EntryKind::Main | EntryKind::Task | EntryKind::Thread | EntryKind::Process => {
                    "stopped"
                }
                EntryKind::Drain => "drained",
                EntryKind::Resource | EntryKind::Field | EntryKind::Sequence => "closed",
            },
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
    #[serde(rename = "start_secs", serialize_with = "secs")]
    start: Duration,
    #[serde(rename = "elapsed_secs", serialize_with = "secs")]
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

    /// Folds one more worker of the same name and outcome into this entry.
    pub(crate) fn absorb(&mut self, elapsed: Duration) {
        self.count += 1;
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
    #[serde(rename = "budget_secs", serialize_with = "secs")]
    budget: Duration,
    #[serde(rename = "elapsed_secs", serialize_with = "secs")]
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

    /// True when every entry stopped or closed as asked and no thread lingers.
    pub fn is_clean(&self) -> bool {
        self.clean
    }
}

/// Width of the time bar in the timeline.
const BAR: usize = 20;

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let problems = self.problems().count();
        let verdict = match problems {
            0 => "clean".to_owned(),
            1 => "1 problem".to_owned(),
            n => format!("{n} problems"),
        };
        writeln!(
            f,
            "shutdown: {} · {} · took {} of {} budget",
            self.reason,
            verdict,
            format_duration(self.elapsed),
            format_duration(self.budget)
        )?;
        if self.entries.is_empty() {
            return writeln!(f, "  (nothing to stop or close)");
        }
        writeln!(
            f,
            "  {:>8} {:>8}  {:<width$}  {:<9} entry",
            "start",
            "took",
            "timeline",
            "outcome",
            width = BAR + 2
        )?;
        let scale = self.elapsed.max(Duration::from_millis(1)).as_secs_f64();
        for entry in &self.entries {
            let mut bar = String::with_capacity(BAR + 2);
            let from = ((entry.start.as_secs_f64() / scale) * BAR as f64).floor() as usize;
            let to = (((entry.start + entry.elapsed).as_secs_f64() / scale) * BAR as f64).ceil()
                as usize;
            let (from, to) = (from.min(BAR - 1), to.clamp(from.min(BAR - 1) + 1, BAR));
            bar.push('|');
            for cell in 0..BAR {
                bar.push(if cell >= from && cell < to {
                    '█'
                } else {
                    ' '
                });
            }
            bar.push('|');
            let indent = if entry.parent.is_some() { "  " } else { "" };
            let mut line = format!(
                "  {:>8} {:>8}  {}  {:<9} {}{} {}",
                format_offset(entry.start),
                format_offset(entry.elapsed),
                bar,
                entry.outcome.label(entry.kind),
                indent,
                entry.kind,
                entry.name
            );
            if entry.count > 1 {
                let _ = write!(line, " ×{}", entry.count);
            }
            if let Outcome::Error(message) = &entry.outcome {
                let _ = write!(line, " — {message}");
            }
            if let Some(detail) = &entry.detail {
                let _ = write!(line, " — {detail}");
            }
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

impl ShutdownReport {
    /// A report for a coordinator that never ran its sequence (only reachable if the sequence
    /// task itself was torn down with its runtime).
    pub(crate) fn empty() -> ShutdownReport {
        ShutdownReport::new(
            ShutdownReason::TestFinished,
            Duration::ZERO,
            Duration::ZERO,
            vec![
                Entry::new(
                    "shutdown sequence",
                    EntryKind::Task,
                    Outcome::Aborted,
                    Duration::ZERO,
                    Duration::ZERO,
                )
                .with_detail(Some(
                    "the runtime running the shutdown sequence went away".to_owned(),
                )),
            ],
            Vec::new(),
        )
    }
}

/// A duration as a person writes it: `2s`, `1.25s`, `150ms`, `800µs`.
pub(crate) fn format_duration(duration: Duration) -> String {
    if duration >= Duration::from_secs(1) {
        if duration.subsec_nanos() == 0 {
            format!("{}s", duration.as_secs())
        } else {
            format!("{:.2}s", duration.as_secs_f64())
        }
    } else if duration >= Duration::from_millis(1) {
        if duration.subsec_nanos() % 1_000_000 == 0 {
            format!("{}ms", duration.as_millis())
        } else {
            format!("{:.1}ms", duration.as_secs_f64() * 1e3)
        }
    } else {
        format!("{}µs", duration.as_micros())
    }
}

/// A fixed-width offset for the timeline columns.
fn format_offset(duration: Duration) -> String {
    format!("{:.3}s", duration.as_secs_f64())
}

pub(crate) fn secs<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(entries: Vec<Entry>) -> ShutdownReport {
        ShutdownReport::new(
            ShutdownReason::MainReturned,
            Duration::from_secs(30),
            Duration::from_secs(2),
            entries,
            Vec::new(),
        )
    }

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_millis(1250)), "1.25s");
        assert_eq!(format_duration(Duration::from_millis(150)), "150ms");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(format_duration(Duration::from_micros(800)), "800µs");
    }

    #[test]
    fn timeline_has_one_line_per_entry_with_bar_outcome_and_detail() {
        let report = report(vec![
            Entry::new(
                "ticker",
                EntryKind::Task,
                Outcome::Closed,
                Duration::ZERO,
                Duration::from_millis(10),
            ),
            Entry::new(
                "stuck",
                EntryKind::Task,
                Outcome::Aborted,
                Duration::ZERO,
                Duration::from_secs(2),
            )
            .with_detail(Some("ignored shutdown".to_owned())),
            Entry::new(
                "db",
                EntryKind::Resource,
                Outcome::Error("refused".into()),
                Duration::from_secs(2),
                Duration::ZERO,
            ),
        ]);
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[0].contains("main returned · 2 problems · took 2s of 30s budget"),
            "{text}"
        );
        assert!(lines[2].contains("stopped   task ticker"), "{text}");
        assert!(lines[3].contains("|████████████████████|"), "{text}");
        assert!(
            lines[3].contains("ABORTED   task stuck — ignored shutdown"),
            "{text}"
        );
        assert!(
            lines[4].contains("ERROR     resource db — refused"),
            "{text}"
        );
        assert!(!report.is_clean());
        assert_eq!(report.problems().count(), 2);
    }

    #[test]
    fn folded_entries_show_their_count() {
        let mut entry = Entry::new(
            "conn",
            EntryKind::Task,
            Outcome::Closed,
            Duration::ZERO,
            Duration::from_millis(1),
        );
        entry.absorb(Duration::from_millis(3));
        entry.absorb(Duration::from_millis(2));
        assert_eq!(entry.count(), 3);
        assert_eq!(entry.elapsed(), Duration::from_millis(3));
        assert!(report(vec![entry]).to_string().contains("task conn ×3"));
    }

    #[test]
    fn serializes_outcomes_and_seconds() {
        let report = report(vec![Entry::new(
            "db",
            EntryKind::Resource,
            Outcome::Error("refused".into()),
            Duration::ZERO,
            Duration::from_millis(500),
        )]);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["clean"], false);
        assert_eq!(json["reason"]["kind"], "main_returned");
        assert_eq!(json["entries"][0]["outcome"], "error");
        assert_eq!(json["entries"][0]["message"], "refused");
        assert_eq!(json["entries"][0]["elapsed_secs"], 0.5);
        assert_eq!(json["entries"][0]["kind"], "resource");
    }
}
