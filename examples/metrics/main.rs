//! The runtime's metrics in Prometheus' text format on `GET /metrics` (feature `metrics`, with
//! `http` to serve them): a loop that queries a pool through a task group, one that fails now
//! and then, and the collector setting the gauges every second.
//!
//! ```text
//! cargo run -p lifecycle-examples --bin metrics-demo
//! curl -s localhost:9464/metrics | grep lifecycle_
//! ```
//!
//! Settings: `LISTEN_ADDR` (default `127.0.0.1:9464`), `DATABASE_PATH` (an SQLite file; default
//! one in the temporary directory). Stops on SIGINT or SIGTERM.

use std::time::Duration;

use lifecycle_runtime::db::{Database, DatabaseOptions, sqlx};
use lifecycle_runtime::http::axum::{Router, routing::get};
use lifecycle_runtime::{TaskGroup, background};
use metrics_exporter_prometheus::PrometheusBuilder;

/// Histogram buckets (seconds) for every `_seconds` histogram: from a fast tick to a slow close.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counts the orders every 200ms, holding a permit of the `db` group and a pooled connection.
#[background(interval = "200ms", shutdown, name = "orders-count", group = "db")]
async fn count_orders(db: Database) -> Result<(), lifecycle_runtime::db::DbError> {
    let mut connection = db.acquire().await?;
    sqlx::query("SELECT COUNT(*) FROM orders")
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// Fails every third tick, as a flaky upstream would.
#[background(interval = "300ms", shutdown, name = "flaky-upstream")]
async fn flaky(calls: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Result<(), String> {
    let call = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if call % 3 == 2 {
        return Err(format!("call {call}: the upstream answered 503"));
    }
    Ok(())
}

#[lifecycle_runtime::main(shutdown_timeout = "10s")]
async fn main() -> Result<(), String> {
    // The program picks the exporter; the runtime records into whatever is installed.
    let prometheus = PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .and_then(PrometheusBuilder::install_recorder)
        .map_err(|error| format!("cannot install the Prometheus recorder: {error}"))?;
    lifecycle_runtime::metrics::spawn_collector(Duration::from_secs(1));

    let path = std::env::var("DATABASE_PATH").map_or_else(
        |_| std::env::temp_dir().join("lifecycle-metrics-demo.sqlite"),
        std::path::PathBuf::from,
    );
    let db = Database::connect(DatabaseOptions::sqlite(path, "metrics-demo").max_connections(2))
        .await
        .map_err(|error| error.to_string())?;
    sqlx::query("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY)")
        .execute(&db)
        .await
        .map_err(|error| error.to_string())?;
    let _ = TaskGroup::new("db").max_concurrent(2);
    count_orders(db);
    flaky(Default::default());

    let address = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:9464".to_owned());
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|error| format!("cannot listen on {address}: {error}"))?;
    let local = listener.local_addr().map_err(|error| error.to_string())?;
    let router = Router::new()
        .route(
            "/metrics",
            get(move || std::future::ready(prometheus.render())),
        )
        .merge(lifecycle_runtime::http::health_routes());
    lifecycle_runtime::http::serve(listener, router).spawn();
    lifecycle_runtime::mark_ready();
    eprintln!("metrics-demo listening address={local}");
    lifecycle_runtime::shutdown_signal().triggered().await;
    Ok(())
}
