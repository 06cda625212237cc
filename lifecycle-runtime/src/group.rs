//! Task groups: a named cap on how many tasks (or `#[background]` ticks) run at once, and an
//! optional time limit per task.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::coordinator::{Coordinator, WorkerKind, lock, with_current};
use crate::shutdown::Shutdown;
use crate::snapshot::GroupSnapshot;
use crate::task::{DEFAULT_STOP_TIMEOUT, TaskError, TaskHandle, TaskName};

/// A named group of tasks with a concurrency cap and a per-task time limit.
///
/// Groups are shared by name within a coordinator: `TaskGroup::new("db")` anywhere returns the
/// same group, and `#[background(group = "db")]` ticks hold one of its permits. Configure it once
/// at start-up; a group that is never configured has no limits.
///
/// ```
/// use std::time::Duration;
/// use lifecycle_runtime::TaskGroup;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # lifecycle_runtime::Coordinator::new().scope(async {
/// let uploads = TaskGroup::new("uploads")
///     .max_concurrent(2)
///     .timeout(Duration::from_secs(30));
/// let handles: Vec<_> = (0..5)
///     .map(|n| uploads.spawn(format!("upload-{n}"), async move { n * 2 }))
///     .collect();
/// for (n, handle) in handles.into_iter().enumerate() {
///     assert_eq!(handle.await, Ok(n * 2));
/// }
/// # }).await;
/// # }
/// ```
#[derive(Clone)]
pub struct TaskGroup {
    inner: Arc<GroupInner>,
    coordinator: Coordinator,
}

impl fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroup")
            .field("name", &self.inner.name)
            .field("limit", &self.limit())
            .field("in_use", &self.in_use())
            .finish()
    }
}

pub(crate) struct GroupInner {
    name: Arc<str>,
    limit: Mutex<Option<(usize, Arc<Semaphore>)>>,
    timeout: Mutex<Option<Duration>>,
    in_use: AtomicUsize,
    waiting: AtomicUsize,
}

/// A held group slot; released on drop.
pub(crate) struct GroupPermit {
    group: Arc<GroupInner>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for GroupPermit {
    fn drop(&mut self) {
        self.group.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for GroupInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupInner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl GroupInner {
    fn new(name: Arc<str>) -> GroupInner {
        GroupInner {
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

    fn timeout(&self) -> Option<Duration> {
        *lock(&self.timeout)
    }

    /// Waits for a slot. With `shutdown`, gives up (returns `None`) when shutdown comes first.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        shutdown: Option<&Shutdown>,
    ) -> Option<GroupPermit> {
        let semaphore = lock(&self.limit)
            .as_ref()
            .map(|(_, semaphore)| semaphore.clone());
        let permit = match semaphore {
            None => None,
            Some(semaphore) => {
                // Counted down on every exit, including the waiter being dropped (aborted).
                let _waiting = Waiting::new(&self.waiting);
                let acquired = match shutdown {
                    Some(shutdown) => tokio::select! {
                        biased;
                        () = shutdown.triggered() => None,
                        permit = semaphore.acquire_owned() => permit.ok(),
                    },
                    None => semaphore.acquire_owned().await.ok(),
                };
                // The semaphore is never closed, so `None` means shutdown won the race.
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
            max_concurrent: lock(&self.limit).as_ref().map(|(max, _)| *max),
            in_use: self.in_use.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }
}

impl TaskGroup {
    /// The group of this name in the current coordinator, created (without limits) if it does not
    /// exist yet.
    pub fn new(name: impl AsRef<str>) -> TaskGroup {
        with_current(|coordinator| coordinator.group(name.as_ref()))
    }

    /// Caps how many of the group's tasks and ticks run at once. Tasks beyond the cap wait for a
    /// slot; shutdown stops the waiting.
    ///
    /// Changing the cap while tasks hold slots lets the new cap start fresh: the old holders
    /// finish under the old one.
    ///
    /// # Panics
    ///
    /// If `max` is zero: nothing in the group could ever run.
    #[track_caller]
    pub fn max_concurrent(self, max: usize) -> Self {
        assert!(
            max > 0,
            "TaskGroup `{}`: max_concurrent must be at least 1 (0 would block every task forever)",
            self.inner.name
        );
        *lock(&self.inner.limit) = Some((max, Arc::new(Semaphore::new(max))));
        self
    }

    /// Limits each task of the group: one still running after `limit` is cancelled, counted as
    /// timed out, and its handle returns [`TaskError::TimedOut`]. Does not apply to
    /// `#[background]` ticks, which have their own `timeout` key.
    pub fn timeout(self, limit: Duration) -> Self {
        *lock(&self.inner.timeout) = Some(limit);
        self
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The concurrency cap, if any.
    pub fn limit(&self) -> Option<usize> {
        lock(&self.inner.limit).as_ref().map(|(max, _)| *max)
    }

    /// Slots held right now.
    pub fn in_use(&self) -> usize {
        self.inner.in_use.load(Ordering::Relaxed)
    }

    /// Spawns a tracked task that first waits for a slot of this group. If shutdown begins while it
    /// waits, it never runs and its handle returns [`TaskError::NotStarted`] (and the report lists
    /// it as skipped).
    ///
    /// Must be called inside a tokio runtime.
    #[track_caller]
    pub fn spawn<F>(&self, name: impl Into<TaskName>, fut: F) -> TaskHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let name = name.into();
        let task = name.clone();
        let group = self.inner.clone();
        let shutdown = self.coordinator.shutdown_signal();
        self.coordinator.spawn_worker(
            name,
            WorkerKind::Task,
            DEFAULT_STOP_TIMEOUT,
            None,
            async move {
                let Some(_permit) = group.acquire(Some(&shutdown)).await else {
                    return Err(TaskError::NotStarted {
                        task,
                        group: group.name().to_owned(),
                    });
                };
                match group.timeout() {
                    None => Ok(fut.await),
                    Some(limit) => match tokio::time::timeout(limit, fut).await {
                        Ok(value) => Ok(value),
                        Err(_) => Err(TaskError::TimedOut {
                            task,
                            group: group.name().to_owned(),
                            limit,
                        }),
                    },
                }
            },
        )
    }
}

impl Coordinator {
    /// The group of this name, created without limits if needed.
    pub(crate) fn group(&self, name: &str) -> TaskGroup {
        let inner = {
            let mut groups = lock(&self.inner.groups);
            match groups.get(name) {
                Some(group) => group.clone(),
                None => {
                    let name: Arc<str> = name.into();
                    let group = Arc::new(GroupInner::new(name.clone()));
                    groups.insert(name, group.clone());
                    group
                }
            }
        };
        TaskGroup {
            inner,
            coordinator: self.clone(),
        }
    }
}

impl TaskGroup {
    pub(crate) fn inner(&self) -> &Arc<GroupInner> {
        &self.inner
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
