//! How a worker's fate reads in the report: the one function that turns every way a worker can
//! end (or be given up on) into an [`Outcome`] and its detail, and the report entries of the
//! workers that ended during shutdown, folded by name.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::node::{Node, Verdict};
use super::registry::{Folded, FoldedEnd};
use super::{Ended, Stage, StageStart, TaskName, WorkerKind, Workers};
use crate::report::{Entry, EntryKind, Outcome};
use crate::util::{format_duration, lock};

/// Why step 3 gave up on a worker that is still there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Leak {
    /// Aborted, polled again, and still dropping its future after the grace: its destructor
    /// blocks its thread.
    Stuck,
    /// Aborted, and not polled again while no other aborted task went either: its worker thread
    /// is blocked (by this task or by another).
    NotPolledAgain,
    /// Aborted, and not dropped yet when the budget ran out, while aborted tasks were still
    /// going (there were many).
    NotDroppedInBudget,
    /// Aborted when the budget had already run out, and not dropped in the few milliseconds
    /// left, with many others: too little time to tell a busy runtime from a blocked thread.
    NoTimeToTell,
    /// A thread past its stop timeout: threads cannot be aborted.
    NotStopped,
    /// Kept registering after the budget ran out.
    LateAfterBudget,
    /// Started while resources were closing, when nothing waits for workers any more.
    StartedWhileClosing,
    /// This many tasks never returned from their first poll.
    Unpolled(u64),
}

/// What happened to a worker, for [`outcome`].
pub(crate) enum Fate<'a> {
    Ended(&'a Ended),
    Leaked(Leak),
}

/// How a worker's fate reads in the report: the one place every way a worker can end becomes an
/// [`Outcome`] and its detail.
pub(crate) fn outcome(
    fate: Fate<'_>,
    stop_timeout: Duration,
    verdict: Verdict,
    cut_by_budget: bool,
) -> (Outcome, Option<String>) {
    // Why a worker was aborted or given up on: its own stop timeout, or the budget first.
    let cut_off = |action: &str| {
        let stop_timeout = format_duration(stop_timeout);
        if cut_by_budget {
            format!(
                "still running when the shutdown budget ran out (its own stop timeout is {stop_timeout}); {action}"
            )
        } else {
            format!("ignored shutdown for its whole stop timeout of {stop_timeout}; {action}")
        }
    };
    match fate {
        Fate::Ended(Ended::Completed) => (Outcome::Stopped, None),
        Fate::Ended(Ended::Failed(message)) => (Outcome::Error(message.clone()), None),
        Fate::Ended(Ended::Panicked(message)) => (Outcome::Panicked, Some(message.clone())),
        Fate::Ended(Ended::TimedOut(limit)) => (
            Outcome::TimedOut,
            Some(format!(
                "ran past its group limit of {}",
                format_duration(*limit)
            )),
        ),
        Fate::Ended(Ended::NotStarted(group)) => (
            Outcome::Skipped,
            Some(format!(
                "never started: shutdown began while it waited for a permit of group `{group}`"
            )),
        ),
        Fate::Ended(Ended::Cancelled) if verdict == Verdict::Aborted => {
            (Outcome::Aborted, Some(cut_off("aborted")))
        }
        Fate::Ended(Ended::Cancelled) => {
            (Outcome::Aborted, Some("cancelled by its handle".to_owned()))
        }
        Fate::Leaked(leak) => (
            Outcome::Leaked,
            Some(match leak {
                Leak::Stuck => {
                    "aborted, but its destructor has not returned: it blocks its worker thread in synchronous code"
                        .to_owned()
                }
                Leak::NotPolledAgain => {
                    "aborted, but never polled again: its worker thread is blocked in synchronous code (by this task or another)"
                        .to_owned()
                }
                Leak::NotDroppedInBudget => {
                    "aborted, but not dropped yet when the shutdown budget ran out (aborted tasks were still being dropped)"
                        .to_owned()
                }
                Leak::NoTimeToTell => {
                    "aborted as the shutdown budget ran out, and not dropped in the moment left: the budget left no time to tell a busy runtime from a blocked thread"
                        .to_owned()
                }
                Leak::NotStopped => cut_off("left running"),
                Leak::LateAfterBudget => {
                    "started during shutdown after the budget ran out; left running".to_owned()
                }
                Leak::StartedWhileClosing => {
                    "started while resources were closing, after tasks were stopped; left running"
                        .to_owned()
                }
                Leak::Unpolled(count) => format!(
                    "{count} task(s) never returned from their first poll, so they could not be named: each blocks a runtime thread in synchronous code"
                ),
            }),
        ),
    }
}

