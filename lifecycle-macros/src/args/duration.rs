//! Durations and rates in attribute arguments: `"5s"`, `"1m 30s"`, `"5/1m"`; checked (zero,
//! overflow, a bad unit) with an error under the literal, and turned into the runtime's
//! `Duration` in expansions.

use std::time::Duration;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{Ident, LitStr};

use super::{Arg, Errors, lit_str};

/// Whether a duration may be zero.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zero {
    Allowed,
    Rejected(&'static str),
}

/// A duration written as a humantime string (`"5s"`, `"250ms"`, `"1m 30s"`).
#[derive(Clone)]
pub(crate) struct DurationArg {
    pub(crate) value: Duration,
}

impl DurationArg {
    /// `Duration::from_secs(5)` (or millis, micros, nanos: the coarsest exact unit), through
    /// the runtime's re-export.
    pub(crate) fn tokens(&self, krate: &syn::Path) -> TokenStream {
        duration_tokens(self.value, krate)
    }
}

/// Tokens building `duration` exactly, in the coarsest whole unit (or from seconds and
/// nanoseconds, past `u64::MAX` milliseconds).
pub(crate) fn duration_tokens(duration: Duration, krate: &syn::Path) -> TokenStream {
    let nanos = duration.as_nanos();
    let (constructor, amount) = if nanos.is_multiple_of(1_000_000_000) {
        ("from_secs", nanos / 1_000_000_000)
    } else if nanos.is_multiple_of(1_000_000) {
        ("from_millis", nanos / 1_000_000)
    } else if nanos.is_multiple_of(1_000) {
        ("from_micros", nanos / 1_000)
    } else {
        ("from_nanos", nanos)
    };
    let Ok(amount) = u64::try_from(amount) else {
        // More milliseconds (or finer) than a u64 holds: seconds and nanoseconds.
        let secs = proc_macro2::Literal::u64_unsuffixed(duration.as_secs());
        let nanos = proc_macro2::Literal::u32_unsuffixed(duration.subsec_nanos());
        return quote!(#krate::__private::Duration::new(#secs, #nanos));
    };
    let constructor = Ident::new(constructor, Span::call_site());
    let amount = proc_macro2::Literal::u64_unsuffixed(amount);
    quote!(#krate::__private::Duration::#constructor(#amount))
}

/// Parses the duration of `key = "..."`.
pub(crate) fn duration(arg: &Arg, zero: Zero, errors: &mut Errors) -> Option<DurationArg> {
    let lit = lit_str(arg, "\"5s\"", errors)?;
    parse_duration_lit(&lit, &arg.key.to_string(), zero, errors)
}

/// Parses a duration literal; `what` names it in errors.
pub(crate) fn parse_duration_lit(
    lit: &LitStr,
    what: &str,
    zero: Zero,
    errors: &mut Errors,
) -> Option<DurationArg> {
    let text = lit.value();
    match parse_humantime(text.trim()) {
        Ok(value) => {
            if let (Zero::Rejected(why), true) = (zero, value.is_zero()) {
                errors.at(lit, format!("`{what}` must be greater than zero: {why}"));
                return None;
            }
            Some(DurationArg { value })
        }
        Err(error) => {
            errors.at(
                lit,
                format!(
                    "`{what}` = \"{text}\" is not a duration ({error}); write it like \"5s\", \"250ms\" or \"1m 30s\""
                ),
            );
            None
        }
    }
}

/// A number of events within a period, written `"N/PERIOD"` (`"5/1m"`: at most five in any
/// minute).
#[derive(Clone, Copy)]
pub(crate) struct Rate {
    pub(crate) count: u32,
    pub(crate) period: Duration,
}

/// Parses the rate of `key = "N/PERIOD"`: N a whole number of at least 1, PERIOD a duration
/// greater than zero; `what` says what N counts (`"restarts"`), and `for_none` how to ask for none
/// instead of N = 0. Each mistake is one error under the literal, naming the form.
pub(crate) fn rate(arg: &Arg, what: &str, for_none: &str, errors: &mut Errors) -> Option<Rate> {
    let key = &arg.key;
    let lit = lit_str(arg, "\"5/1m\"", errors)?;
    let text = lit.value();
    let example = format!("write it like \"5/1m\" (at most 5 {what} in any minute) or \"3/10s\"");
    let Some((count, period)) = text.split_once('/') else {
        errors.at(
            &lit,
            format!("`{key} = \"{text}\"` is not of the form \"N/PERIOD\"; {example}"),
        );
        return None;
    };
    let (count, period) = (count.trim(), period.trim());
    let count = match count.parse::<u32>() {
        Ok(0) => {
            errors.at(
                &lit,
                format!(
                    "`{key} = \"{text}\"` allows no {what}: N must be at least 1 ({for_none}); {example}"
                ),
            );
            None
        }
        Ok(count) => Some(count),
        Err(_) => {
            errors.at(
                &lit,
                format!(
                    "`{key} = \"{text}\"`: N = \"{count}\" is not a whole number of {what} from 1 to {}; {example}",
                    u32::MAX
                ),
            );
            None
        }
    };
    let period = match parse_humantime(period) {
        Ok(period) if period.is_zero() => {
            errors.at(
                &lit,
                format!(
                    "`{key} = \"{text}\"`: the period must be greater than zero, as {what} are counted within it; {example}"
                ),
            );
            None
        }
        Ok(period) => Some(period),
        Err(error) => {
            errors.at(
                &lit,
                format!(
                    "`{key} = \"{text}\"`: the period \"{period}\" is not a duration ({error}); {example}"
                ),
            );
            None
        }
    };
    Some(Rate {
        count: count?,
        period: period?,
    })
}

/// `humantime::parse_duration`, with its one panic turned into the error it stands for. When
/// the parts add up to exactly one second past the largest `Duration`
/// (`"18446744073709551615s 500ms 500ms"`), humantime 2.4 skips the carry and panics in
/// `Duration::new` instead of reporting `NumberOverflow` (humantime issue #66). Catching it is
/// silent inside the compiler, whose proc-macro bridge hides panics during expansion (it is how
/// proc-macro2 guards the compiler's lexer, too).
fn parse_humantime(text: &str) -> Result<Duration, humantime::DurationError> {
    std::panic::catch_unwind(|| humantime::parse_duration(text))
        .unwrap_or(Err(humantime::DurationError::NumberOverflow))
}
