//! The server task: the [`Server`] builder that [`serve`] returns, and the accept loop it runs
//! until tasks are told to stop.

use std::fmt;
use std::io;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::connection::{Connections, serve_connection};
use crate::workers::{OkFuture, TaskHandle, TaskName, WorkerKind, WorkerMeta};
use crate::{Coordinator, Shutdown};

/// How long a request may go on after tasks are told to stop before it is aborted and named in
/// the report, unless [`Server::stop_timeout`] says otherwise.
pub const DEFAULT_HTTP_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How much longer than a request a connection, and than a connection the server task, may go
/// on: a request aborted at its stop timeout lets its connection end by itself, and the last
/// connection the server, so that the report names only what was stuck.
const CUT_MARGIN: Duration = Duration::from_millis(250);

/// The first pause after an accept error that is not a single connection's (out of file
/// descriptors, say); doubled for each further one in a row, up to [`MAX_ACCEPT_PAUSE`].
const FIRST_ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// The longest pause between two accepts that failed.
const MAX_ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// Serves `router` on the connections `listener` accepts, under the current coordinator, once
/// [`Server::spawn`] is called.
///
/// ```
/// use lifecycle_runtime::http::axum::{Router, routing::get};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// # lifecycle_runtime::Coordinator::new().scope(async {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let router = Router::new().route("/hello", get(|| async { "hello" }));
/// let server = lifecycle_runtime::http::serve(listener, router).spawn();
/// assert_eq!(server.name(), "http");
/// let report = lifecycle_runtime::shutdown().await;
/// assert!(report.is_clean(), "{report}");
/// # Ok(())
/// # }).await
/// # }
/// ```
pub fn serve(listener: TcpListener, router: Router) -> Server {
    Server {
        listener,
        router,
        name: TaskName::from("http"),
        stop_timeout: DEFAULT_HTTP_STOP_TIMEOUT,
        stop_after: Vec::new(),
    }
}

