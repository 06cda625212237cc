//! Who holds a connection, told honestly at shutdown (embedded SQLite, no server needed): the
//! tracked thread that acquired it, a holder that has ended while its connection lives on, and
//! the holders named even when the shutdown budget, not the pool's own close timeout, cuts the
//! close short.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Watchdog, coordinator, coordinator_with_budget, entry};
use lifecycle_runtime::db::{Database, DatabaseOptions, DbConnection};
use lifecycle_runtime::{Outcome, spawn};

const HANG: Duration = Duration::from_secs(20);

fn path(test: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "lifecycle-holders-{test}-{}.sqlite",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A cache that outlives whoever filled it.
type Cache = Arc<Mutex<Option<DbConnection>>>;

#[test]
fn a_holder_that_ended_is_said_to_have_ended_and_a_running_one_is_not() {
    let _watchdog = Watchdog::new("holder_ended", HANG);
    let file = path("ended");
    let coordinator = coordinator();
    runtime().block_on(coordinator.scope(async {
        let db = Database::connect(
            DatabaseOptions::sqlite(&file, "holders-ended")
                .close_timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap();
        let cache: Cache = Arc::default();
        let (filled, wait_filled) = tokio::sync::oneshot::channel();
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let filler = spawn("cache-filler", {
            let db = db.clone();
            let cache = Arc::clone(&cache);
            async move {
                let connection = db.acquire().await.unwrap();
                *cache.lock().unwrap() = Some(connection);
                filled.send(()).unwrap();
                let _ = finished.await;
            }
        });
        wait_filled.await.unwrap();

        // While the filler runs, it is the holder and it has not ended.
        let held = db.held();
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(held[0].task.as_deref(), Some("cache-filler"));
        assert!(!held[0].task_ended, "the holder still runs: {held:?}");
        // The snapshot (what `/health/tasks` and the status page show) lists the same.
        let pools = lifecycle_runtime::snapshot().pools;
        assert_eq!(pools.len(), 1, "{pools:?}");
        assert_eq!(pools[0].held.len(), 1, "{pools:?}");
        assert_eq!(pools[0].held[0].site, held[0].site);
        assert!(
            pools[0].held[0]
                .site
                .starts_with("tests/tests/db_holders.rs:"),
            "{pools:?}"
        );
        assert_eq!(pools[0].held[0].task.as_deref(), Some("cache-filler"));
        assert!(!pools[0].held[0].task_ended);

        finish.send(()).unwrap();
        filler.await.unwrap();
        let held = db.held();
        assert!(held[0].task_ended, "the holder has ended: {held:?}");
        let pools = lifecycle_runtime::snapshot().pools;
        assert!(pools[0].held[0].task_ended, "{pools:?}");

        let started = Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        lifecycle_tests::record_fault_time(started.elapsed());
        let Outcome::Error(message) = entry(&report, "database holders-ended").outcome() else {
            panic!("{report}")
        };
        assert!(
            message.contains("by task `cache-filler`, which has ended"),
            "{message}"
        );
        drop(cache.lock().unwrap().take());
    }));
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_connection_acquired_on_a_tracked_thread_names_the_thread() {
    let _watchdog = Watchdog::new("thread_holder", HANG);
    let file = path("thread");
    let coordinator = coordinator();
    runtime().block_on(coordinator.scope(async {
        let db = Database::connect(DatabaseOptions::sqlite(&file, "holders-thread"))
            .await
            .unwrap();
        let (acquired, wait_acquired) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let runtime = tokio::runtime::Handle::current();
        let worker = lifecycle_runtime::spawn_thread("sync-exporter", {
            let db = db.clone();
            move |_shutdown| {
                let connection = runtime.block_on(db.acquire()).unwrap();
                acquired.send(()).unwrap();
                let _ = released.recv();
                drop(connection);
            }
        });
        wait_acquired.await.unwrap();
        let held = db.held();
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(
            held[0].task.as_deref(),
            Some("sync-exporter"),
            "a tracked thread is a holder like a task: {held:?}"
        );
        assert!(!held[0].task_ended, "{held:?}");
        release.send(()).unwrap();
        tokio::task::spawn_blocking(move || worker.join())
            .await
            .unwrap()
            .unwrap();
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
    }));
    let _ = std::fs::remove_file(file);
}

#[test]
fn holders_are_named_when_the_budget_cuts_the_close_short() {
    let _watchdog = Watchdog::new("budget_cut", HANG);
    let file = path("budget");
    // The pool would wait 10 s for its connections; the budget allows 600 ms in all.
    let coordinator = coordinator_with_budget(Duration::from_millis(600));
    runtime().block_on(coordinator.scope(async {
        let db = Database::connect(
            DatabaseOptions::sqlite(&file, "holders-budget").close_timeout(Duration::from_secs(10)),
        )
        .await
        .unwrap();
        let site = format!("db_holders.rs:{}", line!() + 1);
        let forever = db.acquire().await.unwrap();
        let started = Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        let took = started.elapsed();
        lifecycle_tests::record_fault_time(took);
        assert!(
            took < Duration::from_millis(1_100),
            "bounded by the 600ms budget, took {took:?}: {report}"
        );
        let database = entry(&report, "database holders-budget");
        assert_eq!(database.outcome(), &Outcome::TimedOut, "{report}");
        let detail = database.detail().unwrap_or_else(|| panic!("{report}"));
        assert!(
            detail.contains("1 connection(s) still checked out"),
            "{detail}"
        );
        assert!(detail.contains(&site), "names the line {site}: {detail}");
        assert!(
            detail.contains("outside any tracked task, held for"),
            "{detail}"
        );
        drop(forever);
    }));
    let _ = std::fs::remove_file(file);
}
