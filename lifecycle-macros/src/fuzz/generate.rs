//! Random inputs built from a vocabulary that reaches the parsers' interesting paths: every key of
//! every attribute, the values they take (durations valid and not, names, choices, crate paths,
//! numbers, flags), and the tokens around them (punctuation, groups of every delimiter, lifetimes,
//! keywords). Items are mostly near-valid: real fns and structs, mutated.

use std::str::FromStr;

use proc_macro2::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

use super::mutate;
use super::rng::Rng;

/// Every key of every attribute and of `#[close(...)]`, read from the parsers
/// (`vocabulary_covers_every_key` checks it against the keys the macros list in their errors).
pub(super) const KEYS: &[&str] = &[
    // #[background]
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
    // #[main], #[test]
    "shutdown_timeout",
    "drain",
    "ready",
    "report",
    "worker_threads",
    "flavor",
    "start_paused",
    // #[managed_resource] and its fields' #[close(...)]
    "close_timeout",
    "before_close",
    "with",
    "skip",
    // #[timeout]
    "duration",
];

/// Words beside the keys: the values of the choices, keywords, and names the parsers look at.
const WORDS: &[&str] = &[
    "finish",
    "abort",
    "final_tick",
    "delay",
    "burst",
    "never",
    "on_failure",
    "always",
    "multi_thread",
    "current_thread",
    "at_start",
    "when_marked",
    "text",
    "json",
    "tracing",
    "off",
    "true",
    "false",
    "async",
    "fn",
    "struct",
    "enum",
    "union",
    "const",
    "unsafe",
    "extern",
    "pub",
    "self",
    "Self",
    "super",
    "crate",
    "where",
    "impl",
    "dyn",
    "move",
    "await",
    "mut",
    "ref",
    "let",
    "Shutdown",
    "Result",
    "Option",
    "Elapsed",
    "u32",
    "String",
    "lifecycle_runtime",
    "lc",
    "tokio",
    "std",
    "thread",
    "spawn",
    "sleep",
    "spawn_blocking",
    "close",
    "test",
    "main",
    "background",
    "managed_resource",
    "x",
    "_",
    "été",
    "Ω",
];

const RAW_WORDS: &[&str] = &["type", "fn", "match", "async", "shutdown", "interval"];

const PUNCTS: &[char] = &[
    '=', ',', ':', '#', '!', '-', '&', '*', '<', '>', '.', ';', '@', '?', '$', '~', '+', '|', '/',
    '%', '^', '\'',
];

/// Durations as written, valid and not.
const DURATIONS: &[&str] = &[
    "5s",
    "0s",
    "",
    " ",
    "-1s",
    "1ms",
    "250ms",
    "1m 30s",
    "1500us",
    "1µs",
    "abc",
    "5",
    "s",
    "1.",
    ".5s",
    "1.5s",
    "5 s",
    "5S",
    "5s\0",
    "\u{202e}5s",
    "☃",
    "10 nights",
    "99999999999999999999s",
    "18446744073709551615s",
    "18446744073709551615ns",
    "0.000000000000000000001s",
];

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "5",
    "30",
    "250",
    "999999999",
    "1000000000",
    "4294967295",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999",
];

const UNITS: &[&str] = &[
    "ns", "nsec", "us", "µs", "ms", "msec", "s", "sec", "secs", "m", "min", "h", "hr", "d", "day",
    "w", "week", "M", "month", "y", "year", "", "x", "nights",
];

const NAMES: &[&str] = &[
    "",
    " ",
    "\t\n",
    "io",
    "auto-flush",
    "renamed",
    "é",
    "\u{0}",
    "\"",
    "\\",
    "{}",
    "a\nb",
];

const CHOICES: &[&str] = &[
    "finish",
    "abort",
    "final_tick",
    "skip",
    "delay",
    "burst",
    "multi_thread",
    "current_thread",
    "at_start",
    "when_marked",
    "never",
    "on_failure",
    "always",
    "FINISH",
    "final tick",
    "final_tick ",
];

