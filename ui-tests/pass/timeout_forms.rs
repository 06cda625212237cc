//! Every form of `#[timeout]` compiles under strict lints, and limits what it wraps.
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

use std::io;
use std::time::Duration;

use lifecycle_runtime::{Elapsed, timeout};

/// Why a fetch failed.
#[derive(Debug, PartialEq, Eq)]
enum FetchError {
    /// The limit passed.
    TooSlow(String),
    /// The input was wrong.
    BadInput,
}

impl From<Elapsed> for FetchError {
    fn from(elapsed: Elapsed) -> FetchError {
        FetchError::TooSlow(elapsed.to_string())
    }
}

/// The positional form.
#[timeout("1s")]
async fn fetch(id: u32) -> Result<u32, FetchError> {
    Ok(id + 1)
}

/// `duration = "..."`, and a body that runs past it.
#[timeout(duration = "10ms")]
async fn slow() -> Result<(), FetchError> {
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(())
}

/// `name = "..."` names the operation in `Elapsed`.
#[timeout("10ms", name = "load-user")]
async fn load() -> Result<(), FetchError> {
    tokio::time::sleep(Duration::from_secs(60)).await;
    Ok(())
}

/// `io::Result`: `io::Error` already converts from `Elapsed`.
#[timeout("1s")]
async fn read_config(text: &str) -> io::Result<usize> {
    Ok(text.len())
}

/// `?` inside the body, on the fn's own error type and on a converted one.
#[timeout("1s")]
async fn parse(text: &str) -> Result<u32, FetchError> {
    let length = read_length(text)?;
    let number: u32 = text.parse().map_err(|_| FetchError::BadInput)?;
    Ok(number + length)
}

/// A helper that fails with the fn's own error type.
fn read_length(text: &str) -> Result<u32, FetchError> {
    u32::try_from(text.len()).map_err(|_| FetchError::BadInput)
}

/// `?` on an `io::Error` inside an `io::Result` fn.
#[timeout("1s")]
async fn open(text: &str) -> io::Result<u32> {
    let number: u32 = text
        .parse()
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
    Ok(number)
}

/// Through a renamed runtime path, in a module that imports nothing else of the runtime.
mod renamed {
    use lifecycle_runtime as lc;

    use super::FetchError;

    /// Limited through `lc`.
    #[lc::timeout("1s", crate = "lc")]
    pub(super) async fn renamed() -> Result<u8, FetchError> {
        Ok(7)
    }
}

use renamed::renamed;

/// A client whose methods are limited.
#[derive(Debug)]
struct Client {
    base: u32,
}

impl Client {
    /// A method with `&self`.
    #[timeout("1s")]
    async fn get(&self, offset: u32) -> Result<u32, FetchError> {
        Ok(self.base + offset)
    }

    /// A method with `&mut self`, a lifetime and a generic parameter.
    #[timeout("1s", name = "client-put")]
    async fn put<'a, T: AsRef<str>>(&mut self, key: &'a str, value: T) -> io::Result<&'a str> {
        self.base += u32::try_from(value.as_ref().len()).unwrap_or(0);
        Ok(key)
    }
}

/// Calls every form.
async fn call_everything() {
    assert_eq!(fetch(1).await, Ok(2));
    assert_eq!(
        slow().await,
        Err(FetchError::TooSlow(
            "`slow` timed out after 10ms".to_owned()
        ))
    );
    assert_eq!(
        load().await,
        Err(FetchError::TooSlow(
            "`load-user` timed out after 10ms".to_owned()
        ))
    );
    assert_eq!(read_config("abc").await.ok(), Some(3));
    assert_eq!(parse("12").await, Ok(14));
    assert_eq!(parse("x").await, Err(FetchError::BadInput));
    assert_eq!(open("5").await.ok(), Some(5));
    assert!(open("five").await.is_err());
    assert_eq!(renamed().await, Ok(7));
    let mut client = Client { base: 40 };
    assert_eq!(client.get(2).await, Ok(42));
    assert_eq!(client.put("key", "value").await.ok(), Some("key"));
    assert_eq!(client.base, 45);
}

fn main() {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(call_everything());
}

/// Under `tests/pass_lints.rs` the program runs as a test.
#[test]
fn limits_every_form() {
    main();
}
