//! `#[main]` and `#[test]`: run an async fn on a tokio runtime under a shutdown coordinator.
//! `#[main]` adds signal handling, a bounded shutdown, a printed report and an honest exit code;
//! `#[test]` gives each test a coordinator of its own and fails it on an unclean shutdown.
//!
//! Both share one config ([`EntryArgs`]), one set of checks and the common part of the expansion;
//! an [`Entry`] says what sets each attribute apart: its keys, its default runtime and its words
//! in messages.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, LitStr, ReturnType, Signature};

use crate::args::{self, DurationArg, Errors, Zero};

/// What sets `#[main]` and `#[test]` apart.
struct Entry {
    kind: Kind,
    /// The attribute as messages name it.
    attribute: &'static str,
    /// The fn it goes on, as messages describe it.
    item: &'static str,
    /// The fn, as messages call it.
    subject: &'static str,
    /// The keys it takes, in the order an unknown key's error lists them.
    keys: &'static [&'static str],
    /// The runtime it builds unless `flavor` says otherwise.
    default_flavor: Flavor,
    /// The value a malformed `worker_threads` error suggests.
    worker_threads_example: &'static str,
    /// Why `shutdown_timeout` cannot be zero.
    zero_shutdown_timeout: &'static str,
    /// Why `worker_threads` is refused on the current-thread runtime.
    worker_threads_needs_multi_thread: &'static str,
}

#[derive(Clone, Copy)]
enum Kind {
    Main,
    Test,
}

const MAIN: Entry = Entry {
    kind: Kind::Main,
    attribute: "lifecycle_runtime::main",
    item: "`async fn main()`",
    subject: "`main`",
    keys: &[
        "shutdown_timeout",
        "drain",
        "stop_timeout",
        "ready",
        "report",
        "worker_threads",
        "flavor",
        "crate",
    ],
    default_flavor: Flavor::MultiThread,
    worker_threads_example: "4",
    zero_shutdown_timeout: "nothing could stop or close; give shutdown a budget such as \"30s\"",
    worker_threads_needs_multi_thread: "`worker_threads` applies to the multi-thread runtime; remove it or remove `flavor = \"current_thread\"`",
};

const TEST: Entry = Entry {
    kind: Kind::Test,
    attribute: "lifecycle_runtime::test",
    item: "an `async fn`",
    subject: "a test",
    keys: &[
        "flavor",
        "worker_threads",
        "start_paused",
        "shutdown_timeout",
        "crate",
    ],
    default_flavor: Flavor::CurrentThread,
    worker_threads_example: "2",
    zero_shutdown_timeout: "nothing could stop or close; give shutdown a budget such as \"5s\"",
    worker_threads_needs_multi_thread: "`worker_threads` applies to `flavor = \"multi_thread\"`; add that, or remove `worker_threads`",
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    MultiThread,
    CurrentThread,
}

impl Flavor {
    /// The flavors as a bad `flavor`'s error lists them: `default` first.
    fn choices(default: Flavor) -> [&'static str; 2] {
        match default {
            Flavor::MultiThread => ["multi_thread", "current_thread"],
            Flavor::CurrentThread => ["current_thread", "multi_thread"],
        }
    }
}

/// The arguments of `#[main]` or `#[test]`. A key the attribute does not take stays unset, and a
/// rejected value leaves the default standing.
struct EntryArgs {
    flavor: Flavor,
    /// The count, and the argument as written (for the error that blames it).
    worker_threads: Option<(usize, TokenStream)>,
    /// `start_paused = true` as written; `false` is the default.
    start_paused: Option<TokenStream>,
    shutdown_timeout: Option<DurationArg>,
    drain: Option<DurationArg>,
    /// `drain = "..."` as written, for the error when it takes the whole budget.
    drain_tokens: Option<TokenStream>,
    stop_timeout: Option<DurationArg>,
    /// `ready = "at_start"`: ready as soon as the body starts (a service with nothing to wait
    /// for); by default, when the body calls `mark_ready()`.
    ready_at_start: bool,
    /// `report = "..."`: how the report is given; text by default.
    report: Option<&'static str>,
    krate: syn::Path,
}

