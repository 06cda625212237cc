//! A `#[managed_resource]` registered with a coordinator: shutdown closes it and the report lists
//! the resource and each of its fields, in declaration order, all clean.
//!
//! Also included by `tests/pass_lints.rs`, so clippy lints it too.

#![deny(warnings)]
#![deny(
    unused_qualifications,
    unused_extern_crates,
    unused_results,
    trivial_casts
)]

use lifecycle_runtime::{Close, CloseError, Coordinator, EntryKind, Outcome, managed_resource};

/// A connection to some server.
#[derive(Debug)]
struct Connection;

impl Close for Connection {
    async fn close(&self) -> Result<(), CloseError> {
        tokio::task::yield_now().await;
        Ok(())
    }
}

/// Flushes its buffer, then closes its connections in order.
#[managed_resource(before_close = Self::flush, close_timeout = "1s", name = "store")]
#[derive(Debug)]
struct Store {
    primary: Connection,
    #[close(timeout = "500ms")]
    replica: Connection,
    #[close(skip = "plain data")]
    buffer: Vec<u8>,
}

impl Store {
    /// Writes what the buffer holds.
    async fn flush(&self) -> Result<(), std::io::Error> {
        let _bytes = self.buffer.len();
        Ok(())
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let coordinator = Coordinator::builder().scan_os_threads(false).build();
    let report = runtime.block_on(coordinator.scope(async {
        let store = lifecycle_runtime::manage(Store {
            primary: Connection,
            replica: Connection,
            buffer: vec![1, 2, 3],
        });
        assert_eq!(store.name(), "store");
        lifecycle_runtime::shutdown().await
    }));
    assert!(report.is_clean(), "{report}");
    let resource = report.entry("store").expect("the resource's entry");
    assert_eq!(resource.kind(), EntryKind::Resource);
    assert_eq!(resource.outcome(), &Outcome::Closed);
    let fields: Vec<(&str, Option<&str>)> = report
        .entries()
        .iter()
        .filter(|entry| entry.kind() == EntryKind::Field)
        .map(|entry| (entry.name(), entry.parent()))
        .collect();
    assert_eq!(
        fields,
        [
            ("before_close", Some("store")),
            ("primary", Some("store")),
            ("replica", Some("store")),
            ("buffer", Some("store")),
        ]
    );
    let buffer = report.entry("buffer").expect("the skipped field's entry");
    assert_eq!(buffer.detail(), Some("no cleanup: plain data"));
}

/// Under `tests/pass_lints.rs` the program runs as a test.
#[test]
fn closes_through_the_coordinator() {
    main();
}
