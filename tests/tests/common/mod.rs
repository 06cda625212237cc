//! Helpers shared by the integration tests.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod batch;

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use lifecycle_runtime::{Close, CloseError, Coordinator, ShutdownReport};

/// A coordinator of the test's own. The OS-thread scan is off: tests share their process, so a
/// thread cannot be attributed to one of them.
pub fn coordinator() -> Coordinator {
    Coordinator::builder().scan_os_threads(false).build()
}

/// Like [`coordinator`] with a shutdown budget.
pub fn coordinator_with_budget(budget: Duration) -> Coordinator {
    Coordinator::builder()
        .scan_os_threads(false)
        .shutdown_timeout(budget)
        .build()
}

/// Fails the whole test binary if the test is still running after `limit` of real time, so a hang
/// (even one that blocks the runtime's thread) fails instead of freezing CI.
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
}

impl Watchdog {
    pub fn new(test: &'static str, limit: Duration) -> Watchdog {
        let (done, finished) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("test-watchdog".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(limit) {
                    eprintln!("test `{test}` hung for more than {limit:?}; failing the test run");
                    std::process::exit(101);
                }
            })
            .expect("start watchdog thread");
        Watchdog { done: Some(done) }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

/// Runs `fut` inside `coordinator`'s scope with an outer (tokio) timeout.
pub async fn within<F: Future>(coordinator: &Coordinator, limit: Duration, fut: F) -> F::Output {
    tokio::time::timeout(limit, coordinator.scope(fut))
        .await
        .unwrap_or_else(|_| panic!("test body did not finish within {limit:?}"))
}

/// Finds the report entry for `name`, failing with the whole report if it is missing.
pub fn entry<'a>(report: &'a ShutdownReport, name: &str) -> &'a lifecycle_runtime::Entry {
    report
        .entry(name)
        .unwrap_or_else(|| panic!("no entry `{name}` in the report:\n{report}"))
}

/// Lets spawned tasks run until they are all waiting.
pub async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// Lets spawned tasks run until every one has been polled at least once (so snapshots list them).
pub async fn all_started() {
    while lifecycle_runtime::snapshot().starting > 0 {
        tokio::task::yield_now().await;
    }
}

/// What happened, in order, across the parts of a test.
pub type Log = Arc<Mutex<Vec<String>>>;

pub fn push(log: &Log, line: impl Into<String>) {
    log.lock().unwrap().push(line.into());
}

pub fn lines(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// How a [`Part`] behaves when closed.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    Ok,
    Hang,
    Fail,
    Panic,
    /// Fails with an error whose `Display` and `Debug` panic.
    FailHostile,
    Slow(Duration),
}

/// An error whose `Display` and `Debug` panic: formatting it is user code too.
#[derive(Clone, Copy)]
pub struct HostileError;

impl std::fmt::Display for HostileError {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("display of the error exploded")
    }
}

impl std::fmt::Debug for HostileError {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("debug of the error exploded")
    }
}

impl std::error::Error for HostileError {}

/// A resource that logs `close NAME` and then behaves as told; counts its closes.
pub struct Part {
    pub name: &'static str,
    pub log: Log,
    pub behaviour: Behaviour,
    pub timeout: Duration,
    pub closes: Arc<AtomicU32>,
}

impl Part {
    pub fn new(name: &'static str, log: &Log, behaviour: Behaviour) -> Part {
        Part {
            name,
            log: log.clone(),
            behaviour,
            timeout: Duration::from_secs(3),
            closes: Arc::new(AtomicU32::new(0)),
        }
    }
}

impl Close for Part {
    async fn close(&self) -> Result<(), CloseError> {
        self.closes.fetch_add(1, Ordering::SeqCst);
        push(&self.log, format!("close {}", self.name));
        match self.behaviour {
            Behaviour::Ok => Ok(()),
            Behaviour::Hang => std::future::pending().await,
            Behaviour::Fail => Err(format!("{} refused", self.name).into()),
            Behaviour::Panic => panic!("{} blew up", self.name),
            Behaviour::FailHostile => Err(HostileError.into()),
            Behaviour::Slow(duration) => {
                tokio::time::sleep(duration).await;
                Ok(())
            }
        }
    }

    fn close_timeout(&self) -> Duration {
        self.timeout
    }

    fn close_name(&self) -> Cow<'static, str> {
        self.name.into()
    }
}
