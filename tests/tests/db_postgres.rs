//! The database layer against real PostgreSQL: throwaway clusters the tests start themselves (own
//! port, own `max_connections`), torn down at the end. Never the shared server. Without
//! PostgreSQL binaries these skip, loudly; under `CI=true` they fail.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::Watchdog;
use lifecycle_runtime::Coordinator;
use lifecycle_runtime::db::{Backend, ConnectCause, Database, DatabaseOptions, DbError};
use lifecycle_tests::pg::{PgCluster, Silent, free_port};
use sqlx::Connection;

const HANG: Duration = Duration::from_secs(120);

fn coordinator() -> Coordinator {
    Coordinator::builder()
        .scan_os_threads(false)
        .shutdown_timeout(Duration::from_secs(10))
        .build()
}

/// The pool closed cleanly at shutdown, and so did everything else.
#[track_caller]
fn assert_database_closed(report: &lifecycle_runtime::ShutdownReport, service: &str) {
    let entry = common::entry(report, &format!("database {service}"));
    assert_eq!(
        (entry.kind(), entry.outcome()),
        (
            lifecycle_runtime::EntryKind::Resource,
            &lifecycle_runtime::Outcome::Closed
        ),
        "{report}"
    );
    assert!(report.is_clean(), "{report}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Fast limits, so the failure tests take seconds.
fn quick(url: &str, service: &str) -> DatabaseOptions {
    DatabaseOptions::new(url, service)
        .connect_timeout(Duration::from_millis(500))
        .startup_budget(Duration::from_secs(2))
}

// ----- start-up: the real cause, inside the budget ----------------------------------------------

#[test]
fn a_refused_server_is_named_as_such_inside_the_budget() {
    let _watchdog = Watchdog::new("refused", HANG);
    let url = format!("postgres://app@127.0.0.1:{}/postgres", free_port());
    let started = Instant::now();
    let error = runtime()
        .block_on(coordinator().scope(Database::connect(quick(&url, "refused"))))
        .unwrap_err();
    let took = started.elapsed();
    lifecycle_tests::record_fault_time(took);
    let DbError::Unreachable {
        cause, attempts, ..
    } = &error
    else {
        panic!("{error}")
    };
    assert!(matches!(cause, ConnectCause::Refused { .. }), "{error}");
    assert!(*attempts > 1, "it retried within the budget: {error}");
    assert!(
        took < Duration::from_millis(2500),
        "returned inside its 2s budget (took {took:?})"
    );
    let message = error.to_string();
    assert!(message.contains("connection refused"), "{message}");
    assert!(
        message.contains("start the database server or the proxy"),
        "{message}"
    );
    assert!(!message.contains("PoolTimedOut"), "{message}");
}

#[test]
fn a_black_holed_server_is_named_as_such_inside_the_budget() {
    let _watchdog = Watchdog::new("black_holed", HANG);
    let silent = Silent::start();
    let url = format!("postgres://app@127.0.0.1:{}/postgres", silent.port());
    let started = Instant::now();
    let error = runtime()
        .block_on(coordinator().scope(Database::connect(quick(&url, "silent"))))
        .unwrap_err();
    let took = started.elapsed();
    lifecycle_tests::record_fault_time(took);
    let DbError::Unreachable { cause, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!(
        cause,
        &ConnectCause::NoAnswer {
            limit: Duration::from_millis(500)
        },
        "{error}"
    );
    assert!(
        took < Duration::from_millis(2500),
        "returned inside its 2s budget (took {took:?})"
    );
    assert!(
        error
            .to_string()
            .contains("no answer within the connect timeout of 500ms"),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("a proxy in front of the database"),
        "{error}"
    );
}

#[test]
fn a_full_server_is_named_as_such_inside_the_budget() {
    let _watchdog = Watchdog::new("slots_full", HANG);
    // 5 slots, 2 of them reserved for superusers: the app role gets 3.
    let Some(cluster) = PgCluster::start(5) else {
        return;
    };
    let runtime = runtime();
    let _hogs: Vec<sqlx::PgConnection> = runtime.block_on(async {
        let mut hogs = Vec::new();
        for _ in 0..3 {
            hogs.push(sqlx::PgConnection::connect(&cluster.url()).await.unwrap());
        }
        hogs
    });
    let started = Instant::now();
    let error = runtime
        .block_on(coordinator().scope(Database::connect(quick(&cluster.url(), "starved"))))
        .unwrap_err();
    let took = started.elapsed();
    lifecycle_tests::record_fault_time(took);
    let DbError::Unreachable { cause, .. } = &error else {
        panic!("{error}")
    };
    assert!(
        matches!(cause, ConnectCause::TooManyConnections { .. }),
        "{error}"
    );
    assert!(
        took < Duration::from_millis(2500),
        "returned inside its 2s budget (took {took:?})"
    );
    assert!(error.to_string().contains("SQLSTATE 53300"), "{error}");
    assert!(
        error.to_string().contains("look for leaked sessions"),
        "{error}"
    );
}

#[test]
fn the_documented_pool_defaults_are_the_ones_in_use() {
    let _watchdog = Watchdog::new("pool_defaults", HANG);
    let Some(cluster) = PgCluster::start(20) else {
        return;
    };
    let coordinator = coordinator();
    runtime().block_on(coordinator.scope(async {
        let db = Database::connect(DatabaseOptions::new(cluster.url(), "defaults"))
            .await
            .unwrap();
        let options = db.pool().options();
        assert_eq!(options.get_max_connections(), 5);
        assert_eq!(options.get_acquire_timeout(), Duration::from_secs(5));
        assert_eq!(
            options.get_idle_timeout(),
            Some(Duration::from_secs(5 * 60))
        );
        assert_eq!(
            options.get_max_lifetime(),
            Some(Duration::from_secs(30 * 60))
        );
        assert!(options.get_test_before_acquire(), "pre-ping before use");
        assert_eq!(lifecycle_runtime::snapshot().pools[0].max_connections, 5);
        let report = lifecycle_runtime::shutdown().await;
        assert_database_closed(&report, "defaults");
    }));
}

#[test]
fn by_default_a_silent_server_gets_5s_per_attempt_within_a_10s_start_up_budget() {
    let _watchdog = Watchdog::new("connect_defaults", HANG);
    let silent = Silent::start();
    let url = format!("postgres://app@127.0.0.1:{}/postgres", silent.port());
    let started = Instant::now();
    let error = runtime()
        .block_on(coordinator().scope(Database::connect(DatabaseOptions::new(&url, "patient"))))
        .unwrap_err();
    let took = started.elapsed();
    lifecycle_tests::record_fault_time(took);
    let DbError::Unreachable {
        cause,
        attempts,
        waited,
        ..
    } = &error
    else {
        panic!("{error}")
    };
    // Two attempts fill the 10s budget: a whole 5s one, then one cut to what is left of the
    // budget after the pause between them. It gives up then, not later.
    let ConnectCause::NoAnswer { limit } = cause else {
        panic!("{error}")
    };
    assert!(
        *limit > Duration::from_millis(4_500) && *limit <= Duration::from_secs(5),
        "{error}"
    );
    assert_eq!(*attempts, 2, "{error}");
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_millis(10_500),
        "took {took:?}, waited {waited:?}: {error}"
    );
}

#[test]
fn wrong_credentials_and_an_unknown_database_fail_at_once_naming_the_cause() {
    let _watchdog = Watchdog::new("auth", HANG);
    let Some(cluster) = PgCluster::start(20) else {
        return;
    };
    cluster.require_password("guarded", "right-password");
    let runtime = runtime();
    let url = format!(
        "postgres://guarded:wrong-password@127.0.0.1:{}/postgres",
        cluster.port()
    );
    let started = Instant::now();
    let error = runtime
        .block_on(coordinator().scope(Database::connect(quick(&url, "auth"))))
        .unwrap_err();
    let took = started.elapsed();
    lifecycle_tests::record_fault_time(took);
    let DbError::Unreachable {
        cause, attempts, ..
    } = &error
    else {
        panic!("{error}")
    };
    assert!(
        matches!(cause, ConnectCause::Authentication { .. }),
        "{error}"
    );
    assert_eq!(*attempts, 1, "waiting cannot fix credentials: no retries");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let message = error.to_string();
    assert!(message.contains("authentication failed"), "{message}");
    assert!(message.contains("check the user and password"), "{message}");
    assert!(
        !message.contains("wrong-password"),
        "the password is redacted: {message}"
    );

    let url = format!("postgres://app@127.0.0.1:{}/no_such_db", cluster.port());
    let error = runtime
        .block_on(coordinator().scope(Database::connect(quick(&url, "unknown-db"))))
        .unwrap_err();
    let DbError::Unreachable { cause, .. } = &error else {
        panic!("{error}")
    };
    assert!(
        matches!(cause, ConnectCause::UnknownDatabase { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("create the database, or fix its name"),
        "{error}"
    );
}

#[test]
fn with_a_fallback_an_unreachable_primary_leaves_sqlite_live() {
    let _watchdog = Watchdog::new("fallback", HANG);
    let url = format!("postgres://app@127.0.0.1:{}/postgres", free_port());
    let path =
        std::env::temp_dir().join(format!("lifecycle-fallback-{}.sqlite", std::process::id()));
    let coordinator = coordinator();
    runtime().block_on(coordinator.scope(async {
        let db = Database::connect(quick(&url, "with-fallback").fallback_sqlite(&path))
            .await
            .unwrap();
        assert_eq!(db.backend(), Backend::Sqlite);
        assert!(db.fallback_reason().unwrap().contains("connection refused"));
        let answer: i64 = sqlx::query_scalar("SELECT 40 + $1")
            .bind(2i64)
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(answer, 42);
        let pool = &lifecycle_runtime::snapshot().pools[0];
        assert_eq!(
            (pool.name.as_str(), pool.backend.as_str()),
            ("with-fallback", "sqlite")
        );
        assert!(
            pool.fallback_reason
                .as_deref()
                .unwrap()
                .contains("connection refused")
        );
        let report = lifecycle_runtime::shutdown().await;
        assert_database_closed(&report, "with-fallback");
    }));
    let _ = std::fs::remove_file(path);
}

// ----- recovery --------------------------------------------------------------------------------

/// Opens all five connections of `db` (service `app`), has the server terminate every one,
/// then runs 1000 queries, through [`Database::acquire`] (`tracked`) or the sqlx pool; returns
/// how many failed.
async fn failures_after_every_session_was_terminated(
    cluster: &PgCluster,
    db: &Database,
    app: &str,
    tracked: bool,
) -> u32 {
    let held: Vec<_> = futures_all(5, || db.acquire()).await;
    drop(held);
    let sessions = format!("FROM pg_stat_activity WHERE application_name = '{app}'");
    let killed = cluster.psql(&format!(
        "SELECT count(pg_terminate_backend(pid)) {sessions}"
    ));
    assert_eq!(killed, "5");
    cluster.wait_for(&format!("SELECT count(*) {sessions}"), "0");
    let mut failures = 0;
    for n in 0..1000i64 {
        let query = sqlx::query_scalar::<_, i64>("SELECT $1::int8").bind(n);
        let result = if tracked {
            match db.acquire().await {
                Ok(mut connection) => query.fetch_one(&mut *connection).await.map_err(drop),
                Err(_) => Err(()),
            }
        } else {
            query.fetch_one(db.pool()).await.map_err(drop)
        };
        if result != Ok(n) {
            failures += 1;
        }
    }
    failures
}

#[test]
fn connections_the_server_closed_are_replaced_before_use() {
    let _watchdog = Watchdog::new("stale", HANG);
    let Some(cluster) = PgCluster::start(20) else {
        return;
    };
    let coordinator = coordinator();
    runtime().block_on(coordinator.scope(async {
        let db =
            Database::connect(DatabaseOptions::new(cluster.url(), "stale-app").max_connections(5))
                .await
                .unwrap();
        let started = Instant::now();
        for tracked in [false, true] {
            let failures =
                failures_after_every_session_was_terminated(&cluster, &db, "stale-app", tracked)
                    .await;
            assert_eq!(
                failures, 0,
                "the pool pinged and replaced every stale connection (tracked: {tracked})"
            );
        }
        lifecycle_tests::record_fault_time(started.elapsed());
        let report = lifecycle_runtime::shutdown().await;
        assert_database_closed(&report, "stale-app");
    }));
}

/// The control of the test above: without the pre-ping (sqlx's `test_before_acquire`), the same
/// scenario fails queries. So the pre-ping is what replaces stale connections (the database
/// layer adds only the lifetime check), and the test above can tell it is there.
#[test]
fn without_the_pre_ping_connections_the_server_closed_fail_queries() {
    let _watchdog = Watchdog::new("stale_no_ping", HANG);
    let Some(cluster) = PgCluster::start(20) else {
        return;
    };
    let coordinator = coordinator();
    runtime().block_on(coordinator.scope(async {
        let options = DatabaseOptions::new(cluster.url(), "stale-unpinged")
            .max_connections(5)
            .test_before_acquire(false);
        let db = Database::connect(options).await.unwrap();
        assert!(!db.pool().options().get_test_before_acquire());
        let failures =
            failures_after_every_session_was_terminated(&cluster, &db, "stale-unpinged", true)
                .await;
        eprintln!("{failures} of 1000 queries failed without the pre-ping");
        // Each dead connection fails its first query, then is discarded.
        assert!(
            (1..=5).contains(&failures),
            "{failures} of 1000 queries failed without the pre-ping"
        );
        let report = lifecycle_runtime::shutdown().await;
        assert_database_closed(&report, "stale-unpinged");
    }));
}

/// Acquires `count` connections at once.
async fn futures_all<F, Fut, T, E>(count: usize, acquire: F) -> Vec<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    let mut pending = Vec::new();
    for _ in 0..count {
        pending.push(acquire());
    }
    let mut done = Vec::new();
    for future in pending {
        done.push(future.await.unwrap());
    }
    done
}

#[test]
fn the_pool_recovers_when_the_server_restarts_mid_run() {
    let _watchdog = Watchdog::new("restart", HANG);
    let Some(cluster) = PgCluster::start(20) else {
        return;
    };
    let cluster = Arc::new(cluster);
    let coordinator = coordinator();
    runtime().block_on(coordinator.scope(async {
        let db = Database::connect(
            DatabaseOptions::new(cluster.url(), "restart-app")
                .acquire_timeout(Duration::from_secs(10)),
        )
        .await
        .unwrap();
        let ok = Arc::new(AtomicU32::new(0));
        let restarted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let worker = {
            let db = db.clone();
            let ok = ok.clone();
            let restarted = restarted.clone();
            lifecycle_runtime::spawn("query-loop", async move {
                let mut after_restart = 0u32;
                let mut failures_after = 0u32;
                while after_restart < 200 {
                    let result: Result<i64, _> = sqlx::query_scalar("SELECT 1::int8")
                        .fetch_one(db.pool())
                        .await;
                    match result {
                        Ok(_) => {
                            ok.fetch_add(1, Ordering::SeqCst);
                            if restarted.load(Ordering::SeqCst) {
                                after_restart += 1;
                            }
                        }
                        Err(_) if restarted.load(Ordering::SeqCst) => failures_after += 1,
                        Err(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                failures_after
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = ok.load(Ordering::SeqCst);
        assert!(before > 10, "queries ran before the restart");
        let started = Instant::now();
        let cluster_for_restart = cluster.clone();
        tokio::task::spawn_blocking(move || cluster_for_restart.restart())
            .await
            .unwrap();
        restarted.store(true, Ordering::SeqCst);
        let failures_after = tokio::time::timeout(Duration::from_secs(60), worker)
            .await
            .unwrap()
            .unwrap();
        lifecycle_tests::record_fault_time(started.elapsed());
        assert_eq!(
            failures_after, 0,
            "once the server was back, every query succeeded"
        );
        let report = lifecycle_runtime::shutdown().await;
        assert!(report.is_clean(), "{report}");
    }));
}

// ----- exhaustion, bounded close, leaks ----------------------------------------------------------

#[test]
fn an_exhausted_pool_times_out_with_a_clear_error_naming_the_holders() {
    let _watchdog = Watchdog::new("exhausted", HANG);
    let Some(cluster) = PgCluster::start(20) else {
        return;
    };
    let coordinator = coordinator();
    runtime().block_on(coordinator.scope(async {
        let options = DatabaseOptions::new(cluster.url(), "exhausted-app")
            .max_connections(2)
            .acquire_timeout(Duration::from_millis(300));
        let db = Database::connect(options).await.unwrap();
        let first = db.acquire().await.unwrap();
        let holder_line = line!() + 1;
        let second = db.acquire().await.unwrap();
        let started = Instant::now();
        let error = db.acquire().await.unwrap_err();
        let took = started.elapsed();
        lifecycle_tests::record_fault_time(took);
        assert!(
            took < Duration::from_secs(2),
            "no hang: gave up after its 300ms (took {took:?})"
        );
        let message = error.to_string();
        assert!(
            message.starts_with(
                "no connection became free within 300ms (2 of 2 in use); oldest held: acquired at"
            ),
            "{message}"
        );
        assert!(
            message.contains(&format!("db_postgres.rs:{holder_line}")),
            "{message}"
        );
        assert!(message.contains("raise max_connections"), "{message}");
        assert_eq!(lifecycle_runtime::snapshot().pools[0].acquire_timeouts, 1);
        drop((first, second));
        let report = lifecycle_runtime::shutdown().await;
        assert_database_closed(&report, "exhausted-app");
    }));
}

#[test]
fn closing_with_a_connection_still_held_is_bounded_and_names_the_holder() {
    let _watchdog = Watchdog::new("held_at_close", HANG);
    let Some(cluster) = PgCluster::start(20) else {
        return;
    };
    let coordinator = coordinator();
    runtime().block_on(coordinator.scope(async {
        let options = DatabaseOptions::new(cluster.url(), "close-app")
            .close_timeout(Duration::from_millis(300));
        let db = Database::connect(options).await.unwrap();
        // Held outside any tracked task (in a cache, say), so stopping tasks does not release it.
        let site = format!("db_postgres.rs:{}", line!() + 1);
        let forgotten = db.acquire().await.unwrap();
        let started = Instant::now();
        let report = lifecycle_runtime::shutdown().await;
        let took = started.elapsed();
        lifecycle_tests::record_fault_time(took);
        assert!(
            took < Duration::from_secs(2),
            "bounded by its 300ms close timeout: {report}"
        );
        let entry = report
            .entry("database close-app")
            .unwrap_or_else(|| panic!("{report}"));
        let lifecycle_runtime::Outcome::Error(message) = entry.outcome() else {
            panic!("{report}")
        };
        assert!(
            message.contains("pool `close-app` did not close within 300ms"),
            "{message}"
        );
        assert!(
            message.contains("1 connection(s) still checked out"),
            "{message}"
        );
        assert!(
            message.contains(&site),
            "names the acquiring line {site}: {message}"
        );
        assert!(
            message.contains("outside any tracked task, held for"),
            "{message}"
        );
        assert!(db.pool().is_closed(), "closed to new work");
        assert!(matches!(db.acquire().await, Err(DbError::Closed(_))));
        drop(forgotten);
    }));
}

#[test]
fn a_connection_held_past_the_leak_threshold_is_reported_with_its_site_and_task() {
    let _watchdog = Watchdog::new("leak", HANG);
    let Some(cluster) = PgCluster::start(20) else {
        return;
    };
    capture_logs();
    let coordinator = coordinator();
    runtime().block_on(coordinator.scope(async {
        let options = DatabaseOptions::new(cluster.url(), "leaky-app")
            .leak_threshold(Duration::from_millis(100));
        let db = Database::connect(options).await.unwrap();
        let line = Arc::new(AtomicU32::new(0));
        let started = Instant::now();
        let leaker = {
            let db = db.clone();
            let line = line.clone();
            lifecycle_runtime::spawn("nightly-export", async move {
                line.store(line!() + 1, Ordering::SeqCst);
                let connection = db.acquire().await.unwrap();
                tokio::time::sleep(Duration::from_millis(400)).await;
                drop(connection);
            })
        };
        tokio::time::sleep(Duration::from_millis(250)).await;
        let held = db.held();
        assert_eq!(held.len(), 1);
        assert!(
            held[0]
                .site
                .contains(&format!("db_postgres.rs:{}", line.load(Ordering::SeqCst))),
            "{held:?}"
        );
        assert_eq!(held[0].task.as_deref(), Some("nightly-export"));
        assert_eq!(
            lifecycle_runtime::snapshot().pools[0].suspected_leaks,
            1,
            "logged once, as a probable leak"
        );
        leaker.await.unwrap();
        // How long the leak lasted: the connection was held for 400 ms, past the 100 ms threshold.
        lifecycle_tests::record_fault_time(started.elapsed());
        let pool = &lifecycle_runtime::snapshot().pools[0];
        assert_eq!(pool.suspected_leaks, 1, "not logged again");
        assert!(pool.hold_max >= Duration::from_millis(400));
        assert_eq!(
            log_lines(
                "leaky-app",
                "probable connection leak: held longer than 100ms"
            ),
            1
        );
        assert_eq!(
            log_lines("leaky-app", "probable leak came back after"),
            1,
            "its return is logged"
        );
        // Held past the threshold again: a new suspicion, logged again.
        let again = db.acquire().await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(lifecycle_runtime::snapshot().pools[0].suspected_leaks, 2);
        assert_eq!(
            log_lines(
                "leaky-app",
                "probable connection leak: held longer than 100ms"
            ),
            2
        );
        drop(again);
        assert_eq!(log_lines("leaky-app", "probable leak came back after"), 2);
        let report = lifecycle_runtime::shutdown().await;
        assert_database_closed(&report, "leaky-app");
    }));
}

/// What the database layer logged (every test of this binary), for [`log_lines`].
static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends this process's logs (INFO and up) to [`LOGS`].
fn capture_logs() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .init();
    });
}

/// How many logged lines mention `pool` and contain `text`.
fn log_lines(pool: &str, text: &str) -> usize {
    String::from_utf8_lossy(&LOGS.lock().unwrap())
        .lines()
        .filter(|line| line.contains(pool) && line.contains(text))
        .count()
}

// ----- server side ------------------------------------------------------------------------------

/// A raw session of application `name`, left idle inside a transaction (leaked) or simply idle.
async fn session(cluster: &PgCluster, name: &str, in_transaction: bool) -> sqlx::PgConnection {
    let url = format!("{}?application_name={name}", cluster.url());
    let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
    if in_transaction {
        sqlx::query("BEGIN").execute(&mut connection).await.unwrap();
        sqlx::query("SELECT 1")
            .execute(&mut connection)
            .await
            .unwrap();
    }
    connection
}

fn diagnose_fixture() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_lifecycle-diagnose-fixture"))
}

#[test]
fn diagnose_kill_leaked_terminates_only_the_leaked_sessions_of_that_application() {
    let _watchdog = Watchdog::new("diagnose", HANG);
    let Some(cluster) = PgCluster::start(20) else {
        return;
    };
    let runtime = runtime();
    let (leaked, healthy, other) = runtime.block_on(async {
        (
            session(&cluster, "svc", true).await,
            session(&cluster, "svc", false).await,
            session(&cluster, "other", true).await,
        )
    });
    let count = |app: &str| {
        cluster.psql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'"
        ))
    };
    assert_eq!((count("svc").as_str(), count("other").as_str()), ("2", "1"));

    // Look first: reported as unhealthy, nothing touched.
    let output = diagnose_fixture()
        .args(["--url", &cluster.url(), "--app", "svc"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("application `svc`: 2 session(s)"), "{text}");
    assert!(text.contains("LEAKED pid"), "{text}");
    assert!(text.contains("rerun with --kill-leaked"), "{text}");
    assert_eq!(count("svc"), "2");

    let output = diagnose_fixture()
        .args([
            "--url",
            &cluster.url(),
            "--app",
            "svc",
            "--kill-leaked",
            "--json",
        ])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{json:#}");
    assert_eq!(json["terminated"].as_array().unwrap().len(), 1, "{json:#}");
    assert_eq!(json["terminated"][0]["state"], "idle in transaction");
    cluster.wait_for(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'svc'",
        "1",
    );
    assert_eq!(
        count("other"),
        "1",
        "another application's leaked session is not touched"
    );
    drop((leaked, healthy, other));
}

#[test]
fn diagnose_names_an_unreachable_server_and_emergency_mode_clears_an_application() {
    let _watchdog = Watchdog::new("diagnose_emergency", HANG);
    let output = diagnose_fixture()
        .args([
            "--url",
            &format!("postgres://app@127.0.0.1:{}/postgres", free_port()),
            "--timeout",
            "1s",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("UNREACHABLE: connection refused"), "{text}");

    let Some(cluster) = PgCluster::start(20) else {
        return;
    };
    let runtime = runtime();
    let sessions = runtime.block_on(async {
        vec![
            session(&cluster, "runaway", false).await,
            session(&cluster, "runaway", false).await,
            session(&cluster, "bystander", false).await,
        ]
    });
    let output = diagnose_fixture()
        .args(["--url", &cluster.url(), "--app", "runaway", "--emergency"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("TERMINATED"), "{text}");
    cluster.wait_for(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runaway'",
        "0",
    );
    assert_eq!(
        cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bystander'"),
        "1"
    );
    drop(sessions);
}

#[test]
fn diagnose_exits_non_zero_naming_a_full_server() {
    let _watchdog = Watchdog::new("diagnose_full", HANG);
    // 5 slots, 2 of them reserved for superusers: the app role gets 3.
    let Some(cluster) = PgCluster::start(5) else {
        return;
    };
    let runtime = runtime();
    let _hogs: Vec<sqlx::PgConnection> = runtime.block_on(async {
        let mut hogs = Vec::new();
        for _ in 0..3 {
            hogs.push(sqlx::PgConnection::connect(&cluster.url()).await.unwrap());
        }
        hogs
    });
    let started = Instant::now();
    let output = diagnose_fixture()
        .args(["--url", &cluster.url(), "--timeout", "2s"])
        .output()
        .unwrap();
    let took = started.elapsed();
    lifecycle_tests::record_fault_time(took);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("UNREACHABLE"), "{text}");
    assert!(
        text.contains("53300") || text.contains("too many"),
        "{text}"
    );
    assert!(text.contains("all connection slots are taken"), "{text}");
    assert!(took < Duration::from_secs(4), "took {took:?}: {text}");
}

#[test]
fn database_terminate_leaked_spares_the_pool_and_other_applications() {
    let _watchdog = Watchdog::new("terminate_leaked", HANG);
    let Some(cluster) = PgCluster::start(20) else {
        return;
    };
    let coordinator = coordinator();
    runtime().block_on(coordinator.scope(async {
        let db = Database::connect(DatabaseOptions::new(cluster.url(), "api"))
            .await
            .unwrap();
        let leaked = session(&cluster, "api", true).await;
        let other = session(&cluster, "billing", true).await;
        let sessions = db.sessions(Duration::from_secs(600)).await.unwrap();
        assert_eq!(
            sessions.iter().filter(|session| session.leaked).count(),
            1,
            "{sessions:?}"
        );
        let terminated = db.terminate_leaked(Duration::from_secs(600)).await.unwrap();
        assert_eq!(terminated.len(), 1);
        assert_eq!(terminated[0].state, "idle in transaction");
        assert!(
            db.sessions(Duration::from_secs(600))
                .await
                .unwrap()
                .iter()
                .all(|session| !session.leaked)
        );
        assert_eq!(
            cluster
                .psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'billing'"),
            "1"
        );
        let _: i64 = sqlx::query_scalar("SELECT 1::int8")
            .fetch_one(db.pool())
            .await
            .unwrap();
        drop((leaked, other));
        let report = lifecycle_runtime::shutdown().await;
        assert_database_closed(&report, "api");
    }));
}
