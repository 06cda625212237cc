//! The database layer on embedded SQLite (no server needed): one pool per URL, metrics in
//! snapshots, PostgreSQL-only operations refused by name.

mod common;

use std::time::Duration;

use lifecycle_runtime::Coordinator;
use lifecycle_runtime::db::{Backend, Database, DatabaseOptions, DbError};

fn coordinator() -> Coordinator {
    Coordinator::builder().scan_os_threads(false).build()
}

fn path(test: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("lifecycle-{test}-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

#[tokio::test]
async fn one_url_gets_one_pool_per_process() {
    let file = path("one-pool");
    coordinator()
        .scope(async {
            let first = Database::connect(DatabaseOptions::sqlite(&file, "one-pool"))
                .await
                .unwrap();
            let second = Database::connect(DatabaseOptions::sqlite(&file, "one-pool"))
                .await
                .unwrap();
            let held = first.acquire().await.unwrap();
            assert_eq!(
                second.stats().in_use,
                1,
                "the second handle sees the first one's connection"
            );
            assert_eq!(lifecycle_runtime::snapshot().pools.len(), 1);
            drop(held);
            let report = lifecycle_runtime::shutdown().await;
            assert!(report.is_clean(), "{report}");
        })
        .await;
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn the_pool_reports_its_metrics_in_snapshots() {
    let file = path("metrics");
    coordinator()
        .scope(async {
            let db =
                Database::connect(DatabaseOptions::sqlite(&file, "metrics").max_connections(3))
                    .await
                    .unwrap();
            assert_eq!(db.backend(), Backend::Sqlite);
            assert!(db.fallback_reason().is_none());
            {
                let mut first = db.acquire().await.unwrap();
                let _second = db.acquire().await.unwrap();
                let one: i64 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&mut *first)
                    .await
                    .unwrap();
                assert_eq!(one, 1);
                let pool = &lifecycle_runtime::snapshot().pools[0];
                assert_eq!(
                    (pool.name.as_str(), pool.backend.as_str()),
                    ("metrics", "sqlite")
                );
                assert_eq!(
                    (pool.in_use, pool.max_connections, pool.acquires),
                    (2, 3, 2)
                );
                assert!(pool.size >= 2);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let pool = &lifecycle_runtime::snapshot().pools[0];
            assert_eq!(pool.in_use, 0);
            assert!(pool.hold_max >= Duration::from_millis(20));
            let json = serde_json::to_value(lifecycle_runtime::snapshot()).unwrap();
            assert_eq!(json["pools"][0]["backend"], "sqlite");
            lifecycle_runtime::shutdown().await;
        })
        .await;
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn server_side_operations_name_what_they_need() {
    let file = path("not-postgres");
    coordinator()
        .scope(async {
            let db = Database::connect(DatabaseOptions::sqlite(&file, "local"))
                .await
                .unwrap();
            let error = db.sessions(Duration::from_secs(600)).await.unwrap_err();
            assert!(matches!(
                error,
                DbError::NotPostgres("sessions", Backend::Sqlite)
            ));
            assert_eq!(
                error.to_string(),
                "`sessions` needs PostgreSQL; this database is sqlite"
            );
            lifecycle_runtime::shutdown().await;
        })
        .await;
    let _ = std::fs::remove_file(file);
}
