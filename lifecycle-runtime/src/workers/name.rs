//! The name of a task or thread: a `&'static str` without allocating, or a shared `String`, in
//! two words (every task carries one, so its size is paid once per task).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

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
pub struct TaskName {
    /// The first byte of the text: of a `&'static str`, or of an `Arc<str>`'s data.
    ptr: NonNull<u8>,
    /// The length in bytes, with [`SHARED`] set when `ptr` belongs to an `Arc<str>` this name
    /// holds one count of. A `str` is never longer than `isize::MAX`, so the top bit is free.
    tagged_len: usize,
}

const SHARED: usize = 1 << (usize::BITS - 1);

// SAFETY: a `TaskName` is a `&'static str` or an `Arc<str>`, both `Send` and `Sync`.
unsafe impl Send for TaskName {}
// SAFETY: as above.
unsafe impl Sync for TaskName {}

impl TaskName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        let len = self.tagged_len & !SHARED;
        // SAFETY: `ptr` and `len` come from a `str` that lives at least as long as `self` (a
        // `'static` one, or an `Arc` this name keeps a count of).
        unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(self.ptr.as_ptr(), len)) }
    }

    fn is_shared(&self) -> bool {
        self.tagged_len & SHARED != 0
    }

    /// The `Arc<str>` behind a shared name, as the raw pointer `Arc::into_raw` gave.
    fn arc_ptr(&self) -> *const str {
        std::ptr::slice_from_raw_parts(self.ptr.as_ptr().cast_const(), self.tagged_len & !SHARED)
            as *const str
    }

    /// Whether two names are the same, comparing pointers first (names of one call site share
    /// them), then text.
    pub(crate) fn same_as(&self, other: &TaskName) -> bool {
        (self.ptr == other.ptr && self.tagged_len == other.tagged_len)
            || self.as_str() == other.as_str()
    }
}

impl Clone for TaskName {
    fn clone(&self) -> Self {
        if self.is_shared() {
            // SAFETY: this name holds a count of that `Arc`, so it is alive.
            unsafe { Arc::increment_strong_count(self.arc_ptr()) };
        }
        TaskName {
            ptr: self.ptr,
            tagged_len: self.tagged_len,
        }
    }
}

impl Drop for TaskName {
    fn drop(&mut self) {
        if self.is_shared() {
            // SAFETY: gives back the count this name holds.
            unsafe { Arc::decrement_strong_count(self.arc_ptr()) };
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
        TaskName {
            ptr: NonNull::from(name).cast(),
            tagged_len: name.len(),
        }
    }
}

impl From<Arc<str>> for TaskName {
    fn from(name: Arc<str>) -> Self {
        let len = name.len();
        let raw = Arc::into_raw(name).cast::<u8>().cast_mut();
        TaskName {
            // SAFETY: `Arc::into_raw` never returns null.
            ptr: unsafe { NonNull::new_unchecked(raw) },
            tagged_len: len | SHARED,
        }
    }
}

impl From<String> for TaskName {
    fn from(name: String) -> Self {
        TaskName::from(Arc::<str>::from(name))
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

impl PartialEq for TaskName {
    fn eq(&self, other: &Self) -> bool {
        self.same_as(other)
    }
}

impl Eq for TaskName {}

impl Hash for TaskName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for TaskName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TaskName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_words_whatever_it_holds() {
        assert_eq!(size_of::<TaskName>(), 2 * size_of::<usize>());
    }

    #[test]
    fn shared_names_count_their_arc_and_give_it_back() {
        let text: Arc<str> = Arc::from("conn-7");
        let name = TaskName::from(text.clone());
        assert_eq!(Arc::strong_count(&text), 2);
        let copy = name.clone();
        assert_eq!(Arc::strong_count(&text), 3);
        assert_eq!(copy.as_str(), "conn-7");
        drop(name);
        drop(copy);
        assert_eq!(Arc::strong_count(&text), 1);
    }

    #[test]
    fn names_compare_by_text_whatever_they_hold() {
        let fixed = TaskName::from("flush");
        let built = TaskName::from(String::from("flush"));
        assert_eq!(fixed, built);
        assert!(fixed.same_as(&built));
        assert!(TaskName::from("a") < TaskName::from(String::from("b")));
        let empty = TaskName::from(String::new());
        assert_eq!(empty.as_str(), "");
        assert_eq!(TaskName::from(""), empty);
    }
}
