//! Memory per tracked task: live heap bytes after spawning 100,000 idle tasks through lifecycle,
//! against the same tasks through raw `tokio::spawn` and `TaskTracker`. The difference is what the
//! registry and the task wrapper cost. Target: ≤ 256 bytes per task.
//!
//! Run with `cargo bench -p lifecycle-runtime --bench memory`; prints a table.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use lifecycle_runtime::Coordinator;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const TASKS: usize = 100_000;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Live bytes added by spawning `TASKS` idle tasks with `spawn`, after they all ran once.
fn measure(runtime: &tokio::runtime::Runtime, spawn: impl Fn(&CancellationToken)) -> f64 {
    runtime.block_on(async {
        let token = CancellationToken::new();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let before = live();
        for _ in 0..TASKS {
            spawn(&token);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let after = live();
        token.cancel();
        tokio::time::sleep(Duration::from_millis(50)).await;
        (after - before) as f64 / TASKS as f64
    })
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let raw = measure(&runtime, |token| {
        let _task = tokio::spawn(token.clone().cancelled_owned());
    });
    let tracker = TaskTracker::new();
    let tracked = measure(&runtime, |token| {
        let _task = tracker.spawn(token.clone().cancelled_owned());
    });
    let global = measure(&runtime, |token| {
        let _task = Coordinator::global().spawn("idle", token.clone().cancelled_owned());
    });
    let scoped_coordinator = Coordinator::builder().scan_os_threads(false).build();
    let scoped = measure(&runtime, |token| {
        let _task = scoped_coordinator.spawn("idle", token.clone().cancelled_owned());
    });

    println!("memory per idle task, {TASKS} tasks (live heap bytes / task)");
    println!("{:<48} {:>10} {:>14}", "spawned with", "bytes", "over raw");
    println!("{:<48} {:>10.1} {:>14}", "tokio::spawn", raw, "-");
    println!(
        "{:<48} {:>10.1} {:>14.1}",
        "TaskTracker::spawn",
        tracked,
        tracked - raw
    );
    println!(
        "{:<48} {:>10.1} {:>14.1}",
        "lifecycle_runtime::spawn (global coordinator)",
        global,
        global - raw
    );
    println!(
        "{:<48} {:>10.1} {:>14.1}",
        "Coordinator::spawn (scoped coordinator)",
        scoped,
        scoped - raw
    );
    let worst = (global - raw).max(scoped - raw);
    println!(
        "target: ≤ 256 bytes per task over raw tokio::spawn: {}",
        if worst <= 256.0 { "met" } else { "NOT met" }
    );
}
