//! Resources: the [`Close`] trait, [`manage`] and the registry that closes them in reverse
//! registration order at shutdown.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use slab::Slab;

use crate::coordinator::{Coordinator, Inner, lock, with_current};
use crate::panic::CatchUnwind;
use crate::report::{Entry, EntryKind, Outcome, format_duration};

/// The error a [`Close`] implementation returns.
pub type CloseError = Box<dyn std::error::Error + Send + Sync>;

/// How long a resource's close may take when it says nothing else.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Something that must be released at shutdown: flush buffers, say goodbye to peers, return
/// connections.
///
/// Implement the one async method; the coordinator calls it under a timeout, contains panics and
/// errors, and reports the outcome. `close` takes `&self` because shared handles are closed
/// through a reference; make it idempotent.
///
/// ```
/// use lifecycle_runtime::{Close, CloseError};
///
/// struct Client;
///
/// impl Client {
///     async fn bye(&self) -> std::io::Result<()> {
///         Ok(())
///     }
/// }
///
/// impl Close for Client {
///     async fn close(&self) -> Result<(), CloseError> {
///         self.bye().await?;
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `Close`, so nothing knows how to release it at shutdown",
    label = "`{Self}` has no `Close` implementation",
    note = "implement `lifecycle_runtime::Close` for `{Self}` (one async method), or, if it holds nothing to release, opt in with `impl lifecycle_runtime::NoCleanup for {Self} {{}}`",
    note = "on a `#[managed_resource]` field, `#[close(with = path)]` closes it with your own `async fn(&T)`, and `#[close(skip = \"why\")]` says it needs no cleanup"
)]
pub trait Close: Send + Sync {
    /// Releases the resource.
    fn close(&self) -> impl Future<Output = Result<(), CloseError>> + Send;

    /// How long the coordinator waits for [`close`](Close::close) when this value is managed.
    /// Default: [`DEFAULT_CLOSE_TIMEOUT`].
    fn close_timeout(&self) -> Duration {
        DEFAULT_CLOSE_TIMEOUT
    }

    /// The name under which the report lists this value when it is managed. Default: the last
    /// segment of the type's name.
    fn close_name(&self) -> Cow<'static, str> {
        Cow::Borrowed(short_type_name(std::any::type_name::<Self>()))
    }
}

/// Marks a type that holds nothing to release: it then implements [`Close`] as a no-op, so it can
/// be a `#[managed_resource]` field without `#[close(skip = "...")]`.
///
/// Implemented for plain std values (numbers, `bool`, `char`, `String`, `Duration`, `PathBuf`,
/// addresses, ...). Your own plain types opt in with one line:
///
/// ```
/// #[derive(Clone, Debug)]
/// struct Config {
///     retries: u32,
/// }
///
/// impl lifecycle_runtime::NoCleanup for Config {}
///
/// # async fn check() {
/// use lifecycle_runtime::Close;
/// assert!(Config { retries: 3 }.close().await.is_ok());
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `Close`, so nothing knows how to release it at shutdown",
    label = "`{Self}` has no `Close` implementation",
    note = "implement `lifecycle_runtime::Close` for `{Self}` (one async method), or, if it holds nothing to release, opt in with `impl lifecycle_runtime::NoCleanup for {Self} {{}}`",
    note = "on a `#[managed_resource]` field, `#[close(with = path)]` closes it with your own `async fn(&T)`, and `#[close(skip = \"why\")]` says it needs no cleanup"
)]
pub trait NoCleanup: Send + Sync {}

// Not offered as the fix when `Close` is missing: the message of `Close` itself names all three.
#[diagnostic::do_not_recommend]
impl<T: NoCleanup> Close for T {
    async fn close(&self) -> Result<(), CloseError> {
        Ok(())
    }
}

macro_rules! no_cleanup {
    ($($ty:ty),* $(,)?) => {
        $(impl NoCleanup for $ty {})*
    };
}

no_cleanup!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    &'static str,
    Box<str>,
    Cow<'static, str>,
    Duration,
    std::time::Instant,
    std::time::SystemTime,
    std::path::PathBuf,
    std::ffi::OsString,
    std::net::IpAddr,
    std::net::Ipv4Addr,
    std::net::Ipv6Addr,
    std::net::SocketAddr,
    std::num::NonZeroU32,
    std::num::NonZeroU64,
    std::num::NonZeroUsize,
);