/// A worker's ending that the report names on its own line (anything but "stopped when told",
/// which the registry folds by name as it happens).
#[derive(Debug, Clone)]
pub(super) struct Record {
    name: TaskName,
    kind: WorkerKind,
    outcome: Outcome,
    detail: Option<String>,
    ended: Instant,
    /// A restarted service: its line is its own, never folded with others of its name (their
    /// count would swallow its restarts).
    apart: bool,
}

/// What makes two endings read alike without building their text: workers of one name and kind
/// that ended the same way, with the same stop timeout and the same cut-off. Endings that carry
/// their own message (an error, a panic) are never folded here.
#[derive(Clone, PartialEq, Eq, Hash)]
struct FoldKey {
    name: TaskName,
    kind: WorkerKind,
    ended: u8,
    verdict: Verdict,
    cut_by_budget: bool,
    stop_timeout: Duration,
}

/// The endings recorded so far, each with how many workers ended that way (aborting a million
/// tasks records one row, not a million).
#[derive(Debug, Default)]
pub(super) struct Records {
    rows: Vec<(Record, usize)>,
    folded: HashMap<FoldKey, usize>,
}

impl std::fmt::Debug for FoldKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FoldKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Records {
    fn push(&mut self, record: Record) {
        self.rows.push((record, 1));
    }

    /// Takes every row, and forgets the folds.
    fn take(&mut self) -> Vec<(Record, usize)> {
        self.folded.clear();
        std::mem::take(&mut self.rows)
    }
}

impl Workers {
    /// How many endings are recorded (each row counts its workers). For the models.
    #[cfg(all(test, lifecycle_loom))]
    pub(super) fn records_count(&self) -> usize {
        lock(&self.records)
            .rows
            .iter()
            .map(|(_, count)| count)
            .sum()
    }

    /// What a supervised service's entry says of its restarts (`restarted 2 times; last failure:
    /// ...`), read from its loop state; `None` for any other worker. Asked before the worker
    /// leaves the registry, with no lock held.
    pub(super) fn restart_note(&self, node: &Node) -> Option<String> {
        let key = node.loop_key()?;
        self.loop_state(key)?.restart_note()
    }

    /// Records how a worker ended; `restarts` is its [`restart_note`](Self::restart_note).
    pub(super) fn record(
        &self,
        node: &Node,
        ended: &Ended,
        verdict: Verdict,
        cut_by_budget: bool,
        now: Instant,
        restarts: Option<String>,
    ) {
        let foldable = match ended {
            Ended::Completed => Some(0),
            Ended::Cancelled => Some(1),
            Ended::Failed(_) | Ended::Panicked(_) | Ended::TimedOut(_) | Ended::NotStarted(_) => {
                None
            }
        };
        // A restarted service keeps a line of its own.
        let key = foldable
            .filter(|_| restarts.is_none())
            .map(|ended| FoldKey {
                name: node.name().clone(),
                kind: node.kind(),
                ended,
                verdict,
                cut_by_budget,
                stop_timeout: node.stop_timeout(),
            });
        if let Some(key) = &key {
            let mut records = lock(&self.records);
            if let Some(&at) = records.folded.get(key) {
                let row = &mut records.rows[at];
                row.1 += 1;
                row.0.ended = row.0.ended.max(now);
                return;
            }
        }
        let (outcome, detail) = outcome(
            Fate::Ended(ended),
            node.stop_timeout(),
            verdict,
            cut_by_budget,
        );
        let apart = restarts.is_some();
        let detail = match (detail, restarts) {
            (Some(detail), Some(restarts)) => Some(format!("{restarts}; {detail}")),
            (detail, restarts) => restarts.or(detail),
        };
        let mut records = lock(&self.records);
        if let Some(key) = key {
            let at = records.rows.len();
            records.folded.insert(key, at);
        }
        records.push(Record {
            name: node.name().clone(),
            kind: node.kind(),
            outcome,
            detail,
            ended: now,
            apart,
        });
    }