const CRATE_PATHS: &[&str] = &[
    "lc",
    "lifecycle_runtime",
    "::lifecycle_runtime",
    "a::b",
    "super::lc",
    "self",
    "crate",
    "Self",
    "r#type",
    "r#self",
    "a<T>",
    "a::<T>::b",
    "<T as U>::x",
    "1",
    "::",
    "a::",
    "(",
    ")",
    "/*",
    "//",
    "'a",
    "'",
    "a b",
    "fn",
    "é",
    "\\",
    "\"",
];

const PATHS: &[&str] = &[
    "Self::flush",
    "close_writer",
    "a::b::c",
    "::x",
    "<T as U>::x",
    "Vec::<u8>::new",
    "self",
    "crate::x",
];

/// Literal tokens that only `Literal::from_str` builds: suffixes, radixes, huge and odd numbers,
/// raw, byte and C strings.
const ODD_LITERALS: &[&str] = &[
    "340282366920938463463374607431768211455",
    "99999999999999999999999999999999999999999",
    "4usize",
    "4u8",
    "4i128",
    "0x10",
    "0b1",
    "0o7",
    "1_000",
    "1e10",
    "5f32",
    "1.5",
    "r\"5s\"",
    "r#\"5s\"#",
    "\"5s\"suffix",
    "b\"5s\"",
    "c\"5s\"",
    "'a'",
    "b'a'",
    "\"\\u{0}\"",
];

/// A string literal's content: a duration, a name, a choice, a crate path or random text.
pub(super) fn string_content(rng: &mut Rng) -> String {
    match rng.below(10) {
        0..=2 => rng.pick(DURATIONS).to_owned(),
        3 if rng.chance(40) => rate(rng),
        3 => composed_duration(rng),
        4 => edge_duration(rng),
        5 => rng.pick(NAMES).to_owned(),
        6 => rng.pick(CHOICES).to_owned(),
        7 => rng.pick(CRATE_PATHS).to_owned(),
        8 => {
            let tokens = random_stream(rng, 0, 4);
            tokens.to_string()
        }
        _ => {
            let len = rng.below(6);
            (0..len)
                .map(|_| char::from_u32(rng.below(0x3000) as u32).unwrap_or('?'))
                .collect()
        }
    }
}

/// A rate such as `max_restarts` takes, `"N/PERIOD"`: a number (zero, huge, negative or not one)
/// and a duration valid or not, sometimes with spaces, a second slash or none.
fn rate(rng: &mut Rng) -> String {
    let count = if rng.chance(80) {
        rng.pick(NUMBERS)
    } else {
        rng.pick(&["", " ", "-1", "five", "1.5", "\u{0}"])
    };
    let period = if rng.chance(50) {
        rng.pick(DURATIONS).to_owned()
    } else {
        composed_duration(rng)
    };
    let slash = rng.pick(&["/", "/", "/", " / ", "//", "", "/1s/"]);
    format!("{count}{slash}{period}")
}

/// A duration of one to three parts, each a number (perhaps with a fraction) and a unit, so
/// sums, overflows and odd units come up.
fn composed_duration(rng: &mut Rng) -> String {
    let parts = 1 + rng.below(3);
    let mut text = String::new();
    for part in 0..parts {
        if part > 0 && rng.chance(70) {
            text.push(' ');
        }
        text.push_str(rng.pick(NUMBERS));
        if rng.chance(15) {
            text.push('.');
            text.push_str(rng.pick(NUMBERS));
        }
        if rng.chance(20) {
            text.push(' ');
        }
        text.push_str(rng.pick(UNITS));
    }
    text
}

