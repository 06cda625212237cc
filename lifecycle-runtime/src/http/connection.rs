//! One connection: its tracked task, which serves HTTP/1 requests until tasks are told to stop
//! and then closes gracefully, and the tracked task each request's handler runs in, named for
//! the request (`http POST /items`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tower_service::Service;

use crate::workers::{OkFuture, TaskError, TaskName, WorkerKind, WorkerMeta};
use crate::{Coordinator, Shutdown};

/// The most bytes of a request's path that go into its task's name: a name is kept for every
/// request in flight, and a client chooses the path.
const MAX_PATH_IN_NAME: usize = 96;

/// What every connection of one server shares.
#[derive(Clone)]
pub(super) struct Connections {
    inner: Arc<Shared>,
}

struct Shared {
    coordinator: Coordinator,
    /// The server's token: fires when its stage is told to stop.
    shutdown: Shutdown,
    /// The server's name: its connections are `<server> connection`, its requests
    /// `<server> GET /path`.
    server: TaskName,
    /// `<server> connection`, made once.
    connection_name: TaskName,
    router: Router,
    request_stop_timeout: Duration,
    connection_stop_timeout: Duration,
}

impl Connections {
    pub(super) fn new(
        coordinator: Coordinator,
        shutdown: Shutdown,
        server: TaskName,
        router: Router,
        request_stop_timeout: Duration,
        connection_stop_timeout: Duration,
    ) -> Connections {
        let connection_name = TaskName::from(format!("{server} connection"));
        Connections {
            inner: Arc::new(Shared {
                coordinator,
                shutdown,
                server,
                connection_name,
                router,
                request_stop_timeout,
                connection_stop_timeout,
            }),
        }
    }
}

/// Starts the tracked task that serves one accepted connection. `alive` is dropped when the
/// connection has ended.
pub(super) fn serve_connection(
    connections: &Connections,
    stream: TcpStream,
    peer: SocketAddr,
    alive: mpsc::Sender<()>,
) {
    let shared = connections.inner.clone();
    let meta = WorkerMeta::new(
        shared.connection_name.clone(),
        WorkerKind::Task,
        shared.connection_stop_timeout,
        None,
    );
    let coordinator = shared.coordinator.clone();
    let _task = coordinator.spawn_worker(meta, OkFuture::new(run(shared, stream, peer, alive)));
}

/// Serves requests on `stream` until the client closes it or tasks are told to stop; then
/// closes at once when idle, or after the response of the request in flight.
async fn run(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, alive: mpsc::Sender<()>) {
    let shutdown = shared.shutdown.clone();
    let service = {
        let shared = shared.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(handle(&shared, request).await) }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The timer lets hyper enforce its limit on reading a request's head (30 s by default).
    builder.timer(TokioTimer::new());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = shutdown.triggered() => {
            // Idle: closes now. A request in flight: its response is written with
            // `connection: close`, then the connection closes.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = ended {
        // A client that went away mid-request, a malformed request: the client's problem,
        // not the server's.
        tracing::debug!(%peer, %error, "http connection ended with an error");
    }
    drop(alive);
}

/// Runs the router on `request` in a tracked task named for it, and answers with its response
/// (a 500 when the handler panicked, a 503 when shutdown aborted it).
async fn handle(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    let name = request_name(&shared.server, request.method(), request.uri().path());
    let meta = WorkerMeta::new(name, WorkerKind::Task, shared.request_stop_timeout, None);
    let mut router = shared.router.clone();
    let request = request.map(Body::new);
    let handler = shared.coordinator.spawn_worker(
        meta,
        OkFuture::new(async move {
            match router.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }),
    );
    match handler.await {
        Ok(mut response) => {
            // Shutdown has started: every response asks its client to close the connection, so
            // clients (and load balancers' pools) reconnect, elsewhere once the server is out of
            // rotation, instead of keeping a connection the stop will close under them.
            if shared.coordinator.is_shutting_down() {
                response.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
            }
            response
        }
        Err(error @ TaskError::Cancelled { .. }) => {
            plain(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
        }
        // A panic or an error: logged with its message, counted and named by the task
        // already. The client is told no more: a panic message may hold what it must not see.
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error: the handler panicked (the server's log has the details)"
                .to_owned(),
        ),
    }
}

/// A text response that closes its connection.
fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

/// The name of a request's task: `http POST /items` (`<server> <METHOD> <path>`), its path cut
/// to [`MAX_PATH_IN_NAME`] bytes (with `…`).
pub(super) fn request_name(server: &str, method: &Method, path: &str) -> TaskName {
    let name = if path.len() <= MAX_PATH_IN_NAME {
        format!("{server} {method} {path}")
    } else {
        let mut end = MAX_PATH_IN_NAME;
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        format!("{server} {method} {}…", &path[..end])
    };
    TaskName::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_by_method_and_path() {
        assert_eq!(
            &*request_name("http", &Method::POST, "/items"),
            "http POST /items"
        );
        assert_eq!(
            &*request_name("admin", &Method::GET, "/lifecycle"),
            "admin GET /lifecycle"
        );
        let long = format!("/{}", "é".repeat(100));
        let name = request_name("http", &Method::GET, &long);
        assert!(name.len() <= "http GET ".len() + MAX_PATH_IN_NAME + "…".len());
        assert!(name.ends_with('…'), "{name}");
    }
}
