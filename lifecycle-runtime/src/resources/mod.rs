//! Resources: what must be released at shutdown. Owns the [`Close`] trait and its impls
//! (`close.rs`), the [`Managed`] handle and its one-close-at-a-time claim (`managed.rs`), the
//! registry that closes resources newest first under their limits (`registry.rs`), the report
//! sink of `#[managed_resource]` fields (`fields.rs`), and subprocesses ([`ManagedChild`],
//! `process.rs`).
//!
//! Nothing here knows the coordinator: it owns a [`Resources`] and asks it.

mod close;
pub(crate) mod fields;
#[cfg(all(test, lifecycle_loom))]
mod loom_tests;
mod managed;
mod process;
mod registry;

pub use close::{Close, CloseError, NoCleanup};
pub use managed::Managed;
pub(crate) use managed::close_outcome;
pub(crate) use process::kill_all_now;
pub use process::{ManagedChild, ManagedChildBuilder};
pub(crate) use registry::{ClosingTask, Resources};
