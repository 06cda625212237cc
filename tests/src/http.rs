//! A real HTTP/1 client for the tests: one keep-alive connection per [`Connection`], over a
//! plain `TcpStream`, so a test sees exactly when the server closes it.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// An answer: its status and its body as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The body, as text.
    pub body: String,
    /// The server asked to close the connection after this answer (`connection: close`).
    pub closes: bool,
}

/// One keep-alive HTTP/1 connection.
#[derive(Debug)]
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    /// Drives the connection; ends when either side closes it.
    driver: JoinHandle<()>,
    address: SocketAddr,
}

impl Connection {
    /// Connects to `address`.
    pub async fn open(address: SocketAddr) -> Result<Connection, String> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|error| format!("connect to {address}: {error}"))?;
        stream
            .set_nodelay(true)
            .map_err(|error| format!("set TCP_NODELAY: {error}"))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| format!("handshake with {address}: {error}"))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection {
            sender,
            driver,
            address,
        })
    }

    /// Sends a request and reads the whole answer. `body` is sent as JSON when given.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<Answer, String> {
        self.sender
            .ready()
            .await
            .map_err(|error| format!("{method} {path}: connection not ready: {error}"))?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.address.to_string());
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|error| format!("{method} {path}: {error}"))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|error| format!("{method} {path}: {error}"))?;
        let status = response.status().as_u16();
        let closes = response
            .headers()
            .get("connection")
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"));
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("{method} {path}: reading the body: {error}"))?
            .to_bytes();
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            closes,
        })
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Result<Answer, String> {
        self.send("GET", path, None).await
    }

    /// Whether the server has closed the connection (or it broke).
    pub fn is_closed(&self) -> bool {
        self.driver.is_finished() || self.sender.is_closed()
    }

    /// Waits up to `limit` for the connection to close; `true` if it did.
    pub async fn closed_within(self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.driver).await.is_ok()
    }
}
