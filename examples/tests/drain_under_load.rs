//! The demo service as a real server under load, stopped by SIGTERM: a load balancer polls
//! `/readyz` and stops sending once it answers 503; 32 keep-alive clients post items that take
//! 300 ms each. Every request sent gets a 2xx, the process exits 0 with a clean report, and every
//! item answered 2xx is in the database file afterwards, over 20 signal timings. And a request
//! stuck past the server's stop timeout is aborted, named in the report, and the exit code is 1.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifecycle_tests::Program;
use lifecycle_tests::http::Connection;

/// Concurrent client connections, each sending one request after another.
const CLIENTS: usize = 32;

/// How long each request's handler waits before handing its item to the writer.
const REQUEST_DELAY_MS: u64 = 300;

/// How often the load balancer asks `/readyz`.
const PROBE_EVERY: Duration = Duration::from_millis(25);

/// The most any single wait in these tests may take: a hang fails instead of freezing CI.
const LIMIT: Duration = Duration::from_secs(20);

/// The demo on a free port and an SQLite file of the test's own; returns it with the file.
fn demo(test: &str, run: usize) -> (Command, PathBuf) {
    let file = std::env::temp_dir().join(format!(
        "lifecycle-drain-{test}-{run}-{}.sqlite",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&file);
    let mut command = Command::new(env!("CARGO_BIN_EXE_service"));
    command
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", file.display()),
        )
        .env("LISTEN_ADDR", "127.0.0.1:0");
    (command, file)
}

/// The address the demo logged as `listening address=...`.
fn listening_address(demo: &mut Program) -> SocketAddr {
    demo.wait_for("listening");
    let line = demo
        .seen()
        .iter()
        .rev()
        .find(|line| line.contains("listening"))
        .expect("the line just seen");
    line.split("address=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|address| address.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
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
}

/// One client: posts items on one keep-alive connection until the load balancer has seen the
/// server go unready.
async fn client(
    address: SocketAddr,
    next_id: Arc<AtomicI64>,
    unready: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) {
    let mut connection = match Connection::open(address).await {
        Ok(connection) => connection,
        Err(error) => {
            tally.lock().unwrap().failures.push(error);
            return;
        }
    };
    while !unready.load(Ordering::SeqCst) {
        let id = next_id.fetch_add(1, Ordering::SeqCst);
        let body = format!(r#"{{"id":{id},"name":"item {id}"}}"#);
        let path = format!("/items?delay_ms={REQUEST_DELAY_MS}");
        let answer = connection.send("POST", &path, Some(body)).await;
        let mut tally = tally.lock().unwrap();
        tally.sent += 1;
        match answer {
            Ok(answer) if (200..300).contains(&answer.status) => tally.acknowledged.push(id),
            Ok(answer) => tally
                .failures
                .push(format!("item {id}: {} {}", answer.status, answer.body)),
            Err(error) => tally.failures.push(format!("item {id}: {error}")),
        }
    }
}

/// Runs one round: load, SIGTERM after `signal_after`, then checks the exit, the report and the
/// database. Returns (requests sent, failed, lost).
fn one_run(run: usize, signal_after: Duration) -> (u64, usize, usize) {
    let (command, file) = demo("load", run);
    let mut demo = Program::start(command, &[("LIFECYCLE_DRAIN", "1s")]);
    let address = listening_address(&mut demo);
    demo.wait_for("demo service running");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the clients");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let unready = Arc::new(AtomicBool::new(false));
    let live_during_drain = Arc::new(AtomicU64::new(0));
    let (unready_after, demo) = runtime.block_on(async {
        let next_id = Arc::new(AtomicI64::new(1));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                tokio::spawn(client(
                    address,
                    next_id.clone(),
                    unready.clone(),
                    tally.clone(),
                ))
            })
            .collect();
        // The load balancer: polls /readyz, and once it answers 503 stops the clients; checks
        // that /livez still answers 200 while the server drains.
        let mut probe = Connection::open(address).await.expect("probe connection");
        let ready = probe.get("/readyz").await.expect("readyz");
        assert_eq!(ready.status, 200, "not ready before the signal: {ready:?}");
        tokio::time::sleep(signal_after).await;
        demo.signal(libc::SIGTERM);
        let signalled = Instant::now();
        loop {
            let answer = probe.get("/readyz").await.expect("readyz during the drain");
            if answer.status == 503 {
                assert!(answer.body.contains(r#""phase":"draining""#), "{answer:?}");
                unready.store(true, Ordering::SeqCst);
                break;
            }
            assert!(signalled.elapsed() < LIMIT, "readyz never turned 503");
            tokio::time::sleep(PROBE_EVERY).await;
        }
        let unready_after = signalled.elapsed();
        for _ in 0..3 {
            let live = probe.get("/livez").await.expect("livez during the drain");
            assert_eq!(live.status, 200, "livez during the drain: {live:?}");
            live_during_drain.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(PROBE_EVERY).await;
        }
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
    assert_eq!(live_during_drain.load(Ordering::SeqCst), 3);
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
    assert!(
        tally.sent >= CLIENTS as u64,
        "run {run}: only {} sent",
        tally.sent
    );
    (tally.sent, tally.failures.len(), lost.len())
}

#[test]
fn sigterm_under_load_fails_no_request_and_loses_no_item_over_20_timings() {
    let started = Instant::now();
    let (mut requests, mut failed, mut lost) = (0, 0, 0);
    let runs = 20;
    for run in 0..runs {
        // 50 ms to 1.95 s of load before the signal.
        let signal_after = Duration::from_millis(50 + 100 * run as u64);
        let (sent, run_failed, run_lost) = one_run(run, signal_after);
        requests += sent;
        failed += run_failed;
        lost += run_lost;
    }
    eprintln!(
        "drain under load: runs {runs}, requests {requests}, failed {failed}, lost {lost}, took {:.1?}",
        started.elapsed()
    );
}

#[test]
fn a_request_stuck_past_the_stop_timeout_is_aborted_named_and_exits_1() {
    let (command, file) = demo("stuck", 0);
    let mut demo = Program::start(command, &[("HTTP_STOP_TIMEOUT", "500ms")]);
    let address = listening_address(&mut demo);
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
