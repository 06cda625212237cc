//! The demo service as a real server under load, stopped by SIGTERM: a load balancer polls
//! `/readyz` on a schedule and, as a Kubernetes endpoints controller does, takes the server out
//! of rotation only after a failure threshold of probe periods (0.8 s here, inside the 1 s
//! drain); 32 keep-alive clients
//! post items that take 300 ms each, so the last ones are still in flight when the drain ends and
//! tasks are told to stop. Every request sent gets a 2xx, the process exits 0 with a clean
//! report, and every item answered 2xx is in the database file afterwards (the batch writer stops
//! after the server: stopped together, it would refuse those last items), over 20 signal timings.
//! And a request stuck past the server's stop timeout is aborted, named in the report, and the
//! exit code is 1.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use lifecycle_tests::Program;
use lifecycle_tests::http::Connection;

mod common;

/// Concurrent client connections, each sending one request after another.
const CLIENTS: usize = 32;

/// How long each request's handler waits before handing its item to the writer.
const REQUEST_DELAY_MS: u64 = 300;

/// How often the load balancer asks `/readyz`.
const PROBE_EVERY: Duration = Duration::from_millis(25);

/// How many probe periods of 503s take the server out of rotation (a failure threshold, counted
/// in time as a controller whose probes fire on schedule does: a probe slowed down by the load
/// does not stretch it): 0.8 s after the first 503, so requests sent just before are still
/// running at the end of the 1 s drain.
const FAILURE_THRESHOLD: u32 = 32;

/// At least this many probes must have answered 503 in that time (each also checks `/livez`):
/// half the schedule, however loaded the machine.
const MIN_FAILED_PROBES: u64 = 16;

/// The drain the demo runs with.
const DRAIN: Duration = Duration::from_secs(1);

/// The most any single wait in these tests may take: a hang fails instead of freezing CI.
const LIMIT: Duration = Duration::from_secs(20);

/// The demo on a free port and an SQLite file of the test's own, without the operator's
/// server; returns it with the file.
fn demo(test: &str, run: usize) -> (Command, PathBuf) {
    let (mut command, file) = common::demo_command(&format!("drain-{test}-{run}"));
    command.env("ADMIN_ADDR", "off");
    (command, file)
}

/// The ids in the `items` table of the SQLite file at `path`.
async fn stored_ids(path: &Path) -> HashSet<i64> {
    let url = format!("sqlite://{}?mode=ro", path.display());
    let pool = sqlx::SqlitePool::connect(&url)
        .await
        .unwrap_or_else(|error| panic!("open {url}: {error}"));
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM items")
        .fetch_all(&pool)
        .await
        .expect("read the items");
    pool.close().await;
    ids.into_iter().collect()
}

/// What one run saw.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    acknowledged: Vec<i64>,
    failures: Vec<String>,
    /// 2xx answers that came after the drain ended: requests in flight when tasks were told to
    /// stop, whose items reached the writer after that.
    answered_after_drain: u64,
    /// New connections opened after an answer with `connection: close`.
    reconnects: u64,
}

/// The load balancer's probe: one connection, opened again when an answer closes it (from the
/// start of shutdown every answer does).
struct Probe {
    address: SocketAddr,
    connection: Option<Connection>,
}

impl Probe {
    fn new(address: SocketAddr) -> Probe {
        Probe {
            address,
            connection: None,
        }
    }

    async fn get(&mut self, path: &str) -> Result<lifecycle_tests::http::Answer, String> {
        let connection = match self.connection.as_mut() {
            Some(connection) => connection,
            None => self
                .connection
                .insert(Connection::open(self.address).await?),
        };
        let answer = connection.get(path).await?;
        if answer.closes {
            self.connection = None;
        }
        Ok(answer)
    }
}

