//! The typed model of one `#[background]` use, built from syn: [`Spec`], its arguments (each value
//! checked on its own as it is read), and [`Item`], the fn with its parameters sorted into the
//! runtime's `Shutdown` and the ones the caller passes. Combinations are checked in `valid`.

use proc_macro2::{Span, TokenStream};
use syn::{FnArg, ItemFn, LitStr, PatType, Receiver, Type};

use crate::args::{self, Arg, DurationArg, Errors, Rate, Zero};

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
    "restart",
    "max_restarts",
    "stop_after",
    "crate",
];

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Finish,
    Abort,
    FinalTick,
}

/// `restart = "..."`: which ends of a service's run start it again.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Restart {
    Never,
    OnFailure,
    Always,
}

#[derive(Clone, Copy)]
pub(super) enum MissedTick {
    Skip,
    Delay,
    Burst,
}

/// The arguments. `*_written` says a key was given even when its value was rejected, so one bad
/// value does not also read as a missing key. The tokens beside a value are the argument as
/// written, for errors that blame it.
pub(super) struct Spec {
    pub(super) interval: Option<DurationArg>,
    pub(super) interval_written: bool,
    pub(super) shutdown_written: bool,
    pub(super) thread_written: bool,
    pub(super) shutdown: Option<(Mode, TokenStream)>,
    pub(super) stop_timeout: Option<DurationArg>,
    pub(super) timeout: Option<(DurationArg, TokenStream)>,
    pub(super) name: Option<LitStr>,
    pub(super) group: Option<(LitStr, TokenStream)>,
    pub(super) critical: bool,
    pub(super) missed_tick: Option<(MissedTick, TokenStream)>,
    pub(super) thread: Option<Span>,
    pub(super) restart: Option<(Restart, TokenStream)>,
    pub(super) restart_written: bool,
    pub(super) max_restarts: Option<(Rate, TokenStream)>,
    /// `stop_after = "name"` or `stop_after = ["a", "b"]`: the names, each as written.
    pub(super) stop_after: Vec<LitStr>,
    pub(super) krate: syn::Path,
}

impl Spec {
    /// Whether the service is supervised: `restart = "on_failure"` or `"always"` on a fn without
    /// an `interval` (with one, `restart` is an error and the loop expands unsupervised).
    pub(super) fn supervised(&self) -> Option<Restart> {
        match &self.restart {
            Some((restart, _)) if *restart != Restart::Never && !self.interval_written => {
                Some(*restart)
            }
            _ => None,
        }
    }
}

impl Spec {
    pub(super) fn parse(tokens: TokenStream, errors: &mut Errors) -> Spec {
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
            restart: None,
            restart_written: written("restart"),
            max_restarts: None,
            stop_after: Vec::new(),
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
            "restart" => {
                self.restart =
                    args::choice(arg, &["never", "on_failure", "always"], errors).map(|choice| {
                        let restart = match choice {
                            "on_failure" => Restart::OnFailure,
                            "always" => Restart::Always,
                            _ => Restart::Never,
                        };
                        (restart, arg.tokens())
                    });
            }
            "max_restarts" => {
                self.max_restarts = args::rate(
                    arg,
                    "restarts",
                    "for a service that is never restarted, remove `restart` and `max_restarts`",
                    errors,
                )
                .map(|rate| (rate, arg.tokens()));
            }
            "stop_after" => self.stop_after = stop_after(arg, errors),
            // `crate` was read first.
            _ => {}
        }
    }
}

/// `stop_after = "http"` or `stop_after = ["http", "grpc"]`: non-empty names, at least one.
fn stop_after(arg: &Arg, errors: &mut Errors) -> Vec<LitStr> {
    const USAGE: &str = "`stop_after` takes the name of a task or thread, or a list of them: \
                         `stop_after = \"http\"` or `stop_after = [\"http\", \"grpc\"]`";
    let elements: Vec<&syn::Expr> = match &arg.value {
        Some(syn::Expr::Array(array)) => array.elems.iter().collect(),
        Some(value @ syn::Expr::Lit(_)) => vec![value],
        Some(value) => {
            errors.at(value, USAGE);
            return Vec::new();
        }
        None => {
            errors.at(&arg.key, USAGE);
            return Vec::new();
        }
    };
    if elements.is_empty() {
        errors.at(
            arg.tokens(),
            format!("{USAGE}; an empty list stops after nothing: remove `stop_after`"),
        );
    }
    let mut names = Vec::new();
    for element in elements {
        match element {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(name),
                ..
            }) if !name.value().trim().is_empty() => names.push(name.clone()),
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(name),
                ..
            }) => errors.at(name, "a name in `stop_after` must not be empty"),
            other => errors.at(other, USAGE),
        }
    }
    names
}

/// One parameter of the fn, sorted.
pub(super) enum Param {
    /// `self`, which a task cannot take.
    Receiver(Receiver),
    /// The runtime's `Shutdown`, filled in by the runtime rather than the caller.
    Shutdown(PatType),
    /// A parameter the caller passes.
    Caller(PatType),
}

/// The fn, and its parameters sorted.
pub(super) struct Item {
    pub(super) function: ItemFn,
    pub(super) params: Vec<Param>,
}

impl Item {
    pub(super) fn new(function: ItemFn, spec: &Spec) -> Item {
        let params = function
            .sig
            .inputs
            .iter()
            .map(|input| match input {
                FnArg::Receiver(receiver) => Param::Receiver(receiver.clone()),
                FnArg::Typed(typed) if is_shutdown_type(&typed.ty, &spec.krate) => {
                    Param::Shutdown(typed.clone())
                }
                FnArg::Typed(typed) => Param::Caller(typed.clone()),
            })
            .collect();
        Item { function, params }
    }

    /// The `Shutdown` parameter the runtime fills in: the first one (more are an error).
    pub(super) fn shutdown_param(&self) -> Option<&PatType> {
        self.params.iter().find_map(|param| match param {
            Param::Shutdown(typed) => Some(typed),
            _ => None,
        })
    }

    /// The parameters the caller passes, which stay in the fn's signature.
    pub(super) fn caller_params(&self) -> impl Iterator<Item = &PatType> {
        self.params.iter().filter_map(|param| match param {
            Param::Caller(typed) => Some(typed),
            _ => None,
        })
    }
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

/// The identifiers of a path, as written.
pub(super) fn path_segments(path: &syn::Path) -> Vec<String> {
    path.segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect()
}
