//! OS threads of this process, by name, from `/proc/self/task/*/comm` (Linux). Used to list
//! threads still alive after shutdown that nothing in lifecycle started.

use std::time::Duration;

use tokio::time::Instant;

/// One OS thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OsThread {
    pub(crate) tid: u64,
    pub(crate) name: String,
}

/// Name prefixes of threads that belong to a tokio runtime the program built itself (tokio names
/// its workers and blocking threads `tokio-runtime-worker` or `tokio-rt-worker`; the kernel keeps
/// 15 bytes). Runtimes built by `#[lifecycle_runtime::main]` are known by thread id instead.
const RUNTIME_THREADS: &[&str] = &["tokio-runtime-w", "tokio-rt-worker"];

/// Thread ids of runtime threads started by `#[lifecycle_runtime::main]`, and of the watchdog.
static RUNTIME_TIDS: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

/// Records the calling thread as one of lifecycle's own: a runtime thread (called from
/// `on_thread_start`) or the watchdog.
pub(crate) fn mark_runtime_thread() {
    if let Some(tid) = current_tid() {
        crate::util::lock(&RUNTIME_TIDS).push(tid);
    }
}

/// The kernel's id of the calling thread (`/proc/thread-self` links to `<pid>/task/<tid>`).
fn current_tid() -> Option<u64> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// How long threads get to finish exiting after resources closed (a pool's worker thread ends a
/// moment after its pool closes).
const EXIT_GRACE: Duration = Duration::from_millis(200);

/// Every thread of this process right now (empty where `/proc` is not available).
pub(crate) fn list() -> Vec<OsThread> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            Some(OsThread {
                tid,
                name: name.trim_end().to_owned(),
            })
        })
        .collect()
}

/// Threads alive now that were not in `baseline`, are not the runtime's own, and are not `known`
/// (threads lifecycle itself tracks, already reported). Waits a short grace (within `deadline`)
/// for threads that are on their way out.
pub(crate) async fn lingering(
    baseline: &[OsThread],
    known: &[String],
    deadline: Instant,
) -> Vec<OsThread> {
    let until = (Instant::now() + EXIT_GRACE).min(deadline.max(Instant::now()));
    let current = current_tid();
    loop {
        // Read afresh each pass: a runtime worker that only just started marks itself late.
        let runtime = crate::util::lock(&RUNTIME_TIDS).clone();
        let found: Vec<OsThread> = list()
            .into_iter()
            .filter(|thread| !baseline.iter().any(|old| old.tid == thread.tid))
            .filter(|thread| !runtime.contains(&thread.tid) && Some(thread.tid) != current)
            // Runtime threads are known by id under `#[main]`. Only elsewhere fall back to names:
            // a new thread carries its parent's name until it sets its own, so a name can lie.
            .filter(|thread| {
                !runtime.is_empty()
                    || !RUNTIME_THREADS
                        .iter()
                        .any(|prefix| thread.name.starts_with(prefix))
            })
            .filter(|thread| !known.iter().any(|name| comm_matches(name, &thread.name)))
            .collect();
        if found.is_empty() || Instant::now() >= until {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether an OS thread name (at most 15 bytes on Linux) is `full` as the kernel keeps it.
fn comm_matches(full: &str, comm: &str) -> bool {
    let mut end = full.len().min(15);
    while !full.is_char_boundary(end) {
        end -= 1;
    }
    &full[..end] == comm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_this_thread_on_linux() {
        if !std::path::Path::new("/proc/self/task").exists() {
            eprintln!("SKIP: no /proc on this system");
            return;
        }
        let (started, wait_started) = std::sync::mpsc::channel();
        let (stop, wait_stop) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("os-threads-probe".into())
            .spawn(move || {
                // The thread names itself once it runs: report only after that.
                started.send(()).unwrap();
                let _ = wait_stop.recv();
            })
            .unwrap();
        wait_started.recv().unwrap();
        assert!(list().iter().any(|thread| thread.name == "os-threads-prob"));
        stop.send(()).unwrap();
        handle.join().unwrap();
    }

    #[test]
    fn kernel_names_are_the_first_15_bytes() {
        assert!(comm_matches("metrics-sampler-1", "metrics-sampler"));
        assert!(comm_matches("short", "short"));
        assert!(!comm_matches("other", "short"));
    }
}
