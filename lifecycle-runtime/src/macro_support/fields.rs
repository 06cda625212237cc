//! What `#[managed_resource]` expands to: close a struct's fields one by one, in declaration
//! order, each under its own timeout, best effort, recording one report entry per field.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::report::Outcome;
use crate::resources::fields::{self, FieldRecord};
use crate::resources::{Close, CloseError, close_outcome};
use crate::util::display_guarded;
use crate::util::{CatchUnwind, format_duration};

/// What a field's close (or a `before_close` hook) may return: `()` or `Result<(), E: Display>`.
#[diagnostic::on_unimplemented(
    message = "a `#[managed_resource]` close function must return `()` or `Result<(), E>` where `E: Display`, not `{Self}`",
    label = "returns `{Self}`"
)]
pub trait IntoCloseResult {
    /// `Err` carries the error as displayed.
    fn into_close_result(self) -> Result<(), String>;
}

impl IntoCloseResult for () {
    fn into_close_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> IntoCloseResult for Result<(), E> {
    fn into_close_result(self) -> Result<(), String> {
        self.map_err(|error| display_guarded(&error))
    }
}

/// Closes the fields of one `#[managed_resource]` value.
#[derive(Debug)]
pub struct ClosingFields {
    resource: &'static str,
    path: Vec<String>,
    failures: Vec<String>,
}

impl ClosingFields {
    /// Starts closing `resource` (its name in reports).
    pub fn new(resource: &'static str) -> ClosingFields {
        ClosingFields {
            resource,
            path: fields::current_path(),
            failures: Vec::new(),
        }
    }

    /// Runs the `before_close` hook under `limit`.
    pub async fn before_close<F>(&mut self, limit: Duration, hook: F)
    where
        F: Future,
        F::Output: IntoCloseResult,
    {
        self.run("before_close", limit, hook).await;
    }

    /// Closes one field under `limit`. A failure is recorded and the next field still closes.
    pub async fn field<F>(&mut self, name: &'static str, limit: Duration, close: F)
    where
        F: Future,
        F::Output: IntoCloseResult,
    {
        let mut path = self.path.clone();
        path.push(name.to_owned());
        fields::with_path(path, self.run(name, limit, close)).await;
    }

    /// A field marked `#[close(skip = "why")]`: listed, with its reason, and not touched.
    pub fn skipped(&mut self, name: &'static str, reason: &'static str) {
        self.record(
            name,
            Outcome::Closed,
            Some(format!("no cleanup: {reason}")),
            Instant::now(),
            Duration::ZERO,
        );
    }

    /// `Ok` when every field closed; otherwise an error naming each failed field.
    pub fn finish(self) -> Result<(), CloseError> {
        if self.failures.is_empty() {
            Ok(())
        } else {
            Err(format!("{}: {}", self.resource, self.failures.join("; ")).into())
        }
    }

    async fn run<F>(&mut self, name: &'static str, limit: Duration, close: F)
    where
        F: Future,
        F::Output: IntoCloseResult,
    {
        let start = Instant::now();
        let closing = CatchUnwind::new(async { close.await.into_close_result() });
        let ended = tokio::time::timeout(limit, closing).await;
        let elapsed = start.elapsed();
        let (outcome, detail) = close_outcome(ended, limit, limit);
        match &outcome {
            Outcome::Closed => {}
            Outcome::Error(message) => self.failures.push(format!("field `{name}`: {message}")),
            Outcome::Panicked => self.failures.push(format!(
                "field `{name}` panicked: {}",
                detail.as_deref().unwrap_or_default()
            )),
            _ => self.failures.push(format!(
                "field `{name}` did not close within {}",
                format_duration(limit)
            )),
        }
        self.record(name, outcome, detail, start, elapsed);
    }

    fn record(
        &self,
        name: &'static str,
        outcome: Outcome,
        detail: Option<String>,
        start: Instant,
        elapsed: Duration,
    ) {
        let record = FieldRecord {
            path: self.path.clone(),
            name: name.to_owned(),
            outcome,
            detail,
            start,
            elapsed,
        };
        fields::record(record);
    }
}

/// The time a resource may take to close when each of its fields has a limit: all of them, and a
/// moment for the bookkeeping, so a field's own timeout always fires before its resource's. The
/// sum saturates: a field without a limit (`Duration::MAX`) gives the resource none.
pub const fn resource_timeout(field_limits: &[Duration]) -> Duration {
    let mut total = Duration::from_millis(250);
    let mut index = 0;
    while index < field_limits.len() {
        total = total.saturating_add(field_limits[index]);
        index += 1;
    }
    total
}

/// A field's close, boxed: a concrete type for the code `#[managed_resource]` generates.
pub type CloseFuture<'a> =
    std::pin::Pin<Box<dyn Future<Output = Result<(), CloseError>> + Send + 'a>>;

/// Boxes `value`'s close.
pub fn close_boxed<T: Close>(value: &T) -> CloseFuture<'_> {
    // `close()` is called at the first poll, inside the field's panic guard.
    Box::pin(async move { value.close().await })
}

/// What `#[close(with = path)]` and `before_close = path` call: an async fn of the value that
/// returns `()` or `Result<(), E: Display>`.
#[diagnostic::on_unimplemented(
    message = "`#[close(with = ...)]` and `before_close = ...` take an `async fn(&T)` returning `()` or `Result<(), E>` where `E: Display`; this gives `{Self}`",
    label = "not an async fn of the right kind",
    note = "write `async fn close_writer(writer: &Writer) -> std::io::Result<()> {{ ... }}` and `#[close(with = close_writer)]`"
)]
pub trait CloseWith: Send {
    /// Runs it, turning its result into text on failure.
    fn into_close(self) -> impl Future<Output = Result<(), String>> + Send;
}

#[diagnostic::do_not_recommend]
impl<F> CloseWith for F
where
    F: Future + Send,
    F::Output: IntoCloseResult,
{
    async fn into_close(self) -> Result<(), String> {
        self.await.into_close_result()
    }
}

/// The future `with`/`before_close` give, with a concrete type so a wrong one is one error.
pub type HookFuture<'a> = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Boxes a `with`/`before_close` call.
pub fn close_with<'a, F: CloseWith + 'a>(hook: F) -> HookFuture<'a> {
    Box::pin(hook.into_close())
}
