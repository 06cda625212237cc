//! The expansion of `#[background]`: the fn keeps its name, attributes and caller parameters and
//! returns a `TaskHandle` (or `ThreadHandle`), its body run by the runtime's loop under a
//! `BackgroundSpec` that writes out every setting, defaults included (named through `__private`).
//! A supervised service (`restart = ...`) is spawned by `spawn_supervised` with a `RestartSpec`
//! beside it, and runs its body in a `while`: once, and again after each restart.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ReturnType;
use syn::spanned::Spanned;

use super::ast::{Item, MissedTick, Mode, Restart, Spec};
use crate::args;

pub(super) fn expand(spec: &Spec, item: &Item) -> TokenStream {
    let krate = &spec.krate;
    let function = &item.function;
    let (attrs, inner_attrs) = args::outer_and_inner(&function.attrs);
    let vis = &function.vis;
    let sig = &function.sig;
    let ident = &sig.ident;
    let unsafety = &sig.unsafety;
    let generics = &sig.generics;
    let where_clause = &sig.generics.where_clause;
    let params = item.caller_params();
    let block = &function.block;
    let (output, output_span) = match &sig.output {
        ReturnType::Default => (quote!(()), sig.ident.span()),
        ReturnType::Type(_, ty) => (ty.to_token_stream(), ty.span()),
    };
    let ticker = format_ident!("__ticker", span = Span::mixed_site());
    // Bound after the body ran, so the body cannot see or clash with it; spanned at the return
    // type so errors about the returned value land there.
    let outcome = format_ident!("outcome", span = output_span);
    // The one place the return type is checked, spanned at the user's return type so a wrong
    // one is reported there, once.
    let krate_at_output = args::respan(krate.to_token_stream(), output_span);
    let into_result = quote_spanned!(output_span=>
        #krate_at_output::__private::TickResult::into_tick_result(#outcome)
    );
    let spec_tokens = spec_tokens(spec, ident);
    let bind_shutdown = item.shutdown_param().map(|param| {
        let (pat, ty) = (&param.pat, &param.ty);
        quote!(let #pat: #ty = #ticker.shutdown();)
    });
    let block_span = block.span();
    // A service (no interval) runs its body once: `if`, not `while`, so the expansion says so; a
    // supervised one runs it again after each restart.
    let supervised = spec.supervised();
    let repeat = if spec.interval_written || supervised.is_some() {
        quote!(while)
    } else {
        quote!(if)
    };
    // `spawn_background(SPEC, body)`, or `spawn_supervised(SPEC, RESTART_SPEC, body)`.
    let (spawn, restart_spec) = match supervised {
        None if spec.thread_written => (quote!(spawn_background_thread), None),
        None => (quote!(spawn_background), None),
        Some(_) if spec.thread_written => (quote!(spawn_supervised_thread), restart_tokens(spec)),
        Some(_) => (quote!(spawn_supervised), restart_tokens(spec)),
    };
    let spec_tokens = match restart_spec {
        Some(restart_spec) => quote!(#spec_tokens, #restart_spec),
        None => spec_tokens,
    };

    if spec.thread_written {
        let spawn = quote_spanned!(block_span=> #krate::__private::#spawn);
        quote! {
            #(#attrs)*
            #vis #unsafety fn #ident #generics (#(#params),*) -> #krate::ThreadHandle #where_clause {
                #(#inner_attrs)*
                #spawn(
                    #spec_tokens,
                    move |mut #ticker| {
                        #repeat #ticker.next_tick() {
                            #bind_shutdown
                            #ticker.run_tick(|| {
                                let #outcome: #output = (|| #block)();
                                #into_result
                            });
                        }
                        #ticker
                    },
                )
            }
        }
    } else {
        // Spanned at the body, so a body that is not `Send` is blamed there.
        let spawn = quote_spanned!(block_span=> #krate::__private::#spawn);
        quote! {
            #(#attrs)*
            #vis #unsafety fn #ident #generics (#(#params),*) -> #krate::TaskHandle #where_clause {
                #(#inner_attrs)*
                #spawn(
                    #spec_tokens,
                    move |mut #ticker| async move {
                        #repeat #ticker.next_tick().await {
                            #bind_shutdown
                            #ticker
                                .run_tick(async {
                                    let #outcome: #output = async #block.await;
                                    #into_result
                                })
                                .await;
                        }
                        #ticker
                    },
                )
            }
        }
    }
}

