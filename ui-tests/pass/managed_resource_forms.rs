//! Every form of `#[managed_resource]` compiles under strict lints, and closes every field.
//!
//! The lints below are denied so that anything the generated code trips fails this case.
//! This file is also included as a module by `tests/pass_lints.rs`, so clippy lints it too.

#![deny(warnings)]
#![deny(
    elided_lifetimes_in_paths,
    let_underscore_drop,
    missing_debug_implementations,
    missing_docs,
    single_use_lifetimes,
    trivial_casts,
    trivial_numeric_casts,
    unreachable_pub,
    unsafe_code,
    unused_extern_crates,
    unused_import_braces,
    unused_lifetimes,
    unused_qualifications,
    unused_results
)]

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use lifecycle_runtime::{Close, CloseError, NoCleanup, managed_resource};

/// A connection that remembers whether it was closed.
#[derive(Debug, Default)]
struct Connection {
    closed: AtomicBool,
}

impl Connection {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

impl Close for Connection {
    async fn close(&self) -> Result<(), CloseError> {
        self.closed.store(true, Ordering::Relaxed);
        Ok(())
    }
}

/// Plain settings: they opt in to a no-op close.
#[derive(Debug, Clone, Default)]
struct Settings {
    retries: u32,
}

impl NoCleanup for Settings {}

/// A socket with no `Close` of its own: closed through `with`.
#[derive(Debug, Default)]
struct Socket {
    hung_up: AtomicBool,
}

/// Closes a socket; returns `io::Result`, whose error displays.
async fn hang_up(socket: &Socket) -> io::Result<()> {
    socket.hung_up.store(true, Ordering::Relaxed);
    Ok(())
}

/// Closes a socket; returns nothing.
async fn hang_up_quietly(socket: &Socket) {
    socket.hung_up.store(true, Ordering::Relaxed);
}

/// Counters with no `Close`: skipped, with the reason.
#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU32,
}

/// Why a goodbye failed.
#[derive(Debug)]
struct GoodbyeError;

impl fmt::Display for GoodbyeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the peer hung up first")
    }
}

/// Named fields with every struct key and every field attribute.
#[managed_resource(close_timeout = "2s", before_close = Self::say_goodbye, name = "client")]
#[derive(Debug, Default)]
struct Client {
    connection: Connection,
    #[close(timeout = "500ms")]
    backup: Connection,
    #[close(with = hang_up)]
    socket: Socket,
    #[close(with = hang_up_quietly, timeout = "1s")]
    spare: Socket,
    #[close(skip = "plain counters, nothing to release")]
    stats: Stats,
    settings: Settings,
    retries: u32,
    label: String,
    optional: Option<Connection>,
    pool: Vec<Connection>,
    shared: Arc<Connection>,
    r#type: u8,
}

impl Client {
    /// Runs before any field closes.
    async fn say_goodbye(&self) -> Result<(), GoodbyeError> {
        let _previous = self.stats.requests.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn all_closed(&self) -> bool {
        self.connection.is_closed()
            && self.backup.is_closed()
            && self.socket.hung_up.load(Ordering::Relaxed)
            && self.spare.hung_up.load(Ordering::Relaxed)
            && self.optional.as_ref().is_some_and(Connection::is_closed)
            && self.pool.iter().all(Connection::is_closed)
            && self.shared.is_closed()
    }
}

/// A tuple struct: fields are named by index in reports.
#[managed_resource]
#[derive(Debug, Default)]
struct Pair(
    Connection,
    #[close(skip = "an id")] Stats,
    #[close(timeout = "1s")] Connection,
);

/// A generic struct with the bound inline.
#[managed_resource(close_timeout = "1s")]
#[derive(Debug, Default)]
struct Pool<T: Close> {
    members: Vec<T>,
    #[close(timeout = "250ms")]
    primary: T,
}

/// A generic struct with the bound in a `where` clause.
#[managed_resource]
#[derive(Debug, Default)]
struct Cache<T>
where
    T: Close,
{
    inner: T,
}

/// A unit struct: only its hook runs.
#[managed_resource(before_close = Marker::announce)]
#[derive(Debug, Default)]
struct Marker;

impl Marker {
    /// Says goodbye; returns nothing.
    async fn announce(&self) {}
}

/// A unit struct with nothing at all.
#[managed_resource]
#[derive(Debug, Default)]
struct Nothing;

/// Through a renamed runtime path, in a module that imports nothing else of the runtime.
mod renamed {
    use lifecycle_runtime as lc;

    use super::Connection;

    /// A resource whose macro reaches the runtime as `lc`.
    #[lc::managed_resource(crate = "lc", close_timeout = "1500ms", name = "renamed")]
    #[derive(Debug, Default)]
    pub(super) struct Renamed {
        pub(super) connection: Connection,
    }
}

use renamed::Renamed;

/// Resources nested in one another: each closes its own fields.
#[managed_resource(name = "service")]
#[derive(Debug, Default)]
struct Service {
    client: Client,
    pair: Pair,
    pool: Pool<Connection>,
    cache: Cache<Settings>,
    marker: Marker,
    nothing: Nothing,
    renamed: Renamed,
}

/// Builds a service with one of everything and closes it.
async fn close_everything() -> Service {
    let service = Service {
        client: Client {
            optional: Some(Connection::default()),
            pool: vec![Connection::default(), Connection::default()],
            settings: Settings { retries: 3 },
            retries: 3,
            label: "primary".to_owned(),
            ..Client::default()
        },
        ..Service::default()
    };
    let closed = service.close().await;
    assert!(closed.is_ok(), "{closed:?}");
    service
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let service = runtime.block_on(close_everything());
    assert!(service.client.all_closed());
    assert_eq!(service.client.stats.requests.load(Ordering::Relaxed), 1);
    assert_eq!(service.client.settings.retries, 3);
    assert_eq!(service.client.close_name(), "client");
    assert_eq!(service.renamed.close_name(), "renamed");
    assert_eq!(service.pair.close_name(), "Pair");
    assert!(service.pair.0.is_closed() && service.pair.2.is_closed());
    assert_eq!(service.pair.1.requests.load(Ordering::Relaxed), 0);
    assert!(service.pool.primary.is_closed());
    assert!(service.renamed.connection.is_closed());
    assert!(service.client.close_timeout() > Duration::from_secs(2));
}

/// Under `tests/pass_lints.rs` the program runs as a test.
#[test]
fn closes_every_field() {
    main();
}
