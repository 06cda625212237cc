//! Tracked tokio tasks: every task has a name and a registry entry, so shutdown can wait for it,
//! abort it and name it.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use crate::coordinator::{
    Control, Coordinator, Ended, Verdict, WorkerEntry, WorkerKind, in_scope, with_current,
};
use crate::panic::CatchUnwind;
use crate::snapshot::StateCell;

/// How long shutdown waits for a task or thread that has no stop timeout of its own.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// The name of a task or thread, as it appears in logs, reports and snapshots.
///
/// Built from a `&'static str` without allocating, or from a `String`; cloning is cheap either way.
///
/// ```
/// use lifecycle_runtime::TaskName;
///
/// let fixed = TaskName::from("auto-flush");
/// let built = TaskName::from(format!("conn-{}", 7));
/// assert_eq!(&*fixed, "auto-flush");
/// assert_eq!(built.to_string(), "conn-7");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskName(Repr);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl TaskName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(name) => name,
            Repr::Shared(name) => name,
        }
    }
}

impl Deref for TaskName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&'static str> for TaskName {
    fn from(name: &'static str) -> Self {
        TaskName(Repr::Static(name))
    }
}

impl From<String> for TaskName {
    fn from(name: String) -> Self {
        TaskName(Repr::Shared(name.into()))
    }
}

impl From<Arc<str>> for TaskName {
    fn from(name: Arc<str>) -> Self {
        TaskName(Repr::Shared(name))
    }
}

impl From<Cow<'static, str>> for TaskName {
    fn from(name: Cow<'static, str>) -> Self {
        match name {
            Cow::Borrowed(name) => name.into(),
            Cow::Owned(name) => name.into(),
        }
    }
}

impl From<&TaskName> for TaskName {
    fn from(name: &TaskName) -> Self {
        name.clone()
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for TaskName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Why a task did not produce its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the panic was caught, logged and counted.
    #[error("task `{task}` panicked: {message}")]
    Panicked {
        /// The task's name.
        task: TaskName,
        /// The panic message.
        message: String,
    },
    /// The task (a `#[background]` service) returned an error.
    #[error("task `{task}` failed: {message}")]
    Failed {
        /// The task's name.
        task: TaskName,
        /// The error, as displayed.
        message: String,
    },
    /// The task was aborted: by its handle, by shutdown after its stop timeout, or because its
    /// runtime shut down.
    #[error("task `{task}` was cancelled before it finished")]
    Cancelled {
        /// The task's name.
        task: TaskName,
    },
    /// The task ran longer than its group's per-task timeout and was cancelled.
    #[error("task `{task}` timed out after {} (limit of group `{group}`)", crate::report::format_duration(*.limit))]
    TimedOut {
        /// The task's name.
        task: TaskName,
        /// The group that set the limit.
        group: String,
        /// The limit.
        limit: Duration,
    },
    /// Shutdown began while the task waited for a permit of its group; it never ran.
    #[error(
        "task `{task}` never started: shutdown began while it waited for a permit of group `{group}`"
    )]
    NotStarted {
        /// The task's name.
        task: TaskName,
        /// The group it waited on.
        group: String,
    },
}

/// A handle to a tracked task. Awaiting it gives the task's value or a [`TaskError`].
///
/// Dropping the handle detaches the task: it keeps running and the coordinator still tracks it,
/// stops it at shutdown and names it in the report.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = lifecycle_runtime::spawn("answer", async { 6 * 7 });
/// assert_eq!(handle.name(), "answer");
/// assert_eq!(handle.await, Ok(42));
/// # }
/// ```
pub struct TaskHandle<T = ()> {
    name: TaskName,
    join: tokio::task::JoinHandle<Result<T, TaskError>>,
}

impl<T> fmt::Debug for TaskHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("name", &self.name)
            .field("finished", &self.join.is_finished())
            .finish()
    }
}

impl<T> TaskHandle<T> {
    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Cancels the task at its next `.await`.
    pub fn abort(&self) {
        self.join.abort();
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// A handle that can abort the task without owning its result.
    pub fn abort_handle(&self) -> tokio::task::AbortHandle {
        self.join.abort_handle()
    }
}

impl<T> Future for TaskHandle<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let joined = std::task::ready!(Pin::new(&mut self.join).poll(cx));
        Poll::Ready(match joined {
            Ok(result) => result,
            // The worker catches panics itself, so a join error is a cancellation.
            Err(_) => Err(TaskError::Cancelled {
                task: self.name.clone(),
            }),
        })
    }
}

