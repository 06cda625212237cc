//! The runtimes the benches measure on, and what can be read about the process from outside:
//! tasks alive, heap in use, CPU time.

use std::time::{Duration, Instant};

use tokio::runtime::{Builder, Handle, Runtime};

/// How long the tasks of a round may take to disappear before the bench gives up.
const GONE_LIMIT: Duration = Duration::from_secs(60);

/// 2 workers, as in the targets.
pub fn two_worker_runtime() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// One thread, for loops whose own machinery is the subject.
pub fn current_thread_runtime() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Tasks alive in the current runtime.
pub fn alive_tasks() -> usize {
    Handle::current().metrics().num_alive_tasks()
}

/// Waits until no more than `baseline` tasks are alive in the current runtime, so a contender's
/// tasks are all gone (and their memory returned) before the next one runs.
///
/// # Panics
///
/// If they are not gone within a minute: a task that outlives its shutdown is a bug to see.
pub async fn tasks_gone(baseline: usize) {
    let deadline = Instant::now() + GONE_LIMIT;
    while alive_tasks() > baseline {
        assert!(
            Instant::now() < deadline,
            "{} tasks still alive a minute after they were stopped (expected {baseline})",
            alive_tasks()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Heap bytes in use as glibc's allocator counts them (all arenas and mmapped blocks); `None`
/// where that count is not available. It costs nothing while the benches run, unlike a counting
/// allocator.
pub fn heap_in_use() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallinfo2` takes no arguments and only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        Some(info.uordblks + info.hblkhd)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// CPU time used so far by the whole process, all its threads (the runtime's workers included).
pub fn process_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill in.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    Duration::new(
        u64::try_from(now.tv_sec).expect("CPU time is positive"),
        u32::try_from(now.tv_nsec).expect("nanoseconds below a second"),
    )
}
