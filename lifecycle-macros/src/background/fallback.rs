//! What `#[background]` emits when it cannot expand the fn: its errors beside the item as
//! written, so the rest of the crate and rust-analyzer still see it. (Mistakes in the arguments
//! or the body do not come here: the fn still expands, with stand-ins for rejected values, so
//! callers see the `TaskHandle` signature and only the macro's own errors show.)

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;

use crate::args::Errors;

/// The attribute is not on a fn: the tokens as written.
pub(super) fn not_a_fn(item: TokenStream, errors: &mut Errors) -> TokenStream {
    errors.at_span(
        Span::call_site(),
        "#[background] goes on an `async fn` (a tokio task) or, with `thread`, on a plain `fn` (an OS thread)",
    );
    errors.beside(item)
}

/// A fn whose signature the expansion cannot take (`self`, a borrowed parameter, `const`, ...):
/// the fn as written.
pub(super) fn as_written(function: impl ToTokens, errors: &Errors) -> TokenStream {
    errors.beside(function)
}