/// One client: posts items on one keep-alive connection until the load balancer has taken the
/// server out of rotation. From the start of shutdown the server answers `connection: close`;
/// the client then opens a new connection, as a client (or a load balancer's pool) does.
async fn client(
    stagger: Duration,
    address: SocketAddr,
    next_id: Arc<AtomicI64>,
    unready: Arc<AtomicBool>,
    signalled: Arc<OnceLock<Instant>>,
    tally: Arc<Mutex<Tally>>,
) {
    // Clients start spread over one request's time, as real traffic is: in step, their last
    // requests would all start at one moment, before the end of the drain or not at all.
    tokio::time::sleep(stagger).await;
    let mut connection: Option<Connection> = None;
    while !unready.load(Ordering::SeqCst) {
        let open = match connection.as_mut() {
            Some(open) => open,
            None => match Connection::open(address).await {
                Ok(open) => connection.insert(open),
                Err(error) => {
                    tally.lock().unwrap().failures.push(error);
                    return;
                }
            },
        };
        let id = next_id.fetch_add(1, Ordering::SeqCst);
        let body = format!(r#"{{"id":{id},"name":"item {id}"}}"#);
        let path = format!("/items?delay_ms={REQUEST_DELAY_MS}");
        let answer = open.send("POST", &path, Some(body)).await;
        let mut tally = tally.lock().unwrap();
        tally.sent += 1;
        match answer {
            Ok(answer) if (200..300).contains(&answer.status) => {
                tally.acknowledged.push(id);
                if signalled.get().is_some_and(|at| at.elapsed() > DRAIN) {
                    tally.answered_after_drain += 1;
                }
                if answer.closes {
                    tally.reconnects += 1;
                    connection = None;
                }
            }
            Ok(answer) => tally
                .failures
                .push(format!("item {id}: {} {}", answer.status, answer.body)),
            Err(error) => {
                // A broken connection is not used again: this client reconnects (and ends if
                // it cannot), rather than failing on the same socket in a loop that never waits.
                tally.failures.push(format!("item {id}: {error}"));
                connection = None;
            }
        }
        // Any failure fails the run: a few are enough to say which.
        if tally.failures.len() >= MAX_FAILURES_KEPT {
            return;
        }
    }
}

/// How many failures a client goes on after: the run fails with the first; these say how.
const MAX_FAILURES_KEPT: usize = 20;

/// Runs one round: load, SIGTERM after `signal_after`, then checks the exit, the report and the
/// database. Returns (requests sent, failed, lost, answered after the drain).
fn one_run(run: usize, signal_after: Duration) -> (u64, usize, usize, u64) {
    let (command, file) = demo("load", run);
    let mut demo = Program::start(command, &[("LIFECYCLE_DRAIN", "1s")]);
    let address = demo.listening_address();
    demo.wait_for("demo service running");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the clients");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let unready = Arc::new(AtomicBool::new(false));
    let live_during_drain = Arc::new(AtomicU64::new(0));
    let signalled = Arc::new(OnceLock::new());
    let (unready_after, demo) = runtime.block_on(async {
        let next_id = Arc::new(AtomicI64::new(1));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|index| {
                let stagger = Duration::from_millis(REQUEST_DELAY_MS) * index as u32 / CLIENTS as u32;
                tokio::spawn(client(
                    stagger,
                    address,
                    next_id.clone(),
                    unready.clone(),
                    signalled.clone(),
                    tally.clone(),
                ))
            })
            .collect();
        // The load balancer: polls /readyz, and once it answers 503 stops the clients; checks
        // that /livez still answers 200 while the server drains.
        let mut probe = Probe::new(address);
        let ready = probe.get("/readyz").await.expect("readyz");
        assert_eq!(ready.status, 200, "not ready before the signal: {ready:?}");
        tokio::time::sleep(signal_after).await;
        demo.signal(libc::SIGTERM);
        let signalled_at = *signalled.get_or_init(Instant::now);
        let mut unready_after = None;
        let mut first_failure: Option<Instant> = None;
        let mut failed_probes = 0u64;
        let mut schedule = tokio::time::interval(PROBE_EVERY);
        schedule.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            schedule.tick().await;
            if first_failure.is_some_and(|at| at.elapsed() >= PROBE_EVERY * FAILURE_THRESHOLD) {
                break;
            }
            let answer = match probe.get("/readyz").await {
                Ok(answer) => answer,
                Err(error) => {
                    let (code, stderr) = demo.finish();
                    panic!(
                        "run {run}: readyz {:?} after the signal ({failed_probes} probes failed \
                         so far): {error}; the demo exited with {code:?}:\n{stderr}",
                        signalled_at.elapsed()
                    );
                }
            };
            if answer.status == 503 {
                assert!(answer.body.contains(r#""phase":"draining""#), "{answer:?}");
                unready_after.get_or_insert_with(|| signalled_at.elapsed());
                first_failure.get_or_insert_with(Instant::now);
                failed_probes += 1;
                // The process is alive while it drains.
                let live = probe.get("/livez").await.expect("livez during the drain");
                assert_eq!(live.status, 200, "livez during the drain: {live:?}");
                live_during_drain.fetch_add(1, Ordering::SeqCst);
            } else {
                assert_eq!(failed_probes, 0, "ready again after a 503: {answer:?}");
            }
            assert!(signalled_at.elapsed() < LIMIT, "readyz never turned 503");
        }
        // Out of rotation: no new requests (those running carry on).
        unready.store(true, Ordering::SeqCst);
        let removed_after = signalled_at.elapsed();
        assert!(
            removed_after < DRAIN,
            "run {run}: taken out of rotation only {removed_after:?} after the signal, past the drain"
        );
        let unready_after = unready_after.expect("503 seen");
        assert!(
            failed_probes >= MIN_FAILED_PROBES,
            "run {run}: only {failed_probes} probes answered in the 0.8 s out of rotation"
        );
        drop(probe);
        for client in clients {
            tokio::time::timeout(LIMIT, client)
                .await
                .expect("a client went past the limit")
                .expect("a client panicked");
        }
        (unready_after, demo)
    });
    let (code, stderr) = demo.finish();
    assert_eq!(code, Some(0), "run {run}:\n{stderr}");
    assert!(
        stderr.contains("shutdown: SIGTERM received · clean"),
        "run {run}:\n{stderr}"
    );
    assert!(
        unready_after < Duration::from_millis(500),
        "run {run}: /readyz turned 503 only {unready_after:?} after the signal"
    );
    // Every probe that saw 503 then saw `/livez` answer 200.
    assert!(
        live_during_drain.load(Ordering::SeqCst) >= MIN_FAILED_PROBES,
        "run {run}: /livez answered {} times during the drain",
        live_during_drain.load(Ordering::SeqCst)
    );
    let stored = runtime.block_on(async {
        tokio::time::timeout(LIMIT, stored_ids(&file))
            .await
            .expect("reading the database went past the limit")
    });
    let _ = std::fs::remove_file(&file);
    let tally = tally.lock().unwrap();
    let lost: Vec<i64> = tally
        .acknowledged
        .iter()
        .copied()
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(
        tally.failures.is_empty(),
        "run {run} (signal after {signal_after:?}): {} of {} requests failed: {:?}\n{stderr}",
        tally.failures.len(),
        tally.sent,
        tally.failures
    );
    assert!(
        lost.is_empty(),
        "run {run}: {} items answered 2xx are not in the database: {lost:?}\n{stderr}",
        lost.len()
    );
    // Answers during the drain asked clients to close their connections, and they reconnected.
    assert!(
        tally.reconnects >= CLIENTS as u64,
        "run {run}: only {} reconnects after `connection: close`",
        tally.reconnects
    );
    assert!(
        tally.sent >= CLIENTS as u64,
        "run {run}: only {} sent",
        tally.sent
    );
    (
        tally.sent,
        tally.failures.len(),
        lost.len(),
        tally.answered_after_drain,
    )
}

#[test]
fn sigterm_under_load_fails_no_request_and_loses_no_item_over_20_timings() {
    let started = Instant::now();
    let (mut requests, mut failed, mut lost) = (0, 0, 0);
    let (mut after_drain, mut runs_with_late_items) = (0, 0);
    let runs = 20;
    for run in 0..runs {
        // 50 ms to 1.95 s of load before the signal.
        let signal_after = Duration::from_millis(50 + 100 * run as u64);
        let (sent, run_failed, run_lost, run_after_drain) = one_run(run, signal_after);
        requests += sent;
        failed += run_failed;
        lost += run_lost;
        after_drain += run_after_drain;
        runs_with_late_items += usize::from(run_after_drain > 0);
    }
    eprintln!(
        "drain under load: runs {runs}, requests {requests}, failed {failed}, lost {lost}, \
         answered after the drain {after_drain} (in {runs_with_late_items} runs), took {:.1?}",
        started.elapsed()
    );
    // The runs did test the ordered stop: items reached the writer after tasks were told to stop.
    assert!(
        runs_with_late_items >= runs / 2,
        "only {runs_with_late_items} of {runs} runs had requests in flight when the drain ended"
    );
}

#[test]
fn a_request_stuck_past_the_stop_timeout_is_aborted_named_and_exits_1() {
    let (command, file) = demo("stuck", 0);
    let mut demo = Program::start(command, &[("HTTP_STOP_TIMEOUT", "500ms")]);
    let address = demo.listening_address();
    demo.wait_for("demo service running");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the client");
    let (answer, demo) = runtime.block_on(async {
        let mut stuck = Connection::open(address).await.expect("connect");
        let request = tokio::spawn(async move {
            stuck
                .send(
                    "POST",
                    "/items?delay_ms=60000",
                    Some(r#"{"id":1,"name":"stuck"}"#.to_owned()),
                )
                .await
        });
        // Wait until the request's task is running (listed in /health/tasks).
        let mut probe = Connection::open(address).await.expect("connect");
        let deadline = Instant::now() + LIMIT;
        loop {
            let tasks = probe.get("/health/tasks").await.expect("health/tasks");
            let json: serde_json::Value = serde_json::from_str(&tasks.body).expect("JSON");
            let listed = json["tasks"]
                .as_array()
                .expect("tasks")
                .iter()
                .any(|task| task["name"] == "http POST /items");
            if listed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the request never started: {json}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(probe);
        demo.signal(libc::SIGTERM);
        let answer = tokio::time::timeout(LIMIT, request)
            .await
            .expect("the stuck request was never answered")
            .expect("the client panicked");
        (answer, demo)
    });
    let started = Instant::now();
    let (code, stderr) = demo.finish();
    let _ = std::fs::remove_file(&file);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("ABORTED") && line.contains("task http POST /items")),
        "{stderr}"
    );
    // The client is told the request was cut off rather than left hanging.
    let answer = answer.expect("an answer");
    assert_eq!(answer.status, 503, "{answer:?}");
}
