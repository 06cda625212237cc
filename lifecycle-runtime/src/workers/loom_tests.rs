//! Loom models of the registry protocol: tasks registering, ending and being aborted while the
//! coordinator tells them to stop and scans, judges and folds the shards. Run with
//! `RUSTFLAGS="--cfg lifecycle_loom" cargo test -p lifecycle-runtime --release --lib loom`
//! (DESIGN.md, "Model checking").
//!
//! What runs is the shipped code: the real [`Worker`] future (its guard registers at the first
//! `Pending` and leaves at the end), the real [`Workers`] and [`Registry`](super::registry)
//! (shard mutexes, intrusive lists, counters, folding, judging), the real [`StopSignal`]. Under
//! `--cfg lifecycle_loom` their atomics, mutexes and `UnsafeCell`s are loom's (`util/sync.rs`).
//! What differs from a production build:
//! - two shards, and each model thread says which one it uses (instead of a per-OS-thread index);
//! - tokio's `Notify` is replaced by a small loom one with the same `notify_waiters`/`notified`
//!   contract (`util/sync.rs`): tokio's is not instrumented;
//! - a task is driven by `loom::future::block_on` instead of a tokio runtime: its waker parks and
//!   unparks the model thread, so a wake that never comes shows up as a deadlock;
//! - a node's drop writes to its cells (so that a node touched after its owner freed it is a
//!   race loom reports), and the model keeps the memory allocated until the end of the run.
//!
//! The invariants checked:
//! 1. No use after free: nobody touches a node's links or waker after its owner dropped it
//!    (loom's cell tracking; the lists' neighbours and the coordinator's scans included).
//! 2. A task that registered and ended is folded exactly once: never lost, never twice; and once
//!    the coordinator sees "settled", every ending is already folded (the fold happens under the
//!    same lock as the unlink).
//! 3. A task registering while the coordinator tells workers to stop either sees the stop flag
//!    itself or is woken by the coordinator: nobody sleeps through the stop signal (a
//!    `#[background]` loop through the registry's wake, a task through `StopSignal::fired`).
//! 4. The registry is empty (`linked() == 0`, `settled`) exactly when every task ended: never
//!    settled while one is still registered or still in its first poll.
//! 5. A task aborted by shutdown ends exactly once in the report: folded as aborted by its own
//!    leaving, or given up on by the coordinator (leaked), never both, never neither; and the
//!    coordinator's two-look "dropping" check only ever names linked nodes.
//!
//! Not modelled: the waits of step 3 (`wait_settled_until`, `wake_in_batches`) run on tokio's
//! timer; the phase/first-poll handshake (`Workers::phase`) relies on `SeqCst` store-load
//! ordering, which loom treats as acquire/release, so checking it would only raise false alarms.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use loom::future::AtomicWaker;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

use super::BudgetEnd;
use super::node::Node;
use super::registry::{FoldedEnd, model_thread_shard};
use super::task::{OkFuture, Worker};
use super::{Phase, StopPolicy, Verdict, WorkerKind, Workers, enter_scope};
use crate::util::sync::model;

