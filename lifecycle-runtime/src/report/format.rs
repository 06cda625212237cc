//! How `#[main]` gives its report: the multi-line text, one JSON line for log pipelines, tracing
//! events, or nothing; and the progress of a long shutdown in the same form.

use std::time::Duration;

use super::ShutdownReport;
use crate::util::format_duration;

/// How many names (folded) a progress line lists before "(+N more)".
pub(crate) const PROGRESS_NAMES: usize = 8;

/// The environment variable that chooses the report's form, over `#[main(report = "...")]`.
pub const REPORT_VAR: &str = "LIFECYCLE_REPORT";

/// How `#[lifecycle_runtime::main]` gives its shutdown report, and the progress lines of a
/// shutdown longer than a second: `#[main(report = "json")]`, or `LIFECYCLE_REPORT=json`, which
/// wins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReportFormat {
    /// The multi-line report on stderr (the default).
    #[default]
    Text,
    /// One line of JSON on stderr: the report as [`ShutdownReport`] serializes, with
    /// `exit_code`, and `error` when `main` failed.
    Json,
    /// `tracing` events: one summary (`info` when clean, `error` otherwise) and one `error`
    /// event per entry that is not clean. Nothing is written to stderr by the runtime itself.
    Tracing,
    /// Nothing.
    Off,
}

impl ReportFormat {
    /// Every form, by the name `report = "..."` and `LIFECYCLE_REPORT` take.
    pub const NAMES: [(&'static str, ReportFormat); 4] = [
        ("text", ReportFormat::Text),
        ("json", ReportFormat::Json),
        ("tracing", ReportFormat::Tracing),
        ("off", ReportFormat::Off),
    ];

    /// The form named `name`.
    pub fn from_name(name: &str) -> Option<ReportFormat> {
        Self::NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, format)| *format)
    }

    /// The form's name.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, format)| *format == self)
            .map_or("text", |(name, _)| name)
    }

    /// `LIFECYCLE_REPORT` when set, else `default`; a value that names no form is an error
    /// naming the variable, the value and the forms.
    pub(crate) fn from_env(default: ReportFormat) -> Result<ReportFormat, String> {
        let Some(value) = std::env::var_os(REPORT_VAR) else {
            return Ok(default);
        };
        let names: Vec<&str> = Self::NAMES.iter().map(|(name, _)| *name).collect();
        let wrong = |shown: &str| {
            format!(
                "environment variable {REPORT_VAR}={shown} is not a report format; write one of {}, or unset it to use {}",
                names.join(", "),
                default.name()
            )
        };
        let value = value
            .into_string()
            .map_err(|value| wrong(&format!("{value:?}")))?;
        Self::from_name(value.trim()).ok_or_else(|| wrong(&format!("{value:?}")))
    }

    /// Gives the finished report: returns the text to write to stderr (none for `Tracing`,
    /// which emits its events here, and for `Off`). `error` is `main`'s error, if it failed.
    pub(crate) fn render(
        self,
        report: &ShutdownReport,
        error: Option<&str>,
        code: u8,
    ) -> Option<String> {
        match self {
            ReportFormat::Text => {
                let mut text = report.to_string();
                if let Some(error) = error {
                    text.push_str(&format!("Error: {error}\n"));
                }
                Some(text)
            }
            ReportFormat::Json => {
                let mut value = serde_json::to_value(report).unwrap_or_else(
                    |error| serde_json::json!({ "report_error": error.to_string() }),
                );
                if let Some(object) = value.as_object_mut() {
                    object.insert("exit_code".to_owned(), code.into());
                    if let Some(error) = error {
                        object.insert("error".to_owned(), error.into());
                    }
                }
                Some(format!("{value}\n"))
            }
            ReportFormat::Tracing => {
                emit(report, error, code);
                None
            }
            ReportFormat::Off => None,
        }
    }

    /// A line saying how far a long shutdown has come and what it still waits for (none for
    /// `Tracing`, which emits an event, and for `Off`).
    pub(crate) fn progress(
        self,
        elapsed: Duration,
        budget: Duration,
        waiting_for: &[String],
    ) -> Option<String> {
        match self {
            ReportFormat::Text => Some(format!(
                "shutdown: {} of {} budget; waiting for: {}\n",
                format_duration(elapsed),
                format_duration(budget),
                match waiting_for.is_empty() {
                    true => "the report".to_owned(),
                    false => waiting_for.join(", "),
                }
            )),
            ReportFormat::Json => Some(format!(
                "{}\n",
                serde_json::json!({
                    "shutdown_progress": {
                        "elapsed_secs": elapsed.as_secs_f64(),
                        "budget_secs": budget.as_secs_f64(),
                        "waiting_for": waiting_for,
                    }
                })
            )),
            ReportFormat::Tracing => {
                tracing::info!(
                    elapsed_secs = elapsed.as_secs_f64(),
                    budget_secs = budget.as_secs_f64(),
                    waiting_for = %waiting_for.join(", "),
                    "shutdown in progress"
                );
                None
            }
            ReportFormat::Off => None,
        }
    }
}

