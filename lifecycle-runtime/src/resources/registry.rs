//! The resources of one coordinator, in registration order, and how one of them closes at
//! shutdown: under its own limit capped by the budget, waiting for a close through its handle that
//! is under way, with its fields' entries under it.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slab::Slab;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::fields::{FIELDS, FieldSink};
use super::managed::{Claimed, Closed, DynClose, close_outcome};
use crate::report::{Entry, EntryKind, Outcome};
use crate::util::{CatchUnwind, after, catch, format_duration, lock};

/// One registered resource.
pub(crate) struct ResourceEntry {
    seq: u64,
    name: Cow<'static, str>,
    kind: EntryKind,
    timeout: Duration,
    resource: Arc<dyn DynClose>,
}

#[derive(Default)]
struct Slots {
    slab: Slab<ResourceEntry>,
    next_seq: u64,
}

/// Resources by key; the closing order comes from the order of registration.
#[derive(Default)]
pub(crate) struct Resources {
    slots: Mutex<Slots>,
    /// The one being closed by shutdown right now, for the "still pending" list of a second
    /// signal.
    closing_now: Mutex<Option<String>>,
    /// Taken by shutdown and not reached yet, in closing order, for a report written before the
    /// sequence finished.
    queued: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resources")
            .field("open", &self.open_names())
            .finish_non_exhaustive()
    }
}

impl Resources {
    pub(crate) fn insert(
        &self,
        name: Cow<'static, str>,
        kind: EntryKind,
        timeout: Duration,
        resource: Arc<dyn DynClose>,
    ) -> usize {
        let mut slots = lock(&self.slots);
        slots.next_seq += 1;
        let seq = slots.next_seq;
        slots.slab.insert(ResourceEntry {
            seq,
            name,
            kind,
            timeout,
            resource,
        })
    }

    /// Removes `resource` if it is still registered under `key` (after shutdown emptied the
    /// registry, the key may belong to another resource).
    pub(crate) fn remove(&self, key: usize, resource: &Arc<dyn DynClose>) {
        let mut slots = lock(&self.slots);
        let same = slots.slab.get(key).is_some_and(|entry| {
            std::ptr::addr_eq(Arc::as_ptr(&entry.resource), Arc::as_ptr(resource))
        });
        if same {
            slots.slab.remove(key);
        }
    }

    /// The open resources (name, kind, close timeout), in the order they will close (newest
    /// first).
    pub(crate) fn open(&self) -> Vec<(String, EntryKind, Duration)> {
        let slots = lock(&self.slots);
        let mut entries: Vec<&ResourceEntry> = slots.slab.iter().map(|(_, entry)| entry).collect();
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.seq));
        entries
            .into_iter()
            .map(|entry| (entry.name.to_string(), entry.kind, entry.timeout))
            .collect()
    }

    /// Names of the open resources, in the order they will close (newest first).
    pub(crate) fn open_names(&self) -> Vec<String> {
        self.open().into_iter().map(|(name, _, _)| name).collect()
    }

    /// Whether any resource is registered.
    pub(crate) fn has_open(&self) -> bool {
        !lock(&self.slots).slab.is_empty()
    }

    /// The resource shutdown is closing right now.
    pub(crate) fn closing_now(&self) -> Option<String> {
        lock(&self.closing_now).clone()
    }

    /// Empties the registry, newest first.
    pub(crate) fn take_for_shutdown(&self) -> Vec<ResourceEntry> {
        let mut entries: Vec<ResourceEntry> = lock(&self.slots).slab.drain().collect();
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.seq));
        lock(&self.queued).extend(entries.iter().map(|entry| entry.name.to_string()));
        entries
    }

    /// Resources shutdown took but has not reached yet, in closing order.
    pub(crate) fn queued_names(&self) -> Vec<String> {
        lock(&self.queued).clone()
    }

    /// Shutdown reached `entry` (to close or to skip it).
    pub(crate) fn reached(&self, entry: &ResourceEntry) {
        let mut queued = lock(&self.queued);
        if let Some(at) = queued.iter().position(|name| *name == *entry.name) {
            queued.remove(at);
        }
    }

    /// Closes `entry` for shutdown (see [`ResourceEntry::close_for_shutdown`]), marking it as the
    /// one being closed meanwhile.
    pub(crate) async fn close_for_shutdown(
        &self,
        entry: &ResourceEntry,
        deadline: Instant,
        sequence_start: Instant,
        spawn: impl FnOnce(ClosingTask) -> JoinHandle<Result<Closed, String>>,
    ) -> Vec<Entry> {
        *lock(&self.closing_now) = Some(entry.name.to_string());
        self.reached(entry);
        let entries = entry
            .close_for_shutdown(deadline, sequence_start, spawn)
            .await;
        *lock(&self.closing_now) = None;
        entries
    }
}

