//! What every attribute shares: parsing `key`, `key = "value"` and `key = path` arguments
//! (durations, names, counts, rates such as `"5/1m"`, flags, `crate = "..."`), collecting errors and emitting them beside
//! the item, and the small token helpers of the expansions (`Some`/`None`, durations, spans).

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{AttrStyle, Attribute, Expr, ExprLit, Ident, Lit, LitInt, LitStr, Meta, Token};

mod duration;

pub(crate) use duration::{
    DurationArg, Rate, Zero, duration, duration_tokens, parse_duration_lit, rate,
};

/// Every error found in one item, reported together (the user fixes them all in one compile).
#[derive(Default)]
pub(crate) struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(combined) => combined.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// An error under `tokens`.
    pub(crate) fn at(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// An error at `span`.
    pub(crate) fn at_span(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    /// How many errors so far.
    pub(crate) fn count(&self) -> usize {
        self.combined
            .as_ref()
            .map_or(0, |error| error.clone().into_iter().count())
    }

    /// The `compile_error!`s, then `item`: the expansion, or (when the input cannot be expanded)
    /// the item as written, so the rest of the crate and rust-analyzer still see it.
    pub(crate) fn beside(&self, item: impl ToTokens) -> TokenStream {
        let errors = match &self.combined {
            Some(error) => error.to_compile_error(),
            None => TokenStream::new(),
        };
        quote! {
            #errors
            #item
        }
    }
}

/// One `key` or `key = value` argument.
pub(crate) struct Arg {
    pub(crate) key: Ident,
    pub(crate) value: Option<Expr>,
}

impl Arg {
    /// The key and its value, for errors about the argument as a whole.
    pub(crate) fn tokens(&self) -> TokenStream {
        let key = &self.key;
        match &self.value {
            Some(value) => quote!(#key = #value),
            None => quote!(#key),
        }
    }
}

/// Parses `key, key = value, ...`. Malformed input is an error; an empty list is fine.
pub(crate) fn parse_args(tokens: TokenStream, errors: &mut Errors) -> Vec<Arg> {
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(metas) => metas,
        Err(error) => {
            errors.push(error);
            return Vec::new();
        }
    };
    let mut args = Vec::new();
    for meta in metas {
        let (path, value) = match meta {
            Meta::Path(path) => (path, None),
            Meta::NameValue(name_value) => (name_value.path, Some(name_value.value)),
            Meta::List(list) => {
                errors.at(
                    &list,
                    format!(
                        "expected `key` or `key = value`, found `{}(...)`",
                        list.path.to_token_stream()
                    ),
                );
                continue;
            }
        };
        match path.segments.len() {
            1 if path.leading_colon.is_none() => args.push(Arg {
                key: path.segments[0].ident.clone(),
                value,
            }),
            _ => errors.at(&path, "expected a plain key such as `interval`, not a path"),
        }
    }
    args
}

/// Parses one attribute's arguments, rejecting keys outside `valid` and repeats, and reads
/// `crate = "..."` first, since every expansion needs the runtime's path.
pub(crate) fn parse_attribute(
    tokens: TokenStream,
    attribute: &str,
    valid: &[&str],
    errors: &mut Errors,
) -> (Vec<Arg>, syn::Path) {
    let parsed = parse_args(tokens, errors);
    let parsed = check_keys(parsed, attribute, valid, errors);
    let krate = crate_path(parsed.iter().find(|arg| arg.key == "crate"), errors);
    (parsed, krate)
}

/// Rejects keys outside `valid` (naming the valid ones, and the closest one when it is a typo)
/// and repeated keys. Returns the arguments that passed.
pub(crate) fn check_keys(
    args: Vec<Arg>,
    attribute: &str,
    valid: &[&str],
    errors: &mut Errors,
) -> Vec<Arg> {
    let mut seen: Vec<String> = Vec::new();
    let mut kept = Vec::new();
    for arg in args {
        let key = arg.key.to_string();
        if !valid.contains(&key.as_str()) {
            let hint = match closest(&key, valid) {
                Some(close) => format!(" (did you mean `{close}`?)"),
                None => String::new(),
            };
            errors.at(
                &arg.key,
                format!(
                    "unknown key `{key}` in #[{attribute}]{hint}; valid keys: {}",
                    valid.join(", ")
                ),
            );
            continue;
        }
        if seen.contains(&key) {
            errors.at(
                arg.tokens(),
                format!("`{key}` is given more than once in #[{attribute}]; keep one"),
            );
            continue;
        }
        seen.push(key);
        kept.push(arg);
    }
    kept
}

/// The valid key closest to a misspelt one, if any is close.
fn closest<'a>(key: &str, valid: &[&'a str]) -> Option<&'a str> {
    valid
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= 2.max(candidate.len() / 3))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// The string literal of `key = "..."`.
pub(crate) fn lit_str(arg: &Arg, example: &str, errors: &mut Errors) -> Option<LitStr> {
    match &arg.value {
        Some(Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        })) => Some(lit.clone()),
        _ => {
            errors.at(
                arg.tokens(),
                format!(
                    "`{}` takes a string: write `{} = {example}`",
                    arg.key, arg.key
                ),
            );
            None
        }
    }
}