impl EntryArgs {
    fn parse(entry: &Entry, tokens: TokenStream, errors: &mut Errors) -> EntryArgs {
        let (parsed, krate) = args::parse_attribute(tokens, entry.attribute, entry.keys, errors);
        let mut config = EntryArgs {
            flavor: entry.default_flavor,
            worker_threads: None,
            start_paused: None,
            shutdown_timeout: None,
            drain: None,
            drain_tokens: None,
            stop_timeout: None,
            ready_at_start: false,
            report: None,
            krate,
        };
        for arg in &parsed {
            match arg.key.to_string().as_str() {
                "flavor" => {
                    let choices = Flavor::choices(entry.default_flavor);
                    if let Some(choice) = args::choice(arg, &choices, errors) {
                        config.flavor = match choice {
                            "current_thread" => Flavor::CurrentThread,
                            _ => Flavor::MultiThread,
                        };
                    }
                }
                "worker_threads" => {
                    config.worker_threads =
                        args::positive_int(arg, entry.worker_threads_example, errors)
                            .map(|threads| (threads, arg.tokens()));
                }
                // `#[test]` only.
                "start_paused" => {
                    config.start_paused = args::lit_bool(arg, errors)
                        .filter(|paused| *paused)
                        .map(|_| arg.tokens());
                }
                "shutdown_timeout" => {
                    config.shutdown_timeout =
                        args::duration(arg, Zero::Rejected(entry.zero_shutdown_timeout), errors);
                }
                // `#[main]` only.
                "drain" => {
                    config.drain = args::duration(arg, Zero::Allowed, errors);
                    config.drain_tokens = Some(arg.tokens());
                }
                "stop_timeout" => {
                    config.stop_timeout = args::duration(
                        arg,
                        Zero::Rejected("main would be dropped the moment shutdown starts"),
                        errors,
                    );
                }
                "report" => {
                    config.report = args::choice(arg, &["text", "json", "tracing", "off"], errors);
                }
                "ready" => {
                    if let Some(choice) = args::choice(arg, &["at_start", "when_marked"], errors) {
                        config.ready_at_start = choice == "at_start";
                    }
                }
                // `crate` was read first.
                _ => {}
            }
        }
        config.check(entry, errors);
        config
    }

    /// Checks that need several keys at once; each error blames the key that conflicts.
    fn check(&self, entry: &Entry, errors: &mut Errors) {
        if let (Some(budget), Some(drain), Some(tokens)) =
            (&self.shutdown_timeout, &self.drain, &self.drain_tokens)
            && drain.value >= budget.value
        {
            errors.at(
                    tokens,
                    "the drain takes the whole `shutdown_timeout`: every shutdown would abort every task and close nothing in time; make the drain shorter than the budget, leaving time to stop and close",
                );
        }
        if let (Flavor::MultiThread, Some(tokens)) = (self.flavor, &self.start_paused) {
            errors.at(
                tokens,
                "`start_paused = true` needs the current-thread runtime (tokio can only pause that clock); remove `flavor = \"multi_thread\"` or `start_paused`",
            );
        }
        if let (Flavor::CurrentThread, Some((_, tokens))) = (self.flavor, &self.worker_threads) {
            errors.at(tokens, entry.worker_threads_needs_multi_thread);
        }
    }
}

pub(crate) fn expand_main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(&MAIN, args, item)
}

pub(crate) fn expand_test(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(&TEST, args, item)
}

