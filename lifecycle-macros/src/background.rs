//! `#[background(...)]`: turns an async fn into a tracked, shutdown-aware loop or service, or (with
//! `thread`) a plain fn into one on a named OS thread.
//!
//! Arguments → [`Spec`] (with every key checked), the fn → [`Item`] (its `Shutdown` parameter found,
//! its body scanned for untracked spawns and blocking sleeps), then one expansion. Any error leaves
//! the fn as written beside the `compile_error!`s.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, ItemFn, LitStr, Pat, ReturnType, Signature, Type};

use crate::args::{self, Arg, DurationArg, Errors, Zero};

const ATTRIBUTE: &str = "background";
const KEYS: &[&str] = &[
    "interval",
    "shutdown",
    "stop_timeout",
    "timeout",
    "name",
    "group",
    "critical",
    "missed_tick",
    "thread",
    "crate",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Finish,
    Abort,
    FinalTick,
}

#[derive(Clone, Copy)]
enum MissedTick {
    Skip,
    Delay,
    Burst,
}

/// The checked arguments. `*_written` says a key was given even when its value was rejected, so
/// one bad value does not also read as a missing key.
struct Spec {
    interval: Option<DurationArg>,
    interval_written: bool,
    shutdown_written: bool,
    thread_written: bool,
    shutdown: Option<(Mode, TokenStream)>,
    stop_timeout: Option<DurationArg>,
    timeout: Option<(DurationArg, TokenStream)>,
    name: Option<LitStr>,
    group: Option<(LitStr, TokenStream)>,
    critical: bool,
    missed_tick: Option<(MissedTick, TokenStream)>,
    thread: Option<Span>,
    krate: syn::Path,
}

impl Spec {
    fn parse(tokens: TokenStream, errors: &mut Errors) -> Spec {
        let (parsed, krate) = args::parse_attribute(tokens, ATTRIBUTE, KEYS, errors);
        let written = |key: &str| parsed.iter().any(|arg| arg.key == key);
        let mut spec = Spec {
            interval: None,
            interval_written: written("interval"),
            shutdown_written: written("shutdown"),
            thread_written: written("thread"),
            shutdown: None,
            stop_timeout: None,
            timeout: None,
            name: None,
            group: None,
            critical: false,
            missed_tick: None,
            thread: None,
            krate,
        };
        for arg in &parsed {
            spec.set(arg, errors);
        }
        spec
    }

    fn set(&mut self, arg: &Arg, errors: &mut Errors) {
        match arg.key.to_string().as_str() {
            "interval" => {
                self.interval = args::duration(
                    arg,
                    Zero::Rejected("a zero interval would spin without pause"),
                    errors,
                );
            }
            "shutdown" => {
                let mode = match &arg.value {
                    None => Some(Mode::Finish),
                    Some(_) => args::choice(arg, &["finish", "abort", "final_tick"], errors).map(
                        |choice| match choice {
                            "abort" => Mode::Abort,
                            "final_tick" => Mode::FinalTick,
                            _ => Mode::Finish,
                        },
                    ),
                };
                self.shutdown = mode.map(|mode| (mode, arg.tokens()));
            }
            "stop_timeout" => {
                self.stop_timeout = args::duration(
                    arg,
                    Zero::Rejected(
                        "shutdown would abort the task without giving it a chance to stop",
                    ),
                    errors,
                );
            }
            "timeout" => {
                self.timeout = args::duration(
                    arg,
                    Zero::Rejected("every tick would be cancelled at once"),
                    errors,
                )
                .map(|duration| (duration, arg.tokens()));
            }
            "name" => self.name = args::name(arg, errors),
            "group" => self.group = args::name(arg, errors).map(|name| (name, arg.tokens())),
            "critical" => self.critical = args::flag(arg, errors).is_some(),
            "missed_tick" => {
                self.missed_tick =
                    args::choice(arg, &["skip", "delay", "burst"], errors).map(|choice| {
                        let behaviour = match choice {
                            "delay" => MissedTick::Delay,
                            "burst" => MissedTick::Burst,
                            _ => MissedTick::Skip,
                        };
                        (behaviour, arg.tokens())
                    });
            }
            "thread" => self.thread = args::flag(arg, errors),
            // `crate` was read first.
            _ => {}
        }
    }