/// The integer literal of `key = 4`.
pub(crate) fn lit_int(arg: &Arg, example: &str, errors: &mut Errors) -> Option<LitInt> {
    match &arg.value {
        Some(Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        })) => Some(lit.clone()),
        _ => {
            errors.at(
                arg.tokens(),
                format!(
                    "`{}` takes a whole number: write `{} = {example}`",
                    arg.key, arg.key
                ),
            );
            None
        }
    }
}

/// A count of at least one, like `worker_threads = 4`.
pub(crate) fn positive_int(arg: &Arg, example: &str, errors: &mut Errors) -> Option<usize> {
    let lit = lit_int(arg, example, errors)?;
    match lit.base10_parse::<usize>() {
        Ok(0) | Err(_) => {
            errors.at(
                &lit,
                format!("`{}` must be a whole number of at least 1", arg.key),
            );
            None
        }
        Ok(count) => Some(count),
    }
}

/// The boolean literal of `key = true`.
pub(crate) fn lit_bool(arg: &Arg, errors: &mut Errors) -> Option<bool> {
    match &arg.value {
        Some(Expr::Lit(ExprLit {
            lit: Lit::Bool(lit),
            ..
        })) => Some(lit.value),
        _ => {
            errors.at(
                arg.tokens(),
                format!("`{}` takes `true` or `false`", arg.key),
            );
            None
        }
    }
}

/// A flag written bare (`critical`), not `critical = ...`.
pub(crate) fn flag(arg: &Arg, errors: &mut Errors) -> Option<Span> {
    match &arg.value {
        None => Some(arg.key.span()),
        Some(_) => {
            errors.at(
                arg.tokens(),
                format!("`{}` is a flag: write just `{}`", arg.key, arg.key),
            );
            None
        }
    }
}

/// `Some(value)` or `None`, for an optional setting in generated code.
pub(crate) fn option(value: Option<TokenStream>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}

/// A fn's attributes split into its outer ones (`#[...]` before it) and the inner ones written
/// at the top of its body (`#![allow(...)]`), which syn keeps together. An expansion that builds
/// a new body puts the inner ones back at its top: before the fn they are a compile error.
pub(crate) fn outer_and_inner(attrs: &[Attribute]) -> (Vec<&Attribute>, Vec<&Attribute>) {
    attrs
        .iter()
        .partition(|attr| matches!(attr.style, AttrStyle::Outer))
}

