//! A renamed runtime (`crate = "lc"`) with its items imported: the generated code must not trip
//! `unused_qualifications` (it used to, when the renamed path kept the string literal's span).

#![deny(warnings, unused_qualifications)]

use lc::{Close, CloseError, Elapsed, Shutdown, background, managed_resource, timeout};
use lifecycle_runtime as lc;

/// A connection.
#[derive(Debug)]
pub struct Connection;

impl Close for Connection {
    async fn close(&self) -> Result<(), CloseError> {
        Ok(())
    }
}

/// A resource through the renamed crate.
#[managed_resource(crate = "lc")]
#[derive(Debug)]
pub struct Renamed {
    connection: Connection,
}

/// An error that takes a timeout.
#[derive(Debug)]
pub struct Late;

impl From<Elapsed> for Late {
    fn from(_: Elapsed) -> Self {
        Late
    }
}

/// A limited call through the renamed crate.
#[timeout("1s", crate = "lc")]
pub async fn limited() -> Result<u8, Late> {
    Ok(1)
}

/// A service through the renamed crate.
#[background(shutdown, crate = "lc")]
pub async fn service(shutdown: Shutdown) {
    shutdown.triggered().await;
}

fn main() {
    let _ = Renamed {
        connection: Connection,
    };
    let _ = limited;
    let _ = service;
}

#[test]
fn builds_through_the_renamed_crate() {
    main();
}