/// A duration at the edges of `Duration`: whole seconds near `u64::MAX` or zero, plus one to
/// three parts in ns, us or ms that sum to just under, exactly or just over one second (or to
/// two), in any order: where a carry into the seconds can overflow.
fn edge_duration(rng: &mut Rng) -> String {
    let seconds = rng.pick(&[u64::MAX, u64::MAX - 1, 1, 0]);
    let mut nanos_left = rng.pick(&[999_999_999_u64, 1_000_000_000, 1_000_000_001, 2_000_000_000]);
    let mut parts = vec![format!("{seconds}s")];
    let pieces = 1 + rng.below(3);
    for piece in 0..pieces {
        let nanos = if piece + 1 == pieces {
            nanos_left
        } else {
            rng.next_u64() % (nanos_left + 1)
        };
        nanos_left -= nanos;
        parts.push(if nanos % 1_000_000 == 0 && rng.chance(70) {
            format!("{}ms", nanos / 1_000_000)
        } else if nanos % 1_000 == 0 && rng.chance(70) {
            format!("{}us", nanos / 1_000)
        } else {
            format!("{nanos}ns")
        });
    }
    let len = parts.len();
    parts.swap(rng.below(len), rng.below(len));
    parts.join(" ")
}

pub(super) fn literal(rng: &mut Rng) -> Literal {
    match rng.below(10) {
        0..=4 => Literal::string(&string_content(rng)),
        5 => Literal::i64_unsuffixed(rng.pick(&[0, 1, 2, 4, -1, i64::MIN, i64::MAX])),
        6 => Literal::u64_unsuffixed(rng.pick(&[0, 1, u64::MAX])),
        7 => Literal::f64_unsuffixed(rng.pick(&[0.0, 1.5, -2.5, 1e300])),
        8 => Literal::character(rng.pick(&['a', '\'', '\0', 'é'])),
        _ => {
            Literal::from_str(rng.pick(ODD_LITERALS)).unwrap_or_else(|_| Literal::u8_unsuffixed(0))
        }
    }
}

pub(super) fn ident(rng: &mut Rng) -> Ident {
    match rng.below(10) {
        0..=4 => Ident::new(rng.pick(KEYS), Span::call_site()),
        5 => Ident::new_raw(rng.pick(RAW_WORDS), Span::call_site()),
        _ => Ident::new(rng.pick(WORDS), Span::call_site()),
    }
}

fn punct(rng: &mut Rng) -> Punct {
    let spacing = if rng.chance(30) {
        Spacing::Joint
    } else {
        Spacing::Alone
    };
    Punct::new(rng.pick(PUNCTS), spacing)
}

pub(super) fn delimiter(rng: &mut Rng) -> Delimiter {
    rng.pick(&[
        Delimiter::Parenthesis,
        Delimiter::Bracket,
        Delimiter::Brace,
        Delimiter::None,
    ])
}

/// A few tokens: `::`, `->`, `=>`, a lifetime, or a path.
fn compound(rng: &mut Rng) -> TokenStream {
    let text = rng.pick(&[
        "::",
        "->",
        "=>",
        "'a",
        "'static",
        "::lifecycle_runtime::Shutdown",
        "lifecycle_runtime::Shutdown",
        "Self::flush",
        "#[close(skip = \"x\")]",
        "#![x]",
        "&'a mut",
        "..",
        "...",
    ]);
    TokenStream::from_str(text).unwrap_or_default()
}

/// One random token tree (or a short run of tokens); groups nest while `depth` allows.
pub(super) fn token(rng: &mut Rng, depth: usize) -> TokenStream {
    match rng.below(20) {
        0..=5 => TokenTree::Ident(ident(rng)).into(),
        6..=9 => TokenTree::Punct(punct(rng)).into(),
        10..=13 => TokenTree::Literal(literal(rng)).into(),
        14 | 15 => compound(rng),
        _ if depth < 3 => {
            let inner = random_stream(rng, depth + 1, 5);
            TokenTree::Group(Group::new(delimiter(rng), inner)).into()
        }
        _ => TokenTree::Ident(ident(rng)).into(),
    }
}

/// Up to `max_len` random tokens.
pub(super) fn random_stream(rng: &mut Rng, depth: usize, max_len: usize) -> TokenStream {
    let len = rng.below(max_len + 1);
    (0..len).map(|_| token(rng, depth)).collect()
}