/// Closes the value if there is one.
impl<T: Close> Close for Option<T> {
    async fn close(&self) -> Result<(), CloseError> {
        match self {
            Some(value) => value.close().await,
            None => Ok(()),
        }
    }
}

/// Closes every element in order, all of them even when some fail; the error names the failed
/// indexes.
impl<T: Close> Close for Vec<T> {
    async fn close(&self) -> Result<(), CloseError> {
        let mut failures = Vec::new();
        for (index, value) in self.iter().enumerate() {
            if let Err(error) = value.close().await {
                failures.push(format!("[{index}]: {error}"));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; ").into())
        }
    }
}

/// Closes the shared value (make its `close` idempotent: every clone closes it).
impl<T: Close + ?Sized> Close for Arc<T> {
    async fn close(&self) -> Result<(), CloseError> {
        (**self).close().await
    }
}

/// Cancels the token.
impl Close for tokio_util::sync::CancellationToken {
    async fn close(&self) -> Result<(), CloseError> {
        self.cancel();
        Ok(())
    }
}

/// Aborts the task and waits (up to the close timeout) until it is gone.
impl<T: Send + 'static> Close for tokio::task::JoinHandle<T> {
    async fn close(&self) -> Result<(), CloseError> {
        self.abort();
        wait_until_finished(|| self.is_finished()).await;
        Ok(())
    }
}

/// Waits for a task to be gone after an abort. Abort takes effect at the task's next poll, so this
/// is a few milliseconds; the caller's timeout bounds it. (A `&self` cannot await a `JoinHandle`
/// without consuming its output, hence the short poll.)
pub(crate) async fn wait_until_finished(finished: impl Fn() -> bool) {
    let mut pause = Duration::from_micros(100);
    while !finished() {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// `my_crate::store::Store<u8>` → `Store<u8>`.
pub(crate) fn short_type_name(full: &'static str) -> &'static str {
    let generic_start = full.find('<').unwrap_or(full.len());
    match full[..generic_start].rfind("::") {
        Some(at) => &full[at + 2..],
        None => full,
    }
}

/// A [`Close`] that can live behind `dyn`, for the registry.
pub(crate) trait DynClose: Send + Sync {
    /// The value's close. The value's own `close()` is called at the first poll, so that a panic
    /// in the code that builds its future is caught with the rest.
    fn close_boxed(&self) -> Pin<Box<dyn Future<Output = Result<(), CloseError>> + Send + '_>>;
    fn state(&self) -> &CloseState;
}

const OPEN: u8 = 0;
const CLOSING: u8 = 1;
const CLOSED: u8 = 2;

/// Who closes a resource, and how it went: one close at a time, through the handle or by
/// shutdown. A close that is cancelled gives the resource back (open, still registered), so
/// shutdown closes it; one under way when shutdown reaches it is waited for.
pub(crate) struct CloseState {
    state: AtomicU8,
    /// Woken when a close finishes or gives the resource back.
    changed: Notify,
    /// How the close through the handle went, for the report when shutdown waited for it.
    outcome: Mutex<Option<(Outcome, Option<String>)>>,
}

impl CloseState {
    fn new() -> CloseState {
        CloseState {
            state: AtomicU8::new(OPEN),
            changed: Notify::new(),
            outcome: Mutex::new(None),
        }
    }

    fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) == OPEN
    }

    fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) == CLOSED
    }

    /// Claims the close: `Some` for the one caller that gets to close it now.
    fn claim(&self) -> Option<ClaimGuard<'_>> {
        self.state
            .compare_exchange(OPEN, CLOSING, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| ClaimGuard { state: self })
    }

    /// Waits while someone else is closing it.
    async fn while_closing(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.state.load(Ordering::Acquire) != CLOSING {
                return;
            }
            changed.await;
        }
    }
}

/// Held while closing: gives the resource back if the close is cancelled before it finished.
struct ClaimGuard<'a> {
    state: &'a CloseState,
}

impl ClaimGuard<'_> {
    fn finish(self, outcome: (Outcome, Option<String>)) {
        *lock(&self.state.outcome) = Some(outcome);
        self.state.state.store(CLOSED, Ordering::Release);
        self.state.changed.notify_waiters();
        std::mem::forget(self);
    }
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        // Cancelled mid-close: it is not closed, so it stays registered and open for the next
        // close (shutdown's, at the latest). `Close` impls are idempotent, so starting over is
        // safe.
        self.state.state.store(OPEN, Ordering::Release);
        self.state.changed.notify_waiters();
    }
}

