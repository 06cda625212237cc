//! Tracked OS threads: the [`ThreadHandle`] users hold and the [`ThreadGuard`] that keeps a
//! thread's registration. Shutdown signals threads, waits up to their stop timeout, and reports one
//! that will not stop as leaked instead of joining it forever.

use std::cell::RefCell;
use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::oneshot;

use super::node::{Node, WorkerMeta};
use super::{Ended, TaskError, TaskName, WorkersRef};

thread_local! {
    /// The tracked thread this is, if it is one: names who acquires a connection from it.
    static THREAD_WORKER: RefCell<Option<TaskName>> = const { RefCell::new(None) };
}

/// Marks the calling OS thread as the tracked thread `name`, for the rest of its life.
pub(crate) fn set_current_thread_worker(name: TaskName) {
    THREAD_WORKER.with(|worker| *worker.borrow_mut() = Some(name));
}

/// The tracked thread this is, if it is one.
pub(crate) fn current_thread_worker() -> Option<TaskName> {
    THREAD_WORKER.with(|worker| worker.borrow().clone())
}

/// A handle to a tracked OS thread.
///
/// Dropping it detaches the thread; the coordinator still tracks it.
///
/// ```
/// use std::time::Duration;
///
/// let coordinator = lifecycle_runtime::Coordinator::new();
/// let _guard = coordinator.enter();
/// let sampler = lifecycle_runtime::spawn_thread("sampler", |shutdown| {
///     let mut samples = 0;
///     while shutdown.sleep_blocking(Duration::from_millis(1)) {
///         samples += 1;
///     }
///     samples
/// });
/// coordinator.trigger_shutdown();
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(coordinator.report());
/// assert!(sampler.join().is_ok());
/// ```
pub struct ThreadHandle<T = ()> {
    name: TaskName,
    result: oneshot::Receiver<Result<T, TaskError>>,
    join: std::thread::JoinHandle<()>,
}

impl<T> fmt::Debug for ThreadHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadHandle")
            .field("name", &self.name)
            .field("finished", &self.join.is_finished())
            .finish()
    }
}

impl<T> ThreadHandle<T> {
    /// The thread's name (Linux shows only the first 15 bytes of it to the OS).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.join.is_finished()
    }

    /// Blocks until the thread ends and returns its value. Do not call it from async code; use
    /// [`wait`](Self::wait) there.
    pub fn join(self) -> Result<T, TaskError> {
        let outcome = self.result.blocking_recv();
        let _ = self.join.join();
        outcome.unwrap_or(Err(TaskError::Cancelled { task: self.name }))
    }

    /// Waits, without blocking the runtime, until the thread ends and returns its value.
    pub async fn wait(self) -> Result<T, TaskError> {
        match self.result.await {
            Ok(result) => result,
            Err(_) => Err(TaskError::Cancelled { task: self.name }),
        }
    }

    /// Waits up to `limit` for the thread to end. Gives the handle back if it is still running.
    pub async fn wait_timeout(mut self, limit: Duration) -> Result<Result<T, TaskError>, Self> {
        match tokio::time::timeout(limit, &mut self.result).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Ok(Err(TaskError::Cancelled { task: self.name })),
            Err(_) => Err(self),
        }
    }
}

/// Waits (up to the close timeout) until the thread has ended. A thread cannot be interrupted:
/// it must watch its [`Shutdown`](crate::Shutdown), which has fired by the time resources close.
impl<T: Send + 'static> crate::Close for ThreadHandle<T> {
    async fn close(&self) -> Result<(), crate::CloseError> {
        crate::util::wait_until(|| self.join.is_finished()).await;
        Ok(())
    }

    fn close_name(&self) -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Owned(self.name.to_string())
    }
}

impl<T> ThreadHandle<T> {
    pub(crate) fn new(
        name: TaskName,
        result: oneshot::Receiver<Result<T, TaskError>>,
        join: std::thread::JoinHandle<()>,
    ) -> ThreadHandle<T> {
        ThreadHandle { name, result, join }
    }
}

/// A thread's registration: made when the thread is started (threads have no first poll), and
/// removed when it ends however it ends. The node lives in a pinned box, so the guard can move
/// into the thread.
pub(crate) struct ThreadGuard {
    workers: WorkersRef,
    node: Pin<Box<Node>>,
    finished: bool,
}

impl ThreadGuard {
    /// Registers a thread about to start.
    pub(crate) fn register(workers: WorkersRef, meta: WorkerMeta) -> ThreadGuard {
        let registry_owner = workers.get();
        let node = Box::pin(registry_owner.node(meta));
        registry_owner.registry.task_spawned();
        // SAFETY: pinned in its box, and unlinked by `finish` (or `drop`) before the box goes.
        unsafe { registry_owner.register(node.as_ref(), None) };
        ThreadGuard {
            workers,
            node,
            finished: false,
        }
    }

    /// Records how the thread ended. Only the first call counts.
    pub(crate) fn finish(&mut self, ended: Ended) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        // SAFETY: linked by `register`, owned by this guard.
        unsafe { self.workers.get().leave(&self.node, ended) };
    }
}

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        self.finish(Ended::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::workers::{WorkerKind, Workers};

    #[test]
    fn a_thread_that_never_ran_leaves_the_registry_when_its_guard_goes() {
        // What happens when the OS refuses the thread: the closure, and the guard in it, is
        // dropped without `finish`.
        let workers = Arc::new(Workers::new());
        let meta = WorkerMeta::new(
            "never-ran".into(),
            WorkerKind::Thread,
            Duration::from_secs(1),
            None,
        );
        let guard = ThreadGuard::register(WorkersRef::shared(&workers), meta);
        assert!(!workers.settled(), "registered while the guard lives");
        let mut names = Vec::new();
        workers.for_each(|worker| names.push(worker.name().to_string()));
        assert_eq!(names, ["never-ran"]);
        drop(guard);
        assert!(workers.settled());
        let totals = workers.totals();
        assert_eq!((totals.spawned, totals.cancelled), (1, 1));
    }
}
