//! Which coordinator is current: the innermost [`Coordinator::scope`] (a tokio task-local, which
//! tasks spawned through this crate inherit), else the coordinator an OS thread entered, else the
//! process-global one.

use std::cell::RefCell;
use std::future::Future;
use std::sync::OnceLock;

use super::Coordinator;

tokio::task_local! {
    static CURRENT: Coordinator;
}

thread_local! {
    static THREAD_CURRENT: RefCell<Option<Coordinator>> = const { RefCell::new(None) };
}

static GLOBAL: OnceLock<Coordinator> = OnceLock::new();

/// The process-global coordinator, made by `make` on first use.
pub(super) fn global(make: impl FnOnce() -> Coordinator) -> &'static Coordinator {
    GLOBAL.get_or_init(make)
}

/// Calls `f` with the current coordinator without cloning it.
pub(crate) fn with_current<R>(f: impl FnOnce(&Coordinator) -> R) -> R {
    let mut f = Some(f);
    if let Ok(result) =
        CURRENT.try_with(|coordinator| (f.take().expect("called once"))(coordinator))
    {
        return result;
    }
    let f = f.take().expect("not called by the task-local branch");
    let thread = THREAD_CURRENT.with(|slot| slot.borrow().clone());
    match thread {
        // A tokio task with no scope belongs to the global coordinator (tasks of other
        // coordinators carry their scope), even on a thread that entered another one: `enter` is
        // for synchronous code on that thread.
        Some(coordinator) if tokio::task::try_id().is_none() => f(&coordinator),
        _ => f(Coordinator::global()),
    }
}

/// Runs `fut` with `coordinator` current.
pub(super) fn scope<F: Future>(
    coordinator: Coordinator,
    fut: F,
) -> tokio::task::futures::TaskLocalFuture<Coordinator, F> {
    CURRENT.scope(coordinator, fut)
}

/// Makes `coordinator` current on this OS thread; returns the one it replaces.
pub(super) fn enter_thread(coordinator: Coordinator) -> Option<Coordinator> {
    THREAD_CURRENT.with(|slot| slot.replace(Some(coordinator)))
}

/// Restores what [`enter_thread`] replaced.
pub(super) fn leave_thread(previous: Option<Coordinator>) {
    THREAD_CURRENT.with(|slot| *slot.borrow_mut() = previous);
}

/// Restores the previous thread coordinator when dropped; see [`Coordinator::enter`].
#[derive(Debug)]
#[must_use = "the coordinator is current only while the guard lives"]
pub struct EnterGuard {
    pub(super) previous: Option<Coordinator>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        leave_thread(self.previous.take());
    }
}
