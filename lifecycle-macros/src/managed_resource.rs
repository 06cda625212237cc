//! `#[managed_resource(...)]`: an ordered, time-limited `Close` for a struct. Fields close in
//! declaration order (the order Rust drops them), each under its own timeout, best effort; an
//! optional `before_close` hook runs first.
//!
//! A field that implements neither `Close` nor carries `#[close(skip = "why")]` /
//! `#[close(with = path)]` fails to compile at that field: its close call is spanned there, and a
//! helper named after the field says which one.
//!
//! This module owns the struct's arguments, the fields' `#[close(...)]` attributes (read and
//! removed) and the `Close` impl they expand to.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, Fields, ItemStruct, LitStr, Member};

use crate::args::{self, Arg, DurationArg, Errors, Zero};

const ATTRIBUTE: &str = "managed_resource";
const KEYS: &[&str] = &["close_timeout", "before_close", "name", "crate"];
const FIELD_KEYS: &[&str] = &["timeout", "with", "skip"];

struct Spec {
    close_timeout: Option<DurationArg>,
    before_close: Option<Expr>,
    name: Option<LitStr>,
    krate: syn::Path,
}

impl Spec {
    fn parse(tokens: TokenStream, errors: &mut Errors) -> Spec {
        let (parsed, krate) = args::parse_attribute(tokens, ATTRIBUTE, KEYS, errors);
        let mut spec = Spec {
            close_timeout: None,
            before_close: None,
            name: None,
            krate,
        };
        for arg in &parsed {
            match arg.key.to_string().as_str() {
                "close_timeout" => {
                    spec.close_timeout = args::duration(
                        arg,
                        Zero::Rejected("every field would time out at once"),
                        errors,
                    );
                }
                "before_close" => spec.before_close = path_value(arg, "Self::flush", errors),
                "name" => spec.name = args::name(arg, errors),
                _ => {}
            }
        }
        spec
    }
}

/// The value of `key = some::path`.
fn path_value(arg: &Arg, example: &str, errors: &mut Errors) -> Option<Expr> {
    match &arg.value {
        Some(value @ Expr::Path(_)) => Some(value.clone()),
        _ => {
            errors.at(
                arg.tokens(),
                format!(
                    "`{}` takes the path of an async fn, like `{} = {example}`",
                    arg.key, arg.key
                ),
            );
            None
        }
    }
}

/// How one field closes.
enum How {
    /// `Close::close`.
    Close,
    /// `#[close(with = path)]`.
    With(Expr),
    /// `#[close(skip = "why")]`.
    Skip(LitStr),
}

struct Field {
    member: Member,
    /// The field's name in reports: its identifier, or its index for tuple structs.
    name: String,
    ty: syn::Type,
    how: How,
    timeout: Option<DurationArg>,
}