    pub(super) fn push_record(
        &self,
        name: TaskName,
        kind: WorkerKind,
        outcome: Outcome,
        detail: Option<String>,
    ) {
        self.push_records(name, kind, outcome, detail, 1);
    }

    /// Records `count` workers of one name that ended alike.
    pub(super) fn push_records(
        &self,
        name: TaskName,
        kind: WorkerKind,
        outcome: Outcome,
        detail: Option<String>,
        count: usize,
    ) {
        let record = Record {
            name,
            kind,
            outcome,
            detail,
            ended: Instant::now(),
            apart: false,
        };
        lock(&self.records).rows.push((record, count));
    }

    /// The report's entries for the workers that ended (or were given up on) so far, in the
    /// order they ended, folding workers of one name and outcome into one entry with a count (a
    /// server with 10,000 connection tasks gets one line, not 10,000). Times count from
    /// `sequence_started`; a worker that ended during step 3 is drawn from the stop signal.
    pub(crate) fn take_entries(&self, sequence_started: Instant) -> Vec<Entry> {
        let ended: Vec<(Record, usize)> = lock(&self.records).take();
        let folded = self.registry.take_folded();
        let stages = self.order.stages(true);
        self.entries_of(ended, folded, &stages, sequence_started)
    }

    /// The entries [`take_entries`](Self::take_entries) would give now, leaving them in place:
    /// for a live view of a shutdown under way.
    pub(crate) fn peek_entries(&self, sequence_started: Instant) -> Vec<Entry> {
        let ended: Vec<(Record, usize)> = lock(&self.records).rows.clone();
        let folded = self.registry.peek_folded();
        let stages = self.order.stages(false);
        self.entries_of(ended, folded, &stages, sequence_started)
    }

    fn entries_of(
        &self,
        mut ended: Vec<(Record, usize)>,
        folded: Vec<Folded>,
        stages: &[Stage],
        sequence_started: Instant,
    ) -> Vec<Entry> {
        let stop_started = self.stop_started().unwrap_or(sequence_started);
        ended.extend(folded.into_iter().map(|row| {
            let (outcome, detail) = match row.how {
                FoldedEnd::Stopped => (Outcome::Stopped, None),
                FoldedEnd::Aborted {
                    stop_timeout,
                    cut_by_budget,
                } => outcome(
                    Fate::Ended(&Ended::Cancelled),
                    stop_timeout,
                    Verdict::Aborted,
                    cut_by_budget,
                ),
            };
            let record = Record {
                name: row.name,
                kind: row.kind,
                outcome,
                detail,
                ended: row.last_end,
                apart: false,
            };
            (record, row.count)
        }));
        ended.sort_by_key(|(record, _)| record.ended);
        let mut entries: Vec<Entry> = Vec::new();
        // Folded only when they read alike: the same outcome for different reasons (a task blocked
        // in its destructor, and thousands merely not dropped yet) keeps a line each.
        let mut index: HashMap<(TaskName, WorkerKind, Outcome, Option<String>), usize> =
            HashMap::new();
        // The end of the last worker of each stage, for its line.
        let mut stage_ends: Vec<Option<Instant>> = vec![None; stages.len()];
        for (record, count) in ended {
            let mut start = if record.ended < stop_started {
                sequence_started
            } else {
                stop_started
            };
            if let Some(stage) = stages
                .iter()
                .position(|stage| stage.names.iter().any(|name| name == record.name.as_str()))
                && let Some(at) = stages[stage].started.filter(|at| record.ended >= *at)
            {
                start = at;
                let end = &mut stage_ends[stage];
                *end = Some(end.map_or(record.ended, |end| end.max(record.ended)));
            }
            let offset = start.saturating_duration_since(sequence_started);
            let elapsed = record.ended.saturating_duration_since(start);
            let key = (record.name, record.kind, record.outcome, record.detail);
            if record.apart {
                let (name, kind, outcome, detail) = key;
                entries.push(
                    Entry::new(name, kind.entry_kind(), outcome, offset, elapsed)
                        .with_detail(detail)
                        .with_count(count),
                );
                continue;
            }
            if let Some(&at) = index.get(&key) {
                entries[at].absorb(count, elapsed);
                continue;
            }
            let (name, kind, outcome, detail) = key.clone();
            index.insert(key, entries.len());
            entries.push(
                Entry::new(name, kind.entry_kind(), outcome, offset, elapsed)
                    .with_detail(detail)
                    .with_count(count),
            );
        }
        if !stages.is_empty() {
            insert_stages(&mut entries, stages, &stage_ends, sequence_started);
        }
        entries
    }
}

