//! The macros never panic on any input: they expand, or report `compile_error!`s beside the item.
//!
//! Each attribute gets one test running its cases in order: generated ones (arguments and items
//! built from a vocabulary of every key, value and token shape the parsers meet; see `generate`)
//! and real ones (every use in `ui-tests/`, as written and then mutated; see `corpus`). A case
//! fails when the expansion panics, is empty, or breaks one of the properties in [`check`]; the
//! test then lists the failing cases with their seed, arguments and item.
//!
//! `LIFECYCLE_FUZZ_CASES=n` runs `n` cases of each kind per attribute instead of [`CASES`];
//! `LIFECYCLE_FUZZ_SEED=n` draws other cases.

mod corpus;
mod generate;
mod items;
mod mutate;
mod rng;

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::str::FromStr;
use std::sync::Once;

use proc_macro2::{TokenStream, TokenTree};
use quote::quote;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, Meta, Token};

use items::ItemKind;
use rng::Rng;

/// Cases of each kind (generated, mutated from `ui-tests/`) per attribute in `cargo test`.
const CASES: usize = 3_000;

/// How many failing cases a report shows.
const SHOWN: usize = 8;

/// The keys of `#[close(...)]` on a `#[managed_resource]` field.
const FIELD_KEYS: &[&str] = &["timeout", "with", "skip"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Macro {
    Background,
    Main,
    ManagedResource,
    Test,
    Timeout,
}

impl Macro {
    const ALL: [Macro; 5] = [
        Macro::Background,
        Macro::Main,
        Macro::ManagedResource,
        Macro::Test,
        Macro::Timeout,
    ];

    fn name(self) -> &'static str {
        match self {
            Macro::Background => "background",
            Macro::Main => "main",
            Macro::ManagedResource => "managed_resource",
            Macro::Test => "test",
            Macro::Timeout => "timeout",
        }
    }

    fn expand(self, args: TokenStream, item: TokenStream) -> TokenStream {
        match self {
            Macro::Background => crate::background::expand(args, item),
            Macro::Main => crate::entry::expand_main(args, item),
            Macro::ManagedResource => crate::managed_resource::expand(args, item),
            Macro::Test => crate::entry::expand_test(args, item),
            Macro::Timeout => crate::timeout::expand(args, item),
        }
    }

    /// Its keys, as its parser reads them (`vocabulary_covers_every_key` holds this list to the
    /// one the macro gives in its errors).
    fn keys(self) -> &'static [&'static str] {
        match self {
            Macro::Background => &[
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
            ],
            Macro::Main => &[
                "shutdown_timeout",
                "drain",
                "stop_timeout",
                "ready",
                "report",
                "worker_threads",
                "flavor",
                "crate",
            ],
            Macro::ManagedResource => &["close_timeout", "before_close", "name", "crate"],
            Macro::Test => &[
                "flavor",
                "worker_threads",
                "start_paused",
                "shutdown_timeout",
                "crate",
            ],
            Macro::Timeout => &["duration", "name", "crate"],
        }
    }

    fn item_kind(self) -> ItemKind {
        match self {
            Macro::ManagedResource => ItemKind::Struct,
            _ => ItemKind::Fn,
        }
    }

    /// `#[timeout]` alone takes a positional duration, and so parses its arguments as
    /// expressions rather than `key = value` metas.
    fn positional(self) -> bool {
        self == Macro::Timeout
    }
}

/// One input to one attribute.
struct Case {
    attribute: Macro,
    /// Where it comes from, to find it again.
    origin: String,
    args: TokenStream,
    item: TokenStream,
    /// A use from `ui-tests/pass/`, as written: it must expand without errors.
    passes: bool,
}

