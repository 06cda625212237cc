//! The HTTP API: `POST /items` (written through the batch writer, answered 201 only once the
//! item's batch is committed), `GET /items/count`, the runtime's health routes and its status page
//! (`/lifecycle`), and with `DEMO_FAULTS=1` the fault routes (`faults.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lifecycle_runtime::db::{BatchWriter, Database, DbError, sqlx};
use serde::{Deserialize, Serialize};
use sqlx::Connection as _;

use crate::faults::Faults;
use crate::parts::Stats;

/// The longest `?delay_ms=` a request may ask for: a minute.
pub(crate) const MAX_DELAY_MS: u64 = 60_000;

/// The longest item name accepted, in bytes.
const MAX_NAME_LEN: usize = 200;

/// One item, as posted and as stored.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub(crate) struct Item {
    pub(crate) id: i64,
    pub(crate) name: String,
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) db: Database,
    pub(crate) items: BatchWriter<Item>,
    pub(crate) stats: Arc<Stats>,
}

/// The service's routes, the health routes and the status page included; the fault routes when
/// `faults` is given (`DEMO_FAULTS=1`).
pub(crate) fn router(api: Api, faults: Option<Faults>) -> Router {
    let router = Router::new()
        .route("/items", post(post_item))
        .route("/items/count", get(count_items))
        .with_state(api)
        .merge(lifecycle_runtime::http::health_routes())
        .merge(lifecycle_runtime::http::status_page());
    match faults {
        Some(faults) => router.merge(faults.routes()),
        None => router,
    }
}

/// `?delay_ms=N`: sleep N milliseconds (at most [`MAX_DELAY_MS`]) before handing the item to the
/// writer, to have requests in flight when showing a drain or a stop.
#[derive(Debug, Deserialize)]
struct Delay {
    delay_ms: Option<u64>,
}

/// `POST /items` with `{"id": 17, "name": "x"}`: 201 `{"id":17,"committed":true}` once the item's
/// batch is committed to the database (group commit: concurrent requests share a batch, and a
/// crash after the answer cannot take the row back); 503 with the reason when the writer refuses
/// it (shutdown), 500 with the cause when its batch failed or could not be written; 400 for a
/// delay or a name out of bounds. Posting an id again replaces its name.
async fn post_item(
    State(api): State<Api>,
    Query(delay): Query<Delay>,
    Json(item): Json<Item>,
) -> Response {
    if item.name.len() > MAX_NAME_LEN {
        let reason = format!("name is {} bytes; at most {MAX_NAME_LEN}", item.name.len());
        return (StatusCode::BAD_REQUEST, reason).into_response();
    }
    match delay.delay_ms {
        Some(ms) if ms > MAX_DELAY_MS => {
            let reason = format!("delay_ms={ms} is above the limit of {MAX_DELAY_MS}");
            return (StatusCode::BAD_REQUEST, reason).into_response();
        }
        Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        None => {}
    }
    let id = item.id;
    match api.items.write(item).await {
        Ok(()) => {
            api.stats.accepted.fetch_add(1, Ordering::Relaxed);
            api.stats
                .journal_buffer
                .lock()
                .expect("buffer lock")
                .push(id);
            let body = serde_json::json!({ "id": id, "committed": true });
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(error) => {
            // Never a silent 2xx: the client learns the item is not stored, and why.
            let status = if error.was_accepted() {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                api.stats.refused.fetch_add(1, Ordering::Relaxed);
                StatusCode::SERVICE_UNAVAILABLE
            };
            tracing::warn!(%error, item = id, "item not stored");
            let body =
                serde_json::json!({ "id": id, "committed": false, "reason": error.to_string() });
            (status, Json(body)).into_response()
        }
    }
}

/// `GET /items/count`: `{"count": N, "pending": P}`, the rows in the table and the accepted
/// items not written yet.
async fn count_items(State(api): State<Api>) -> Response {
    let counted = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM items")
        .fetch_one(&api.db)
        .await;
    match counted {
        Ok(count) => {
            let pending = api.items.stats().pending;
            Json(serde_json::json!({ "count": count, "pending": pending })).into_response()
        }
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot count the items: {error}"),
        )
            .into_response(),
    }
}

/// Creates the `items` table if it is missing.
pub(crate) async fn create_table(db: &Database) -> Result<(), sqlx::Error> {
    sqlx::query("CREATE TABLE IF NOT EXISTS items (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")
        .execute(db)
        .await
        .map(|_| ())
}

/// Writes a batch of items (one statement per row, one transaction per batch: the same SQL runs
/// on SQLite and PostgreSQL). An id posted again replaces its name. The connection is taken
/// with `acquire`, so a slow batch shows among the holders with this line and the writer task.
pub(crate) async fn write_items(db: Database, items: Arc<[Item]>) -> Result<(), DbError> {
    let mut connection = db.acquire().await?;
    let mut transaction = connection.begin().await?;
    for item in items.iter() {
        sqlx::query(
            "INSERT INTO items (id, name) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name",
        )
        .bind(item.id)
        .bind(item.name.as_str())
        .execute(&mut *transaction)
        .await?;
    }
    transaction.commit().await?;
    Ok(())
}
