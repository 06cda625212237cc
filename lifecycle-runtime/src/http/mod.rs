//! HTTP serving under the coordinator (feature `http`): this module owns the accept loop that
//! runs an axum [`Router`] on hyper's HTTP/1 connections, the way those connections and their
//! requests stop at shutdown, the health routes (`/livez`, `/readyz`, `/health/tasks`), and a
//! status page that draws them live ([`status_page`], `/lifecycle`).
//!
//! [`Router`]: axum::Router
//!
//! [`serve`] starts a tracked task (named `http` unless you say otherwise) that accepts
//! connections. Every connection is a tracked task (`http connection`), and every request's
//! handler a tracked task named for what it is (`http POST /items`), so that what is still
//! running at the stop timeout is aborted **and named** in the shutdown report.
//!
//! Through shutdown:
//!
//! 1. **drain** (readiness false, `/readyz` answers 503): the server goes on accepting and
//!    serving, so that a load balancer has time to notice and send its traffic elsewhere;
//! 2. **stop** (the [`Shutdown`](crate::Shutdown) token fires): the listener is dropped, idle
//!    keep-alive connections close at once, a connection with a request in flight closes once
//!    its response is written, and the server task ends when its last connection has;
//! 3. what still runs at the stop timeout is aborted by the coordinator and named in the report
//!    (`ABORTED task http GET /slow`).
//!
//! Connections and requests are named after their server (`admin connection`, `admin GET
//! /readyz` for a server named `admin`). A server declared with
//! [`Server::stop_after`] goes through step 2 only once the workers it names have ended: an
//! operator's server (health routes, the status page) that stops after the writers answers
//! through the whole stop.
//!
//! ```no_run
//! use lifecycle_runtime::http::axum::{Router, routing::get};
//!
//! #[lifecycle_runtime::main(drain = "5s")]
//! async fn main() -> std::io::Result<()> {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     let router = Router::new()
//!         .route("/hello", get(|| async { "hello" }))
//!         .merge(lifecycle_runtime::http::health_routes());
//!     lifecycle_runtime::http::serve(listener, router).spawn();
//!     lifecycle_runtime::mark_ready();
//!     lifecycle_runtime::shutdown_signal().triggered().await;
//!     Ok(())
//! }
//! ```

mod connection;
mod health;
mod page;
mod server;

pub use self::health::{HealthBody, health_routes};
pub use self::page::status_page;
pub use self::server::{DEFAULT_HTTP_STOP_TIMEOUT, Server, serve};

/// axum, as this crate uses it: build routers with the same version.
pub use axum;