/// Spawns a named, tracked task on the current coordinator.
///
/// The task is registered before it starts and removed when it ends. At shutdown it is told to
/// stop through [`shutdown_signal`](crate::shutdown_signal), waited for up to
/// [`DEFAULT_STOP_TIMEOUT`], then aborted and named in the report. A panic is caught, logged with
/// the task's name, counted, and returned from the handle as [`TaskError::Panicked`].
///
/// Must be called inside a tokio runtime.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let worker = lifecycle_runtime::spawn("worker", async {
///     lifecycle_runtime::shutdown_signal().triggered().await;
///     "stopped"
/// });
/// let report = lifecycle_runtime::Coordinator::global().shutdown().await;
/// assert_eq!(worker.await, Ok("stopped"));
/// assert!(report.is_clean());
/// # }
/// ```
#[track_caller]
pub fn spawn<F>(name: impl Into<TaskName>, fut: F) -> TaskHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let name = name.into();
    with_current(|coordinator| coordinator.spawn(name, fut))
}

impl Coordinator {
    /// Spawns a named, tracked task on this coordinator; see [`spawn`].
    #[track_caller]
    pub fn spawn<F>(&self, name: impl Into<TaskName>, fut: F) -> TaskHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_worker(
            name.into(),
            WorkerKind::Task,
            DEFAULT_STOP_TIMEOUT,
            None,
            OkFuture::new(fut),
        )
    }

    /// Registers and spawns a worker task. The future's `Err` says how it failed.
    #[track_caller]
    pub(crate) fn spawn_worker<F, T>(
        &self,
        name: TaskName,
        kind: WorkerKind,
        stop_timeout: Duration,
        state: Option<Arc<StateCell>>,
        fut: F,
    ) -> TaskHandle<T>
    where
        F: Future<Output = Result<T, TaskError>> + Send + 'static,
        T: Send + 'static,
    {
        self.remember_runtime();
        let (key, serial) = self.register_worker(WorkerEntry {
            name: name.clone(),
            kind,
            stop_timeout,
            started: Instant::now(),
            control: Control::Pending,
            state,
            verdict: Verdict::None,
            cut_by_budget: false,
            serial: 0,
        });
        let worker = Worker {
            inner: CatchUnwind::new(fut),
            guard: WorkerGuard::new(self.clone(), key),
        };
        let join = tokio::spawn(in_scope(self, worker));
        self.set_control(key, serial, Control::Task(join.abort_handle()));
        TaskHandle { name, join }
    }
}

/// Removes a worker's registry entry when it ends, however it ends: [`finish`](Self::finish) with
/// how, or dropped (aborted, cancelled, runtime gone).
pub(crate) struct WorkerGuard {
    pub(crate) coordinator: Coordinator,
    pub(crate) key: usize,
    pub(crate) finished: bool,
}

impl WorkerGuard {
    pub(crate) fn new(coordinator: Coordinator, key: usize) -> WorkerGuard {
        WorkerGuard {
            coordinator,
            key,
            finished: false,
        }
    }

    /// Records how the worker ended; returns its name (for errors that name it).
    pub(crate) fn finish(&mut self, ended: Ended) -> Option<TaskName> {
        self.finished = true;
        self.coordinator.worker_ended(self.key, ended)
    }
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.coordinator.worker_ended(self.key, Ended::Cancelled);
        }
    }
}

/// How a worker's result counts.
pub(crate) fn ended_from<T>(result: &Result<T, TaskError>) -> Ended {
    match result {
        Ok(_) => Ended::Completed,
        Err(TaskError::Panicked { message, .. }) => Ended::Panicked(message.clone()),
        Err(TaskError::Failed { message, .. }) => Ended::Failed(message.clone()),
        Err(TaskError::TimedOut { limit, .. }) => Ended::TimedOut(*limit),
        Err(TaskError::NotStarted { group, .. }) => Ended::NotStarted(group.clone()),
        Err(TaskError::Cancelled { .. }) => Ended::Cancelled,
    }
}

pin_project_lite::pin_project! {
    /// A tracked task: the user's future, panics caught, the registry entry removed at the end.
    /// Written by hand rather than as an `async fn` so it adds a guard's 24 bytes to the task,
    /// not a second copy of the future.
    struct Worker<F> {
        #[pin]
        inner: CatchUnwind<F>,
        guard: WorkerGuard,
    }
}

impl<F, T> Future for Worker<F>
where
    F: Future<Output = Result<T, TaskError>>,
{
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        Poll::Ready(match result {
            Ok(result) => {
                this.guard.finish(ended_from(&result));
                result
            }
            Err(message) => {
                let name = this.guard.finish(Ended::Panicked(message.clone()));
                Err(TaskError::Panicked {
                    task: name.unwrap_or_else(|| TaskName::from("unnamed")),
                    message,
                })
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// Wraps a future's output in `Ok`, without the size of an `async` block.
    pub(crate) struct OkFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F> OkFuture<F> {
    pub(crate) fn new(inner: F) -> OkFuture<F> {
        OkFuture { inner }
    }
}

impl<F: Future> Future for OkFuture<F> {
    type Output = Result<F::Output, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx).map(Ok)
    }
}