/// How a close ran under `limit`, for the report; `own` is the resource's own close timeout.
fn judge(
    ended: Result<Result<Result<(), CloseError>, String>, tokio::time::error::Elapsed>,
    limit: Duration,
    own: Duration,
) -> (Outcome, Option<String>) {
    match ended {
        Ok(Ok(Ok(()))) => (Outcome::Closed, None),
        Ok(Ok(Err(error))) => (Outcome::Error(error.to_string()), None),
        Ok(Err(panic)) => (Outcome::Panicked, Some(panic)),
        Err(_) if limit < own => (
            Outcome::TimedOut,
            Some(format!(
                "cut off after {} by the shutdown budget (its own limit is {})",
                format_duration(limit),
                format_duration(own)
            )),
        ),
        Err(_) => (
            Outcome::TimedOut,
            Some(format!("did not close within {}", format_duration(limit))),
        ),
    }
}

struct ManagedInner<T> {
    value: T,
    name: Cow<'static, str>,
    timeout: Duration,
    close: CloseState,
    registration: Mutex<Option<(Weak<Inner>, usize)>>,
}

impl<T: Close> DynClose for ManagedInner<T> {
    fn close_boxed(&self) -> Pin<Box<dyn Future<Output = Result<(), CloseError>> + Send + '_>> {
        Box::pin(async move { self.value.close().await })
    }

    fn state(&self) -> &CloseState {
        &self.close
    }
}

/// A resource registered with a coordinator, which keeps it alive until it closes it.
///
/// A cheap [`Clone`] handle that dereferences to the value. Resources close in reverse
/// registration order at shutdown (later resources depend on earlier ones);
/// [`close`](Managed::close) closes one early, once.
///
/// ```
/// use lifecycle_runtime::{Close, CloseError};
///
/// struct Pool;
/// impl Close for Pool {
///     async fn close(&self) -> Result<(), CloseError> {
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let coordinator = lifecycle_runtime::Coordinator::new();
/// let report = coordinator
///     .scope(async {
///         let pool = lifecycle_runtime::manage(Pool);
///         let _shared = pool.clone();
///         lifecycle_runtime::shutdown().await
///     })
///     .await;
/// assert_eq!(report.entries()[0].name(), "Pool");
/// # }
/// ```
pub struct Managed<T: Close + 'static> {
    inner: Arc<ManagedInner<T>>,
}

impl<T: Close + 'static> Clone for Managed<T> {
    fn clone(&self) -> Self {
        Managed {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Close + 'static> Deref for Managed<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner.value
    }
}

impl<T: Close + fmt::Debug + 'static> fmt::Debug for Managed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Managed")
            .field("name", &self.inner.name)
            .field("closed", &self.is_closed())
            .field("value", &self.inner.value)
            .finish()
    }
}

impl<T: Close + 'static> Managed<T> {
    /// The name the report uses.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether the value has been closed (or is closing right now).
    pub fn is_closed(&self) -> bool {
        !self.inner.close.is_open()
    }

    /// Closes the resource now, under its timeout, and then unregisters it so shutdown skips it.
    ///
    /// Idempotent: once it is closed, later calls (and shutdown) do nothing and return `Ok(())`;
    /// a call made while another close is under way waits for that one. If this future is dropped
    /// before the close finished (a `select!`, a timeout, an aborted task), the resource counts as
    /// open again and stays registered, so shutdown still closes it.
    pub async fn close(&self) -> Result<(), CloseError> {
        let claim = loop {
            if let Some(claim) = self.inner.close.claim() {
                break claim;
            }
            if self.inner.close.is_closed() {
                return Ok(());
            }
            self.inner.close.while_closing().await;
        };
        let limit = self.inner.timeout;
        let closing = CatchUnwind::new(async { self.inner.value.close().await });
        let ended = tokio::time::timeout(limit, closing).await;
        let (outcome, detail) = judge(ended, limit, limit);
        let result = match &outcome {
            Outcome::Closed => Ok(()),
            Outcome::Error(error) => Err(error.clone().into()),
            // Panicked or timed out (`judge` gives nothing else); the detail says more.
            other => {
                let how = if *other == Outcome::Panicked {
                    "panicked"
                } else {
                    "timed out"
                };
                let detail = detail.as_deref().unwrap_or_default();
                Err(format!("close of `{}` {how}: {detail}", self.inner.name).into())
            }
        };
        claim.finish((outcome, detail));
        let registration = lock(&self.inner.registration).take();
        if let Some((coordinator, key)) = registration {
            if let Some(coordinator) = coordinator.upgrade() {
                let this: Arc<dyn DynClose> = self.inner.clone();
                lock(&coordinator.resources).remove(key, &this);
            }
        }
        result
    }
}