/// Runs every case of `attribute` and fails listing the cases that broke a property.
fn run(attribute: Macro) {
    let cases = case_count();
    let base = base_seed();
    let corpus = corpus::load();
    let own: Vec<&corpus::Entry> = corpus
        .iter()
        .filter(|entry| entry.attribute == attribute)
        .collect();
    assert!(
        !own.is_empty(),
        "ui-tests/ has no use of #[{}] to mutate",
        attribute.name()
    );
    let all = (0..cases)
        .map(|index| generated_case(attribute, base, index))
        .chain(own.iter().map(|entry| as_written(entry)))
        .chain((0..cases).map(|index| mutated_case(attribute, base, index, &own, &corpus)));
    let mut total = 0;
    let mut failures = Vec::new();
    for case in all {
        total += 1;
        if let Err(problem) = check(&case) {
            failures.push((case, problem));
        }
    }
    if !failures.is_empty() {
        report(attribute, total, &failures);
    }
}

/// Case `index` of the generated ones.
fn generated_case(attribute: Macro, base: u64, index: usize) -> Case {
    let seed = rng::case_seed(base, attribute as u64 * 2, index as u64);
    let mut rng = Rng::new(seed);
    let args = generate::args(&mut rng, attribute.keys(), attribute.positional());
    let item = items::item(&mut rng, attribute.item_kind(), FIELD_KEYS);
    Case {
        attribute,
        origin: format!("generated case {index} (seed {seed:#018x})"),
        args,
        item,
        passes: false,
    }
}

/// A use from `ui-tests/`, as written.
fn as_written(entry: &corpus::Entry) -> Case {
    Case {
        attribute: entry.attribute,
        origin: format!("{}, as written", entry.file),
        args: entry.args.clone(),
        item: entry.item.clone(),
        passes: entry.passes,
    }
}

/// Case `index` of the mutated ones: a use of `attribute` from `ui-tests/` (now and then with
/// the item of any use) with its arguments, its item or both mutated one to three times.
fn mutated_case(
    attribute: Macro,
    base: u64,
    index: usize,
    own: &[&corpus::Entry],
    corpus: &[corpus::Entry],
) -> Case {
    let seed = rng::case_seed(base, attribute as u64 * 2 + 1, index as u64);
    let mut rng = Rng::new(seed);
    let entry = rng.pick(own);
    let item_from = if rng.chance(80) {
        entry
    } else {
        &corpus[rng.below(corpus.len())]
    };
    let (mutate_args, mutate_item) = match rng.below(3) {
        0 => (true, false),
        1 => (false, true),
        _ => (true, true),
    };
    let mut args = entry.args.clone();
    if mutate_args {
        let times = 1 + rng.below(3);
        args = mutate::mutate_times(args, &mut rng, times);
    }
    let mut item = item_from.item.clone();
    if mutate_item {
        let times = 1 + rng.below(3);
        item = mutate::mutate_times(item, &mut rng, times);
    }
    Case {
        attribute,
        origin: format!(
            "mutated case {index} (seed {seed:#018x}) of the arguments in {} and the item in {}",
            entry.file, item_from.file
        ),
        args,
        item,
        passes: false,
    }
}

/// Fails with the first failing cases: where each comes from, what went wrong, its inputs.
fn report(attribute: Macro, total: usize, failures: &[(Case, String)]) {
    let shown: Vec<String> = failures
        .iter()
        .take(SHOWN)
        .map(|(case, problem)| {
            format!(
                "#[{}] {}:\n  {problem}\n  args: {}\n  item: {}",
                case.attribute.name(),
                case.origin,
                case.args,
                case.item
            )
        })
        .collect();
    panic!(
        "{} of {total} cases of #[{}] failed (the first {} below; None-delimited groups print without delimiters):\n\n{}",
        failures.len(),
        attribute.name(),
        shown.len(),
        shown.join("\n\n")
    );
}