    /// Checks that need several keys at once; each error blames the key that conflicts.
    fn check(&self, errors: &mut Errors) {
        if !self.shutdown_written {
            errors.at_span(
                Span::call_site(),
                "#[background] needs a shutdown behaviour: add `shutdown` (finish the running tick, start no new one), \
                 `shutdown = \"abort\"` (cancel the running tick) or `shutdown = \"final_tick\"` (run one last tick, for flushers)",
            );
        }
        if !self.interval_written {
            if let Some((Mode::FinalTick, tokens)) = &self.shutdown {
                errors.at(
                    tokens,
                    "`shutdown = \"final_tick\"` needs an `interval`: a service (no interval) runs once and has no last tick; \
                     use `shutdown` and flush when its `Shutdown` fires",
                );
            }
            if let Some((_, tokens)) = &self.timeout {
                errors.at(
                    tokens,
                    "`timeout` limits one tick and needs an `interval`; a service (no interval) stops through its `Shutdown` \
                     parameter and `stop_timeout`",
                );
            }
            if let Some((_, tokens)) = &self.missed_tick {
                errors.at(tokens, "`missed_tick` needs an `interval`");
            }
        }
        if self.thread_written {
            if let Some((Mode::Abort, tokens)) = &self.shutdown {
                errors.at(
                    tokens,
                    "`shutdown = \"abort\"` cannot cancel synchronous code on a thread; use `shutdown` and check \
                     `Shutdown::is_triggered()` (or wait with `Shutdown::sleep_blocking`) inside the body",
                );
            }
            if let Some((_, tokens)) = &self.timeout {
                errors.at(
                    tokens,
                    "`timeout` cannot cancel a tick on a thread; remove `thread` to run the loop as an async task, or drop `timeout`",
                );
            }
            if let Some((_, tokens)) = &self.group {
                errors.at(
                    tokens,
                    "`group` permits are for async tasks; remove `thread` or `group`",
                );
            }
        }
    }
}

/// The parts of the fn the expansion needs.
struct Item {
    function: ItemFn,
    /// False when the signature cannot be expanded (then the fn is emitted as written).
    expandable: bool,
    /// The `Shutdown` parameter: its pattern and its type as written.
    shutdown_param: Option<(Box<Pat>, Box<Type>)>,
    /// The other parameters, as written.
    params: Vec<FnArg>,
}

impl Item {
    fn parse(function: ItemFn, spec: &Spec, errors: &mut Errors) -> Item {
        let sig = &function.sig;
        let mut expandable = check_signature(sig, spec, errors);
        let mut shutdown_param = None;
        let mut params = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(receiver) => {
                    expandable = false;
                    errors.at(
                        receiver,
                        "#[background] fns cannot take `self`: the task outlives the call; pass what it needs (an `Arc`, a clone) as parameters",
                    );
                }
                FnArg::Typed(typed) => {
                    if is_shutdown_type(&typed.ty, &spec.krate) {
                        if shutdown_param.is_some() {
                            errors.at(typed, "only one `Shutdown` parameter is filled in by the runtime; remove this one");
                        } else {
                            shutdown_param = Some((typed.pat.clone(), typed.ty.clone()));
                        }
                        continue;
                    }
                    if let Type::Reference(reference) = &*typed.ty {
                        expandable = false;
                        errors.at(
                            reference,
                            "parameters move into the task, which outlives the call: take an owned value (a clone, an `Arc`) instead of a reference",
                        );
                    }
                    params.push(input.clone());
                }
            }
        }
        if !spec.interval_written && shutdown_param.is_none() {
            errors.at(
                &sig.ident,
                format!(
                    "`{}` is a service (no `interval`): it runs once and must notice shutdown itself, so it needs a \
                     `Shutdown` parameter (e.g. `shutdown: lifecycle_runtime::Shutdown`, filled in by the runtime); \
                     or give it an `interval` to run it as a loop",
                    sig.ident
                ),
            );
        }
        let mut body_check = BodyCheck {
            is_async: sig.asyncness.is_some(),
            in_blocking_section: false,
            errors,
        };
        body_check.visit_block(&function.block);
        Item {
            function,
            expandable,
            shutdown_param,
            params,
        }
    }
}

/// Checks what the expansion needs of the signature; false when it cannot be expanded.
fn check_signature(sig: &Signature, spec: &Spec, errors: &mut Errors) -> bool {
    let before = errors.count();
    match (sig.asyncness, spec.thread_written) {
        (Some(asyncness), true) => errors.at(
            asyncness,
            "`thread` runs the body on an OS thread, where it cannot be async: remove `async`, or remove `thread` to run it as a tokio task",
        ),
        (None, false) => errors.at(
            sig.fn_token,
            "#[background] on a plain fn needs `thread` (a named OS thread); write `async fn` to run it as a tokio task",
        ),
        _ => {}
    }
    if let Some(constness) = sig.constness {
        errors.at(constness, "#[background] fns cannot be `const`");
    }
    if let Some(abi) = &sig.abi {
        errors.at(abi, "#[background] fns cannot have an `extern` ABI");
    }
    if let Some(variadic) = &sig.variadic {
        errors.at(variadic, "#[background] fns cannot be variadic");
    }
    errors.count() == before
}

/// Whether a parameter's type is the runtime's `Shutdown`: written `Shutdown` (imported), or
/// through the runtime's path (`lifecycle_runtime::Shutdown`, or the `crate = "..."` one).
/// A `Shutdown` of another path is an ordinary parameter.
fn is_shutdown_type(ty: &Type, krate: &syn::Path) -> bool {
    let Type::Path(path) = ty else { return false };
    if path.qself.is_some() {
        return false;
    }
    let segments = path_segments(&path.path);
    let runtime = path_segments(krate);
    match segments.split_last() {
        Some((last, prefix)) if last == "Shutdown" => {
            prefix.is_empty() || prefix == runtime.as_slice() || prefix == ["lifecycle_runtime"]
        }
        _ => false,
    }
}

