//! `#[background(...)]`: turns an async fn into a tracked, shutdown-aware loop or service, or (with
//! `thread`) a plain fn into one on a named OS thread.
//!
//! This file only runs the steps: the arguments and the fn become a typed model (`ast`), which is
//! checked (`valid`), then expanded (`expand`); a fn that cannot be expanded is emitted as written
//! beside the errors (`fallback`). Every error is collected and reported together.

mod ast;
mod expand;
mod fallback;
mod valid;

use proc_macro2::TokenStream;
use syn::ItemFn;

use crate::args::Errors;
use ast::{Item, Spec};

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let spec = Spec::parse(args, &mut errors);
    valid::check_spec(&spec, &mut errors);
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => return fallback::not_a_fn(item, &mut errors),
    };
    let item = Item::new(function, &spec);
    if !valid::check_item(&item, &spec, &mut errors) {
        return fallback::as_written(&item.function, &errors);
    }
    // Wrong arguments or body: expand anyway (defaults stand in for rejected values) so callers
    // still see the `TaskHandle` signature and only the macro's own errors show.
    errors.beside(expand::expand(&spec, &item))
}
