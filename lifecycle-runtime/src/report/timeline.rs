//! The report as a person reads it: a first line with the reason, verdict and time, then one
//! line per entry with a bar on the shared time axis.

use std::fmt::{self, Write as _};
use std::time::Duration;

use super::{Outcome, ShutdownReport};
use crate::util::{format_duration, format_offset};

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
                entry.outcome.label(),
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

#[cfg(test)]
mod tests {
    use super::super::{Entry, EntryKind, ShutdownReason};
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
    fn timeline_has_one_line_per_entry_with_bar_outcome_and_detail() {
        let report = report(vec![
            Entry::new(
                "ticker",
                EntryKind::Task,
                Outcome::Stopped,
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
            Outcome::Stopped,
            Duration::ZERO,
            Duration::from_millis(1),
        );
        entry.absorb(2, Duration::from_millis(3));
        assert_eq!(entry.count(), 3);
        assert_eq!(entry.elapsed(), Duration::from_millis(3));
        assert!(report(vec![entry]).to_string().contains("task conn ×3"));
    }
}