/// A value after `key =`.
fn value(rng: &mut Rng) -> TokenStream {
    let value: TokenStream = match rng.below(20) {
        0..=9 => TokenTree::Literal(Literal::string(&string_content(rng))).into(),
        10 | 11 => TokenTree::Literal(literal(rng)).into(),
        12 => TokenStream::from_str(rng.pick(&["true", "false"])).unwrap_or_default(),
        13 | 14 => TokenStream::from_str(rng.pick(PATHS)).unwrap_or_default(),
        15 => TokenStream::from_str(rng.pick(&["-1", "-\"5s\"", "!true", "&\"5s\""]))
            .unwrap_or_default(),
        16 if rng.chance(50) => {
            // A list of names, as `stop_after` takes: strings, or not quite.
            let mut inner = TokenStream::new();
            for at in 0..rng.below(4) {
                if at > 0 {
                    inner.extend([TokenTree::Punct(Punct::new(',', Spacing::Alone))]);
                }
                inner.extend([TokenTree::Literal(match rng.chance(80) {
                    true => Literal::string(&string_content(rng)),
                    false => literal(rng),
                })]);
            }
            TokenTree::Group(Group::new(Delimiter::Bracket, inner)).into()
        }
        16 => {
            let inner = random_stream(rng, 1, 3);
            TokenTree::Group(Group::new(delimiter(rng), inner)).into()
        }
        _ => random_stream(rng, 1, 3),
    };
    // As a `macro_rules!` expansion hands over an `$e:expr`.
    if rng.chance(5) {
        TokenTree::Group(Group::new(Delimiter::None, value)).into()
    } else {
        value
    }
}

/// Arguments that are mostly well formed (`key`, `key = value`, separated by commas), so the
/// checks of each key's value and of their combinations run; `positional` puts a string first
/// now and then, as `#[timeout("10s")]` takes.
pub(super) fn structured_args(rng: &mut Rng, keys: &[&str], positional: bool) -> TokenStream {
    let mut tokens = TokenStream::new();
    if positional && rng.chance(60) {
        tokens.extend([TokenTree::Literal(Literal::string(&string_content(rng)))]);
        if rng.chance(70) {
            tokens.extend([TokenTree::Punct(Punct::new(',', Spacing::Alone))]);
        }
    }
    let count = rng.below(6);
    for index in 0..count {
        let key = match rng.below(10) {
            0..=6 => Ident::new(rng.pick(keys), Span::call_site()),
            7 | 8 => Ident::new(rng.pick(KEYS), Span::call_site()),
            _ => ident(rng),
        };
        if rng.chance(4) {
            tokens.extend(TokenStream::from_str("a::").unwrap_or_default());
        }
        tokens.extend([TokenTree::Ident(key)]);
        match rng.below(20) {
            0..=3 => {}
            4 => {
                let inner = random_stream(rng, 1, 3);
                tokens.extend([TokenTree::Group(Group::new(Delimiter::Parenthesis, inner))]);
            }
            _ => {
                tokens.extend([TokenTree::Punct(Punct::new('=', Spacing::Alone))]);
                tokens.extend(value(rng));
            }
        }
        let last = index + 1 == count;
        match rng.below(20) {
            0 => {}
            1 => tokens.extend(TokenStream::from_str(";").unwrap_or_default()),
            2 => tokens.extend(TokenStream::from_str(", ,").unwrap_or_default()),
            _ if last && rng.chance(50) => {}
            _ => tokens.extend([TokenTree::Punct(Punct::new(',', Spacing::Alone))]),
        }
    }
    tokens
}

/// Arguments for an attribute whose keys are `keys`: mostly well formed, sometimes mutated,
/// sometimes random tokens.
pub(super) fn args(rng: &mut Rng, keys: &[&str], positional: bool) -> TokenStream {
    match rng.below(20) {
        0..=13 => structured_args(rng, keys, positional),
        14..=17 => {
            let args = structured_args(rng, keys, positional);
            let mutations = 1 + rng.below(3);
            mutate::mutate_times(args, rng, mutations)
        }
        _ => random_stream(rng, 0, 8),
    }
}
