//! `#[main]`: runs `async fn main` on a tokio runtime under the global coordinator, with signal
//! handling, a bounded shutdown, a printed report and an honest exit code.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, LitStr, ReturnType};

use crate::args::{self, DurationArg, Errors, Zero};

const MAIN_KEYS: &[&str] = &[
    "shutdown_timeout",
    "drain",
    "stop_timeout",
    "worker_threads",
    "flavor",
    "crate",
];

struct MainArgs {
    shutdown_timeout: Option<DurationArg>,
    drain: Option<DurationArg>,
    stop_timeout: Option<DurationArg>,
    worker_threads: Option<(usize, TokenStream)>,
    current_thread: Option<TokenStream>,
    krate: syn::Path,
}

impl MainArgs {
    fn parse(tokens: TokenStream, errors: &mut Errors) -> MainArgs {
        let (parsed, krate) =
            args::parse_attribute(tokens, "lifecycle_runtime::main", MAIN_KEYS, errors);
        let mut main = MainArgs {
            shutdown_timeout: None,
            drain: None,
            stop_timeout: None,
            worker_threads: None,
            current_thread: None,
            krate,
        };
        for arg in &parsed {
            match arg.key.to_string().as_str() {
                "shutdown_timeout" => {
                    main.shutdown_timeout = args::duration(
                        arg,
                        Zero::Rejected(
                            "nothing could stop or close; give shutdown a budget such as \"30s\"",
                        ),
                        errors,
                    );
                }
                "drain" => main.drain = args::duration(arg, Zero::Allowed, errors),
                "stop_timeout" => {
                    main.stop_timeout = args::duration(
                        arg,
                        Zero::Rejected("main would be dropped the moment shutdown starts"),
                        errors,
                    );
                }
                "worker_threads" => {
                    main.worker_threads =
                        args::positive_int(arg, "4", errors).map(|threads| (threads, arg.tokens()));
                }
                "flavor"
                    if args::choice(arg, &["multi_thread", "current_thread"], errors)
                        == Some("current_thread") =>
                {
                    main.current_thread = Some(arg.tokens());
                }
                _ => {}
            }
        }
        if let (Some(_), Some((_, tokens))) = (&main.current_thread, &main.worker_threads) {
            errors.at(
                tokens,
                "`worker_threads` applies to the multi-thread runtime; remove it or remove `flavor = \"current_thread\"`",
            );
        }
        main
    }
}

pub(crate) fn expand_main(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let main = MainArgs::parse(args, &mut errors);
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            errors.at_span(
                Span::call_site(),
                "#[lifecycle_runtime::main] goes on `async fn main()`",
            );
            return errors.beside(item);
        }
    };
    let args_ok = errors.is_empty();
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token,
            "#[lifecycle_runtime::main] needs `async fn main()`: add `async`",
        );
    }
    if !sig.inputs.is_empty() {
        errors.at(&sig.inputs, "`main` takes no parameters");
    }
    if !sig.generics.params.is_empty() {
        errors.at(&sig.generics, "`main` cannot be generic");
    }
    if !errors.is_empty() && !args_ok && errors_only_in_args(&function) {
        // Only the arguments are wrong: expand with defaults for what was rejected, so the only
        // errors are the macro's own.
        return errors.beside(expand_valid(&main, &function));
    }
    if !errors.is_empty() {
        // The signature itself is wrong: emit it without `async`, which `main` cannot be.
        let mut function = function;
        function.sig.asyncness = None;
        return errors.beside(function);
    }
    expand_valid(&main, &function)
}

/// Whether the fn is one the expansion can take (`async`, no parameters, no generics).
fn errors_only_in_args(function: &ItemFn) -> bool {
    let sig = &function.sig;
    sig.asyncness.is_some() && sig.inputs.is_empty() && sig.generics.params.is_empty()
}