fn path_segments(path: &syn::Path) -> Vec<String> {
    path.segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect()
}

/// Whether `expr` is a call of a path ending in `ending`, or a method chain starting at one.
fn chain_starts_with_call(expr: &syn::Expr, ending: &[&str]) -> bool {
    match expr {
        syn::Expr::MethodCall(call) => chain_starts_with_call(&call.receiver, ending),
        syn::Expr::Call(call) => match &*call.func {
            syn::Expr::Path(path) => path_segments(&path.path)
                .ends_with(&ending.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()),
            _ => false,
        },
        _ => false,
    }
}

/// Finds untracked spawns and blocking sleeps in the body. Paths are matched as written: a
/// `use tokio::spawn;` followed by `spawn(...)` is not seen (a macro cannot resolve imports).
struct BodyCheck<'a> {
    is_async: bool,
    /// Inside a call of `spawn_blocking` or `block_in_place`, where blocking is what is meant.
    in_blocking_section: bool,
    errors: &'a mut Errors,
}

impl<'ast> Visit<'ast> for BodyCheck<'_> {
    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        if call.method == "spawn"
            && chain_starts_with_call(&call.receiver, &["thread", "Builder", "new"])
        {
            self.errors.at(
                &call.method,
                "untracked thread: shutdown cannot stop it or report it; use `lifecycle_runtime::spawn_thread(\"name\", |shutdown| ...)`",
            );
        }
        syn::visit::visit_expr_method_call(self, call);
    }

    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        if let syn::Expr::Path(path) = &*call.func {
            let segments = path_segments(&path.path);
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            if matches!(segments.last(), Some(&"spawn_blocking" | &"block_in_place")) {
                let outer = std::mem::replace(&mut self.in_blocking_section, true);
                syn::visit::visit_expr_call(self, call);
                self.in_blocking_section = outer;
                return;
            }
            match segments.as_slice() {
                ["tokio", "spawn"] | ["tokio", "task", "spawn"] => self.errors.at(
                    &call.func,
                    "untracked task: shutdown cannot wait for it, abort it or name it; use `lifecycle_runtime::spawn(\"name\", future)`",
                ),
                ["std", "thread", "spawn"] | ["thread", "spawn"] => self.errors.at(
                    &call.func,
                    "untracked thread: shutdown cannot stop it or report it; use `lifecycle_runtime::spawn_thread(\"name\", |shutdown| ...)`",
                ),
                ["std", "thread", "sleep"] | ["thread", "sleep"] if self.is_async && !self.in_blocking_section => self.errors.at(
                    &call.func,
                    "`std::thread::sleep` blocks the runtime's thread and cannot be woken by shutdown; use \
                     `tokio::time::sleep(d).await` (or `shutdown.sleep(d).await`), or run this loop with `thread`",
                ),
                _ => {}
            }
        }
        syn::visit::visit_expr_call(self, call);
    }
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let spec = Spec::parse(args, &mut errors);
    spec.check(&mut errors);
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            errors.at_span(
                Span::call_site(),
                "#[background] goes on an `async fn` (a tokio task) or, with `thread`, on a plain `fn` (an OS thread)",
            );
            return errors.beside(item);
        }
    };
    let parsed = Item::parse(function, &spec, &mut errors);
    if !parsed.expandable {
        return errors.beside(&parsed.function);
    }
    // Wrong arguments or body: expand anyway (defaults stand in for rejected values) so callers
    // still see the `TaskHandle` signature and only the macro's own errors show.
    errors.beside(expand_valid(&spec, &parsed))
}

fn expand_valid(spec: &Spec, item: &Item) -> TokenStream {
    let krate = &spec.krate;
    let function = &item.function;
    let attrs = &function.attrs;
    let vis = &function.vis;
    let sig = &function.sig;
    let ident = &sig.ident;
    let unsafety = &sig.unsafety;
    let generics = &sig.generics;
    let where_clause = &sig.generics.where_clause;
    let params = &item.params;
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
    let bind_shutdown = item
        .shutdown_param
        .as_ref()
        .map(|(pat, ty)| quote!(let #pat: #ty = #ticker.shutdown();));
    let block_span = block.span();
    // A service (no interval) runs its body once: `if`, not `while`, so the expansion says so.
    let repeat = if spec.interval_written {
        quote!(while)
    } else {
        quote!(if)
    };

    if spec.thread_written {
        let spawn = quote_spanned!(block_span=> #krate::__private::spawn_background_thread);
        quote! {
            #(#attrs)*
            #vis #unsafety fn #ident #generics (#(#params),*) -> #krate::ThreadHandle #where_clause {
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
        let spawn = quote_spanned!(block_span=> #krate::__private::spawn_background);
        quote! {
            #(#attrs)*
            #vis #unsafety fn #ident #generics (#(#params),*) -> #krate::TaskHandle #where_clause {
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
    quote! {
        #private::BackgroundSpec {
            name: #name,
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
