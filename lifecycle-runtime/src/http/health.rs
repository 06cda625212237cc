//! The health routes: `/livez`, `/readyz` and `/health/tasks`, answered from the coordinator
//! that was current when the routes were made.

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::{Coordinator, Readiness};

/// What `/livez` and `/readyz` answer, as JSON: `{"ready":false,"phase":"draining"}`.
///
/// ```
/// use lifecycle_runtime::http::HealthBody;
/// use lifecycle_runtime::Readiness;
///
/// let body = HealthBody { ready: false, phase: Readiness::Draining };
/// assert_eq!(
///     serde_json::to_string(&body).unwrap(),
///     r#"{"ready":false,"phase":"draining"}"#
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct HealthBody {
    /// Whether readiness probes should send traffic: the phase is `ready`.
    pub ready: bool,
    /// Where the program stands: `starting`, `ready`, `draining`, `stopping` or `stopped`.
    pub phase: Readiness,
}

/// Routes to merge into a router: the probes of an orchestrator and the task statistics.
///
/// - `GET /livez`: 200 whenever the process answers, the drain included (a liveness probe must
///   not restart a process that is stopping cleanly). Once tasks are told to stop, the server
///   accepts no new connections, so a probe is refused then; an orchestrator waits for the exit
///   (or its grace period) at that point anyway. Body: [`HealthBody`].
/// - `GET /readyz`: 200 only while readiness is `ready` (the program called
///   [`mark_ready`](crate::mark_ready) and shutdown has not started), else 503, so a load
///   balancer stops sending traffic at the start of the drain. Body: [`HealthBody`], e.g.
///   `{"ready":false,"phase":"draining"}`.
/// - `GET /health/tasks`: the coordinator's [`Snapshot`](crate::Snapshot) as JSON, always 200.
///   Its fields: `ready` and `readiness` (the phase); `shutting_down`; `tasks` (each with
///   `name`, `main`, `state` — `running`, `idle`, `ticking`, `final_tick` or `restarting` —
///   `ticks`, `restarts`, `last_failure` and `age_secs`); `starting` (tasks not polled yet);
///   `threads` (the same fields but `main`); `counters` (`spawned`, `completed`, `failed`,
///   `timed_out`, `panicked`, `cancelled`); `groups` (`name`, `max_concurrent`, `in_use`,
///   `waiting`); `resources` (`name`, in closing order); `pools` (`name`, `backend`,
///   `fallback_reason`, `closed`, `size`, `idle`, `in_use`, `max_connections`, `waiters`,
///   `acquires`, `acquire_timeouts`, and waits and hold times in seconds).
///
/// The routes answer for the coordinator current when this is called (the global one under
/// `#[lifecycle_runtime::main]`).
///
/// ```
/// use lifecycle_runtime::http::axum::{Router, routing::post};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let router: Router = Router::new()
///     .route("/items", post(|| async { "stored" }))
///     .merge(lifecycle_runtime::http::health_routes());
/// # let _ = router;
/// # }
/// ```
pub fn health_routes() -> Router {
    let coordinator = Coordinator::current();
    let live = coordinator.clone();
    let ready = coordinator.clone();
    let tasks = coordinator;
    Router::new()
        .route("/livez", get(move || async move { livez(&live) }))
        .route("/readyz", get(move || async move { readyz(&ready) }))
        .route(
            "/health/tasks",
            get(move || async move { Json(tasks.snapshot()) }),
        )
}

fn livez(coordinator: &Coordinator) -> Response {
    let phase = coordinator.readiness();
    let body = HealthBody {
        ready: phase == Readiness::Ready,
        phase,
    };
    (StatusCode::OK, Json(body)).into_response()
}

fn readyz(coordinator: &Coordinator) -> Response {
    let phase = coordinator.readiness();
    let ready = phase == Readiness::Ready;
    let status = match ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(HealthBody { ready, phase })).into_response()
}
