//! Everything the macros' expansions call, behind `lifecycle_runtime::__private`: the ticker of
//! `#[background]` (`background.rs`) and the supervision of its services (`restart.rs`), the runner of `#[main]` and `#[test]` (`runner.rs`), the
//! field-by-field close of `#[managed_resource]` (`fields.rs`), the return-type check of
//! `#[timeout]` (`timeout.rs`), and every default value an expansion names. None of it is public
//! API: names and signatures may change in any release.

mod background;
mod fields;
mod restart;
mod runner;
mod timeout;

pub use crate::report::ReportFormat;
pub use background::{
    BackgroundSpec, MissedTick, ShutdownMode, ThreadTicker, TickResult, Ticker, spawn_background,
    spawn_background_thread, spawn_supervised, spawn_supervised_thread,
};
pub use core::time::Duration;
pub use fields::{
    CloseFuture, CloseWith, ClosingFields, HookFuture, IntoCloseResult, close_boxed, close_with,
    resource_timeout,
};
pub use restart::{Restart, RestartSpec};
pub use runner::{Flavor, MainOutput, MainSpec, TestSpec, run_main, run_test};
pub use std::borrow::Cow;
pub use timeout::{TimeoutResult, returning};

/// `stop_timeout` of a `#[background]` task that writes none.
pub const DEFAULT_STOP_TIMEOUT: Duration = crate::defaults::DEFAULT_STOP_TIMEOUT;
/// `stop_timeout` of the body of `#[main]` when it writes none.
pub const DEFAULT_MAIN_STOP_TIMEOUT: Duration = crate::defaults::DEFAULT_MAIN_STOP_TIMEOUT;
/// `close_timeout` of a `#[managed_resource]` (and each field) that writes none.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = crate::defaults::DEFAULT_CLOSE_TIMEOUT;
/// `missed_tick` of a `#[background]` loop that writes none.
pub const DEFAULT_MISSED_TICK: MissedTick = MissedTick::Skip;
/// `max_restarts` of a supervised `#[background]` service that writes none: at most this many
/// restarts within [`DEFAULT_RESTART_PERIOD`].
pub const DEFAULT_MAX_RESTARTS: u32 = crate::defaults::DEFAULT_MAX_RESTARTS;
/// The period of `max_restarts` when it is not written.
pub const DEFAULT_RESTART_PERIOD: Duration = crate::defaults::DEFAULT_RESTART_PERIOD;