/// One line per stage of a stop order, before the first entry that started with it: when it
/// was told to stop, whom it waited for, and how long until its last worker ended.
fn insert_stages(
    entries: &mut Vec<Entry>,
    stages: &[Stage],
    ends: &[Option<Instant>],
    sequence_started: Instant,
) {
    for (stage, end) in stages.iter().zip(ends) {
        let Some(started) = stage.started.filter(|_| stage.to_report) else {
            continue;
        };
        let offset = started.saturating_duration_since(sequence_started);
        let elapsed = end.map_or(Duration::ZERO, |end| end.saturating_duration_since(started));
        let names = stage.names.join(", ");
        let after = stage.after.join(", ");
        let detail = match stage.why {
            StageStart::Budget => format!(
                "told {names} to stop (after {after}) when the shutdown budget ran out, with \
                 workers of an earlier stage still there"
            ),
            StageStart::LateDeclared => {
                format!("told {names} to stop (after {after}) when declared, during the stop")
            }
            StageStart::StopSignal | StageStart::EarlierDone => format!(
                "told {names} to stop (after {after}) once every worker of an earlier stage had \
                 ended or been cut off"
            ),
        };
        let line = Entry::new(
            stage.number,
            EntryKind::Stage,
            Outcome::Stopped,
            offset,
            elapsed,
        )
        .with_detail(Some(detail));
        let at = entries
            .iter()
            .position(|entry| entry.start() >= offset && entry.kind() != EntryKind::Drain)
            .unwrap_or(entries.len());
        entries.insert(at, line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fate_reads_as_one_outcome_with_its_reason() {
        let two = Duration::from_secs(2);
        let read = |fate, verdict, cut| outcome(fate, two, verdict, cut);
        assert_eq!(
            read(Fate::Ended(&Ended::Completed), Verdict::None, false),
            (Outcome::Stopped, None)
        );
        let (aborted, detail) = read(Fate::Ended(&Ended::Cancelled), Verdict::Aborted, false);
        assert_eq!(aborted, Outcome::Aborted);
        assert_eq!(
            detail.unwrap(),
            "ignored shutdown for its whole stop timeout of 2s; aborted"
        );
        let (_, detail) = read(Fate::Ended(&Ended::Cancelled), Verdict::Aborted, true);
        assert!(
            detail
                .unwrap()
                .starts_with("still running when the shutdown budget ran out")
        );
        let (_, detail) = read(Fate::Ended(&Ended::Cancelled), Verdict::None, false);
        assert_eq!(detail.unwrap(), "cancelled by its handle");
        let (leaked, detail) = read(Fate::Leaked(Leak::Unpolled(3)), Verdict::Leaked, false);
        assert_eq!(leaked, Outcome::Leaked);
        assert!(detail.unwrap().starts_with("3 task(s) never returned"));
        let (skipped, _) = read(
            Fate::Ended(&Ended::NotStarted("db".into())),
            Verdict::None,
            false,
        );
        assert_eq!(skipped, Outcome::Skipped);
    }
}