fn expand_valid(main: &MainArgs, function: &ItemFn) -> TokenStream {
    let sig = &function.sig;

    let krate = &main.krate;
    let private = quote!(#krate::__private);
    let attrs = &function.attrs;
    let vis = &function.vis;
    let ident = &sig.ident;
    let block = &function.block;
    let output = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => ty.to_token_stream(),
    };
    let shutdown_timeout = args::option(main.shutdown_timeout.as_ref().map(|d| d.tokens(krate)));
    let drain = args::option(main.drain.as_ref().map(|d| d.tokens(krate)));
    let stop_timeout = match &main.stop_timeout {
        Some(stop_timeout) => stop_timeout.tokens(krate),
        None => quote!(#private::DEFAULT_MAIN_STOP_TIMEOUT),
    };
    let worker_threads = args::option(main.worker_threads.as_ref().map(|(threads, _)| {
        let threads = proc_macro2::Literal::usize_unsuffixed(*threads);
        quote!(#threads)
    }));
    let flavor = if main.current_thread.is_some() {
        quote!(#private::Flavor::CurrentThread)
    } else {
        quote!(#private::Flavor::MultiThread)
    };
    let body = quote_spanned!(block.span()=> async move #block);
    quote! {
        #(#attrs)*
        #vis fn #ident() -> ::std::process::ExitCode {
            #private::run_main::<#output, _>(
                #private::MainSpec {
                    shutdown_timeout: #shutdown_timeout,
                    drain: #drain,
                    stop_timeout: #stop_timeout,
                    worker_threads: #worker_threads,
                    flavor: #flavor,
                },
                #body,
            )
        }
    }
}

const TEST_KEYS: &[&str] = &[
    "flavor",
    "worker_threads",
    "start_paused",
    "shutdown_timeout",
    "crate",
];

struct TestArgs {
    multi_thread: bool,
    worker_threads: Option<(usize, TokenStream)>,
    start_paused: bool,
    shutdown_timeout: Option<DurationArg>,
    krate: syn::Path,
}

impl TestArgs {
    fn parse(tokens: TokenStream, errors: &mut Errors) -> TestArgs {
        let (parsed, krate) =
            args::parse_attribute(tokens, "lifecycle_runtime::test", TEST_KEYS, errors);
        let mut test = TestArgs {
            multi_thread: false,
            worker_threads: None,
            start_paused: false,
            shutdown_timeout: None,
            krate,
        };
        let mut start_paused = None;
        for arg in &parsed {
            match arg.key.to_string().as_str() {
                "flavor" => {
                    test.multi_thread =
                        args::choice(arg, &["current_thread", "multi_thread"], errors)
                            == Some("multi_thread");
                }
                "worker_threads" => {
                    test.worker_threads =
                        args::positive_int(arg, "2", errors).map(|threads| (threads, arg.tokens()));
                }
                "start_paused" => {
                    if let Some(value) = args::lit_bool(arg, errors) {
                        test.start_paused = value;
                        if value {
                            start_paused = Some(arg.tokens());
                        }
                    }
                }
                "shutdown_timeout" => {
                    test.shutdown_timeout = args::duration(
                        arg,
                        Zero::Rejected(
                            "nothing could stop or close; give shutdown a budget such as \"5s\"",
                        ),
                        errors,
                    );
                }
                _ => {}
            }
        }
        if let (true, Some(tokens)) = (test.multi_thread, &start_paused) {
            errors.at(
                tokens,
                "`start_paused = true` needs the current-thread runtime (tokio can only pause that clock); remove `flavor = \"multi_thread\"` or `start_paused`",
            );
        }
        if let (false, Some((_, tokens))) = (test.multi_thread, &test.worker_threads) {
            errors.at(
                tokens,
                "`worker_threads` applies to `flavor = \"multi_thread\"`; add that, or remove `worker_threads`",
            );
        }
        test
    }
}

pub(crate) fn expand_test(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let test = TestArgs::parse(args, &mut errors);
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            errors.at_span(
                Span::call_site(),
                "#[lifecycle_runtime::test] goes on an `async fn`",
            );
            return errors.beside(item);
        }
    };
    let sig = &function.sig;
    if sig.asyncness.is_none() {
        errors.at(
            sig.fn_token,
            "#[lifecycle_runtime::test] needs an `async fn`: add `async`",
        );
    }
    if !sig.inputs.is_empty() {
        errors.at(&sig.inputs, "a test takes no parameters");
    }
    if !sig.generics.params.is_empty() {
        errors.at(&sig.generics, "a test cannot be generic");
    }
    let signature_ok = errors_only_in_args(&function);
    if !signature_ok {
        // Emit it as a plain (non-async) fn so only the macro's errors show.
        let mut function = function;
        function.sig.asyncness = None;
        return errors.beside(function);
    }
    let krate = &test.krate;
    let private = quote!(#krate::__private);
    let attrs = &function.attrs;
    let vis = &function.vis;
    let ident = &sig.ident;
    let name = LitStr::new(&ident.to_string(), ident.span());
    let block = &function.block;
    let output = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => ty.to_token_stream(),
    };
    let flavor = if test.multi_thread {
        quote!(#private::Flavor::MultiThread)
    } else {
        quote!(#private::Flavor::CurrentThread)
    };
    let worker_threads = args::option(test.worker_threads.as_ref().map(|(threads, _)| {
        let threads = proc_macro2::Literal::usize_unsuffixed(*threads);
        quote!(#threads)
    }));
    let start_paused = test.start_paused;
    let shutdown_timeout = args::option(test.shutdown_timeout.as_ref().map(|d| d.tokens(krate)));
    let body = quote_spanned!(block.span()=> async move #block);
    errors.beside(quote! {
        #[::core::prelude::v1::test]
        #(#attrs)*
        #vis fn #ident() {
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
    })
}
