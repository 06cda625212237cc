//! One shard's lists: two intrusive doubly-linked lists of nodes (workers, and `#[background]`
//! loops), the settled count, and the "stopped when told" rows folded by name. Every method runs
//! with the shard's lock held (it takes `&mut Lists` or `&Lists` through the guard).

use std::ptr::NonNull;
use std::time::Duration;

use tokio::time::Instant;

use super::super::node::{Links, ListId, Node};
use super::super::{TaskName, WorkerKind};

/// Oldest first. Nodes are appended, and workers told to stop at once end roughly in the order
/// they registered (wakers are woken in the order they started waiting), so a removal mostly
/// takes the head and touches only the next node, whose task is about to end and be touched
/// anyway. (Pushing at the head instead made each removal touch two cold neighbours.)
#[derive(Default)]
pub(super) struct List {
    pub(super) head: Option<NonNull<Node>>,
    tail: Option<NonNull<Node>>,
}

/// Workers of one name that ended the usual way during shutdown, folded as they end: stopped
/// when told (the usual outcome needs no record of its own), or aborted at their stop timeout
/// (a million tasks that ignore shutdown make one row, not a million records).
#[derive(Clone, Debug)]
pub(crate) struct Folded {
    pub(crate) name: TaskName,
    pub(crate) kind: WorkerKind,
    pub(crate) how: FoldedEnd,
    pub(crate) count: usize,
    pub(crate) last_end: Instant,
}

/// How the workers of a [`Folded`] row ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FoldedEnd {
    /// Stopped when told.
    Stopped,
    /// Aborted by shutdown, its deadline set by its own stop timeout or by the budget.
    Aborted {
        stop_timeout: Duration,
        cut_by_budget: bool,
    },
}

#[derive(Default)]
pub(super) struct Lists {
    pub(super) workers: List,
    pub(super) loops: List,
    pub(super) len: usize,
    /// First polls that ended with the task registered here (counted under the lock the link
    /// takes anyway).
    pub(super) registered: u64,
    /// Entries shutdown no longer waits for (leaked, or awaiting the report).
    pub(super) settled: usize,
    /// The least stop timeout of anything registered here: a lower bound for step 3's first wait.
    pub(super) min_stop_timeout: Option<Duration>,
    pub(super) stopped: Vec<Folded>,
    /// Where the last fold landed: workers of one name tend to end together.
    pub(super) last_stopped: usize,
}

// SAFETY: the pointers are dereferenced only with the shard's lock held (module rules).
unsafe impl Send for Lists {}

impl Lists {
    fn list(&mut self, id: ListId) -> &mut List {
        match id {
            ListId::Workers => &mut self.workers,
            ListId::Loops => &mut self.loops,
        }
    }

    /// Appends `node` to its list.
    ///
    /// # Safety
    ///
    /// `node` is pinned, not linked, and stays alive until unlinked.
    pub(super) unsafe fn push(&mut self, node: &Node) {
        let id = node.list();
        let list = self.list(id);
        let ptr = NonNull::from(node);
        // SAFETY: the lock is held (we have `&mut self`); `tail` is a live linked node.
        unsafe {
            node.links.with_mut(|links| {
                *links = Links {
                    prev: list.tail,
                    next: None,
                }
            });
            match list.tail {
                Some(tail) => tail
                    .as_ref()
                    .links
                    .with_mut(|links| (*links).next = Some(ptr)),
                None => list.head = Some(ptr),
            }
        }
        list.tail = Some(ptr);
        self.len += 1;
        if node.verdict().settled() {
            self.settled += 1;
        }
        let timeout = node.stop_timeout();
        self.min_stop_timeout = Some(self.min_stop_timeout.map_or(timeout, |t| t.min(timeout)));
    }

    /// Unlinks `node`.
    ///
    /// # Safety
    ///
    /// `node` is linked in these lists.
    pub(super) unsafe fn remove(&mut self, node: &Node) {
        let id = node.list();
        let list = self.list(id);
        // SAFETY: the lock is held; `node` and its neighbours are linked, live nodes.
        unsafe {
            let links = node.links.with_mut(|links| std::mem::take(&mut *links));
            debug_assert!(links.prev.is_some() || list.head == Some(NonNull::from(node)));
            debug_assert!(links.next.is_some() || list.tail == Some(NonNull::from(node)));
            match links.prev {
                Some(prev) => prev
                    .as_ref()
                    .links
                    .with_mut(|prev| (*prev).next = links.next),
                None => list.head = links.next,
            }
            match links.next {
                Some(next) => next
                    .as_ref()
                    .links
                    .with_mut(|next| (*next).prev = links.prev),
                None => list.tail = links.prev,
            }
        }
        self.len -= 1;
        if node.verdict().settled() {
            self.settled -= 1;
        }
    }

    pub(super) fn is_settled(&self) -> bool {
        self.len == self.settled
    }

    /// Every linked node, workers then loops.
    pub(super) fn for_each(&self, mut f: impl FnMut(&Node)) {
        for head in [self.workers.head, self.loops.head] {
            let mut cursor = head;
            while let Some(node) = cursor {
                // SAFETY: the lock is held (we have `&self` through the guard); linked nodes are
                // alive.
                let node = unsafe { node.as_ref() };
                f(node);
                // SAFETY: as above.
                cursor = node.links.with(|links| unsafe { (*links).next });
            }
        }
    }

    /// Folds one more worker that ended `how`.
    pub(super) fn fold(&mut self, node: &Node, how: FoldedEnd, now: Instant) {
        let same = |row: &Folded| {
            row.how == how && row.kind == node.kind() && row.name.same_as(node.name())
        };
        let at = match self.stopped.get(self.last_stopped) {
            Some(row) if same(row) => Some(self.last_stopped),
            _ => self.stopped.iter().position(same),
        };
        match at {
            Some(at) => {
                let row = &mut self.stopped[at];
                row.count += 1;
                row.last_end = row.last_end.max(now);
                self.last_stopped = at;
            }
            None => {
                self.last_stopped = self.stopped.len();
                self.stopped.push(Folded {
                    name: node.name().clone(),
                    kind: node.kind(),
                    how,
                    count: 1,
                    last_end: now,
                });
            }
        }
    }
}