impl<T: Close + 'static> Close for Managed<T> {
    async fn close(&self) -> Result<(), CloseError> {
        Managed::close(self).await
    }

    fn close_timeout(&self) -> Duration {
        self.inner.timeout
    }

    fn close_name(&self) -> Cow<'static, str> {
        self.inner.name.clone()
    }
}

/// Registers `value` with the current coordinator and returns a shared handle to it.
///
/// At shutdown, after every task and thread has stopped, resources close in reverse registration
/// order, each under its [`Close::close_timeout`], and each gets an entry in the report.
///
/// ```
/// use lifecycle_runtime::{Close, CloseError};
///
/// struct Cache;
/// impl Close for Cache {
///     async fn close(&self) -> Result<(), CloseError> {
///         Ok(())
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// # lifecycle_runtime::Coordinator::new().scope(async {
/// let cache = lifecycle_runtime::manage(Cache);
/// cache.close().await.unwrap(); // early close: shutdown will skip it
/// assert!(cache.is_closed());
/// # }).await;
/// # }
/// ```
pub fn manage<T: Close + 'static>(value: T) -> Managed<T> {
    with_current(|coordinator| coordinator.manage(value))
}

impl Coordinator {
    /// Registers `value` with this coordinator; see [`manage`].
    pub fn manage<T: Close + 'static>(&self, value: T) -> Managed<T> {
        let inner = Arc::new(ManagedInner {
            name: value.close_name(),
            timeout: value.close_timeout(),
            value,
            close: CloseState::new(),
            registration: Mutex::new(None),
        });
        // Subprocesses are listed as such in the report.
        let kind = if std::any::TypeId::of::<T>()
            == std::any::TypeId::of::<crate::process::ManagedChild>()
        {
            EntryKind::Process
        } else {
            EntryKind::Resource
        };
        let key = lock(&self.inner.resources).insert(
            inner.name.clone(),
            kind,
            inner.timeout,
            inner.clone(),
        );
        *lock(&inner.registration) = Some((Arc::downgrade(&self.inner), key));
        if self.phase() >= crate::coordinator::Phase::Closing {
            tracing::warn!(resource = %inner.name, "resource registered after shutdown closed resources; it will not be closed");
        }
        Managed { inner }
    }
}

/// One registered resource.
pub(crate) struct ResourceEntry {
    seq: u64,
    pub(crate) name: Cow<'static, str>,
    kind: EntryKind,
    timeout: Duration,
    resource: Arc<dyn DynClose>,
}

/// Resources by key; closing order comes from `seq`.
#[derive(Default)]
pub(crate) struct ResourceRegistry {
    slab: Slab<ResourceEntry>,
    next_seq: u64,
}

impl ResourceRegistry {
    fn insert(
        &mut self,
        name: Cow<'static, str>,
        kind: EntryKind,
        timeout: Duration,
        resource: Arc<dyn DynClose>,
    ) -> usize {
        self.next_seq += 1;
        self.slab.insert(ResourceEntry {
            seq: self.next_seq,
            name,
            kind,
            timeout,
            resource,
        })
    }

    /// Removes `resource` if it is still registered under `key` (after shutdown emptied the
    /// registry, the key may belong to another resource).
    fn remove(&mut self, key: usize, resource: &Arc<dyn DynClose>) {
        let same = self.slab.get(key).is_some_and(|entry| {
            std::ptr::addr_eq(Arc::as_ptr(&entry.resource), Arc::as_ptr(resource))
        });
        if same {
            self.slab.remove(key);
        }
    }

    pub(crate) fn open_names(&self) -> Vec<String> {
        let mut entries: Vec<&ResourceEntry> = self.slab.iter().map(|(_, entry)| entry).collect();
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.seq));
        entries
            .into_iter()
            .map(|entry| entry.name.to_string())
            .collect()
    }

    /// Empties the registry, newest first.
    pub(crate) fn take_for_shutdown(&mut self) -> Vec<ResourceEntry> {
        let mut entries: Vec<ResourceEntry> = self.slab.drain().collect();
        entries.sort_by_key(|entry| std::cmp::Reverse(entry.seq));
        entries
    }
}