/// An HTTP server not started yet; [`spawn`](Server::spawn) starts it.
///
/// It accepts and serves until tasks are told to stop (after the drain, during which readiness
/// is false but requests are still answered), then drops its listener, closes idle
/// keep-alive connections at once, lets requests in flight finish (their connection closes
/// after the response) and ends when its last connection has. A request still running
/// [`stop_timeout`](Server::stop_timeout) after the stop is aborted and named in the report.
///
/// ```
/// use std::time::Duration;
/// use lifecycle_runtime::http::axum::Router;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// # lifecycle_runtime::Coordinator::new().scope(async {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let server = lifecycle_runtime::http::serve(listener, Router::new())
///     .name("public-api")
///     .stop_timeout(Duration::from_secs(10))
///     .spawn();
/// assert_eq!(server.name(), "public-api");
/// # lifecycle_runtime::shutdown().await;
/// # Ok(())
/// # }).await
/// # }
/// ```
#[must_use = "a server does nothing until `spawn` is called"]
pub struct Server {
    listener: TcpListener,
    router: Router,
    name: TaskName,
    stop_timeout: Duration,
    stop_after: Vec<String>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.listener.local_addr().ok())
            .field("name", &self.name)
            .field("stop_timeout", &self.stop_timeout)
            .field("stop_after", &self.stop_after)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// The server task's name in logs, snapshots and the report. Default `http`. Its
    /// connections are named `<name> connection` and its requests `<name> <METHOD> <path>`
    /// (`http POST /items`). A worker that must stop after the server, its connections and its
    /// requests names it in its `stop_after`.
    pub fn name(mut self, name: impl Into<TaskName>) -> Self {
        self.name = name.into();
        self
    }

    /// How long a request may go on after tasks are told to stop before it is aborted and named
    /// in the report. Default [`DEFAULT_HTTP_STOP_TIMEOUT`]. Its connection and the server task
    /// get a quarter of a second more each, to end by themselves once it is cut off.
    pub fn stop_timeout(mut self, stop_timeout: Duration) -> Self {
        self.stop_timeout = stop_timeout;
        self
    }

    /// Keep serving until every worker named here has ended (or was cut off at its stop
    /// timeout), instead of stopping when tasks are told to: the server, its connections and its
    /// requests then stop together, in the stage after those workers (see
    /// [`Coordinator::stop_after`]), and its stop timeouts run from then. Default: none, the
    /// server stops with everything else.
    ///
    /// The stage goes by name: every worker named `<server name> …` (the name, a space, more)
    /// is in it, unless its own name is declared in a stop order. Give other tasks names that do
    /// not start that way.
    ///
    /// This is for a second server with the operator's routes (health, status page, metrics):
    /// declared to stop after the workers that write, it keeps answering through the whole stop,
    /// so the status page draws the stop live and metrics are scraped to the end. The server
    /// users' traffic comes to should stop first (no `stop_after`), so the workers it feeds can
    /// stop after it.
    ///
    /// ```
    /// use lifecycle_runtime::http::axum::Router;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// # lifecycle_runtime::Coordinator::new().scope(async {
    /// let api = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// lifecycle_runtime::http::serve(api, Router::new()).spawn();
    /// let writer = lifecycle_runtime::spawn_after("writer", ["http"], async {
    ///     lifecycle_runtime::shutdown_signal().triggered().await;
    /// })
    /// .unwrap();
    /// let operator_routes = Router::new()
    ///     .merge(lifecycle_runtime::http::health_routes())
    ///     .merge(lifecycle_runtime::http::status_page());
    /// lifecycle_runtime::http::serve(admin, operator_routes)
    ///     .name("admin")
    ///     .stop_after(["writer"])
    ///     .spawn();
    /// let report = lifecycle_runtime::shutdown().await;
    /// assert!(report.is_clean(), "{report}");
    /// // `http` stops first, then `writer`, then `admin`.
    /// assert!(report.to_string().contains("stage 2"), "{report}");
    /// # drop(writer);
    /// # Ok(())
    /// # }).await
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// [`spawn`](Self::spawn) panics when the order would be a cycle (one of these workers
    /// already stops after the server), naming the cycle. Declare it with
    /// [`Coordinator::stop_after`] first to handle that as an error.
    pub fn stop_after<I>(mut self, after: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.stop_after
            .extend(after.into_iter().map(|name| name.as_ref().to_owned()));
        self
    }

    /// Starts the server task on the current coordinator and returns its handle. Must be called
    /// inside a tokio runtime.
    ///
    /// # Panics
    ///
    /// When [`stop_after`](Self::stop_after) names a cycle; see there.
    pub fn spawn(self) -> TaskHandle {
        let coordinator = Coordinator::current();
        let order = coordinator.workers().order();
        if !self.stop_after.is_empty() {
            if let Err(error) = order.declare_family(self.name.as_str(), &self.stop_after) {
                panic!("HTTP server `{}`: {error}", self.name);
            }
        } else {
            // Declared through `Coordinator::stop_after` instead: its connections and requests
            // go with it all the same.
            order.make_family(self.name.as_str());
        }
        let shutdown = Shutdown::for_name(coordinator.clone(), self.name.as_str());
        let connections = Connections::new(
            coordinator.clone(),
            shutdown.clone(),
            self.name.clone(),
            self.router,
            self.stop_timeout,
            self.stop_timeout.saturating_add(CUT_MARGIN),
        );
        let meta = WorkerMeta::new(
            self.name.clone(),
            WorkerKind::Task,
            self.stop_timeout.saturating_add(CUT_MARGIN * 2),
            None,
        );
        let accept = accept_loop(shutdown, self.name, self.listener, connections);
        coordinator.spawn_worker(meta, OkFuture::new(accept))
    }
}

/// Accepts connections until tasks are told to stop, then waits for the last one to end.
async fn accept_loop(
    shutdown: Shutdown,
    name: TaskName,
    listener: TcpListener,
    connections: Connections,
) {
    let address = listener.local_addr().ok();
    // Every connection task holds a clone of `alive`: once the loop drops its own, `ended`
    // answers `None` when the last connection has ended.
    let (alive, mut ended) = mpsc::channel::<()>(1);
    let mut pause = FIRST_ACCEPT_PAUSE;
    tracing::debug!(server = %name, ?address, "accepting connections");
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.triggered() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                pause = FIRST_ACCEPT_PAUSE;
                serve_connection(&connections, stream, peer, alive.clone());
            }
            // The peer gave up before we took its connection: nothing is wrong with the
            // listener.
            Err(error) if is_connection_error(&error) => {
                tracing::debug!(server = %name, %error, "a connection closed before it was accepted");
            }
            Err(error) => {
                // Out of file descriptors, say: waiting lets connections end and free some.
                // Never a busy loop, never the end of the server.
                tracing::warn!(
                    server = %name,
                    %error,
                    retry_in = ?pause,
                    "cannot accept a connection; trying again after a pause"
                );
                if !shutdown.sleep(pause).await {
                    break;
                }
                pause = (pause * 2).min(MAX_ACCEPT_PAUSE);
            }
        }
    }
    // Stop accepting: new connections are refused from now on.
    drop(listener);
    drop(alive);
    tracing::debug!(server = %name, "stopped accepting; waiting for open connections");
    let _none = ended.recv().await;
    tracing::debug!(server = %name, "every connection closed");
}

/// Whether an accept failed for one connection only (the next accept may well succeed).
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_errors_are_told_from_listener_errors() {
        assert!(is_connection_error(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        // EMFILE: the process is out of file descriptors; that calls for a pause.
        assert!(!is_connection_error(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
    }
}
