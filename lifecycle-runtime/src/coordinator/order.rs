//! Declaring a stop order on a coordinator: [`Coordinator::stop_after`] and the spawns that
//! declare one ([`spawn_after`]). The order itself (stages, cycles) is `workers/order.rs`; step 3
//! starts the stages.

use std::future::Future;

use super::{Coordinator, with_current};
use crate::workers::{StopOrderError, TaskHandle, TaskName};

impl Coordinator {
    /// Declares that workers named `name` are told to stop only after every worker named in
    /// `after` has ended (or was cut off at its stop timeout): a batch writer after the HTTP
    /// server that feeds it, a consumer after its producers.
    ///
    /// Names are matched whole, as tasks and threads are named. Workers fall into stages: a name
    /// in no order is in stage 0 (told to stop at the stop signal); a declared name is one stage
    /// after the latest of the names it stops after. A stage is told to stop once nothing of an
    /// earlier stage is left, whatever its names, so a stage-1 writer also outlasts every request
    /// task. Its workers' stop timeouts run from then, within the one budget; when the budget
    /// runs out with a stage still held, every stage is told and cut at once (nothing is left to
    /// give them). The report has a `stage` line for each, saying why it started when it did.
    ///
    /// Declaring again adds to what was declared. A declaration that would close a cycle is
    /// refused as a whole with the cycle named, and changes nothing. Declare before the workers
    /// are spawned: a worker watches the signal of its name's stage from its start (a task's
    /// [`shutdown_signal`](crate::shutdown_signal), a `#[background]` body's `Shutdown`). A
    /// token is bound when it is made: one made *outside* the worker (and moved into it) is the
    /// token of whoever made it, so take it inside. An empty `after` is refused.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::sync::{Arc, Mutex};
    ///
    /// let coordinator = lifecycle_runtime::Coordinator::new();
    /// coordinator.stop_after("consumer", ["producer"]).unwrap();
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// for name in ["consumer", "producer"] {
    ///     let seen = seen.clone();
    ///     coordinator.spawn(name, async move {
    ///         lifecycle_runtime::shutdown_signal().triggered().await;
    ///         seen.lock().unwrap().push(name);
    ///     });
    /// }
    /// # tokio::task::yield_now().await;
    /// let report = coordinator.shutdown().await;
    /// assert!(report.is_clean(), "{report}");
    /// assert_eq!(*seen.lock().unwrap(), ["producer", "consumer"]);
    /// # }
    /// ```
    pub fn stop_after<I>(&self, name: impl AsRef<str>, after: I) -> Result<(), StopOrderError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let after: Vec<String> = after
            .into_iter()
            .map(|name| name.as_ref().to_owned())
            .collect();
        self.workers()
            .order()
            .declare(name.as_ref(), &after)
            .map(drop)
    }

    /// Declares `name` to stop after `after` ([`stop_after`](Self::stop_after)) and spawns the
    /// task ([`spawn`](Self::spawn)). Nothing is spawned when the declaration is refused.
    #[track_caller]
    pub fn spawn_after<F, I>(
        &self,
        name: impl Into<TaskName>,
        after: I,
        fut: F,
    ) -> Result<TaskHandle<F::Output>, StopOrderError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let name = name.into();
        self.stop_after(name.as_str(), after)?;
        Ok(self.spawn(name, fut))
    }
}

/// [`Coordinator::stop_after`] on the current coordinator.
///
/// ```
/// let coordinator = lifecycle_runtime::Coordinator::new();
/// let _guard = coordinator.enter();
/// lifecycle_runtime::stop_after("writer", ["http"]).unwrap();
/// let error = lifecycle_runtime::stop_after("http", ["writer"]).unwrap_err();
/// assert_eq!(error.cycle(), ["http", "writer", "http"]);
/// ```
pub fn stop_after<I>(name: impl AsRef<str>, after: I) -> Result<(), StopOrderError>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    with_current(|coordinator| coordinator.stop_after(name, after))
}

/// [`Coordinator::spawn_after`] on the current coordinator: a tracked task told to stop only
/// after the workers named in `after` ended.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let coordinator = lifecycle_runtime::Coordinator::new();
/// coordinator
///     .scope(async {
///         let writer = lifecycle_runtime::spawn_after("writer", ["http"], async {
///             lifecycle_runtime::shutdown_signal().triggered().await;
///         })
///         .unwrap();
///         drop(writer);
///     })
///     .await;
/// assert!(coordinator.shutdown().await.is_clean());
/// # }
/// ```
#[track_caller]
pub fn spawn_after<F, I>(
    name: impl Into<TaskName>,
    after: I,
    fut: F,
) -> Result<TaskHandle<F::Output>, StopOrderError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    with_current(|coordinator| coordinator.spawn_after(name, after, fut))
}
