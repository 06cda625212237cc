//! Every form of `#[background]` compiles under strict lints, and runs and stops cleanly.
//!
//! The lints below are denied so that anything the generated code trips fails this case.
//! This file is also included as a module by `tests/pass_lints.rs`, so clippy lints it too.

#![deny(warnings)]
#![deny(
    elided_lifetimes_in_paths,
    let_underscore_drop,
    missing_debug_implementations,
    missing_docs,
    single_use_lifetimes,
    trivial_casts,
    trivial_numeric_casts,
    unreachable_pub,
    unsafe_code,
    unused_extern_crates,
    unused_import_braces,
    unused_lifetimes,
    unused_qualifications,
    unused_results
)]

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifecycle_runtime::{Coordinator, Shutdown, ShutdownReport, background};

/// An interval loop: the body runs every 10ms until shutdown, then the running tick finishes.
#[background(interval = "10ms", shutdown)]
async fn heartbeat(beats: Arc<AtomicU64>) {
    let _previous = beats.fetch_add(1, Ordering::Relaxed);
}

/// A service: the body runs once and watches its `Shutdown` itself.
#[background(shutdown)]
async fn acceptor(port: u16, shutdown: Shutdown) {
    while shutdown.sleep(Duration::from_millis(5)).await {
        // accept connections on `port` ...
        let _port = port;
    }
}

/// A service that can fail: an `Err` ends it and is reported with its name.
#[background(shutdown = "finish")]
async fn listener(shutdown: Shutdown) -> Result<(), String> {
    shutdown.triggered().await;
    Ok(())
}

/// Why a flush failed.
#[derive(Debug)]
struct FlushError;

impl fmt::Display for FlushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the sink refused the batch")
    }
}

/// A flusher: one last tick runs after shutdown, and the tick sees the token to know it is the
/// last one.
#[background(interval = "10ms", shutdown = "final_tick")]
async fn flusher(buffer: Arc<Mutex<Vec<u32>>>, shutdown: Shutdown) -> Result<(), FlushError> {
    let batch: Vec<u32> = buffer.lock().map_err(|_| FlushError)?.drain(..).collect();
    if shutdown.is_triggered() {
        // the final tick: write `batch` and close the sink ...
    }
    drop(batch);
    Ok(())
}

/// A final tick that does not look at the token: the parameter may be `_`. It runs after the
/// `poller` stopped.
#[background(interval = "10ms", shutdown = "final_tick", stop_after = "poller")]
async fn compactor(_: Shutdown) {}

/// `abort`: a running tick is cancelled at its next `.await`.
#[background(interval = "10ms", shutdown = "abort")]
async fn poller() {
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// A loop on a named OS thread; the body is sync.
#[background(interval = "10ms", shutdown, thread)]
fn sampler(samples: Arc<AtomicU64>) {
    let _previous = samples.fetch_add(1, Ordering::Relaxed);
}

/// A service on a named OS thread: it blocks until shutdown, and is told to stop only after the
/// `feed` service and the `flusher` loop ended.
#[background(shutdown, thread, stop_after = ["feed", "flusher"])]
fn watcher(shutdown: Shutdown) {
    shutdown.wait_blocking();
}

/// A flusher on a thread, failing with a plain `String`.
#[background(interval = "10ms", shutdown = "final_tick", thread)]
fn spooler(shutdown: Shutdown) -> Result<(), String> {
    if shutdown.is_triggered() {
        return Ok(());
    }
    Ok(())
}

/// A supervised service: restarted when it fails, at most 3 times in any 10 seconds.
#[background(shutdown, restart = "on_failure", max_restarts = "3/10s")]
async fn feed(url: String, shutdown: Shutdown) -> Result<(), String> {
    let _url = url.len();
    shutdown.triggered().await;
    Ok(())
}

/// `restart = "always"` with the default limit, on a thread.
#[background(shutdown, thread, restart = "always", name = "reader")]
fn reader(shutdown: Shutdown) {
    shutdown.wait_blocking();
}

/// `restart = "never"`, written out although it is the default.
#[background(shutdown, restart = "never")]
async fn once(_shutdown: Shutdown) {}

/// `restart` on an interval loop is an error, but `"never"` is what every loop does.
#[background(interval = "10ms", shutdown, restart = "never")]
async fn unsupervised_tick() {}

/// Every key but `crate` and `thread`, at once.
#[background(
    interval = "10ms",
    shutdown = "finish",
    stop_timeout = "1s",
    timeout = "500ms",
    name = "all-keys",
    group = "db",
    critical,
    missed_tick = "delay"
)]
async fn all_keys() {}

