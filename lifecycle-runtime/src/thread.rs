//! Tracked, named OS threads. Shutdown signals them, waits up to their stop timeout, and reports
//! one that will not stop as leaked instead of joining it forever.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::coordinator::{Coordinator, Leaving, set_thread_coordinator, with_current};
use crate::panic;
use crate::registry::{Control, Ended, WorkerEntry, WorkerKind};
use crate::shutdown::Shutdown;
use crate::snapshot::StateCell;
use crate::task::{DEFAULT_STOP_TIMEOUT, TaskError, TaskName, WorkerGuard, ended_from};

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
/// it must watch its [`Shutdown`], which has fired by the time resources close.
impl<T: Send + 'static> crate::Close for ThreadHandle<T> {
    async fn close(&self) -> Result<(), crate::CloseError> {
        crate::resource::wait_until_finished(|| self.join.is_finished()).await;
        Ok(())
    }

    fn close_name(&self) -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Owned(self.name.to_string())
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
        self.spawn_thread_worker(name.into(), DEFAULT_STOP_TIMEOUT, None, move |shutdown| {
            Ok(f(shutdown))
        })
    }

    /// Registers and starts a worker thread. `f`'s `Err` says how it failed.
    #[track_caller]
    pub(crate) fn spawn_thread_worker<F, T>(
        &self,
        name: TaskName,
        stop_timeout: Duration,
        state: Option<Arc<StateCell>>,
        f: F,
    ) -> ThreadHandle<T>
    where
        F: FnOnce(Shutdown) -> Result<T, TaskError> + Send + 'static,
        T: Send + 'static,
    {
        // Checked before anything is registered: std would panic inside `spawn` and leave a
        // registry entry for a thread that never existed.
        assert!(
            !name.contains('\0'),
            "cannot start thread {name:?}: a thread name may not contain a NUL byte"
        );
        self.remember_runtime();
        let mut entry = WorkerEntry::new(
            name.clone(),
            WorkerKind::Thread,
            stop_timeout,
            Control::Thread,
        );
        entry.state = state;
        self.workers().thread_spawned();
        let key = self.workers().insert(entry);
        if self.shutdown_signal_fired() {
            self.registered_late();
        }
        let (sender, result) = oneshot::channel();
        let coordinator = self.clone();
        let runtime = tokio::runtime::Handle::try_current().ok();
        let thread_name = name.clone();
        let spawned = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let _runtime = runtime.as_ref().map(tokio::runtime::Handle::enter);
                let _span = tracing::info_span!("thread", name = %thread_name).entered();
                set_thread_coordinator(coordinator.clone());
                let mut guard = WorkerGuard::registered(&coordinator, key);
                let shutdown = coordinator.shutdown_signal();
                let outcome = match panic::catch(move || f(shutdown)) {
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
            Ok(join) => ThreadHandle { name, result, join },
            Err(error) => {
                self.worker_ended(Leaving::Registered(key), Ended::Cancelled);
                panic!("failed to start thread `{name}`: {error}");
            }
        }
    }
}