/// A task's own future: done at its second poll (it wakes itself, as `yield_now` does).
#[derive(Default)]
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::replace(&mut self.0, true) {
            return Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A `#[background]` loop's body: it waits on a far-away timer, and only the registry's wake at
/// the stop signal brings it back to look at the flag.
struct LoopBody(Arc<Workers>);

impl Future for LoopBody {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if self.0.stop_signal().is_fired() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A task that ignores the stop signal: it ends only once released (a worker shutdown gave up on
/// keeps running; the model lets it end so that the run ends).
#[derive(Clone, Default)]
struct UntilReleased(Arc<(AtomicBool, AtomicWaker)>);

impl UntilReleased {
    fn release(&self) {
        self.0.0.store(true, Ordering::Release);
        self.0.1.wake();
    }
}

impl Future for UntilReleased {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.1.register_by_ref(cx.waker());
        if self.0.0.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A tracked task's memory, kept allocated after the task dropped it (see the module comment).
type Freed<F> = Box<ManuallyDrop<Worker<OkFuture<F>>>>;

/// Runs a tracked task named `name` on shard `shard` of `workers` to its end, as a runtime
/// would (polled until ready, woken through its waker), then drops it. `loop_key` 1 with
/// `WOKEN_AT_STOP` makes it a `#[background]` loop waiting on its timer.
fn run_task<F>(
    workers: &Workers,
    shard: usize,
    name: &'static str,
    loop_key: u32,
    fut: F,
) -> Freed<F>
where
    F: Future<Output = ()>,
{
    model_thread_shard(shard);
    let _scope = enter_scope(workers);
    let node = Node::new(
        name.into(),
        WorkerKind::Task,
        Duration::from_secs(1),
        loop_key,
    );
    let mut slot = Box::new(ManuallyDrop::new(Worker::new(
        node,
        false,
        OkFuture::new(fut),
    )));
    // SAFETY: the worker stays in its box until it is dropped in place below, and the box is
    // freed only after that.
    let worker = unsafe { Pin::new_unchecked(&mut **slot) };
    let _ = loom::future::block_on(worker);
    // SAFETY: dropped once, in place; never used again.
    unsafe { ManuallyDrop::drop(&mut *slot) };
    slot
}

/// The folded rows taken from the registry, as (how, count) summed by how.
fn take_folded(workers: &Workers) -> (usize, usize) {
    let (mut stopped, mut aborted) = (0, 0);
    for row in workers.registry.take_folded() {
        match row.how {
            FoldedEnd::Stopped => stopped += row.count,
            FoldedEnd::Aborted { .. } => aborted += row.count,
        }
    }
    (stopped, aborted)
}

/// Invariants 1, 2, 4: two tasks of one shard (neighbours in one list: each unlink touches the
/// other's links) register and end while the coordinator scans every node and asks whether
/// anything is left.
#[test]
fn loom_two_tasks_end_while_shutdown_scans() {
    model(|| {
        let workers = Arc::new(Workers::new());
        workers.set_phase(Phase::Draining);
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                workers.task_spawned();
                let workers = Arc::clone(&workers);
                thread::spawn(move || run_task(&workers, 0, "t", 0, YieldOnce::default()))
            })
            .collect();

        let mut names = 0;
        workers.for_each(|entry| names += entry.name().len());
        assert!(names <= 2);
        let mut stopped = 0;
        if workers.settled() {
            stopped += take_folded(&workers).0;
            assert_eq!(stopped, 2, "settled before every ending was folded");
            assert_eq!(workers.linked(), 0);
        }

        let freed: Vec<_> = tasks.into_iter().map(|task| task.join().unwrap()).collect();
        stopped += take_folded(&workers).0;
        assert_eq!(stopped, 2, "an ending lost from the fold, or folded twice");
        assert_eq!(workers.linked(), 0);
        assert!(workers.settled());
        assert_eq!(workers.totals().completed, 2);
        drop(freed);
    });
}

/// Invariants 3, 4: a `#[background]` loop (woken by the registry) and a task waiting for the
/// stop signal register, on two shards, while the coordinator tells workers to stop. Both must
/// end (a missed wake is a deadlock loom reports), and both endings are folded.
#[test]
fn loom_registering_while_told_to_stop() {
    model(|| {
        let workers = Arc::new(Workers::new());
        workers.set_phase(Phase::Draining);
        workers.task_spawned();
        let looping = {
            let workers = Arc::clone(&workers);
            thread::spawn(move || {
                let body = LoopBody(Arc::clone(&workers));
                run_task(&workers, 1, "loop", 1 | super::node::WOKEN_AT_STOP, body)
            })
        };
        workers.task_spawned();
        let waiting = {
            let workers = Arc::clone(&workers);
            thread::spawn(move || {
                let fired = workers.stop_signal().fired_owned();
                run_task(&workers, 0, "waits", 0, fired)
            })
        };

        workers.tell_to_stop();

        let freed = (looping.join().unwrap(), waiting.join().unwrap());
        // A task that saw the signal in its first poll never registered: its ending is a record
        // of its own, not a fold.
        let (stopped, aborted) = take_folded(&workers);
        assert_eq!(aborted, 0);
        assert_eq!(
            stopped + workers.records_count(),
            2,
            "an ending lost or counted twice"
        );
        assert_eq!(workers.linked(), 0);
        assert!(workers.settled());
        drop(freed);
    });
}

/// Invariants 1, 5: a registered task is aborted by shutdown (its verdict set under the shard
/// lock, its waker woken) and ends at its next poll, while the coordinator takes its two looks
/// for tasks blocked dropping and then gives up on those still there. The ending is counted once:
/// folded as aborted, or given up on (leaked), not both.
#[test]
fn loom_abort_while_giving_up_on_stragglers() {
    model(|| {
        let workers = Arc::new(Workers::new());
        workers.set_phase(Phase::Stopping);
        workers.task_spawned();
        let release = UntilReleased::default();
        let task = {
            let workers = Arc::clone(&workers);
            let release = release.clone();
            thread::spawn(move || run_task(&workers, 1, "t", 0, release))
        };
        // The coordinator judges only what is registered; step 3 waits for it meanwhile.
        while workers.linked() == 0 {
            thread::yield_now();
        }
        let policy = StopPolicy {
            stop_started: tokio::time::Instant::now(),
            deadline: tokio::time::Instant::now(),
        };
        let wakers = workers
            .cut_off_due(&policy, policy.stop_started + Duration::from_secs(60))
            .aborted;
        assert_eq!(wakers.len(), 1);
        wakers.into_iter().for_each(std::task::Waker::wake);

        let dropping = workers.dropping_now();
        let mut seen = Vec::new();
        workers.for_each(|entry| {
            if dropping.contains(&entry.address()) {
                seen.push(entry.verdict());
            }
        });
        assert!(seen.iter().all(|verdict| *verdict == Verdict::Aborted));
        workers.leak_stragglers(false, BudgetEnd::NotReached, &dropping);
        let leaked = workers.records_count();
        // A task given up on keeps running: here it ends, and its ending is not recorded again.
        release.release();

        let freed = task.join().unwrap();
        let (stopped, aborted) = take_folded(&workers);
        assert_eq!(stopped, 0);
        assert_eq!(
            aborted + leaked,
            1,
            "an aborted task ended in the report {} times",
            aborted + leaked
        );
        assert_eq!(workers.linked(), 0);
        drop(freed);
    });
}
