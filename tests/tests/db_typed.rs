//! Typed databases and queries on the database itself: `Database<Sqlite>` / `Database<Postgres>`
//! hand out sqlx's own typed pools (so `sqlx::query!` works), refuse what they cannot do (a
//! fallback, a URL of the other backend) by name, keep one pool per URL, and a query run on
//! `&Database` is tracked like `acquire`: a pool timeout names the holders by task and SQL, and
//! so does the bounded close.

mod common;

use std::time::Duration;

use common::{Watchdog, coordinator_with_budget, entry};
use futures_util::StreamExt;
use lifecycle_runtime::db::sqlx::{Postgres, Sqlite};
use lifecycle_runtime::db::{Database, DatabaseOptions, DbError};
use lifecycle_runtime::{Outcome, spawn};
use lifecycle_tests::pg::PgCluster;

const HANG: Duration = Duration::from_secs(60);

fn path(test: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "lifecycle-typed-{test}-{}.sqlite",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    path
}

/// Rows enough that reading them all takes a while: a stream left open keeps its connection.
const MANY_ROWS: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) SELECT i FROM n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_sqlite_database_is_sqlx_own_pool_and_refuses_what_it_cannot_do() {
    let _watchdog = Watchdog::new("typed sqlite", HANG);
    let file = path("sqlite");
    let coordinator = coordinator_with_budget(Duration::from_secs(10));
    coordinator
        .scope(async {
            let options = DatabaseOptions::sqlite(&file, "typed-sqlite");
            let db = Database::<Sqlite>::connect_typed(options.clone())
                .await
                .unwrap();
            // sqlx's own pool type: anything written for `SqlitePool` takes it.
            let pool: &sqlx::SqlitePool = db.pool();
            sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
                .execute(pool)
                .await
                .unwrap();
            // `&db` is an executor.
            sqlx::query("INSERT INTO t (id, name) VALUES (?, ?)")
                .bind(1_i64)
                .bind("one")
                .execute(&db)
                .await
                .unwrap();
            let (name,): (String,) = sqlx::query_as("SELECT name FROM t WHERE id = ?")
                .bind(1_i64)
                .fetch_one(&db)
                .await
                .unwrap();
            assert_eq!(name, "one");
            let rows: Vec<(i64,)> = sqlx::query_as(MANY_ROWS).fetch_all(&db).await.unwrap();
            assert_eq!(rows.len(), 100_000);
            // One pool per URL.
            let again = Database::<Sqlite>::connect_typed(options.clone())
                .await
                .unwrap();
            assert_eq!(again.stats().acquires, db.stats().acquires);

            // A typed database cannot fall back, and takes no URL of the other backend.
            let fallback = options
                .clone()
                .fallback_sqlite(std::env::temp_dir().join("never.sqlite"));
            let error = Database::<Sqlite>::connect_typed(fallback)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("`fallback_sqlite` is set for `typed-sqlite`")
                    && error.contains("cannot fall back"),
                "{error}"
            );
            let error = Database::<Sqlite>::connect_typed(DatabaseOptions::new(
                "postgres://127.0.0.1:1/app",
                "wrong",
            ))
            .await
            .unwrap_err()
            .to_string();
            assert!(
                error.contains("is not SQLite, but this is a `Database<Sqlite>`"),
                "{error}"
            );
            let report = lifecycle_runtime::shutdown().await;
            assert!(report.is_clean(), "{report}");
            assert_eq!(
                entry(&report, "database typed-sqlite").outcome(),
                &Outcome::Closed
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_exhausted_by_queries_on_the_database_times_out_naming_their_tasks_and_sql() {
    let _watchdog = Watchdog::new("exhausted by queries", HANG);
    let file = path("exhausted");
    let coordinator = coordinator_with_budget(Duration::from_secs(10));
    coordinator
        .scope(async {
            let options = DatabaseOptions::sqlite(&file, "exhausted")
                .max_connections(1)
                .acquire_timeout(Duration::from_millis(300))
                .close_timeout(Duration::from_millis(300));
            let db = Database::<Sqlite>::connect_typed(options).await.unwrap();
            // A task reads a long result and keeps the stream: its query holds the one
            // connection.
            let (started, mut go) = tokio::sync::mpsc::channel::<()>(1);
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let holder_db = db.clone();
            let holder = spawn("report-exporter", async move {
                let mut rows = sqlx::query(MANY_ROWS).fetch(&holder_db);
                let first = rows.next().await;
                assert!(matches!(first, Some(Ok(_))), "{first:?}");
                started.send(()).await.unwrap();
                let _ = stopped.await;
            });
            go.recv().await.unwrap();
            let held = db.held();
            assert_eq!(held.len(), 1, "{held:?}");
            assert!(held[0].by_query, "{held:?}");
            assert!(
                held[0].site.starts_with("query `WITH RECURSIVE n(i)"),
                "{held:?}"
            );
            assert_eq!(held[0].task.as_deref(), Some("report-exporter"));

            // A second query through the database waits, and its error names the holder.
            let error = sqlx::query("SELECT 1").execute(&db).await.unwrap_err();
            let ours = DbError::of(&error).expect("our error inside sqlx's");
            assert!(
                matches!(ours, DbError::AcquireTimedOut { in_use: 1, .. }),
                "{ours:?}"
            );
            let text = error.to_string();
            assert!(
                text.contains("no connection became free within 300ms")
                    && text.contains("acquired for query `WITH RECURSIVE n(i)")
                    && text.contains("by task `report-exporter`"),
                "{text}"
            );
            assert_eq!(db.stats().acquire_timeouts, 1);

            // The exporter lets go (its stream, and so the connection, back to the pool); a
            // query whose stream the program keeps past the stop holds it through the close,
            // which names it too.
            stop.send(()).unwrap();
            holder.await.unwrap();
            let mut kept = sqlx::query(MANY_ROWS).fetch(&db);
            assert!(matches!(kept.next().await, Some(Ok(_))));
            let report = lifecycle_runtime::shutdown().await;
            drop(kept);
            let close = entry(&report, "database exhausted");
            let Outcome::Error(why) = close.outcome() else {
                panic!("{report}");
            };
            assert!(
                why.contains("acquired for query `WITH RECURSIVE n(i)")
                    && why.contains("outside any tracked task"),
                "{report}"
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_postgres_database_runs_checked_queries_and_tracks_them() {
    let _watchdog = Watchdog::new("typed postgres", HANG);
    let Some(cluster) = PgCluster::start(10) else {
        return;
    };
    let coordinator = coordinator_with_budget(Duration::from_secs(10));
    coordinator
        .scope(async {
            let db = Database::<Postgres>::connect_typed(DatabaseOptions::new(
                cluster.url(),
                "typed-postgres",
            ))
            .await
            .unwrap();
            let pool: &sqlx::PgPool = db.pool();
            // Checked at compile time (the query's description is committed in `.sqlx/`).
            let row = sqlx::query!(
                r#"SELECT $1::int8 + 1 AS "next!", 'x'::text AS "tag""#,
                41_i64
            )
            .fetch_one(&db)
            .await
            .unwrap();
            assert_eq!(row.next, 42);
            assert_eq!(row.tag.as_deref(), Some("x"));
            // PostgreSQL's own types, on the typed pool.
            let (ids,): (Vec<i64>,) = sqlx::query_as("SELECT ARRAY[1, 2, 3]::int8[]")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(ids, [1, 2, 3]);
            let error = Database::<Postgres>::connect_typed(DatabaseOptions::sqlite(
                path("wrong"),
                "wrong",
            ))
            .await
            .unwrap_err()
            .to_string();
            assert!(
                error.contains("is SQLite, but this is a `Database<Postgres>`"),
                "{error}"
            );
            assert!(db.stats().acquires >= 1);
            let report = lifecycle_runtime::shutdown().await;
            assert!(report.is_clean(), "{report}");
        })
        .await;
}
