//! [`Managed<T>`]: a resource registered with a coordinator, and the claim that lets exactly one
//! close run at a time (an early close through the handle, or shutdown's).

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::registry::Resources;
use super::{Close, CloseError};
use crate::report::{EntryKind, Outcome};
use crate::util::sync::{self, AtomicU8, Notify, Ordering};
use crate::util::{CatchUnwind, display_guarded, format_duration, lock};

/// A close's result with its error displayed, as the panic guard hands it over.
pub(crate) type Closed = Result<(), String>;

/// How a close ran, for the report: the one place a close's result (done, an error, a panic, or
/// out of time under `limit`) becomes an [`Outcome`] and its detail. `own` is the resource's own
/// limit: when `limit` is shorter, the budget cut it off.
pub(crate) fn close_outcome(
    ended: Result<Result<Closed, String>, tokio::time::error::Elapsed>,
    limit: Duration,
    own: Duration,
) -> (Outcome, Option<String>) {
    match ended {
        Ok(Ok(Ok(()))) => (Outcome::Closed, None),
        Ok(Ok(Err(error))) => (Outcome::Error(error), None),
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

/// A [`Close`] that can live behind `dyn`, for the registry.
pub(crate) trait DynClose: Send + Sync {
    /// The value's close, its error displayed. The value's own `close()` is called at the first
    /// poll, so that a panic in the code that builds its future is caught with the rest.
    fn close_boxed(&self) -> Pin<Box<dyn Future<Output = Closed> + Send + '_>>;
    fn state(&self) -> &CloseState;
    /// The value's [`Close::unclosed_detail`].
    fn unclosed_detail(&self) -> Option<String>;
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
    /// How the close went, for the report when shutdown waited for one through the handle.
    outcome: sync::Mutex<Option<(Outcome, Option<String>)>>,
}

impl CloseState {
    pub(super) fn new() -> CloseState {
        CloseState {
            state: AtomicU8::new(OPEN),
            changed: Notify::new(),
            outcome: sync::Mutex::new(None),
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) == OPEN
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) == CLOSED
    }

    /// How the finished close went.
    pub(crate) fn outcome(&self) -> Option<(Outcome, Option<String>)> {
        sync::lock(&self.outcome).clone()
    }

    /// Claims the close: `Some` for the one caller that gets to close it now.
    pub(crate) fn claim(&self) -> Option<ClaimGuard<'_>> {
        self.state
            .compare_exchange(OPEN, CLOSING, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| ClaimGuard { state: self })
    }

    /// Claims the close, waiting while someone else closes it: [`Claimed::Mine`] for the one
    /// caller that closes it now, [`Claimed::Closed`] once someone closed it (its outcome is
    /// [`outcome`](Self::outcome)). A close that gives the resource back (cancelled) is waited
    /// out and the claim tried again.
    pub(crate) async fn claim_or_wait(&self) -> Claimed<'_> {
        loop {
            if let Some(claim) = self.claim() {
                return Claimed::Mine(claim);
            }
            if self.is_closed() {
                return Claimed::Closed;
            }
            self.while_closing().await;
        }
    }

    /// Shutdown skips the resource: nobody closes it any more, unless someone already is (then
    /// that close finishes with its own outcome).
    pub(crate) fn mark_skipped(&self) {
        if let Some(claim) = self.claim() {
            claim.finish((Outcome::Skipped, None));
        }
    }

    /// Waits while someone else is closing it.
    pub(crate) async fn while_closing(&self) {
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

/// What [`CloseState::claim_or_wait`] got.
pub(crate) enum Claimed<'a> {
    /// The caller closes it, and finishes the claim with how it went.
    Mine(ClaimGuard<'a>),
    /// Someone else closed it.
    Closed,
}

/// Held while closing: gives the resource back if the close is cancelled before it finished.
pub(crate) struct ClaimGuard<'a> {
    state: &'a CloseState,
}

impl ClaimGuard<'_> {
    pub(crate) fn finish(self, outcome: (Outcome, Option<String>)) {
        *sync::lock(&self.state.outcome) = Some(outcome);
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

struct ManagedInner<T> {
    value: T,
    name: Cow<'static, str>,
    timeout: Duration,
    close: CloseState,
    registration: Mutex<Option<(Weak<Resources>, usize)>>,
}

impl<T: Close> DynClose for ManagedInner<T> {
    fn close_boxed(&self) -> Pin<Box<dyn Future<Output = Closed> + Send + '_>> {
        Box::pin(async move {
            self.value
                .close()
                .await
                .map_err(|error| display_guarded(&error))
        })
    }

    fn state(&self) -> &CloseState {
        &self.close
    }

    fn unclosed_detail(&self) -> Option<String> {
        self.value.unclosed_detail()
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
    /// Registers `value` in `resources`, listed in reports as `kind`.
    pub(crate) fn register(resources: &Arc<Resources>, value: T, kind: EntryKind) -> Managed<T> {
        let inner = Arc::new(ManagedInner {
            name: value.close_name(),
            timeout: value.close_timeout(),
            value,
            close: CloseState::new(),
            registration: Mutex::new(None),
        });
        let key = resources.insert(inner.name.clone(), kind, inner.timeout, inner.clone());
        *lock(&inner.registration) = Some((Arc::downgrade(resources), key));
        Managed { inner }
    }

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
        let Claimed::Mine(claim) = self.inner.close.claim_or_wait().await else {
            return Ok(());
        };
        let limit = self.inner.timeout;
        let closing = CatchUnwind::new(self.inner.close_boxed());
        let ended = tokio::time::timeout(limit, closing).await;
        let (outcome, detail) = close_outcome(ended, limit, limit);
        let result = match &outcome {
            Outcome::Closed => Ok(()),
            Outcome::Error(error) => Err(error.clone().into()),
            // Panicked or timed out (`close_outcome` gives nothing else); the detail says more.
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
        if let Some((resources, key)) = registration
            && let Some(resources) = resources.upgrade()
        {
            let this: Arc<dyn DynClose> = self.inner.clone();
            resources.remove(key, &this);
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

    fn unclosed_detail(&self) -> Option<String> {
        self.inner.value.unclosed_detail()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_result_reads_as_one_outcome() {
        let second = Duration::from_secs(1);
        assert_eq!(
            close_outcome(Ok(Ok(Ok(()))), second, second),
            (Outcome::Closed, None)
        );
        assert_eq!(
            close_outcome(Ok(Ok(Err("refused".into()))), second, second),
            (Outcome::Error("refused".into()), None)
        );
        assert_eq!(
            close_outcome(Ok(Err("boom".into())), second, second),
            (Outcome::Panicked, Some("boom".into()))
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn out_of_time_says_whose_limit_it_was() {
        let elapsed = || async {
            tokio::time::timeout(Duration::ZERO, std::future::pending::<()>())
                .await
                .unwrap_err()
        };
        let (outcome, detail) = close_outcome(
            Err(elapsed().await),
            Duration::from_millis(200),
            Duration::from_secs(3),
        );
        assert_eq!(outcome, Outcome::TimedOut);
        assert_eq!(
            detail.unwrap(),
            "cut off after 200ms by the shutdown budget (its own limit is 3s)"
        );
        let (_, detail) = close_outcome(
            Err(elapsed().await),
            Duration::from_secs(3),
            Duration::from_secs(3),
        );
        assert_eq!(detail.unwrap(), "did not close within 3s");
    }
}