/// The report as tracing events: a summary, then one event per entry that is not clean.
fn emit(report: &ShutdownReport, error: Option<&str>, code: u8) {
    let elapsed_secs = report.elapsed().as_secs_f64();
    let reason = report.reason().to_string();
    if report.is_clean() && error.is_none() {
        tracing::info!(
            reason,
            elapsed_secs,
            entries = report.entries().len(),
            exit_code = code,
            "shutdown finished clean"
        );
    } else {
        tracing::error!(
            reason,
            elapsed_secs,
            entries = report.entries().len(),
            exit_code = code,
            error = error.unwrap_or_default(),
            "shutdown finished with problems"
        );
    }
    for entry in report.entries() {
        if entry.outcome().is_clean() {
            continue;
        }
        tracing::error!(
            entry = entry.name(),
            kind = %entry.kind(),
            outcome = ?entry.outcome(),
            count = entry.count(),
            started_secs = entry.start().as_secs_f64(),
            took_secs = entry.elapsed().as_secs_f64(),
            detail = entry.detail().unwrap_or_default(),
            "shutdown entry"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_and_nothing_else_does() {
        for (name, format) in ReportFormat::NAMES {
            assert_eq!(ReportFormat::from_name(name), Some(format));
            assert_eq!(format.name(), name);
        }
        assert_eq!(ReportFormat::from_name("bogus"), None);
        assert_eq!(ReportFormat::from_name("JSON"), None);
    }

    /// What a `tracing` subscriber writes while `f` runs.
    fn traced(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Captured {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn tracing_gives_one_summary_and_one_event_per_entry_that_is_not_clean() {
        use crate::report::{Entry, EntryKind, Outcome, ShutdownReason};

        let report = ShutdownReport::new(
            ShutdownReason::MainReturned,
            Duration::from_secs(30),
            Duration::from_secs(2),
            vec![
                Entry::new(
                    "server",
                    EntryKind::Task,
                    Outcome::Stopped,
                    Duration::ZERO,
                    Duration::from_millis(5),
                ),
                Entry::new(
                    "db",
                    EntryKind::Resource,
                    Outcome::Error("refused".into()),
                    Duration::ZERO,
                    Duration::from_millis(500),
                ),
            ],
            Vec::new(),
        );
        let mut written = Some(String::new());
        let logged = traced(|| written = ReportFormat::Tracing.render(&report, None, 1));
        assert_eq!(written, None, "nothing for stderr");
        let lines: Vec<&str> = logged.lines().collect();
        assert_eq!(lines.len(), 2, "{logged}");
        assert!(lines[0].contains("ERROR") && lines[0].contains("shutdown finished with problems"));
        assert!(lines[0].contains("exit_code=1"), "{}", lines[0]);
        assert!(lines[1].contains("shutdown entry") && lines[1].contains("entry=\"db\""));
        assert!(lines[1].contains("refused"), "{}", lines[1]);
        assert!(
            !logged.contains("server"),
            "clean entries are not events: {logged}"
        );
    }

    #[test]
    fn progress_says_what_is_awaited_in_each_form() {
        let waiting = ["task server".to_owned(), "resource db".to_owned()];
        let text = ReportFormat::Text
            .progress(Duration::from_secs(2), Duration::from_secs(30), &waiting)
            .unwrap();
        assert_eq!(
            text,
            "shutdown: 2s of 30s budget; waiting for: task server, resource db\n"
        );
        let json = ReportFormat::Json
            .progress(Duration::from_secs(2), Duration::from_secs(30), &waiting)
            .unwrap();
        assert!(json.ends_with('\n') && json.lines().count() == 1, "{json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["shutdown_progress"]["waiting_for"][1], "resource db");
        assert_eq!(value["shutdown_progress"]["budget_secs"], 30.0);
        assert!(
            ReportFormat::Off
                .progress(Duration::ZERO, Duration::ZERO, &waiting)
                .is_none()
        );
    }
}
