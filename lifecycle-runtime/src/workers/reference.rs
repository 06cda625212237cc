//! How a worker reaches the [`Workers`] it belongs to. A task carries no reference: one of the
//! global coordinator finds the global workers (a static), one of another coordinator finds them
//! through the scope its task runs in (its coordinator's `Scoped` wrapper names them in a
//! thread-local while it polls or drops the task). A thread carries a [`WorkersRef`].

use std::cell::Cell;
use std::sync::{Arc, OnceLock};

use super::Workers;

static GLOBAL: OnceLock<Arc<Workers>> = OnceLock::new();

#[cfg(not(lifecycle_loom))]
thread_local! {
    /// The workers of the innermost coordinator scope being polled or dropped on this thread.
    static SCOPED: Cell<*const Workers> = const { Cell::new(std::ptr::null()) };
}

// Under loom, one per model thread (loom's threads share one OS thread).
#[cfg(lifecycle_loom)]
loom::thread_local! {
    static SCOPED: Cell<*const Workers> = Cell::new(std::ptr::null());
}

/// The global coordinator's workers, made on first use; they live as long as the process.
#[inline]
pub(crate) fn global_workers() -> &'static Arc<Workers> {
    GLOBAL.get_or_init(|| Arc::new(Workers::new()))
}

/// The workers of the scope being polled or dropped on this thread, if any.
///
/// # Safety
///
/// The reference is valid while that scope's poll (or drop) runs: the caller must not keep it
/// past the poll or drop it was taken in.
#[inline]
pub(crate) unsafe fn scoped_workers<'a>() -> Option<&'a Workers> {
    // SAFETY: set by `enter_scope` to workers its caller keeps alive until the guard is dropped,
    // which is after this poll (see the caller's promise).
    unsafe { SCOPED.with(Cell::get).as_ref() }
}

/// Names `workers` as the current scope's until the guard is dropped. For a coordinator's scope
/// wrapper, around the poll and the drop of what it wraps.
#[inline]
pub(crate) fn enter_scope(workers: &Workers) -> InScope {
    InScope {
        previous: SCOPED.with(|scoped| scoped.replace(workers)),
    }
}

/// Restores the scope before; see [`enter_scope`].
pub(crate) struct InScope {
    previous: *const Workers,
}

impl Drop for InScope {
    #[inline]
    fn drop(&mut self) {
        SCOPED.with(|scoped| scoped.set(self.previous));
    }
}

/// How a thread reaches the [`Workers`] it belongs to: the global coordinator's by a plain
/// reference (they live as long as the process), any other's by `Arc`. One word.
pub(crate) struct WorkersRef {
    /// Tagged: the low bit set means an uncounted reference.
    ptr: std::ptr::NonNull<Workers>,
}

// SAFETY: points to a `Workers` (which is `Send + Sync`), kept alive by the count it holds or by
// being the global coordinator's.
unsafe impl Send for WorkersRef {}
// SAFETY: as above.
unsafe impl Sync for WorkersRef {}

impl WorkersRef {
    /// The global coordinator's workers, which live as long as the process.
    pub(crate) fn global(workers: &'static Workers) -> WorkersRef {
        let ptr = std::ptr::NonNull::from(workers);
        WorkersRef {
            ptr: ptr.map_addr(|addr| addr | 1),
        }
    }

    /// Another coordinator's workers, kept alive by this reference.
    pub(crate) fn shared(workers: &Arc<Workers>) -> WorkersRef {
        let raw = Arc::into_raw(workers.clone()).cast_mut();
        WorkersRef {
            // SAFETY: `Arc::into_raw` never returns null.
            ptr: unsafe { std::ptr::NonNull::new_unchecked(raw) },
        }
    }

    fn is_uncounted(&self) -> bool {
        self.ptr.addr().get() & 1 == 1
    }

    #[inline]
    pub(crate) fn get(&self) -> &Workers {
        let ptr = self.ptr.map_addr(|addr| {
            // SAFETY: clearing the tag of a non-null, aligned pointer leaves it non-null.
            unsafe { std::num::NonZeroUsize::new_unchecked(addr.get() & !1) }
        });
        // SAFETY: alive, see the type's `Send` impl.
        unsafe { ptr.as_ref() }
    }
}

impl Drop for WorkersRef {
    fn drop(&mut self) {
        if !self.is_uncounted() {
            // SAFETY: made by `Arc::into_raw` in `shared`, given back once.
            drop(unsafe { Arc::from_raw(self.ptr.as_ptr().cast_const()) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_reference_keeps_its_workers_alive_and_the_global_one_counts_nothing() {
        let workers = Arc::new(Workers::new());
        let shared = WorkersRef::shared(&workers);
        assert_eq!(Arc::strong_count(&workers), 2);
        assert!(std::ptr::eq(shared.get(), &*workers));
        drop(shared);
        assert_eq!(Arc::strong_count(&workers), 1);
        let leaked: &'static Workers = Box::leak(Box::new(Workers::new()));
        let global = WorkersRef::global(leaked);
        assert!(std::ptr::eq(global.get(), leaked));
        drop(global);
    }
}
