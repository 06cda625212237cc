//! The demo service: a small HTTP API that shows every moving part stopping cleanly.
//!
//! - `http`: an axum server (`lifecycle_runtime::http`) on `LISTEN_ADDR`: `POST /items` writes an
//!   item through a batch writer into the `items` table, `GET /items/count` counts them, and
//!   `/livez`, `/readyz`, `/health/tasks` are the runtime's health routes, `/lifecycle` its status
//!   page (open it in a browser). Each request runs as a task named for it (`http POST /items`);
//! - `batch-writer items`: writes accepted items in batches; at shutdown it stops after the server
//!   and its requests (`stop_after(["http"])`), writing what is left before the pool closes;
//! - `admin`: a second server on `ADMIN_ADDR` with the operator's routes only (health routes and
//!   the status page). It stops after the writer (`stop_after(["batch-writer items"])`), so its
//!   status page keeps answering through the whole stop and draws it live, where the page on
//!   `LISTEN_ADDR` goes quiet when the API stops;
//! - `heartbeat`: a loop that logs every second;
//! - `flusher`: appends accepted ids to a journal every 500ms, with one last flush at shutdown;
//! - `load-sampler`: a blocking sampler on its own OS thread;
//! - `store`: a `#[managed_resource]` whose journal flushes to disk when it closes;
//! - `sidecar`: a child process, stopped with SIGTERM (then SIGKILL) at shutdown;
//! - a database: embedded SQLite, or PostgreSQL with `DATABASE_URL` (falling back to SQLite when
//!   that is unreachable).
//!
//! Run it with `cargo run -p lifecycle-examples --bin service`, then
//! `curl -d '{"id":17,"name":"x"}' -H 'content-type: application/json' localhost:8080/items`,
//! and press Ctrl+C: it prints the shutdown report and exits 0 when everything stopped cleanly.
//!
//! Environment:
//! - `LISTEN_ADDR`: where to listen (default `127.0.0.1:8080`; port 0 picks a free one, logged
//!   as `listening address=...`);
//! - `ADMIN_ADDR`: where the operator's server listens (default `127.0.0.1:9090`, logged as
//!   `admin routes served address=...`; `off` for none);
//! - `DATABASE_URL`: `postgres://...` or `sqlite://...` (default: an SQLite file in the
//!   temporary directory);
//! - `HTTP_STOP_TIMEOUT`: how long a request may go on after tasks are told to stop (default
//!   5s);
//! - `DEMO_RUN_FOR=3s`: stop by itself after that long;
//! - `LIFECYCLE_SHUTDOWN_TIMEOUT`, `LIFECYCLE_DRAIN`: the shutdown budget (10s here) and the
//!   drain time (none here);
//! - `DEMO_FAULTS=1`: faults on demand, to watch them on the status page (`faults.rs`): a `flaky`
//!   service that fails while `POST /demo/faults/fail` says so, and `POST /demo/faults/hold?ms=N`
//!   holding a pool connection. Never set in a real deployment.
//!
//! A bad value of any of these stops the demo at start with exit code 2, naming the variable.

mod api;
mod faults;
mod parts;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lifecycle_runtime::ManagedChild;
use lifecycle_runtime::db::{BatchWriter, Database, DatabaseOptions};

use crate::api::Api;
use crate::parts::{Journal, Stats, Store};

/// Where the demo listens when `LISTEN_ADDR` is not set.
const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:8080";

/// Where the operator's server listens when `ADMIN_ADDR` is not set.
const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9090";

/// The settings the demo reads from its environment.
struct Settings {
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    http_stop_timeout: Duration,
    run_for: Option<Duration>,
    faults: bool,
}

impl Settings {
    /// Reads the environment; the error names the variable, its value and what to write.
    fn from_env() -> Result<Settings, String> {
        let listen = address_var("LISTEN_ADDR", DEFAULT_LISTEN_ADDR, "8080")?
            .expect("LISTEN_ADDR cannot be off");
        let admin = address_var("ADMIN_ADDR", DEFAULT_ADMIN_ADDR, "9090")?;
        let http_stop_timeout = duration_var("HTTP_STOP_TIMEOUT")?
            .unwrap_or(lifecycle_runtime::http::DEFAULT_HTTP_STOP_TIMEOUT);
        let run_for = duration_var("DEMO_RUN_FOR")?;
        let faults = faults::enabled()?;
        Ok(Settings {
            listen,
            admin,
            http_stop_timeout,
            run_for,
            faults,
        })
    }
}

/// An address to listen on from the environment `name`, or `default`; `None` for `off` (only
/// where `off` is allowed: not for `LISTEN_ADDR`). The error names the variable.
fn address_var(name: &str, default: &str, port: &str) -> Result<Option<SocketAddr>, String> {
    let text = std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let text = text.trim();
    if text == "off" && name != "LISTEN_ADDR" {
        return Ok(None);
    }
    let or_off = if name == "LISTEN_ADDR" {
        ""
    } else {
        ", or \"off\""
    };
    text.parse().map(Some).map_err(|error| {
        format!(
            "{name}={text:?} is not an address to listen on ({error}); write it like \
             \"127.0.0.1:{port}\" or \"0.0.0.0:{port}\"{or_off}"
        )
    })
}