/// What must hold of every expansion:
/// - it does not panic, and is not empty;
/// - a use from `ui-tests/pass/` expands without `compile_error!`;
/// - arguments that are not a comma-separated list (of `key`/`key = value` metas, or of
///   expressions for `#[timeout]`), a key the attribute does not take, or an item of the wrong
///   kind give a `compile_error!`;
/// - an expansion without `compile_error!` is a list of items (unless the item has a field
///   named `_`, which syn parses and rustc refuses before any macro runs);
/// - when the inputs print as text that lexes again, so does the output.
///
/// What it does not check: that an input no rule above calls invalid expands cleanly (many
/// generated inputs are wrong in ways only the macro knows, such as a zero duration).
fn check(case: &Case) -> Result<(), String> {
    let output = quietly(|| case.attribute.expand(case.args.clone(), case.item.clone()))
        .map_err(|message| format!("panicked: {message}"))?;
    if output.is_empty() {
        return Err("the expansion is empty".to_owned());
    }
    let reports_errors = mentions_compile_error(&output);
    if case.passes && reports_errors {
        return Err(format!(
            "a case that compiles expanded with errors: {output}"
        ));
    }
    if !reports_errors {
        if let Some(mistake) = known_mistake(case) {
            return Err(format!("{mistake}, yet no compile_error!: {output}"));
        }
        if let Err(error) = syn::parse2::<syn::File>(output.clone()) {
            if has_underscore_field(&case.item) {
                // syn takes `_` for a field's name; rustc refuses it before any macro runs.
                return Ok(());
            }
            return Err(format!(
                "expanded without errors into tokens that are not items ({error}): {output}"
            ));
        }
    }
    if relexes(&case.args) && relexes(&case.item) && !relexes(&output) {
        return Err(format!("the output does not lex again: {output}"));
    }
    Ok(())
}

/// A mistake in the case that the macro must report, found without the macro's own parsers.
fn known_mistake(case: &Case) -> Option<String> {
    let attribute = case.attribute;
    let item_fits = match attribute.item_kind() {
        ItemKind::Fn => syn::parse2::<syn::ItemFn>(case.item.clone()).is_ok(),
        ItemKind::Struct => syn::parse2::<syn::ItemStruct>(case.item.clone()).is_ok(),
    };
    if !item_fits {
        return Some("the item is not of the kind the attribute goes on".to_owned());
    }
    let keys: Vec<String> = if attribute.positional() {
        let Ok(exprs) = Punctuated::<Expr, Token![,]>::parse_terminated.parse2(case.args.clone())
        else {
            return Some("the arguments are not a list of expressions".to_owned());
        };
        exprs
            .iter()
            .filter_map(|expr| match expr {
                Expr::Path(path) => Some(&path.path),
                Expr::Assign(assign) => match &*assign.left {
                    Expr::Path(path) => Some(&path.path),
                    _ => None,
                },
                _ => None,
            })
            .map(|path| quote!(#path).to_string())
            .collect()
    } else {
        let Ok(metas) = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(case.args.clone())
        else {
            return Some("the arguments are not a list of `key` or `key = value`".to_owned());
        };
        metas
            .iter()
            .map(|meta| {
                let path = meta.path();
                quote!(#path).to_string()
            })
            .collect()
    };
    keys.iter()
        .find(|key| !attribute.keys().contains(&key.as_str()))
        .map(|key| format!("`{key}` is not a key of #[{}]", attribute.name()))
}

/// Whether the item is a struct with a field named `_`.
fn has_underscore_field(item: &TokenStream) -> bool {
    match syn::parse2::<syn::ItemStruct>(item.clone()) {
        Ok(item) => item
            .fields
            .iter()
            .any(|field| field.ident.as_ref().is_some_and(|ident| ident == "_")),
        Err(_) => false,
    }
}

fn mentions_compile_error(tokens: &TokenStream) -> bool {
    tokens.clone().into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == "compile_error",
        TokenTree::Group(group) => mentions_compile_error(&group.stream()),
        _ => false,
    })
}

/// Whether `tokens`, printed, lex again (a stream built by hand may not: a lone `'`).
fn relexes(tokens: &TokenStream) -> bool {
    TokenStream::from_str(&tokens.to_string()).is_ok()
}

fn case_count() -> usize {
    match std::env::var("LIFECYCLE_FUZZ_CASES") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("LIFECYCLE_FUZZ_CASES={text:?} is not a count")),
        Err(_) => CASES,
    }
}

