//! Task groups, the mechanics: a named cap on how many tasks (or `#[background]` ticks) run at
//! once, an optional time limit per task, and the counts snapshots show. The public
//! [`TaskGroup`](crate::TaskGroup) handle, which spawns through the coordinator, is in
//! `coordinator/group.rs`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::StopSignal;
use crate::snapshot::GroupSnapshot;
use crate::util::lock;

/// One group: its limits and what is in use.
pub(crate) struct Group {
    name: Arc<str>,
    limit: Mutex<Option<(usize, Arc<Semaphore>)>>,
    timeout: Mutex<Option<Duration>>,
    in_use: AtomicUsize,
    waiting: AtomicUsize,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("limit", &self.limit())
            .field("in_use", &self.in_use())
            .finish_non_exhaustive()
    }
}

/// A held group slot; released on drop.
pub(crate) struct GroupPermit {
    group: Arc<Group>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for GroupPermit {
    fn drop(&mut self) {
        self.group.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Group {
    fn new(name: Arc<str>) -> Group {
        Group {
            name,
            limit: Mutex::new(None),
            timeout: Mutex::new(None),
            in_use: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The concurrency cap, if any.
    pub(crate) fn limit(&self) -> Option<usize> {
        lock(&self.limit).as_ref().map(|(max, _)| *max)
    }

    /// Sets the cap. Tasks holding slots finish under the old one.
    pub(crate) fn set_limit(&self, max: usize) {
        *lock(&self.limit) = Some((max, Arc::new(Semaphore::new(max))));
    }

    /// The limit of each task of the group.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        *lock(&self.timeout)
    }

    pub(crate) fn set_timeout(&self, limit: Duration) {
        *lock(&self.timeout) = Some(limit);
    }

    /// Slots held right now.
    pub(crate) fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Waits for a slot. With `give_up_on`, gives up (returns `None`) when that signal fires first.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        give_up_on: Option<&StopSignal>,
    ) -> Option<GroupPermit> {
        let semaphore = lock(&self.limit)
            .as_ref()
            .map(|(_, semaphore)| semaphore.clone());
        let permit = match semaphore {
            None => None,
            Some(semaphore) => {
                // Counted down on every exit, including the waiter being dropped (aborted).
                let _waiting = Waiting::new(&self.waiting);
                let acquired = match give_up_on {
                    Some(stop) => tokio::select! {
                        biased;
                        () = stop.fired() => None,
                        permit = semaphore.acquire_owned() => permit.ok(),
                    },
                    None => semaphore.acquire_owned().await.ok(),
                };
                // The semaphore is never closed, so `None` means the signal won the race.
                Some(acquired?)
            }
        };
        self.in_use.fetch_add(1, Ordering::Relaxed);
        Some(GroupPermit {
            group: self.clone(),
            _permit: permit,
        })
    }

    pub(crate) fn snapshot(&self) -> GroupSnapshot {
        GroupSnapshot {
            name: self.name.to_string(),
            max_concurrent: self.limit(),
            in_use: self.in_use(),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }
}

/// The groups of one coordinator, by name.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    by_name: Mutex<HashMap<Arc<str>, Arc<Group>>>,
}

impl Groups {
    /// The group of this name, created without limits if needed.
    pub(crate) fn get_or_create(&self, name: &str) -> Arc<Group> {
        let mut groups = lock(&self.by_name);
        match groups.get(name) {
            Some(group) => group.clone(),
            None => {
                let name: Arc<str> = name.into();
                let group = Arc::new(Group::new(name.clone()));
                groups.insert(name, group.clone());
                group
            }
        }
    }

    /// Every group's state, by name.
    pub(crate) fn snapshots(&self) -> Vec<GroupSnapshot> {
        let mut groups: Vec<GroupSnapshot> = lock(&self.by_name)
            .values()
            .map(|group| group.snapshot())
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        groups
    }
}

/// One task waiting for a slot, for snapshots, for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Waiting<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