/// `tokens` located at `span` (so errors point at the user's tokens) but with call-site hygiene,
/// so lints treat them as generated code (a renamed crate path must not trip
/// `unused_qualifications` in the user's crate).
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    let span = Span::call_site().located_at(span);
    tokens
        .into_iter()
        .map(|mut token| {
            if let proc_macro2::TokenTree::Group(group) = &token {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                token = proc_macro2::TokenTree::Group(inner);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

/// The path the generated code uses to reach the runtime: `::lifecycle_runtime`, or what
/// `crate = "..."` says for users who renamed the dependency.
pub(crate) fn crate_path(arg: Option<&Arg>, errors: &mut Errors) -> syn::Path {
    let default: syn::Path = syn::parse_quote!(::lifecycle_runtime);
    let Some(arg) = arg else { return default };
    let Some(lit) = lit_str(arg, "\"my_runtime\"", errors) else {
        return default;
    };
    match lit.parse::<syn::Path>() {
        // `a<T>` parses as a path, but a crate's path takes no generic arguments (and put
        // before `::__private::...` it would read as comparisons).
        Ok(path)
            if path
                .segments
                .iter()
                .any(|segment| !segment.arguments.is_none()) =>
        {
            errors.at(
                &lit,
                format!(
                    "`crate = \"{}\"` has generic arguments, which a crate's path cannot take; write the name you gave lifecycle-runtime in Cargo.toml, like `crate = \"lifecycle\"`",
                    lit.value()
                ),
            );
            default
        }
        // The literal's span would make the path count as the user's own code.
        Ok(path) => syn::parse2(respan(path.to_token_stream(), Span::call_site())).unwrap_or(path),
        Err(_) => {
            errors.at(
                &lit,
                format!(
                    "`crate = \"{}\"` is not a path; write the name you gave lifecycle-runtime in Cargo.toml, like `crate = \"lifecycle\"`",
                    lit.value()
                ),
            );
            default
        }
    }
}

/// A non-empty name for logs and reports.
pub(crate) fn name(arg: &Arg, errors: &mut Errors) -> Option<LitStr> {
    let lit = lit_str(arg, "\"auto-flush\"", errors)?;
    if lit.value().trim().is_empty() {
        errors.at(&lit, format!("`{}` must not be empty", arg.key));
        return None;
    }
    Some(lit)
}

/// The name in logs and reports: the one written with `name = "..."`, or else the item's own.
pub(crate) fn name_or_ident(name: Option<&LitStr>, ident: &Ident) -> LitStr {
    match name {
        Some(name) => name.clone(),
        None => LitStr::new(&ident.to_string(), ident.span()),
    }
}

/// One of a fixed set of string values.
pub(crate) fn choice<'a>(arg: &Arg, choices: &[&'a str], errors: &mut Errors) -> Option<&'a str> {
    let example = format!("\"{}\"", choices[0]);
    let lit = lit_str(arg, &example, errors)?;
    let value = lit.value();
    match choices.iter().find(|choice| **choice == value) {
        Some(choice) => Some(choice),
        None => {
            let list: Vec<String> = choices
                .iter()
                .map(|choice| format!("\"{choice}\""))
                .collect();
            errors.at(
                &lit,
                format!(
                    "`{}` = \"{value}\" is not one of {}",
                    arg.key,
                    list.join(", ")
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn closest_key_catches_typos_only() {
        let valid = ["interval", "shutdown", "stop_timeout", "timeout"];
        assert_eq!(closest("intervall", &valid), Some("interval"));
        assert_eq!(closest("shutdwn", &valid), Some("shutdown"));
        assert_eq!(closest("colour", &valid), None);
    }

    #[test]
    fn a_duration_past_the_largest_is_an_error() {
        for text in [
            "18446744073709551615s 1000000000ns",
            "18446744073709551615s 500ms 500ms",
            "18446744073709551614s 1500ms 500ms",
        ] {
            let mut errors = Errors::default();
            let lit = LitStr::new(text, Span::call_site());
            assert!(parse_duration_lit(&lit, "interval", Zero::Allowed, &mut errors).is_none());
            assert_eq!(errors.count(), 1, "{text}");
        }
    }

    fn parse_rate(text: &str) -> (Option<(u32, Duration)>, Vec<String>) {
        let arg = Arg {
            key: Ident::new("max_restarts", Span::call_site()),
            value: Some(syn::parse_quote!(#text)),
        };
        let mut errors = Errors::default();
        let rate =
            rate(&arg, "restarts", "or none", &mut errors).map(|rate| (rate.count, rate.period));
        let messages = errors
            .combined
            .map(|error| error.into_iter().map(|error| error.to_string()).collect())
            .unwrap_or_default();
        (rate, messages)
    }

    #[test]
    fn rates_are_a_count_and_a_period() {
        assert_eq!(parse_rate("5/1m").0, Some((5, Duration::from_secs(60))));
        assert_eq!(
            parse_rate(" 3 / 10s 500ms ").0,
            Some((3, Duration::from_millis(10_500)))
        );
        for (text, says) in [
            ("5", "is not of the form \"N/PERIOD\""),
            ("0/1m", "allows no restarts"),
            ("five/1m", "N = \"five\" is not a whole number"),
            ("4294967296/1m", "from 1 to 4294967295"),
            ("-1/1m", "is not a whole number"),
            ("5/0s", "the period must be greater than zero"),
            ("5/", "the period \"\" is not a duration"),
            ("5/1 fortnight", "is not a duration"),
            ("5/1m/2", "is not a duration"),
        ] {
            let (rate, messages) = parse_rate(text);
            assert!(rate.is_none(), "{text}");
            assert_eq!(messages.len(), 1, "{text}: {messages:?}");
            assert!(messages[0].contains(says), "{text}: {}", messages[0]);
            assert!(messages[0].contains("write it like \"5/1m\""), "{text}");
        }
        let (_, both) = parse_rate("0/0s");
        assert_eq!(both.len(), 2, "both halves are checked: {both:?}");
    }

    #[test]
    fn durations_use_the_coarsest_exact_unit() {
        let krate: syn::Path = syn::parse_quote!(::lifecycle_runtime);
        let text = |d| duration_tokens(d, &krate).to_string();
        assert!(text(Duration::from_secs(5)).ends_with("from_secs (5)"));
        assert!(text(Duration::from_millis(1500)).ends_with("from_millis (1500)"));
        assert!(text(Duration::from_micros(3)).ends_with("from_micros (3)"));
        assert!(text(Duration::from_nanos(7)).ends_with("from_nanos (7)"));
        assert!(
            text(Duration::new(u64::MAX, 1_000_000))
                .ends_with("new (18446744073709551615 , 1000000)")
        );
    }
}
