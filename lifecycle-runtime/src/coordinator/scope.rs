//! Which coordinator is current: the innermost [`Coordinator::scope`] (set while a [`Scoped`]
//! future is polled, which is how tasks spawned through this crate inherit their spawner's
//! coordinator), else the coordinator an OS thread entered, else the process-global one.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use super::Coordinator;

thread_local! {
    /// The coordinator of the innermost [`Scoped`] being polled (or dropped) on this thread.
    static CURRENT: Cell<*const Coordinator> = const { Cell::new(std::ptr::null()) };
    static THREAD_CURRENT: RefCell<Option<Coordinator>> = const { RefCell::new(None) };
}

static GLOBAL: OnceLock<Coordinator> = OnceLock::new();

/// The process-global coordinator, made by `make` on first use.
pub(super) fn global(make: impl FnOnce() -> Coordinator) -> &'static Coordinator {
    GLOBAL.get_or_init(make)
}

/// Calls `f` with the current coordinator without cloning it.
pub(crate) fn with_current<R>(f: impl FnOnce(&Coordinator) -> R) -> R {
    let scoped = CURRENT.with(Cell::get);
    // SAFETY: set only while the `Scoped` future holding that coordinator is polled or dropped
    // on this thread, which encloses this call.
    if let Some(coordinator) = unsafe { scoped.as_ref() } {
        return f(coordinator);
    }
    let thread = THREAD_CURRENT.with(|slot| slot.borrow().clone());
    match thread {
        // A tokio task with no scope belongs to the global coordinator (tasks of other
        // coordinators carry their scope), even on a thread that entered another one: `enter` is
        // for synchronous code on that thread.
        Some(coordinator) if tokio::task::try_id().is_none() => f(&coordinator),
        _ => f(Coordinator::global()),
    }
}

/// The current coordinator when it is not the global one (a clone), or `None`: lets the hot
/// path reach the global coordinator without a closure or a reference count.
pub(super) fn current_if_not_global() -> Option<Coordinator> {
    let scoped = CURRENT.with(Cell::get);
    // SAFETY: as in `with_current`.
    if let Some(coordinator) = unsafe { scoped.as_ref() } {
        return (!coordinator.is_global()).then(|| coordinator.clone());
    }
    let thread = THREAD_CURRENT.with(|slot| slot.borrow().clone())?;
    (!thread.is_global() && tokio::task::try_id().is_none()).then_some(thread)
}

/// Runs `fut` with `coordinator` current.
pub(super) fn scope<F: Future>(coordinator: Coordinator, fut: F) -> Scoped<F> {
    Scoped {
        fut: ManuallyDrop::new(fut),
        coordinator,
    }
}

/// A future that runs (and is dropped) with its coordinator current: one word, and two
/// thread-local swaps per poll (the coordinator, and its workers, through which a tracked task
/// of this coordinator finds its registry).
pub(crate) struct Scoped<F> {
    /// Dropped by hand, inside the scope, before `coordinator`.
    fut: ManuallyDrop<F>,
    coordinator: Coordinator,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `fut` is pinned with `self` (structural pinning: it is never moved out, and it
        // is dropped in place); `coordinator` is not pinned and only read.
        let this = unsafe { self.get_unchecked_mut() };
        let _current = Enter::new(&this.coordinator);
        let _workers = crate::workers::enter_scope(&this.coordinator.state.workers);
        // SAFETY: as above.
        unsafe { Pin::new_unchecked(&mut *this.fut) }.poll(cx)
    }
}

impl<F> Drop for Scoped<F> {
    fn drop(&mut self) {
        // What the inner future's drop does (a guard reporting to its coordinator, a task it
        // spawns on the way out) still sees its coordinator.
        let _current = Enter::new(&self.coordinator);
        let _workers = crate::workers::enter_scope(&self.coordinator.state.workers);
        // SAFETY: dropped once, in place, here; never used again.
        unsafe { ManuallyDrop::drop(&mut self.fut) };
    }
}

/// Makes a coordinator current until dropped, then restores the one before.
struct Enter {
    previous: *const Coordinator,
}

impl Enter {
    fn new(coordinator: &Coordinator) -> Enter {
        Enter {
            previous: CURRENT.with(|current| current.replace(coordinator)),
        }
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        CURRENT.with(|current| current.set(self.previous));
    }
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
