//! Spawning tracked workers on a coordinator: tasks ([`spawn`]) and OS threads
//! ([`spawn_thread`]), each registered with the coordinator's workers and run in its scope.

use std::future::Future;

use tokio::sync::oneshot;

use super::{Coordinator, Shutdown, scope, with_current};
use crate::defaults::DEFAULT_STOP_TIMEOUT;
use crate::util::catch;
use crate::workers::{
    OkFuture, TaskError, TaskHandle, TaskName, ThreadGuard, ThreadHandle, Worker, WorkerKind,
    WorkerMeta, ended_from,
};

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
    // The future is moved as few times as it can be: the global coordinator's tasks skip the
    // closure `with_current` would carry it through (each move is a copy of the whole future).
    match scope::current_if_not_global() {
        None => Coordinator::global().spawn(name, fut),
        Some(coordinator) => coordinator.spawn(name, fut),
    }
}

impl Coordinator {
    /// Spawns a named, tracked task on this coordinator; see [`spawn`].
    #[track_caller]
    #[inline]
    pub fn spawn<F>(&self, name: impl Into<TaskName>, fut: F) -> TaskHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_worker(
            WorkerMeta::new(name.into(), WorkerKind::Task, DEFAULT_STOP_TIMEOUT, None),
            OkFuture::new(fut),
        )
    }

    /// A tracked worker of the global coordinator that is not spawned: the caller polls it
    /// itself (the body of `#[main]`, on the `block_on` thread, which need not be `Send`). It is
    /// registered, stopped, aborted and reported like a spawned task; an abort wakes its
    /// caller, and the next poll drops the future.
    pub(crate) fn local_worker<F, T>(&self, meta: WorkerMeta, fut: F) -> Worker<F>
    where
        F: Future<Output = Result<T, TaskError>>,
    {
        debug_assert!(
            self.is_global(),
            "only the global coordinator needs no scope"
        );
        self.remember_runtime();
        self.state.workers.task_spawned();
        Worker::new(self.state.workers.node(meta), true, fut)
    }

    /// Spawns a tracked worker task. It enters the registry when its first poll returns
    /// `Pending` (see `workers/registry/mod.rs`). The future's `Err` says how it failed.
    ///
    /// A `#[background]` loop runs in a span carrying its name, so its own log lines say whose
    /// they are. Plain tasks (maybe one per connection) get none: a span would add 128 bytes and
    /// a tenth of the spawn cost to each (see DESIGN.md).
    #[track_caller]
    #[inline]
    pub(crate) fn spawn_worker<F, T>(&self, meta: WorkerMeta, fut: F) -> TaskHandle<T>
    where
        F: Future<Output = Result<T, TaskError>> + Send + 'static,
        T: Send + 'static,
    {
        self.remember_runtime();
        self.state.workers.task_spawned();
        let name = meta.name.clone();
        let span = meta
            .is_loop()
            .then(|| tracing::info_span!("task", name = %name));
        let node = self.state.workers.node(meta);
        let join = if self.is_global() {
            // The global coordinator's tasks need no scope: it is current anyway, and its
            // workers are a static.
            let worker = Worker::new(node, true, fut);
            match span {
                Some(span) => tokio::spawn(tracing::Instrument::instrument(worker, span)),
                None => tokio::spawn(worker),
            }
        } else {
            // Inside its scope, which names this coordinator (and its workers) while the task is
            // polled or dropped: that is how the worker finds its registry.
            let worker = Worker::new(node, false, fut);
            match span {
                Some(span) => tokio::spawn(scope::scope(
                    self.clone(),
                    tracing::Instrument::instrument(worker, span),
                )),
                None => tokio::spawn(scope::scope(self.clone(), worker)),
            }
        };
        TaskHandle::new(name, join)
    }
}

