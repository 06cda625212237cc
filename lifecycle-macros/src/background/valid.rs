//! The semantic checks of `#[background]`: arguments that conflict (each error blames the key that
//! causes it), a signature the expansion cannot take, and a body that spawns untracked work or
//! blocks the runtime's thread.

use proc_macro2::Span;
use syn::visit::Visit;
use syn::{Signature, Type};

use super::ast::{Item, Mode, Param, Restart, Spec, path_segments};
use crate::args::Errors;

/// Checks that need several keys at once.
pub(super) fn check_spec(spec: &Spec, errors: &mut Errors) {
    if !spec.shutdown_written {
        errors.at_span(
            Span::call_site(),
            "#[background] needs a shutdown behaviour: add `shutdown` (finish the running tick, start no new one), \
             `shutdown = \"abort\"` (cancel the running tick) or `shutdown = \"final_tick\"` (run one last tick, for flushers)",
        );
    }
    if !spec.interval_written {
        if let Some((Mode::FinalTick, tokens)) = &spec.shutdown {
            errors.at(
                tokens,
                "`shutdown = \"final_tick\"` needs an `interval`: a service (no interval) runs once and has no last tick; \
                 use `shutdown` and flush when its `Shutdown` fires",
            );
        }
        if let Some((_, tokens)) = &spec.timeout {
            errors.at(
                tokens,
                "`timeout` limits one tick and needs an `interval`; a service (no interval) stops through its `Shutdown` \
                 parameter and `stop_timeout`",
            );
        }
        if let Some((_, tokens)) = &spec.missed_tick {
            errors.at(tokens, "`missed_tick` needs an `interval`");
        }
    }
    check_restart(spec, errors);
    if spec.thread_written {
        if let Some((Mode::Abort, tokens)) = &spec.shutdown {
            errors.at(
                tokens,
                "`shutdown = \"abort\"` cannot cancel synchronous code on a thread; use `shutdown` and check \
                 `Shutdown::is_triggered()` (or wait with `Shutdown::sleep_blocking`) inside the body",
            );
        }
        if let Some((_, tokens)) = &spec.timeout {
            errors.at(
                tokens,
                "`timeout` cannot cancel a tick on a thread; remove `thread` to run the loop as an async task, or drop `timeout`",
            );
        }
        if let Some((_, tokens)) = &spec.group {
            errors.at(
                tokens,
                "`group` permits are for async tasks; remove `thread` or `group`",
            );
        }
    }
}

/// `restart` is for services, and `max_restarts` needs a `restart` that restarts.
fn check_restart(spec: &Spec, errors: &mut Errors) {
    let restart = spec.restart.as_ref();
    if spec.interval_written
        && let Some((Restart::OnFailure | Restart::Always, tokens)) = restart
    {
        errors.at(
            tokens,
            "`restart` is for services (no `interval`): an interval loop already goes on after a tick that fails \
             or panics (it is logged and counted, and `critical` starts shutdown); remove `restart`, or remove \
             `interval` to run the body once as a service that is restarted when it fails",
        );
    }
    let Some((_, tokens)) = &spec.max_restarts else {
        return;
    };
    match restart {
        Some((Restart::OnFailure | Restart::Always, _)) => {}
        Some((Restart::Never, _)) => errors.at(
            tokens,
            "`max_restarts` limits restarts, and `restart = \"never\"` makes none; write `restart = \"on_failure\"` \
             (or `\"always\"`), or remove `max_restarts`",
        ),
        // A `restart` whose value was rejected has its own error.
        None if spec.restart_written => {}
        None => errors.at(
            tokens,
            "`max_restarts` limits restarts, and this task is never restarted (`restart` defaults to \"never\"): \
             add `restart = \"on_failure\"` (or `\"always\"`), or remove `max_restarts`",
        ),
    }
}

/// Checks the fn: its signature, its parameters and its body. False when the expansion cannot
/// take it (then it is emitted as written); other mistakes still let it expand.
pub(super) fn check_item(item: &Item, spec: &Spec, errors: &mut Errors) -> bool {
    let sig = &item.function.sig;
    check_stop_after(spec, &sig.ident, errors);
    let mut expandable = check_signature(sig, spec, errors);
    let mut shutdown_seen = false;
    for param in &item.params {
        match param {
            Param::Receiver(receiver) => {
                expandable = false;
                errors.at(
                    receiver,
                    "#[background] fns cannot take `self`: the task outlives the call; pass what it needs (an `Arc`, a clone) as parameters",
                );
            }
            Param::Shutdown(typed) if shutdown_seen => errors.at(
                typed,
                "only one `Shutdown` parameter is filled in by the runtime; remove this one",
            ),
            Param::Shutdown(_) => shutdown_seen = true,
            Param::Caller(typed) => {
                if let Type::Reference(reference) = &*typed.ty {
                    expandable = false;
                    errors.at(
                        reference,
                        "parameters move into the task, which outlives the call: take an owned value (a clone, an `Arc`) instead of a reference",
                    );
                }
            }
        }
    }
    if !spec.interval_written && !shutdown_seen {
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
    BodyCheck {
        is_async: sig.asyncness.is_some(),
        in_blocking_section: false,
        errors,
    }
    .visit_block(&item.function.block);
    expandable
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

/// Whether `expr` is a call of a path ending in `ending`, or a method chain starting at one.
fn chain_starts_with_call(expr: &syn::Expr, ending: &[&str]) -> bool {
    match expr {
        syn::Expr::MethodCall(call) => chain_starts_with_call(&call.receiver, ending),
        syn::Expr::Call(call) => match &*call.func {
            syn::Expr::Path(path) => path_segments(&path.path).ends_with(
                &ending
                    .iter()
                    .map(|segment| (*segment).to_owned())
                    .collect::<Vec<_>>(),
            ),
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

/// A worker that stops after itself would never be told to stop; a name twice is a slip.
fn check_stop_after(spec: &Spec, ident: &syn::Ident, errors: &mut Errors) {
    let own = Some(crate::args::name_or_ident(spec.name.as_ref(), ident).value());
    for (at, name) in spec.stop_after.iter().enumerate() {
        let value = name.value();
        if own.as_deref() == Some(value.as_str()) {
            errors.at(
                name,
                format!("`{value}` cannot stop after itself: it would never be told to stop; remove it from `stop_after`"),
            );
        } else if spec.stop_after[..at]
            .iter()
            .any(|before| before.value() == value)
        {
            errors.at(
                name,
                format!("`{value}` is named twice in `stop_after`; remove one"),
            );
        }
    }
}