fn expand(entry: &Entry, args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let config = EntryArgs::parse(entry, args, &mut errors);
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            errors.at_span(
                Span::call_site(),
                format!("#[{}] goes on {}", entry.attribute, entry.item),
            );
            return errors.beside(item);
        }
    };
    if !check_signature(entry, &function.sig, &mut errors) {
        // Emit it as a plain (non-async) fn, which is all `main` or a test can be, so only the
        // macro's errors show.
        let mut function = function;
        function.sig.asyncness = None;
        return errors.beside(function);
    }
    // Only the arguments can be wrong here: expand with defaults for what was rejected, so the
    // only errors are the macro's own.
    errors.beside(expand_valid(entry, &config, &function))
}

/// Checks that the fn is one the expansion can take: `async`, no parameters, no generics.
fn check_signature(entry: &Entry, sig: &Signature, errors: &mut Errors) -> bool {
    let before = errors.count();
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token,
            format!("#[{}] needs {}: add `async`", entry.attribute, entry.item),
        );
    }
    if !sig.inputs.is_empty() {
        errors.at(
            &sig.inputs,
            format!("{} takes no parameters", entry.subject),
        );
    }
    if !sig.generics.params.is_empty() {
        errors.at(
            &sig.generics,
            format!("{} cannot be generic", entry.subject),
        );
    }
    errors.count() == before
}

fn expand_valid(entry: &Entry, config: &EntryArgs, function: &ItemFn) -> TokenStream {
    let krate = &config.krate;
    let private = quote!(#krate::__private);
    let (attrs, inner_attrs) = args::outer_and_inner(&function.attrs);
    let vis = &function.vis;
    let ident = &function.sig.ident;
    let output = match &function.sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => ty.to_token_stream(),
    };
    let flavor = match config.flavor {
        Flavor::MultiThread => quote!(#private::Flavor::MultiThread),
        Flavor::CurrentThread => quote!(#private::Flavor::CurrentThread),
    };
    let worker_threads = args::option(config.worker_threads.as_ref().map(|(threads, _)| {
        let threads = proc_macro2::Literal::usize_unsuffixed(*threads);
        quote!(#threads)
    }));
    let shutdown_timeout = args::option(config.shutdown_timeout.as_ref().map(|d| d.tokens(krate)));
    let block = &function.block;
    let body = quote_spanned!(block.span()=> async move #block);
    match entry.kind {
        Kind::Main => {
            let drain = args::option(config.drain.as_ref().map(|d| d.tokens(krate)));
            let stop_timeout = match &config.stop_timeout {
                Some(stop_timeout) => stop_timeout.tokens(krate),
                None => quote!(#private::DEFAULT_MAIN_STOP_TIMEOUT),
            };
            let ready_at_start = config.ready_at_start;
            let report = match config.report.unwrap_or("text") {
                "json" => quote!(#private::ReportFormat::Json),
                "tracing" => quote!(#private::ReportFormat::Tracing),
                "off" => quote!(#private::ReportFormat::Off),
                _ => quote!(#private::ReportFormat::Text),
            };
            quote! {
                #(#attrs)*
                #vis fn #ident() -> ::std::process::ExitCode {
                    #(#inner_attrs)*
                    #private::run_main::<#output, _>(
                        #private::MainSpec {
                            shutdown_timeout: #shutdown_timeout,
                            drain: #drain,
                            stop_timeout: #stop_timeout,
                            ready_at_start: #ready_at_start,
                            report: #report,
                            worker_threads: #worker_threads,
                            flavor: #flavor,
                        },
                        #body,
                    )
                }
            }
        }
        Kind::Test => {
            let name = LitStr::new(&ident.to_string(), ident.span());
            let start_paused = config.start_paused.is_some();
            quote! {
                #[::core::prelude::v1::test]
                #(#attrs)*
                #vis fn #ident() {
                    #(#inner_attrs)*
                    #private::run_test::<#output, _>(
                        #private::TestSpec {
                            name: #name,
                            flavor: #flavor,
                            worker_threads: #worker_threads,
                            start_paused: #start_paused,
                            shutdown_timeout: #shutdown_timeout,
                        },
                        #body,
                    )
                }
            }
        }
    }
}
