//! [`TaskGroup`], the public handle of a task group: it spawns through the coordinator, so it
//! lives here; the permits and counts are in `workers/group.rs`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Coordinator, with_current};
use crate::defaults::DEFAULT_STOP_TIMEOUT;
use crate::workers::{Group, TaskError, TaskHandle, TaskName, WorkerKind, WorkerMeta};

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
    group: Arc<Group>,
    coordinator: Coordinator,
}

impl fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroup")
            .field("name", &self.name())
            .field("limit", &self.limit())
            .field("in_use", &self.in_use())
            .finish()
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
            self.name()
        );
        self.group.set_limit(max);
        self
    }

    /// Limits each task of the group: one still running after `limit` is cancelled, counted as
    /// timed out, and its handle returns [`TaskError::TimedOut`]. Does not apply to
    /// `#[background]` ticks, which have their own `timeout` key.
    pub fn timeout(self, limit: Duration) -> Self {
        self.group.set_timeout(limit);
        self
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        self.group.name()
    }

    /// The concurrency cap, if any.
    pub fn limit(&self) -> Option<usize> {
        self.group.limit()
    }

    /// Slots held right now.
    pub fn in_use(&self) -> usize {
        self.group.in_use()
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
        let group = self.group.clone();
        let stop = self.coordinator.workers().stop_signal().clone();
        let meta = WorkerMeta::new(name, WorkerKind::Task, DEFAULT_STOP_TIMEOUT, None);
        self.coordinator.spawn_worker(meta, async move {
            let Some(_permit) = group.acquire(Some(&stop)).await else {
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
        })
    }

    /// The mechanics behind the handle, for `#[background(group = ...)]` ticks.
    pub(crate) fn group(&self) -> &Arc<Group> {
        &self.group
    }
}

impl Coordinator {
    /// The group of this name, created without limits if needed.
    pub(crate) fn group(&self, name: &str) -> TaskGroup {
        TaskGroup {
            group: self.state.groups.get_or_create(name),
            coordinator: self.clone(),
        }
    }
}
