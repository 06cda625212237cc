//! Faults on demand, to watch them on the status page (`/lifecycle`) and to test it: present only
//! when the demo runs with `DEMO_FAULTS=1`, never in a real deployment.
//!
//! - `flaky`: a supervised service (restarted on failure, up to a thousand times a minute) that
//!   fails while faults are switched on, and otherwise serves until shutdown;
//! - `POST /demo/faults/fail` switches faults on, `POST /demo/faults/recover` off;
//! - `POST /demo/faults/hold?ms=N` checks a connection out of the pool and holds it N ms (at
//!   most [`MAX_DELAY_MS`]) before answering 200, so it shows among the pool's holders with this
//!   file's line and the request's task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use lifecycle_runtime::db::Database;
use lifecycle_runtime::{Shutdown, background};
use serde::Deserialize;

use crate::api::MAX_DELAY_MS;

/// The variable that turns faults on demand on.
pub(crate) const FAULTS_VAR: &str = "DEMO_FAULTS";

/// Whether `DEMO_FAULTS=1` is set; any other value than `1` or `0` is refused, naming the
/// variable.
pub(crate) fn enabled() -> Result<bool, String> {
    match std::env::var(FAULTS_VAR) {
        Err(_) => Ok(false),
        Ok(text) => match text.trim() {
            "1" => Ok(true),
            "0" | "" => Ok(false),
            other => Err(format!(
                "{FAULTS_VAR}={other:?} is not understood; write 1 to offer faults on demand, or \
                 leave it unset"
            )),
        },
    }
}

/// What the fault routes and the `flaky` service share.
#[derive(Clone)]
pub(crate) struct Faults {
    failing: Arc<AtomicBool>,
    db: Database,
}

impl Faults {
    /// Starts the `flaky` service; faults start switched off.
    pub(crate) fn start(db: Database) -> Faults {
        let faults = Faults {
            failing: Arc::new(AtomicBool::new(false)),
            db,
        };
        flaky(faults.failing.clone());
        faults
    }

    /// The routes under `/demo/faults`.
    pub(crate) fn routes(self) -> Router {
        Router::new()
            .route("/demo/faults/fail", post(fail))
            .route("/demo/faults/recover", post(recover))
            .route("/demo/faults/hold", post(hold))
            .with_state(self)
    }
}

/// Serves until shutdown; while faults are on, each run fails within 100 ms and is restarted
/// after a backoff, so the status page shows it restarting with its last failure.
#[background(
    shutdown,
    restart = "on_failure",
    max_restarts = "1000/1m",
    name = "flaky"
)]
async fn flaky(failing: Arc<AtomicBool>, shutdown: Shutdown) -> Result<(), String> {
    loop {
        if failing.load(Ordering::Relaxed) {
            return Err(
                "upstream refused the connection (fault switched on with POST \
                        /demo/faults/fail)"
                    .to_owned(),
            );
        }
        if !shutdown.sleep(Duration::from_millis(100)).await {
            return Ok(());
        }
    }
}

async fn fail(State(faults): State<Faults>) -> &'static str {
    faults.failing.store(true, Ordering::Relaxed);
    tracing::warn!("faults switched on: flaky fails until POST /demo/faults/recover");
    "faults on\n"
}

async fn recover(State(faults): State<Faults>) -> &'static str {
    faults.failing.store(false, Ordering::Relaxed);
    tracing::info!("faults switched off");
    "faults off\n"
}

/// `?ms=N`: how long to hold the connection.
#[derive(Debug, Deserialize)]
struct Hold {
    ms: u64,
}

async fn hold(State(faults): State<Faults>, Query(hold): Query<Hold>) -> Response {
    if hold.ms > MAX_DELAY_MS {
        let reason = format!("ms={} is above the limit of {MAX_DELAY_MS}", hold.ms);
        return (StatusCode::BAD_REQUEST, reason).into_response();
    }
    let connection = match faults.db.acquire().await {
        Ok(connection) => connection,
        Err(error) => return (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    };
    tokio::time::sleep(Duration::from_millis(hold.ms)).await;
    drop(connection);
    (
        StatusCode::OK,
        format!("held a connection for {} ms\n", hold.ms),
    )
        .into_response()
}
