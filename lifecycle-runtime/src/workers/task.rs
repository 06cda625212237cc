//! Tracked tokio tasks: the [`TaskHandle`] users hold, and the [`Worker`] future that wraps each
//! task's own future: it catches panics, registers the task at its first wait, removes it when it
//! ends however it ends, and stops it at its next poll once shutdown aborted it.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::node::{Node, flags};
use super::reference::{global_workers, scoped_workers};
use super::{Ended, TaskName};
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

#[cfg(not(lifecycle_loom))]
thread_local! {
    /// The worker being polled on this thread, if any: how a task finds its own registry node
    /// (to say it awaits the report, to name who acquires a connection) without a lookup.
    static POLLING: Cell<*const WorkerGuard> = const { Cell::new(std::ptr::null()) };
}

// Under loom, one per model thread (loom's threads share one OS thread).
#[cfg(lifecycle_loom)]
loom::thread_local! {
    static POLLING: Cell<*const WorkerGuard> = Cell::new(std::ptr::null());
}

/// The worker being polled on this thread (null outside a worker's poll). Valid to dereference
/// until that poll returns.
pub(crate) fn polling_worker() -> *const WorkerGuard {
    POLLING.with(Cell::get)
}

/// The name of the worker being polled on this thread, or of the tracked thread this is, if any.
pub(crate) fn current_task_name() -> Option<TaskName> {
    // SAFETY: the worker being polled on this thread is alive for the whole of its poll.
    match unsafe { polling_worker().as_ref() } {
        Some(guard) => Some(guard.name().clone()),
        None => super::thread::current_thread_worker(),
    }
}

/// Marks a worker as the one being polled until dropped, then restores what was there (a
/// worker's poll never runs inside another's, but a `block_on` inside `block_in_place` could).
struct Polling {
    previous: *const WorkerGuard,
}

impl Polling {
    #[inline]
    fn enter(guard: &WorkerGuard) -> Polling {
        Polling {
            previous: POLLING.with(|polling| polling.replace(guard)),
        }
    }
}

impl Drop for Polling {
    #[inline]
    fn drop(&mut self) {
        POLLING.with(|polling| polling.set(self.previous));
    }
}