/// A resource's close as shutdown runs it: in a task of its own, so that a close blocking its
/// thread cannot hold the sequence past the close's limit (on a runtime with another thread).
/// Panics are caught inside it; the close's fields report through the sink it carries.
pub(crate) type ClosingTask = Pin<Box<dyn Future<Output = Result<Closed, String>> + Send>>;

impl ResourceEntry {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn kind(&self) -> EntryKind {
        self.kind
    }

    /// What the resource still says about itself when shutdown skips it or its close is cut off;
    /// a panic in it is reported in its place.
    pub(crate) fn unclosed_detail(&self) -> Option<String> {
        catch(|| self.resource.unclosed_detail())
            .unwrap_or_else(|panic| Some(format!("its `unclosed_detail` panicked: {panic}")))
    }

    /// Shutdown skipped it: nobody closes it any more.
    pub(crate) fn mark_skipped(&self) {
        self.resource.state().mark_skipped();
    }

    /// Closes under `min(own timeout, what is left of the budget)`; returns the resource's entry
    /// followed by its fields' entries. A close through the handle that is under way is waited
    /// for (within the same limit) and reported; if it gives up, shutdown closes it itself.
    async fn close_for_shutdown(
        &self,
        deadline: Instant,
        sequence_start: Instant,
        spawn: impl FnOnce(ClosingTask) -> JoinHandle<Result<Closed, String>>,
    ) -> Vec<Entry> {
        let start = Instant::now();
        let limit = self.timeout.min(deadline.saturating_duration_since(start));
        let until = after(start, limit);
        let state = self.resource.state();
        let entry = |outcome: Outcome, detail: Option<String>| {
            Entry::new(
                &self.name,
                self.kind,
                outcome,
                start.saturating_duration_since(sequence_start),
                start.elapsed(),
            )
            .with_detail(detail)
        };
        // The limit covers the wait for a close through the handle that is under way (one that
        // gives the resource back is waited out, and the claim tried again).
        let claim = match tokio::time::timeout_at(until, state.claim_or_wait()).await {
            Ok(Claimed::Mine(claim)) => claim,
            // Closed through its handle while shutdown was under way.
            Ok(Claimed::Closed) => {
                return match state.outcome() {
                    Some((outcome, detail)) => {
                        let note = "closed through its handle during shutdown";
                        let detail = Some(match detail {
                            Some(detail) => format!("{note}: {detail}"),
                            None => note.to_owned(),
                        });
                        vec![entry(outcome, detail)]
                    }
                    None => Vec::new(),
                };
            }
            Err(_) => {
                let detail = format!(
                    "a close through its handle was still under way after {}",
                    format_duration(limit)
                );
                tracing::error!(resource = %self.name, "{detail}");
                return vec![entry(Outcome::TimedOut, Some(detail))];
            }
        };
        let sink = FieldSink::default();
        let resource = Arc::clone(&self.resource);
        let closing = FIELDS.scope(
            sink.clone(),
            CatchUnwind::new(async move { resource.close_boxed().await }),
        );
        let mut task = spawn(Box::pin(closing));
        let ended = match tokio::time::timeout_at(until, &mut task).await {
            Ok(Ok(ended)) => Ok(ended),
            // Panics are caught inside the task: it was cancelled, its runtime shutting down.
            Ok(Err(_)) => Ok(Ok(Err(
                "its close was cancelled: the runtime running it shut down".to_owned(),
            ))),
            Err(elapsed) => {
                // Dropped at its next poll, if it ever yields; a close blocking its thread is
                // left to it, and the sequence moves on.
                task.abort();
                Err(elapsed)
            }
        };
        let (outcome, mut detail) = close_outcome(ended, limit, self.timeout);
        if outcome == Outcome::TimedOut {
            // Cut off: what it still holds is said, as for a resource the budget skipped.
            if let Some(more) = self.unclosed_detail() {
                detail = Some(match detail {
                    Some(detail) => format!("{detail}; {more}"),
                    None => more,
                });
            }
        }
        claim.finish((outcome.clone(), detail.clone()));
        match &outcome {
            Outcome::Closed => {
                tracing::debug!(resource = %self.name, elapsed = ?start.elapsed(), "resource closed")
            }
            other => {
                tracing::error!(resource = %self.name, outcome = ?other, detail = ?detail, "resource did not close cleanly")
            }
        }
        let mut entries = vec![entry(outcome, detail)];
        entries.extend(sink.take(sequence_start, &self.name));
        entries
    }
}