/// `missed_tick = "burst"` and a renamed task.
#[background(interval = "10ms", shutdown, missed_tick = "burst", name = "burster")]
async fn burst() {}

/// `missed_tick = "skip"`, written out although it is the default, and `stop_timeout` on a thread.
#[background(
    interval = "10ms",
    shutdown,
    missed_tick = "skip",
    thread,
    stop_timeout = "1s"
)]
fn skipper() {}

/// A parameter moves into the task once and every tick sees (and may change) it.
#[background(interval = "10ms", shutdown)]
async fn counter(mut ticks: u64, seen: Arc<AtomicU64>) {
    ticks += 1;
    seen.store(ticks, Ordering::Relaxed);
}

/// A pattern parameter.
#[background(interval = "10ms", shutdown)]
async fn pair((left, right): (u8, u8)) {
    let _sum = u16::from(left) + u16::from(right);
}

/// A generic fn, with bounds inline and in a `where` clause.
#[background(interval = "10ms", shutdown)]
async fn reporter<T: fmt::Display + Send + Sync + 'static, U>(value: T, other: U)
where
    U: fmt::Debug + Send + Sync + 'static,
{
    let _text = format!("{value} {other:?}");
}

/// Documented, with attributes the macro must keep.
///
/// A second paragraph of docs.
#[doc(alias = "gc")]
#[cfg_attr(debug_assertions, inline)]
#[allow(clippy::needless_pass_by_value)]
#[background(interval = "10ms", shutdown)]
pub(crate) async fn collector(limit: usize) {
    let _limit = limit;
}

/// A public fn keeps its visibility.
#[background(interval = "10ms", shutdown)]
pub async fn public_tick() {}

/// A cache whose flusher is an associated fn.
#[derive(Debug, Default)]
struct Cache {
    entries: Mutex<Vec<u32>>,
}

impl Cache {
    /// Flushes the cache every 10ms; the cache is shared through an `Arc`, not `&self`.
    #[background(interval = "10ms", shutdown = "final_tick")]
    async fn flush(cache: Arc<Cache>) {
        if let Ok(mut entries) = cache.entries.lock() {
            entries.clear();
        }
    }
}

/// Starts every form under a coordinator of its own, lets them tick, and shuts down.
fn run() -> ShutdownReport {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let coordinator = Coordinator::builder().scan_os_threads(false).build();
    runtime.block_on(coordinator.scope(async {
        let beats = Arc::new(AtomicU64::new(0));
        let handles = [
            heartbeat(beats.clone()),
            acceptor(8080),
            listener(),
            flusher(Arc::new(Mutex::new(vec![1, 2, 3]))),
            compactor(),
            poller(),
            all_keys(),
            burst(),
            counter(0, Arc::new(AtomicU64::new(0))),
            pair((1, 2)),
            reporter("value", 7_u8),
            collector(16),
            public_tick(),
            Cache::flush(Arc::new(Cache::default())),
            feed("postgres://db".to_owned()),
            once(),
            unsupervised_tick(),
        ];
        let threads = [
            sampler(Arc::new(AtomicU64::new(0))),
            watcher(),
            spooler(),
            skipper(),
            reader(),
        ];
        tokio::time::sleep(Duration::from_millis(30)).await;
        let report = lifecycle_runtime::shutdown().await;
        assert!(
            beats.load(Ordering::Relaxed) > 0,
            "the heartbeat never ticked"
        );
        for handle in handles {
            let name = handle.name().to_owned();
            assert_eq!(handle.await, Ok(()), "task {name}");
        }
        for thread in threads {
            let name = thread.name().to_owned();
            assert_eq!(thread.wait().await, Ok(()), "thread {name}");
        }
        report
    }))
}

fn main() {
    let report = run();
    assert!(report.is_clean(), "{report}");
}

/// Under `tests/pass_lints.rs` the program runs as a test.
#[test]
fn runs_and_stops_cleanly() {
    main();
}
