//! How a worker reaches the [`Workers`] it belongs to: one word in every task.

use std::sync::Arc;

use super::Workers;

/// How a worker reaches the [`Workers`] it belongs to: by a plain reference when something
/// else keeps them alive (the global coordinator's live as long as the process; a scoped task's
/// scope holds its coordinator), so no reference count on a line every task would share; else
/// by `Arc`. One word in every task.
pub(crate) struct WorkersRef {
    /// Tagged: the low bit set means an uncounted reference.
    ptr: std::ptr::NonNull<Workers>,
}

// SAFETY: points to a `Workers` (which is `Send + Sync`), kept alive by the count it holds or, for
// an uncounted reference, by its owner (see the constructors).
unsafe impl Send for WorkersRef {}
// SAFETY: as above.
unsafe impl Sync for WorkersRef {}

impl WorkersRef {
    /// The global coordinator's workers, which live as long as the process.
    pub(crate) fn global(workers: &'static Workers) -> WorkersRef {
        // SAFETY: `'static`.
        unsafe { WorkersRef::uncounted(workers) }
    }

    /// Workers that something else keeps alive.
    ///
    /// # Safety
    ///
    /// `workers` outlives the reference: the caller drops the reference (and what holds it)
    /// before whatever keeps `workers` alive.
    pub(crate) unsafe fn uncounted(workers: &Workers) -> WorkersRef {
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
