//! `#[timeout("10s")]`: limits an async fn returning `Result<T, E>` where
//! `E: From<lifecycle_runtime::Elapsed>`; the signature is unchanged.
//!
//! This module owns its arguments (the limit written bare or as `duration = "..."`), its checks
//! and the body it wraps.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, ItemFn, Lit, LitStr, ReturnType, Token};

use crate::args::{self, Arg, DurationArg, Errors, Zero};

const KEYS: &[&str] = &["duration", "name", "crate"];

struct Spec {
    duration: Option<DurationArg>,
    name: Option<LitStr>,
    krate: syn::Path,
}

impl Spec {
    /// Accepts `"10s"` (positional) or `duration = "10s"`, plus `name` and `crate`.
    fn parse(tokens: TokenStream, errors: &mut Errors) -> Spec {
        let mut spec = Spec {
            duration: None,
            name: None,
            krate: syn::parse_quote!(::lifecycle_runtime),
        };
        let items = match Punctuated::<Expr, Token![,]>::parse_terminated.parse2(tokens) {
            Ok(items) => items,
            Err(error) => {
                errors.push(error);
                return spec;
            }
        };
        let mut parsed = Vec::new();
        let mut positional = None;
        for item in items {
            match item {
                Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) if positional.is_none() && parsed.is_empty() => {
                    positional = Some(lit);
                }
                Expr::Assign(assign) => match (&*assign.left, *assign.right) {
                    (Expr::Path(path), value) if path.path.get_ident().is_some() || path.path.is_ident("crate") => {
                        let key = path.path.segments[0].ident.clone();
                        parsed.push(Arg { key, value: Some(value) });
                    }
                    (left, _) => errors.at(left, "expected a plain key such as `duration`"),
                },
                Expr::Path(path) if path.path.segments.len() == 1 => parsed.push(Arg {
                    key: path.path.segments[0].ident.clone(),
                    value: None,
                }),
                other => errors.at(
                    other,
                    "expected a duration such as `#[timeout(\"10s\")]`, or `duration = \"10s\"`, `name = \"...\"`",
                ),
            }
        }
        let parsed = args::check_keys(parsed, "timeout", KEYS, errors);
        let zero = Zero::Rejected("every call would fail at once");
        if let Some(lit) = &positional {
            spec.duration = args::parse_duration_lit(lit, "timeout", zero, errors);
        }
        for arg in &parsed {
            match arg.key.to_string().as_str() {
                "duration" => {
                    if positional.is_some() {
                        errors.at(
                            arg.tokens(),
                            "the duration is given twice; keep `\"...\"` or `duration = \"...\"`",
                        );
                    }
                    spec.duration = args::duration(arg, zero, errors);
                }
                "name" => spec.name = args::name(arg, errors),
                "crate" => spec.krate = args::crate_path(Some(arg), errors),
                _ => {}
            }
        }
        if positional.is_none() && !parsed.iter().any(|arg| arg.key == "duration") {
            errors.at_span(
                Span::call_site(),
                "#[timeout] needs a limit: `#[timeout(\"10s\")]` or `#[timeout(duration = \"10s\")]`",
            );
        }
        spec
    }
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let spec = Spec::parse(args, &mut errors);
    let mut function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            errors.at_span(
                Span::call_site(),
                "#[timeout] goes on an `async fn` returning `Result<T, E>`",
            );
            return errors.beside(item);
        }
    };
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token,
            "#[timeout] limits an `async fn`: add `async`, or wrap the future yourself with `lifecycle_runtime::timeout(name, limit, future)`",
        );
    }
    let output = match &sig.output {
        ReturnType::Type(_, ty) => Some(ty.clone()),
        ReturnType::Default => {
            errors.at(
                &sig.ident,
                format!(
                    "`{}` must return `Result<T, E>` where `E: From<lifecycle_runtime::Elapsed>`, so the timeout has somewhere to go",
                    sig.ident
                ),
            );
            None
        }
    };
    let (Some(output), Some(duration), true) =
        (output, spec.duration.as_ref(), sig.asyncness.is_some())
    else {
        return errors.beside(&function);
    };
    let krate = &spec.krate;
    let name = args::name_or_ident(spec.name.as_ref(), &sig.ident);
    let limit = duration.tokens(krate);
    let block = &function.block;
    let output_span = output.span();
    let krate_at_output = args::respan(krate.to_token_stream(), output_span);
    // The one place the error type is checked, under the user's return type.
    let from_elapsed = quote_spanned! {output_span=>
        <#output as #krate_at_output::__private::TimeoutResult>::from_elapsed(elapsed)
    };
    let body = quote_spanned! {block.span()=>
        {
            match #krate::timeout(
                #name,
                #limit,
                #krate::__private::returning::<#output, _>(async move #block),
            )
            .await
            {
                ::core::result::Result::Ok(outcome) => outcome,
                ::core::result::Result::Err(elapsed) => #from_elapsed,
            }
        }
    };
    // A return type that prints but names no type in `<T as Trait>` position (a bare bound
    // list like `Result<(), E> +`) makes the body unparsable: blame the type.
    match syn::parse2::<syn::Block>(body) {
        Ok(body) => *function.block = body,
        Err(_) => errors.at(
            &output,
            "#[timeout] cannot name this return type in the body it generates: write it as `Result<T, E>` where `E: From<lifecycle_runtime::Elapsed>`",
        ),
    }
    errors.beside(&function)
}