/// Reads a field's `#[close(...)]` attributes and removes them from the struct.
fn parse_field(field: &mut syn::Field, index: usize, errors: &mut Errors) -> Field {
    let member = match &field.ident {
        Some(ident) => Member::Named(ident.clone()),
        None => Member::Unnamed(syn::Index::from(index)),
    };
    let name = match &field.ident {
        Some(ident) => syn::ext::IdentExt::unraw(ident).to_string(),
        None => index.to_string(),
    };
    let mut parsed = Vec::new();
    field.attrs.retain(|attr| {
        if !attr.path().is_ident("close") {
            return true;
        }
        match &attr.meta {
            syn::Meta::List(list) => parsed.extend(args::parse_args(list.tokens.clone(), errors)),
            other => errors.at(
                other,
                "`#[close]` takes a list: write `#[close(timeout = \"5s\")]`, `#[close(with = path)]` or `#[close(skip = \"why\")]`",
            ),
        }
        false
    });
    let parsed = args::check_keys(parsed, "close", FIELD_KEYS, errors);
    let mut how = How::Close;
    let mut timeout = None;
    let mut skip_arg: Option<&Arg> = None;
    for arg in &parsed {
        match arg.key.to_string().as_str() {
            "timeout" => {
                timeout = args::duration(
                    arg,
                    Zero::Rejected("the field would time out at once"),
                    errors,
                );
            }
            "with" => {
                if let Some(path) = path_value(arg, "close_writer", errors) {
                    how = How::With(path);
                }
            }
            "skip" => {
                skip_arg = Some(arg);
                match &arg.value {
                    None => errors.at(
                        &arg.key,
                        format!(
                            "say why field `{name}` needs no cleanup: `#[close(skip = \"holds no connections\")]`"
                        ),
                    ),
                    Some(_) => {
                        if let Some(reason) = args::lit_str(arg, "\"holds no connections\"", errors) {
                            if reason.value().trim().is_empty() {
                                errors.at(&reason, format!("say why field `{name}` needs no cleanup; the reason must not be empty"));
                            } else {
                                how = How::Skip(reason);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(skip) = skip_arg {
        for arg in &parsed {
            if arg.key == "with" || arg.key == "timeout" {
                errors.at(
                    arg.tokens(),
                    format!(
                        "`{}` has nothing to do: `skip` leaves field `{name}` untouched; remove one of them",
                        arg.key
                    ),
                );
            }
        }
        // A skip without a valid reason still means "do not close it": no extra errors.
        if !matches!(how, How::Skip(_)) {
            how = How::Skip(LitStr::new("", skip.key.span()));
        }
    }
    Field {
        member,
        name,
        ty: field.ty.clone(),
        how,
        timeout,
    }
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let spec = Spec::parse(args, &mut errors);
    let mut item: ItemStruct = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            let message = "#[managed_resource] goes on a struct; for an enum or another type, implement `lifecycle_runtime::Close` by hand";
            match syn::parse2::<syn::Item>(item.clone()) {
                Ok(syn::Item::Enum(item)) => errors.at(item.enum_token, message),
                Ok(syn::Item::Union(item)) => errors.at(item.union_token, message),
                _ => errors.at_span(Span::call_site(), message),
            }
            return errors.beside(item);
        }
    };
    let fields: Vec<Field> = match &mut item.fields {
        Fields::Named(named) => named
            .named
            .iter_mut()
            .enumerate()
            .map(|(index, field)| parse_field(field, index, &mut errors))
            .collect(),
        Fields::Unnamed(unnamed) => unnamed
            .unnamed
            .iter_mut()
            .enumerate()
            .map(|(index, field)| parse_field(field, index, &mut errors))
            .collect(),
        Fields::Unit => Vec::new(),
    };
    // Even with errors the struct (without its `#[close]` attributes) and its `Close` impl are
    // emitted, so the rest of the crate sees them and only the macro's own errors show.
    let close_impl = expand_impl(&spec, &item, &fields);
    errors.beside(quote! {
        #item
        #close_impl
    })
}

fn expand_impl(spec: &Spec, item: &ItemStruct, fields: &[Field]) -> TokenStream {
    let krate = &spec.krate;
    let private = quote!(#krate::__private);
    let ident = &item.ident;
    let (impl_generics, ty_generics, where_clause) = item.generics.split_for_impl();
    let name = args::name_or_ident(spec.name.as_ref(), ident);
    let closing = format_ident!("fields", span = Span::mixed_site());
    // The limit of the hook and of each field without its own `#[close(timeout)]`.
    let default_limit = match &spec.close_timeout {
        Some(close_timeout) => close_timeout.tokens(krate),
        None => quote!(#private::DEFAULT_CLOSE_TIMEOUT),
    };
    // The parts of the resource's own close timeout, kept visible in the expansion.
    let mut limits: Vec<TokenStream> = Vec::new();
    // Helpers named after the fields whose type must implement `Close` (see below).
    let mut helpers: Vec<TokenStream> = Vec::new();

    let before_close = spec.before_close.as_ref().map(|hook| {
        let limit = default_limit.clone();
        limits.push(limit.clone());
        let span = hook.span();
        let private_here = args::respan(private.clone(), span);
        let call = quote_spanned!(span=> #private_here::close_with(#hook(self)));
        quote!(#closing.before_close(#limit, #call).await;)
    });
    let mut steps = Vec::new();
    for field in fields {
        let field_name = &field.name;
        let limit = match &field.timeout {
            Some(timeout) => timeout.tokens(krate),
            None => default_limit.clone(),
        };
        match &field.how {
            How::Skip(reason) => steps.push(quote!(#closing.skipped(#field_name, #reason);)),
            How::With(path) => {
                limits.push(limit.clone());
                // Through one helper with a concrete return type, spanned at the path: a fn of
                // the wrong kind is one error there, saying what `with` takes.
                let span = path.span();
                let private_here = args::respan(private.clone(), span);
                let member = args::respan(field.member.to_token_stream(), span);
                let call = quote_spanned!(span=> #private_here::close_with(#path(&self.#member)));
                steps.push(quote!(#closing.field(#field_name, #limit, #call).await;));
            }
            How::Close => {
                limits.push(limit.clone());
                // A helper named after the field, its bound spanned at the field's type: a type
                // without `Close` is reported on the field's line, naming the field.
                let span = field.ty.span();
                let helper = format_ident!("field_{}_must_implement_close", field_name);
                let krate_here = args::respan(krate.to_token_stream(), span);
                helpers.push(quote_spanned! {span=>
                    fn #helper<T: #krate_here::Close>(value: &T) -> #krate_here::__private::CloseFuture<'_> {
                        #krate_here::__private::close_boxed(value)
                    }
                });
                let ty = &field.ty;
                let member = &field.member;
                let call = quote_spanned!(span=> #helper::<#ty>(&self.#member));
                steps.push(quote!(#closing.field(#field_name, #limit, #call).await;));
            }
        }
    }
    // Summed by the runtime, saturating: a field's limit may be `Duration::MAX` ("no limit").
    let total = quote!(&[#(#limits),*]);
    quote! {
        const _: () = {
            #(#helpers)*

            impl #impl_generics #krate::Close for #ident #ty_generics #where_clause {
                async fn close(&self) -> ::core::result::Result<(), #krate::CloseError> {
                    let mut #closing = #private::ClosingFields::new(#name);
                    #before_close
                    #(#steps)*
                    #closing.finish()
                }

                fn close_timeout(&self) -> #private::Duration {
                    #private::resource_timeout(#total)
                }

                fn close_name(&self) -> #private::Cow<'static, str> {
                    #private::Cow::Borrowed(#name)
                }
            }
        };
    }
}
