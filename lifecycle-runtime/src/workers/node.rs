//! A worker's place in the registry: its [`Node`], carried by the worker itself (inside the
//! task's future, or a pinned box for threads), what it is ([`WorkerMeta`]), and what shutdown
//! decided about it ([`Verdict`]). The registry's safety rules (`registry.rs`) say who may touch
//! which field when.

use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomPinned;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use super::{TaskName, WorkerKind};
use crate::snapshot::StateCell;

/// What shutdown decided about a worker that did not stop in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Verdict {
    None = 0,
    Aborted = 1,
    Leaked = 2,
    /// A task awaiting the shutdown report: not waited for, since it waits for shutdown.
    AwaitsReport = 3,
}

impl Verdict {
    pub(super) fn from_u8(value: u8) -> Verdict {
        match value {
            1 => Verdict::Aborted,
            2 => Verdict::Leaked,
            3 => Verdict::AwaitsReport,
            _ => Verdict::None,
        }
    }

    /// Whether shutdown no longer waits for the worker.
    pub(super) fn settled(self) -> bool {
        matches!(self, Verdict::Leaked | Verdict::AwaitsReport)
    }
}

/// What a worker is, fixed when it is spawned.
#[derive(Debug)]
pub(crate) struct WorkerMeta {
    pub(crate) name: TaskName,
    pub(crate) kind: WorkerKind,
    /// Nanoseconds, saturating (584 years means "no limit", as `Duration::MAX` does): half the
    /// size of a `Duration` in every task.
    stop_timeout_nanos: u64,
    /// For `#[background]` loops: their state, for snapshots (and the mark of a loop).
    pub(crate) state: Option<Arc<StateCell>>,
}

impl WorkerMeta {
    pub(crate) fn new(
        name: TaskName,
        kind: WorkerKind,
        stop_timeout: Duration,
        state: Option<Arc<StateCell>>,
    ) -> WorkerMeta {
        WorkerMeta {
            name,
            kind,
            stop_timeout_nanos: u64::try_from(stop_timeout.as_nanos()).unwrap_or(u64::MAX),
            state,
        }
    }

    pub(crate) fn stop_timeout(&self) -> Duration {
        Duration::from_nanos(self.stop_timeout_nanos)
    }

    pub(crate) fn is_loop(&self) -> bool {
        self.state.is_some()
    }
}

#[derive(Default)]
pub(super) struct Links {
    pub(super) prev: Option<NonNull<Node>>,
    pub(super) next: Option<NonNull<Node>>,
}

/// One worker's place in the registry, carried by the worker itself.
pub(crate) struct Node {
    /// Guarded by the shard's lock.
    pub(super) links: UnsafeCell<Links>,
    /// The waker shutdown wakes the task through. Written by the owner with the lock held; read
    /// by the owner without it, by others with it.
    pub(super) waker: UnsafeCell<Option<Waker>>,
    pub(crate) meta: WorkerMeta,
    /// Set before linking, read-only after.
    pub(super) started: Cell<Option<Instant>>,
    pub(super) task_id: Cell<Option<tokio::task::Id>>,
    pub(super) shard: Cell<u16>,
    /// A [`Verdict`]; written with the lock held.
    pub(super) verdict: AtomicU8,
    /// Whether the shutdown budget, not the worker's own stop timeout, set its deadline.
    pub(super) cut_by_budget: AtomicBool,
    _pinned: PhantomPinned,
}

// SAFETY: see the module's rules: shared fields are atomics or guarded by the shard lock, and the
// `Cell`s are written only by the owner before the node is linked.
unsafe impl Send for Node {}
// SAFETY: as above.
unsafe impl Sync for Node {}

impl Node {
    pub(crate) fn new(meta: WorkerMeta) -> Node {
        Node {
            links: UnsafeCell::new(Links::default()),
            waker: UnsafeCell::new(None),
            meta,
            started: Cell::new(None),
            task_id: Cell::new(None),
            shard: Cell::new(0),
            verdict: AtomicU8::new(Verdict::None as u8),
            cut_by_budget: AtomicBool::new(false),
            _pinned: PhantomPinned,
        }
    }

    pub(crate) fn verdict(&self) -> Verdict {
        Verdict::from_u8(self.verdict.load(Ordering::Acquire))
    }

    pub(crate) fn cut_by_budget(&self) -> bool {
        self.cut_by_budget.load(Ordering::Relaxed)
    }

    /// When it registered (for a task: its first wait).
    pub(crate) fn started(&self) -> Instant {
        self.started.get().unwrap_or_else(Instant::now)
    }

    pub(crate) fn task_id(&self) -> Option<tokio::task::Id> {
        self.task_id.get()
    }

    /// The waker, cloned. With the lock held, or by the owner.
    pub(super) fn waker(&self) -> Option<Waker> {
        // SAFETY: written only by the owner with the lock held; see the module's rules.
        unsafe { (*self.waker.get()).clone() }
    }

    pub(super) fn list(&self) -> ListId {
        if self.meta.is_loop() {
            ListId::Loops
        } else {
            ListId::Workers
        }
    }
}

/// A view of one live node, handed to callbacks while its shard is locked.
pub(crate) struct Entry<'a> {
    pub(super) node: &'a Node,
}

impl Entry<'_> {
    pub(crate) fn meta(&self) -> &WorkerMeta {
        &self.node.meta
    }

    pub(crate) fn started(&self) -> Instant {
        self.node.started()
    }

    pub(crate) fn task_id(&self) -> Option<tokio::task::Id> {
        self.node.task_id()
    }

    pub(crate) fn verdict(&self) -> Verdict {
        self.node.verdict()
    }

    pub(crate) fn waker(&self) -> Option<Waker> {
        self.node.waker()
    }
}

/// Which of a shard's lists a node belongs in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ListId {
    Workers,
    /// `#[background]` loops, which the coordinator wakes at the stop signal.
    Loops,
}