impl ResourceEntry {
    /// Shutdown skipped it: nobody closes it any more.
    pub(crate) fn mark_skipped(&self) {
        if let Some(claim) = self.resource.state().claim() {
            claim.finish((Outcome::Skipped, None));
        }
    }

    /// Closes under `min(own timeout, what is left of the budget)`; returns the resource's entry
    /// followed by its fields' entries. A close through the handle that is under way is waited
    /// for (within the same limit) and reported; if it gives up, shutdown closes it itself.
    pub(crate) async fn close_for_shutdown(
        &self,
        deadline: Instant,
        sequence_start: Instant,
    ) -> Vec<Entry> {
        let start = Instant::now();
        let limit = self.timeout.min(deadline.saturating_duration_since(start));
        let until = crate::coordinator::after(start, limit);
        let state = self.resource.state();
        let entry = |outcome: Outcome, detail: Option<String>| {
            Entry::new(
                &self.name,
                self.kind,
                outcome,
                start.saturating_duration_since(sequence_start),
                start.elapsed(),
            )
            .with_detail(detail)
        };
        let claim = loop {
            if let Some(claim) = state.claim() {
                break claim;
            }
            if state.is_closed() {
                // Closed through its handle while shutdown was under way.
                return match lock(&state.outcome).clone() {
                    Some((outcome, detail)) => {
                        let note = "closed through its handle during shutdown";
                        let detail = Some(match detail {
                            Some(detail) => format!("{note}: {detail}"),
                            None => note.to_owned(),
                        });
                        vec![entry(outcome, detail)]
                    }
                    None => Vec::new(),
                };
            }
            if tokio::time::timeout_at(until, state.while_closing())
                .await
                .is_err()
            {
                let detail = format!(
                    "a close through its handle was still under way after {}",
                    format_duration(limit)
                );
                tracing::error!(resource = %self.name, "{detail}");
                return vec![entry(Outcome::TimedOut, Some(detail))];
            }
        };
        let sink = FieldSink::default();
        let closing = CatchUnwind::new(self.resource.close_boxed());
        let ended = FIELDS
            .scope(sink.clone(), tokio::time::timeout_at(until, closing))
            .await;
        let (outcome, detail) = judge(ended, limit, self.timeout);
        claim.finish((outcome.clone(), detail.clone()));
        match &outcome {
            Outcome::Closed => {
                tracing::debug!(resource = %self.name, elapsed = ?start.elapsed(), "resource closed")
            }
            other => {
                tracing::error!(resource = %self.name, outcome = ?other, detail = ?detail, "resource did not close cleanly")
            }
        }
        let mut entries = vec![entry(outcome, detail)];
        entries.extend(sink.take(sequence_start, &self.name));
        entries
    }
}

/// Where `#[managed_resource]` fields record their outcome while their resource closes.
#[derive(Clone, Default)]
pub(crate) struct FieldSink(Arc<Mutex<Vec<FieldRecord>>>);

pub(crate) struct FieldRecord {
    pub(crate) path: Vec<String>,
    pub(crate) name: String,
    pub(crate) outcome: Outcome,
    pub(crate) detail: Option<String>,
    pub(crate) start: Instant,
    pub(crate) elapsed: Duration,
}

impl FieldSink {
    pub(crate) fn push(&self, record: FieldRecord) {
        lock(&self.0).push(record);
    }

    fn take(&self, sequence_start: Instant, resource: &str) -> Vec<Entry> {
        let records = std::mem::take(&mut *lock(&self.0));
        records
            .into_iter()
            .map(|record| {
                let mut parent = resource.to_owned();
                for segment in &record.path {
                    parent.push('.');
                    parent.push_str(segment);
                }
                Entry::new(
                    record.name,
                    EntryKind::Field,
                    record.outcome,
                    record.start.saturating_duration_since(sequence_start),
                    record.elapsed,
                )
                .with_detail(record.detail)
                .with_parent(Some(parent))
            })
            .collect()
    }
}

tokio::task_local! {
    pub(crate) static FIELDS: FieldSink;
}

#[cfg(test)]
mod tests {
    use super::short_type_name;

    #[test]
    fn short_type_names_drop_the_path() {
        assert_eq!(short_type_name("my_crate::store::Store"), "Store");
        assert_eq!(
            short_type_name("my_crate::Wrapper<alloc::string::String>"),
            "Wrapper<alloc::string::String>"
        );
        assert_eq!(short_type_name("u8"), "u8");
    }
}