fn base_seed() -> u64 {
    match std::env::var("LIFECYCLE_FUZZ_SEED") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("LIFECYCLE_FUZZ_SEED={text:?} is not a number")),
        Err(_) => 0,
    }
}

thread_local! {
    /// Set while this thread runs an expansion whose panic is caught and reported.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// The message and location of the panic just caught on this thread.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`, turning a panic into its message and location. The panic hook is the process's,
/// shared by the tests running in parallel: the one installed here records panics on threads
/// inside `quietly` and hands every other panic to the hook it replaced.
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.try_with(Cell::get).unwrap_or(false) {
                let location = info
                    .location()
                    .map(|location| format!(" at {location}"))
                    .unwrap_or_default();
                let message = format!("{}{location}", payload_text(info.payload()));
                let _ = CAUGHT.try_with(|caught| *caught.borrow_mut() = Some(message));
            } else {
                previous(info);
            }
        }));
    });
    QUIET.with(|quiet| quiet.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|quiet| quiet.set(false));
    result.map_err(|payload| {
        CAUGHT
            .with(|caught| caught.borrow_mut().take())
            .unwrap_or_else(|| payload_text(&*payload))
    })
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// The keys an attribute lists when it meets one it does not take.
fn listed_keys(output: &TokenStream) -> Vec<String> {
    let mut messages = Vec::new();
    collect_strings(output, &mut messages);
    let Some(message) = messages
        .iter()
        .find(|message| message.contains("valid keys: "))
    else {
        panic!("no error lists the valid keys in: {output}");
    };
    let (_, list) = message.split_once("valid keys: ").unwrap_or_default();
    let mut keys: Vec<String> = list.split(", ").map(str::to_owned).collect();
    keys.sort();
    keys
}

fn collect_strings(tokens: &TokenStream, out: &mut Vec<String>) {
    for token in tokens.clone() {
        match token {
            TokenTree::Literal(literal) => {
                if let Ok(text) = syn::parse2::<syn::LitStr>(TokenTree::Literal(literal).into()) {
                    out.push(text.value());
                }
            }
            TokenTree::Group(group) => collect_strings(&group.stream(), out),
            _ => {}
        }
    }
}

#[test]
fn vocabulary_covers_every_key() {
    let sorted = |keys: &[&str]| {
        let mut keys: Vec<String> = keys.iter().map(|key| (*key).to_owned()).collect();
        keys.sort();
        keys
    };
    for attribute in Macro::ALL {
        let item = match attribute.item_kind() {
            ItemKind::Fn => quote!(
                async fn f() {}
            ),
            ItemKind::Struct => quote!(
                struct S;
            ),
        };
        let output = attribute.expand(quote!(not_a_key), item);
        assert_eq!(
            listed_keys(&output),
            sorted(attribute.keys()),
            "the keys of #[{}] changed: update `Macro::keys` and `generate::KEYS`",
            attribute.name()
        );
        for key in attribute.keys() {
            assert!(
                generate::KEYS.contains(key),
                "`{key}` is missing from generate::KEYS"
            );
        }
    }
    let output = Macro::ManagedResource.expand(
        TokenStream::new(),
        quote!(
            struct S {
                #[close(not_a_key)]
                a: A,
            }
        ),
    );
    assert_eq!(
        listed_keys(&output),
        sorted(FIELD_KEYS),
        "the keys of #[close] changed: update `FIELD_KEYS` and `generate::KEYS`"
    );
    for key in FIELD_KEYS {
        assert!(
            generate::KEYS.contains(key),
            "`{key}` is missing from generate::KEYS"
        );
    }
}

#[test]
fn background_never_panics() {
    run(Macro::Background);
}

#[test]
fn main_never_panics() {
    run(Macro::Main);
}

#[test]
fn managed_resource_never_panics() {
    run(Macro::ManagedResource);
}

#[test]
fn test_never_panics() {
    run(Macro::Test);
}

#[test]
fn timeout_never_panics() {
    run(Macro::Timeout);
}