/// Starts a named, tracked OS thread on the current coordinator.
///
/// `f` receives the coordinator's [`Shutdown`]; use [`Shutdown::sleep_blocking`] and
/// [`Shutdown::is_triggered`] to notice shutdown. At shutdown the thread gets
/// [`DEFAULT_STOP_TIMEOUT`] to return; one still running after that is reported as leaked and
/// left running (never joined forever). A panic is caught, logged and counted.
///
/// The thread runs with the coordinator current (so [`spawn`](crate::spawn) and
/// [`trigger_shutdown`](crate::trigger_shutdown) inside it act on it) and, when started from a
/// tokio runtime, inside that runtime's context.
///
/// Linux keeps only the first 15 bytes of a thread's name: `"metrics-sampler-1"` shows as
/// `"metrics-sampler"` in `top -H` and `/proc`; the report and snapshots use the whole name.
///
/// # Panics
///
/// When `name` contains a NUL byte (no OS thread can carry it), and when the OS refuses to
/// create a thread, as [`std::thread::spawn`] does. Nothing is registered in either case.
///
/// ```
/// let coordinator = lifecycle_runtime::Coordinator::new();
/// let _guard = coordinator.enter();
/// let handle = lifecycle_runtime::spawn_thread("compute", |_shutdown| 6 * 7);
/// assert_eq!(handle.join(), Ok(42));
/// ```
#[track_caller]
pub fn spawn_thread<F, T>(name: impl Into<TaskName>, f: F) -> ThreadHandle<T>
where
    F: FnOnce(Shutdown) -> T + Send + 'static,
    T: Send + 'static,
{
    let name = name.into();
    with_current(|coordinator| coordinator.spawn_thread(name, f))
}

impl Coordinator {
    /// Starts a named, tracked OS thread on this coordinator; see [`spawn_thread`].
    #[track_caller]
    pub fn spawn_thread<F, T>(&self, name: impl Into<TaskName>, f: F) -> ThreadHandle<T>
    where
        F: FnOnce(Shutdown) -> T + Send + 'static,
        T: Send + 'static,
    {
        let meta = WorkerMeta::new(name.into(), WorkerKind::Thread, DEFAULT_STOP_TIMEOUT, None);
        self.spawn_thread_worker(meta, move |shutdown| Ok(f(shutdown)))
    }

    /// Registers and starts a worker thread. `f`'s `Err` says how it failed.
    #[track_caller]
    pub(crate) fn spawn_thread_worker<F, T>(&self, meta: WorkerMeta, f: F) -> ThreadHandle<T>
    where
        F: FnOnce(Shutdown) -> Result<T, TaskError> + Send + 'static,
        T: Send + 'static,
    {
        let name = meta.name.clone();
        // Checked before anything is registered: std would panic inside `spawn`.
        assert!(
            !name.contains('\0'),
            "cannot start thread {name:?}: a thread name may not contain a NUL byte"
        );
        self.remember_runtime();
        let mut guard = ThreadGuard::register(self.workers_ref(), meta);
        let (sender, result) = oneshot::channel();
        let coordinator = self.clone();
        let runtime = tokio::runtime::Handle::try_current().ok();
        let thread_name = name.clone();
        let spawned = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let _runtime = runtime.as_ref().map(tokio::runtime::Handle::enter);
                let _span = tracing::info_span!("thread", name = %thread_name).entered();
                let _current = coordinator.enter();
                crate::workers::set_current_thread_worker(thread_name.clone());
                let shutdown = coordinator.shutdown_signal();
                let outcome = match catch(move || f(shutdown)) {
                    Ok(outcome) => outcome,
                    Err(message) => Err(TaskError::Panicked {
                        task: thread_name,
                        message,
                    }),
                };
                guard.finish(ended_from(&outcome));
                let _ = sender.send(outcome);
            });
        match spawned {
            Ok(join) => ThreadHandle::new(name, result, join),
            // The closure, and the guard in it, were dropped: the thread is unregistered.
            Err(error) => panic!("failed to start thread `{name}`: {error}"),
        }
    }
}
