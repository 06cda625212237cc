//! Registering resources with a coordinator: [`manage`], subprocesses (`ManagedChild::spawn`,
//! here because it registers with the current coordinator), pools reporting into snapshots, and
//! resources registered too late to be closed.

use std::io;
use std::sync::Weak;

use tokio::process::Command;

use super::{Coordinator, with_current};
use crate::report::EntryKind;
use crate::resources::{Close, Managed, ManagedChild, ManagedChildBuilder};
use crate::snapshot::PoolStats;
use crate::workers::Phase;

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
        self.manage_as(value, EntryKind::Resource)
    }

    /// Registers `value`, listed in reports as `kind`.
    fn manage_as<T: Close + 'static>(&self, value: T, kind: EntryKind) -> Managed<T> {
        let managed = Managed::register(&self.state.resources, value, kind);
        match self.phase() {
            Phase::Closing => {
                tracing::info!(resource = %managed.name(), "resource registered while shutdown closes resources: it closes after them");
            }
            Phase::Done => {
                tracing::warn!(resource = %managed.name(), "resource registered after shutdown finished: it will not be closed");
            }
            _ => {}
        }
        managed
    }

    /// Adds a pool to snapshots (it is dropped from them when it goes away).
    #[allow(dead_code, reason = "used by the database layer, behind its features")]
    pub(crate) fn add_pool_stats(&self, pool: Weak<dyn PoolStats>) {
        self.state.pools.add(pool);
    }
}

impl ManagedChildBuilder {
    /// Starts the process in a new process group and registers it with the current coordinator.
    /// Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// When the process cannot start; the error names the child.
    pub fn spawn(self) -> io::Result<Managed<ManagedChild>> {
        let child = self.start()?;
        Ok(with_current(|coordinator| {
            coordinator.manage_as(child, EntryKind::Process)
        }))
    }
}

impl ManagedChild {
    /// Starts `command` as a managed child named `name`, with the default term timeout.
    ///
    /// # Errors
    ///
    /// When the process cannot start; the error names the child.
    pub fn spawn(name: impl Into<String>, command: Command) -> io::Result<Managed<ManagedChild>> {
        ManagedChild::builder(name, command).spawn()
    }
}