pin_project_lite::pin_project! {
    /// Keeps a worker's registration: registers it when it first waits, and removes it when it
    /// ends, however it ends ([`finish`](Self::finish) with how, or dropped: aborted, cancelled,
    /// runtime gone). Carries the worker's registry node, so tracking a task allocates nothing.
    pub(crate) struct WorkerGuard {
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
    /// The guard of a worker of the global coordinator (`global`), or of the coordinator whose
    /// scope its task runs in.
    #[inline]
    pub(crate) fn new(node: Node, global: bool) -> WorkerGuard {
        node.set_flag(flags::GLOBAL, global);
        WorkerGuard { node }
    }

    pub(crate) fn name(&self) -> &TaskName {
        self.node.name()
    }

    /// The registry this worker belongs to. Only during its poll or its drop: a worker of a
    /// scoped coordinator finds its registry through the scope its task runs in, which names it
    /// only then (see `reference.rs`).
    #[inline]
    pub(crate) fn workers(&self) -> &super::Workers {
        if self.node.has_flag(flags::GLOBAL) {
            global_workers()
        } else {
            // SAFETY: called during this worker's poll or drop (every caller is), which its
            // coordinator's scope wrapper encloses; the reference does not outlive `&self`'s use
            // there.
            unsafe { scoped_workers() }
                .expect("a worker of a scoped coordinator runs inside that coordinator's scope")
        }
    }

    /// Its node's address, to recognize it among linked nodes later.
    pub(crate) fn node(&self) -> *const Node {
        &self.node
    }

    fn is_registered(&self) -> bool {
        self.node.has_flag(flags::REGISTERED)
    }

    /// The worker returned `Pending`: register it on its first wait. Its waker never changes: the
    /// worker is its task's root future (under at most a scope and a span, which pass the
    /// context on), and tokio hands a task's root future that task's own waker on every poll.
    #[inline]
    fn waiting(self: Pin<&mut Self>, waker: &Waker) {
        let this = self.into_ref();
        let workers = this.get_ref().workers();
        let node = this.project_ref().node;
        if node.has_flag(flags::REGISTERED | flags::FINISHED) {
            return;
        }
        // SAFETY: the node is pinned inside the task's future, and this guard unlinks it when it
        // finishes or is dropped (the link sets `REGISTERED`).
        unsafe { workers.register(node, Some(waker)) };
    }

    /// Whether shutdown aborted this worker (only registered workers can be). Asks the registry
    /// first, so the task's own node is not touched until shutdown aborted something.
    #[inline]
    fn aborted(&self) -> bool {
        let workers = self.workers();
        workers.aborts_issued() && self.is_registered() && workers.is_aborted(&self.node)
    }

    /// Says whether the worker awaits the shutdown report. By the worker, during its poll.
    pub(crate) fn set_awaiting(&self, awaiting: bool) {
        if self.is_registered() {
            self.workers().registry.set_awaiting(&self.node, awaiting);
        } else {
            // Registers as such at its first wait.
            self.node.set_flag(flags::AWAITS_REPORT, awaiting);
        }
    }

    /// Records how the worker ended. Only the first call counts.
    #[inline]
    pub(crate) fn finish(self: Pin<&mut Self>, ended: Ended) {
        let this = self.into_ref();
        let workers = this.get_ref().workers();
        let node = this.project_ref().node;
        if node.has_flag(flags::FINISHED) {
            return;
        }
        let registered = node.has_flag(flags::REGISTERED);
        node.set_flag(flags::REGISTERED, false);
        node.set_flag(flags::FINISHED, true);
        if registered {
            // SAFETY: registered, so linked; this guard owns the node.
            unsafe { workers.leave(&node, ended) };
        } else {
            // Counts its first poll as done too.
            workers.leave_unregistered(&node, ended);
        }
    }
}

/// A tracked task: the user's future, panics caught, registered while it waits, removed at the
/// end, and stopped at its next poll once shutdown aborts it. Written by hand rather than as an
/// `async fn` so it adds only the guard to the task, not a second copy of the future.
///
/// The user's future is dropped before the worker leaves the registry, however it ends (done,
/// panicked, aborted by shutdown, or dropped by the runtime): what its destructor does (a
/// rollback, a connection returned, a thread joined) still counts as the task's, and shutdown
/// does not close resources under it.
pub(crate) struct Worker<F> {
    /// Structurally pinned; dropped by hand, once (the guard's `INNER_DROPPED` flag says so).
    inner: ManuallyDrop<CatchUnwind<F>>,
    /// Structurally pinned.
    guard: WorkerGuard,
}

impl<F> Worker<F> {
    /// A worker of the global coordinator (`global`), or of the coordinator whose scope its task
    /// will run in: it must be spawned inside that coordinator's `Scoped` wrapper.
    #[inline]
    pub(crate) fn new(node: Node, global: bool, fut: F) -> Worker<F> {
        Worker {
            inner: ManuallyDrop::new(CatchUnwind::new(fut)),
            guard: WorkerGuard::new(node, global),
        }
    }

    fn project(self: Pin<&mut Self>) -> (Pin<&mut CatchUnwind<F>>, Pin<&mut WorkerGuard>) {
        // SAFETY: both fields are structurally pinned: never moved out, and `inner` is dropped in
        // place; `Worker` has no `Unpin` impl of its own.
        unsafe {
            let this = self.get_unchecked_mut();
            (
                Pin::new_unchecked(&mut *this.inner),
                Pin::new_unchecked(&mut this.guard),
            )
        }
    }

    /// Drops the user's future in place, unless that was done already. A panic in its destructor
    /// comes back as the message.
    fn drop_inner(self: Pin<&mut Self>) -> Result<(), String> {
        // SAFETY: `inner` is dropped in place and never used again (the flag says so); nothing is
        // moved.
        let this = unsafe { self.get_unchecked_mut() };
        drop_inner_once(&mut this.inner, &this.guard)
    }
}

/// Drops `inner` unless `guard` says it was, marking it dropped first (so a destructor that
/// panics is never run twice).
fn drop_inner_once<F>(
    inner: &mut ManuallyDrop<CatchUnwind<F>>,
    guard: &WorkerGuard,
) -> Result<(), String> {
    if guard.node.has_flag(flags::INNER_DROPPED) {
        return Ok(());
    }
    guard.node.set_flag(flags::INNER_DROPPED, true);
    // SAFETY: dropped once, here, in place; the flag keeps it from being dropped or used again.
    crate::util::catch(|| unsafe { ManuallyDrop::drop(inner) })
}

impl<F> Drop for Worker<F> {
    fn drop(&mut self) {
        // Dropped by the runtime (shutdown of the runtime, an abort through the handle): the
        // future goes while the worker is still registered; then the guard (a field) records
        // the end. A destructor that panics here unwinds as it would without lifecycle.
        if let Err(panic) = drop_inner_once(&mut self.inner, &self.guard) {
            std::panic::resume_unwind(Box::new(panic));
        }
    }
}

impl<F, T> Future for Worker<F>
where
    F: Future<Output = Result<T, TaskError>>,
{
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (inner, guard) = self.as_mut().project();
        if guard.aborted() {
            // Step 3 tells a task blocked in its destructor from one not polled again yet.
            guard.node.mark_dropping();
            let task = guard.name().clone();
            let ended = match self.as_mut().drop_inner() {
                Ok(()) => Ended::Cancelled,
                Err(panic) => {
                    Ended::Panicked(format!("its drop panicked after it was aborted: {panic}"))
                }
            };
            self.project().1.finish(ended);
            return Poll::Ready(Err(TaskError::Cancelled { task }));
        }
        let polled = {
            let _polling = Polling::enter(&guard);
            inner.poll(cx)
        };
        let result = match polled {
            Poll::Pending => {
                guard.waiting(cx.waker());
                return Poll::Pending;
            }
            Poll::Ready(result) => result,
        };
        let dropped = self.as_mut().drop_inner();
        let guard = self.project().1;
        Poll::Ready(match (result, dropped) {
            (Ok(result), Ok(())) => {
                guard.finish(ended_from(&result));
                result
            }
            (Ok(_), Err(panic)) => {
                let task = guard.name().clone();
                let message = format!("its drop panicked: {panic}");
                guard.finish(Ended::Panicked(message.clone()));
                Err(TaskError::Panicked { task, message })
            }
            (Err(message), _) => {
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
    #[inline]
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every task carries a guard, and tokio sizes a task's memory in 128-byte steps: at eight
    /// words the guard adds at most one step to any task (and none to half of them), and nothing is
    /// allocated elsewhere.
    #[test]
    fn the_guard_stays_within_eight_words() {
        assert!(
            size_of::<WorkerGuard>() <= size_of::<[usize; 8]>(),
            "WorkerGuard grew to {} bytes",
            size_of::<WorkerGuard>()
        );
    }
}
