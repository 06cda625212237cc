//! Attribute macros of `lifecycle-runtime`. Depend on `lifecycle-runtime`, which re-exports them;
//! their documentation lives there.
//!
//! This file holds only the `#[proc_macro_attribute]` entry points. Each attribute's module owns
//! its arguments, its checks and its expansion (`background`, `managed_resource`, `entry` for
//! `main` and `test`, `timeout`); what they share lives in `args`.

mod args;
mod background;
mod entry;
#[cfg(test)]
mod fuzz;
mod managed_resource;
mod timeout;

use proc_macro::TokenStream;

/// Turns an async fn into a tracked, shutdown-aware loop or service (or, with `thread`, a plain fn
/// into one on a named OS thread); with `restart` (and `max_restarts = "N/PERIOD"`), a service is
/// supervised: run again when it fails, up to a limit. See `lifecycle_runtime::background` for
/// every key.
#[proc_macro_attribute]
pub fn background(args: TokenStream, item: TokenStream) -> TokenStream {
    background::expand(args.into(), item.into()).into()
}

/// Runs `async fn main` under the shutdown coordinator. See `lifecycle_runtime::main`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::expand_main(args.into(), item.into()).into()
}

/// Gives a struct an ordered, time-limited `Close`. See `lifecycle_runtime::managed_resource`.
#[proc_macro_attribute]
pub fn managed_resource(args: TokenStream, item: TokenStream) -> TokenStream {
    managed_resource::expand(args.into(), item.into()).into()
}

/// Runs an async test under a coordinator of its own and fails it on an unclean shutdown. See
/// `lifecycle_runtime::test`.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::expand_test(args.into(), item.into()).into()
}

/// Limits an async fn returning `Result<T, E>`. See `lifecycle_runtime::timeout`.
#[proc_macro_attribute]
pub fn timeout(args: TokenStream, item: TokenStream) -> TokenStream {
    timeout::expand(args.into(), item.into()).into()
}
