//! Attribute macros of `lifecycle-runtime`. Depend on `lifecycle-runtime`, which re-exports them;
//! their documentation lives there.

mod args;
mod background;
mod entry;

use proc_macro::TokenStream;

/// Turns an async fn into a tracked, shutdown-aware loop or service (or, with `thread`, a plain fn
/// into one on a named OS thread). See `lifecycle_runtime::background`.
#[proc_macro_attribute]
pub fn background(args: TokenStream, item: TokenStream) -> TokenStream {
    background::expand(args.into(), item.into()).into()
}

/// Runs `async fn main` under the shutdown coordinator. See `lifecycle_runtime::main`.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::expand_main(args.into(), item.into()).into()
}