/// The `BackgroundSpec { ... }` literal, every field written out so `cargo expand` shows it all;
/// a setting left out is the runtime's default, by its `__private` name.
fn spec_tokens(spec: &Spec, ident: &syn::Ident) -> TokenStream {
    let krate = &spec.krate;
    let private = quote!(#krate::__private);
    let name = args::name_or_ident(spec.name.as_ref(), ident);
    let interval = args::option(
        spec.interval
            .as_ref()
            .map(|interval| interval.tokens(krate)),
    );
    // `shutdown` has no default (leaving it out is an error); `Finish` stands in for a rejected
    // value so the expansion still type-checks.
    let mode = match spec
        .shutdown
        .as_ref()
        .map_or(Mode::Finish, |(mode, _)| *mode)
    {
        Mode::Finish => quote!(#private::ShutdownMode::Finish),
        Mode::Abort => quote!(#private::ShutdownMode::Abort),
        Mode::FinalTick => quote!(#private::ShutdownMode::FinalTick),
    };
    let stop_timeout = match &spec.stop_timeout {
        Some(stop_timeout) => stop_timeout.tokens(krate),
        None => quote!(#private::DEFAULT_STOP_TIMEOUT),
    };
    let timeout = args::option(
        spec.timeout
            .as_ref()
            .map(|(timeout, _)| timeout.tokens(krate)),
    );
    let group = args::option(
        spec.group
            .as_ref()
            .map(|(group, _)| group.to_token_stream()),
    );
    let critical = spec.critical;
    let missed_tick = match spec.missed_tick.as_ref().map(|(behaviour, _)| *behaviour) {
        None => quote!(#private::DEFAULT_MISSED_TICK),
        Some(MissedTick::Skip) => quote!(#private::MissedTick::Skip),
        Some(MissedTick::Delay) => quote!(#private::MissedTick::Delay),
        Some(MissedTick::Burst) => quote!(#private::MissedTick::Burst),
    };
    let stop_after = &spec.stop_after;
    quote! {
        #private::BackgroundSpec {
            name: #name,
            stop_after: &[#(#stop_after),*],
            interval: #interval,
            shutdown: #mode,
            stop_timeout: #stop_timeout,
            timeout: #timeout,
            group: #group,
            critical: #critical,
            missed_tick: #missed_tick,
        }
    }
}

/// The `RestartSpec { ... }` literal of a supervised service, every field written out; a
/// `max_restarts` left out (or rejected) is the runtime's default, by its `__private` names.
fn restart_tokens(spec: &Spec) -> Option<TokenStream> {
    let krate = &spec.krate;
    let private = quote!(#krate::__private);
    let restart = match spec.supervised()? {
        Restart::Always => quote!(#private::Restart::Always),
        Restart::OnFailure | Restart::Never => quote!(#private::Restart::OnFailure),
    };
    let (max_restarts, period) = match &spec.max_restarts {
        Some((rate, _)) => (
            proc_macro2::Literal::u32_unsuffixed(rate.count).into_token_stream(),
            args::duration_tokens(rate.period, krate),
        ),
        None => (
            quote!(#private::DEFAULT_MAX_RESTARTS),
            quote!(#private::DEFAULT_RESTART_PERIOD),
        ),
    };
    Some(quote! {
        #private::RestartSpec {
            restart: #restart,
            max_restarts: #max_restarts,
            period: #period,
        }
    })
}