/// A duration from the environment ("3s", "500ms"), naming the variable on error.
fn duration_var(name: &str) -> Result<Option<Duration>, String> {
    let Ok(text) = std::env::var(name) else {
        return Ok(None);
    };
    humantime::parse_duration(text.trim())
        .map(Some)
        .map_err(|error| {
            format!(
                "{name}={text:?} is not a duration ({error}); write it like \"3s\" or \"500ms\""
            )
        })
}

#[lifecycle_runtime::main(shutdown_timeout = "10s")]
async fn main() -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .init();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            // A configuration mistake: nothing has started, there is nothing to stop.
            eprintln!("error: {error}");
            std::process::exit(2);
        }
    };

    // The database: DATABASE_URL, or embedded SQLite. A PostgreSQL that cannot be reached within
    // the start-up budget leaves the demo on SQLite (and the report and logs say why).
    let fallback = std::env::temp_dir().join("lifecycle-demo-fallback.sqlite");
    let options = DatabaseOptions::from_env("lifecycle-demo")
        .map_err(|error| error.to_string())?
        .fallback_sqlite(fallback);
    let db = Database::connect(options)
        .await
        .map_err(|error| error.to_string())?;
    api::create_table(&db)
        .await
        .map_err(|error| format!("cannot create the items table: {error}"))?;
    tracing::info!(backend = %db.backend(), "database ready");
    // The writer stops after the HTTP server (the task `http`) and every request it runs: a
    // request still finishing after the drain gets its item written, not refused.
    let items = BatchWriter::builder("items", &db, api::write_items)
        .max_batch(100)
        .interval(Duration::from_millis(100))
        .stop_after(["http"])
        .spawn();

    // Resources close in reverse order of registration, after every task stopped.
    let journal_path =
        std::env::temp_dir().join(format!("lifecycle-demo-{}.journal", std::process::id()));
    let journal = Journal::open(&journal_path)
        .map_err(|error| format!("cannot open {}: {error}", journal_path.display()))?;
    let store = lifecycle_runtime::manage(Store {
        journal,
        path: journal_path,
    });
    let mut sidecar = tokio::process::Command::new("sh");
    sidecar
        .arg("-c")
        .arg("trap 'exit 0' TERM; while :; do sleep 0.2; done");
    let sidecar = ManagedChild::spawn("sidecar", sidecar).map_err(|error| error.to_string())?;
    tracing::info!(pid = sidecar.id(), "sidecar started");

    let stats = Arc::new(Stats::default());
    parts::heartbeat(stats.clone(), items.clone());
    parts::flusher(stats.clone(), store.clone());
    parts::load_sampler(stats.clone());
    let faults = settings.faults.then(|| {
        tracing::warn!("DEMO_FAULTS=1: faults on demand under /demo/faults");
        faults::Faults::start(db.clone())
    });

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|error| {
            format!(
                "cannot listen on {} (LISTEN_ADDR): {error}; choose a free port, or 0 for any",
                settings.listen
            )
        })?;
    let address = listener
        .local_addr()
        .map_err(|error| format!("cannot read the address listened on: {error}"))?;
    let router = api::router(
        Api {
            db: db.clone(),
            items: items.clone(),
            stats: stats.clone(),
        },
        faults,
    );
    lifecycle_runtime::http::serve(listener, router)
        .stop_timeout(settings.http_stop_timeout)
        .spawn();
    tracing::info!(%address, "listening");
    if let Some(admin) = settings.admin {
        serve_admin(admin).await?;
    }
    // Start-up is done (database open, server accepting): from now on `/readyz` answers 200,
    // until shutdown starts.
    lifecycle_runtime::mark_ready();
    tracing::info!(
        pid = std::process::id(),
        "demo service running; press Ctrl+C to stop"
    );

    let shutdown = lifecycle_runtime::shutdown_signal();
    match settings.run_for {
        Some(limit) => {
            shutdown.sleep(limit).await;
        }
        None => shutdown.triggered().await,
    }
    let written = items.stats();
    tracing::info!(
        accepted = stats.accepted.load(std::sync::atomic::Ordering::Relaxed),
        written = written.written,
        pending = written.pending,
        "main is done"
    );
    Ok(())
}

/// The operator's server on `address`: the health routes and the status page, and nothing a
/// client of the API calls. It stops after the batch writer, itself after the API server, so it
/// answers until every write is done and its status page draws the whole stop.
async fn serve_admin(address: SocketAddr) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| {
            format!(
                "cannot listen on {address} (ADMIN_ADDR): {error}; choose a free port, 0 for any, or \"off\""
            )
        })?;
    let bound = listener
        .local_addr()
        .map_err(|error| format!("cannot read the address listened on: {error}"))?;
    let routes = lifecycle_runtime::http::axum::Router::new()
        .merge(lifecycle_runtime::http::health_routes())
        .merge(lifecycle_runtime::http::status_page());
    lifecycle_runtime::http::serve(listener, routes)
        .name("admin")
        .stop_after(["batch-writer items"])
        .spawn();
    tracing::info!(address = %bound, "admin routes served");
    Ok(())
}
