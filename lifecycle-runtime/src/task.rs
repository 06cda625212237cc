//! Tracked tokio tasks: every task has a name and a registry entry, so shutdown can wait for it,
//! abort it and name it.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::coordinator::Leaving;
use crate::coordinator::{Coordinator, in_scope, with_current};
use crate::panic::CatchUnwind;
use crate::registry::{Control, Ended, WorkerEntry, WorkerKind};
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

/// Aborts the task and waits (up to the close timeout) until it is gone.
impl<T: Send + 'static> crate::Close for TaskHandle<T> {
    async fn close(&self) -> Result<(), crate::CloseError> {
        self.abort();
        crate::resource::wait_until_finished(|| self.is_finished()).await;
        Ok(())
    }

    fn close_name(&self) -> Cow<'static, str> {
        Cow::Owned(self.name.to_string())
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

    /// Spawns a tracked worker task. It enters the registry when its first poll returns `Pending`
    /// (see `registry`). The future's `Err` says how it failed.
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
        self.workers().task_spawned();
        let is_loop = state.is_some();
        let meta = WorkerMeta {
            name: name.clone(),
            kind,
            stop_timeout,
            state,
        };
        let worker = Worker {
            inner: CatchUnwind::new(fut),
            guard: WorkerGuard::unpolled(self, meta),
        };
        let join = if is_loop {
            // A `#[background]` loop runs in a span carrying its name, so its own log lines say
            // whose they are. Plain tasks (maybe one per connection) get none: a span would add
            // 128 bytes and a tenth of the spawn cost to each (see DESIGN.md).
            let span = tracing::info_span!("task", name = %name);
            tokio::spawn(tracing::Instrument::instrument(
                in_scope(self, worker),
                span,
            ))
        } else {
            tokio::spawn(in_scope(self, worker))
        };
        TaskHandle { name, join }
    }
}

/// What a task carries until it registers, and what names it if it never does.
pub(crate) struct WorkerMeta {
    pub(crate) name: TaskName,
    pub(crate) kind: WorkerKind,
    pub(crate) stop_timeout: Duration,
    pub(crate) state: Option<Arc<StateCell>>,
}

/// The coordinator a guard reports to: the global one by name, so a task costs no reference-count
/// traffic on the shared coordinator; any other by handle.
enum CoordinatorRef {
    Global,
    Scoped(Coordinator),
}

impl CoordinatorRef {
    fn of(coordinator: &Coordinator) -> CoordinatorRef {
        if coordinator.is_global() {
            CoordinatorRef::Global
        } else {
            CoordinatorRef::Scoped(coordinator.clone())
        }
    }

    fn get(&self) -> &Coordinator {
        match self {
            CoordinatorRef::Global => Coordinator::global(),
            CoordinatorRef::Scoped(coordinator) => coordinator,
        }
    }
}

/// Where a worker stands with the registry.
enum Registration {
    /// Spawned, first poll not over; counted as unpolled.
    Unpolled(WorkerMeta),
    /// In the registry. `waker` is the one the entry holds, to notice when it changes.
    Registered {
        key: usize,
        waker: Option<Waker>,
    },
    Finished,
}

/// Keeps a worker's registration: registers it when it first waits, and removes it when it ends,
/// however it ends ([`finish`](Self::finish) with how, or dropped: aborted, cancelled, runtime
/// gone).
pub(crate) struct WorkerGuard {
    coordinator: CoordinatorRef,
    registration: Registration,
}

impl WorkerGuard {
    fn unpolled(coordinator: &Coordinator, meta: WorkerMeta) -> WorkerGuard {
        WorkerGuard {
            coordinator: CoordinatorRef::of(coordinator),
            registration: Registration::Unpolled(meta),
        }
    }

    /// For a worker registered when it started (an OS thread).
    pub(crate) fn registered(coordinator: &Coordinator, key: usize) -> WorkerGuard {
        WorkerGuard {
            coordinator: CoordinatorRef::of(coordinator),
            registration: Registration::Registered { key, waker: None },
        }
    }

    /// The worker returned `Pending`: register it on its first wait, refresh its waker after.
    fn waiting(&mut self, waker: &Waker) {
        let coordinator = self.coordinator.get();
        match &mut self.registration {
            Registration::Registered { key, waker: known } => {
                if !known.as_ref().is_some_and(|known| known.will_wake(waker)) {
                    *known = Some(waker.clone());
                    coordinator.workers().set_waker(*key, waker.clone());
                }
            }
            Registration::Unpolled(_) => {
                let Registration::Unpolled(meta) =
                    std::mem::replace(&mut self.registration, Registration::Finished)
                else {
                    return;
                };
                let is_loop = meta.state.is_some();
                let mut entry = WorkerEntry::new(
                    meta.name,
                    meta.kind,
                    meta.stop_timeout,
                    Control::Task(waker.clone()),
                );
                entry.state = meta.state;
                entry.task_id = tokio::task::try_id();
                let key = coordinator.workers().insert(entry);
                if coordinator.shutdown_signal_fired() {
                    if is_loop {
                        // Shutdown may have woken the registered loops just before this one
                        // joined.
                        waker.wake_by_ref();
                    }
                    coordinator.registered_late();
                }
                self.registration = Registration::Registered {
                    key,
                    waker: Some(waker.clone()),
                };
                coordinator.first_poll_done();
            }
            Registration::Finished => {}
        }
    }

    /// Whether shutdown aborted this worker (only registered workers can be).
    fn aborted(&self) -> bool {
        let coordinator = self.coordinator.get();
        match &self.registration {
            Registration::Registered { key, .. } => {
                coordinator.aborts_issued() && coordinator.workers().is_aborted(*key)
            }
            _ => false,
        }
    }

    /// Records how the worker ended; returns its name (for errors that name it).
    pub(crate) fn finish(&mut self, ended: Ended) -> TaskName {
        let coordinator = self.coordinator.get();
        match std::mem::replace(&mut self.registration, Registration::Finished) {
            Registration::Registered { key, .. } => {
                coordinator.worker_ended(Leaving::Registered(key), ended)
            }
            // Counts its first poll as done too.
            Registration::Unpolled(meta) => {
                coordinator.worker_ended(Leaving::Unregistered(&meta), ended)
            }
            Registration::Finished => TaskName::from("finished worker"),
        }
    }
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        if !matches!(self.registration, Registration::Finished) {
            self.finish(Ended::Cancelled);
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
    /// A tracked task: the user's future, panics caught, registered while it waits, removed at
    /// the end, and stopped at its next poll once shutdown aborts it. Written by hand rather than
    /// as an `async fn` so it adds only a guard to the task, not a second copy of the future.
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
        if this.guard.aborted() {
            // The inner future is dropped with the task, right after this returns.
            let task = this.guard.finish(Ended::Cancelled);
            return Poll::Ready(Err(TaskError::Cancelled { task }));
        }
        let result = match this.inner.poll(cx) {
            Poll::Pending => {
                this.guard.waiting(cx.waker());
                return Poll::Pending;
            }
            Poll::Ready(result) => result,
        };
        Poll::Ready(match result {
            Ok(result) => {
                this.guard.finish(ended_from(&result));
                result
            }
            Err(message) => {
                let task = this.guard.finish(Ended::Panicked(message.clone()));
                Err(TaskError::Panicked { task, message })
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
