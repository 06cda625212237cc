//! Tracked tokio tasks: the [`TaskHandle`] users hold, and the [`Worker`] future that wraps each
//! task's own future: it catches panics, registers the task at its first wait, removes it when it
//! ends however it ends, and stops it at its next poll once shutdown aborted it.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::node::{Node, WorkerMeta};
use super::registry::Registry;
use super::{Ended, TaskName, WorkersRef};
use crate::util::CatchUnwind;

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
    #[error("task `{task}` timed out after {} (limit of group `{group}`)", crate::util::format_duration(*.limit))]
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
    pub(crate) fn new(
        name: TaskName,
        join: tokio::task::JoinHandle<Result<T, TaskError>>,
    ) -> TaskHandle<T> {
        TaskHandle { name, join }
    }

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
        crate::util::wait_until(|| self.is_finished()).await;
        Ok(())
    }

    fn close_name(&self) -> Cow<'static, str> {
        Cow::Owned(self.name.to_string())
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

/// Where a worker stands with the registry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Registration {
    /// Spawned, first poll not over; counted as unpolled.
    Unpolled,
    /// In the registry.
    Registered,
    Finished,
}

pin_project_lite::pin_project! {
    /// Keeps a worker's registration: registers it when it first waits, and removes it when it
    /// ends, however it ends ([`finish`](Self::finish) with how, or dropped: aborted, cancelled,
    /// runtime gone). Carries the worker's registry node.
    pub(crate) struct WorkerGuard {
        workers: WorkersRef,
        registration: Registration,
        #[pin]
        node: Node,
    }

    impl PinnedDrop for WorkerGuard {
        fn drop(this: Pin<&mut Self>) {
            // Unlinks the node before its memory goes (the registry's safety rule 1).
            this.finish(Ended::Cancelled);
        }
    }
}

impl WorkerGuard {
    pub(crate) fn new(workers: WorkersRef, meta: WorkerMeta) -> WorkerGuard {
        WorkerGuard {
            workers,
            registration: Registration::Unpolled,
            node: Node::new(meta),
        }
    }

    pub(crate) fn name(&self) -> &TaskName {
        &self.node.meta.name
    }

    /// The worker returned `Pending`: register it on its first wait, refresh its waker after.
    fn waiting(self: Pin<&mut Self>, waker: &Waker) {
        let this = self.project();
        let workers = this.workers.get();
        match *this.registration {
            Registration::Registered => {
                if !Registry::holds_waker(&this.node, waker) {
                    workers.registry.set_waker(&this.node, waker);
                }
            }
            Registration::Unpolled => {
                // SAFETY: the node is pinned inside the task's future, and this guard unlinks it
                // when it finishes or is dropped.
                unsafe {
                    workers.register(this.node.as_ref(), Some(waker), tokio::task::try_id());
                }
                *this.registration = Registration::Registered;
                workers.first_poll_done();
            }
            Registration::Finished => {}
        }
    }

    /// Whether shutdown aborted this worker (only registered workers can be).
    fn aborted(&self) -> bool {
        self.registration == Registration::Registered && self.workers.get().is_aborted(&self.node)
    }

    /// Records how the worker ended. Only the first call counts.
    pub(crate) fn finish(self: Pin<&mut Self>, ended: Ended) {
        let this = self.project();
        let workers = this.workers.get();
        match std::mem::replace(this.registration, Registration::Finished) {
            // SAFETY: registered, so linked; this guard owns the node.
            Registration::Registered => unsafe { workers.leave(&this.node, ended) },
            // Counts its first poll as done too.
            Registration::Unpolled => workers.leave_unregistered(&this.node.meta, ended),
            Registration::Finished => {}
        }
    }
}

pin_project_lite::pin_project! {
    /// A tracked task: the user's future, panics caught, registered while it waits, removed at
    /// the end, and stopped at its next poll once shutdown aborts it. Written by hand rather than
    /// as an `async fn` so it adds only the guard to the task, not a second copy of the future.
    pub(crate) struct Worker<F> {
        #[pin]
        inner: CatchUnwind<F>,
        #[pin]
        guard: WorkerGuard,
    }
}

impl<F> Worker<F> {
    pub(crate) fn new(workers: WorkersRef, meta: WorkerMeta, fut: F) -> Worker<F> {
        Worker {
            inner: CatchUnwind::new(fut),
            guard: WorkerGuard::new(workers, meta),
        }
    }
}

impl<F, T> Future for Worker<F>
where
    F: Future<Output = Result<T, TaskError>>,
{
    type Output = Result<T, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let guard = this.guard;
        if guard.aborted() {
            // The inner future is dropped with the task, right after this returns.
            let task = guard.name().clone();
            guard.finish(Ended::Cancelled);
            return Poll::Ready(Err(TaskError::Cancelled { task }));
        }
        let result = match this.inner.poll(cx) {
            Poll::Pending => {
                guard.waiting(cx.waker());
                return Poll::Pending;
            }
            Poll::Ready(result) => result,
        };
        Poll::Ready(match result {
            Ok(result) => {
                guard.finish(ended_from(&result));
                result
            }
            Err(message) => {
                let task = guard.name().clone();
                guard.finish(Ended::Panicked(message.clone()));
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
