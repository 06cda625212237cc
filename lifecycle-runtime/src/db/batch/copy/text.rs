//! PostgreSQL's `COPY` text format: a row per line, fields separated by tabs, `\N` for NULL, and
//! in the data a backslash, tab, newline or carriage return written as `\\`, `\t`, `\n`, `\r`
//! (every other byte goes as it is; the server decodes the field with the column type's text
//! input, exactly as for a literal).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A row [`copy_rows`](super::copy_rows) can send: its fields, in the order of the columns named.
///
/// Tuples of up to 12 [`CopyValue`]s and arrays of one are rows already. For a struct, write
/// each field:
///
/// ```
/// use lifecycle_runtime::db::{CopyEncoder, CopyRow};
///
/// struct Event {
///     id: i64,
///     body: String,
///     note: Option<String>,
/// }
///
/// impl CopyRow for Event {
///     fn encode(&self, row: &mut CopyEncoder<'_>) {
///         row.field(&self.id).field(&self.body).field(&self.note);
///     }
/// }
///
/// let event = Event { id: 7, body: "a\tb".to_owned(), note: None };
/// assert_eq!(CopyEncoder::line(&event), "7\ta\\tb\t\\N\n");
/// ```
pub trait CopyRow {
    /// Writes the row's fields through `row`, one [`CopyEncoder::field`] per column.
    fn encode(&self, row: &mut CopyEncoder<'_>);
}

/// A field [`CopyEncoder::field`] can write: its text form, as PostgreSQL's text input for the
/// column type reads it.
///
/// Provided: `i16`, `i32`, `i64`, `u32` (for a `bigint`), `f32`, `f64` (`NaN`, `Infinity`,
/// `-Infinity` included), `bool`, `str`, `String`, `Cow<str>`, `char`, `[u8]` and `Vec<u8>`
/// (for `bytea`), [`SystemTime`] (for `timestamptz`, to the microsecond), `Option<T>` (`None` is
/// NULL) and references, `Box`, `Rc` and `Arc` of these. For a type of your own, write its text:
///
/// ```
/// use lifecycle_runtime::db::{CopyEncoder, CopyField, CopyValue};
///
/// enum Level {
///     Info,
///     Warn,
/// }
///
/// impl CopyValue for Level {
///     fn encode(&self, field: CopyField<'_>) {
///         field.text(match self {
///             Level::Info => "info",
///             Level::Warn => "warn",
///         });
///     }
/// }
///
/// assert_eq!(CopyEncoder::line(&(1_i64, Level::Warn)), "1\twarn\n");
/// ```
pub trait CopyValue {
    /// Writes the value through `field`.
    fn encode(&self, field: CopyField<'_>);
}

/// Writes the fields of one row into the data sent to the server.
///
/// ```
/// use lifecycle_runtime::db::CopyEncoder;
///
/// let line = CopyEncoder::line(&(1_i64, "two\nlines", None::<i32>, "\\N"));
/// assert_eq!(line, "1\ttwo\\nlines\t\\N\t\\\\N\n");
/// ```
#[derive(Debug)]
pub struct CopyEncoder<'a> {
    buf: &'a mut Vec<u8>,
    fields: usize,
}

/// Where one field's value goes: [`text`](Self::text), [`display`](Self::display) or
/// [`null`](Self::null), once (writing nothing sends an empty string).
#[derive(Debug)]
pub struct CopyField<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> CopyEncoder<'a> {
    pub(super) fn new(buf: &'a mut Vec<u8>) -> CopyEncoder<'a> {
        CopyEncoder { buf, fields: 0 }
    }

    /// How many fields were written.
    pub(super) fn fields(&self) -> usize {
        self.fields
    }

    /// Writes the next field.
    pub fn field<V: CopyValue + ?Sized>(&mut self, value: &V) -> &mut Self {
        if self.fields > 0 {
            self.buf.push(b'\t');
        }
        self.fields += 1;
        value.encode(CopyField { buf: self.buf });
        self
    }

    /// The line `row` is sent as, with its newline: to see what the server gets.
    pub fn line<R: CopyRow + ?Sized>(row: &R) -> String {
        let mut buf = Vec::new();
        encode_row(&mut buf, row);
        // Every byte written comes from a `str`, or is an ASCII escape or digit.
        String::from_utf8(buf)
            .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
    }
}

/// Appends `row` to `buf` as one line; returns how many fields it had.
pub(super) fn encode_row<R: CopyRow + ?Sized>(buf: &mut Vec<u8>, row: &R) -> usize {
    let mut encoder = CopyEncoder::new(buf);
    row.encode(&mut encoder);
    let fields = encoder.fields();
    buf.push(b'\n');
    fields
}

impl CopyField<'_> {
    /// NULL (`\N`).
    pub fn null(self) {
        self.buf.extend_from_slice(b"\\N");
    }

    /// `text`, escaped (a text `\N` arrives as those two characters, not as NULL).
    pub fn text(self, text: &str) {
        escape_into(self.buf, text.as_bytes());
    }

    /// What `value` displays, escaped.
    pub fn display(self, value: impl fmt::Display) {
        // Writing into a `Vec` fails only when the `Display` impl itself does: that is its bug,
        // and what it wrote so far is sent.
        let _ = write!(Escaping(self.buf), "{value}");
    }

    /// Text known to hold no byte that needs escaping (digits, signs, dots).
    fn plain(self, text: &str) {
        self.buf.extend_from_slice(text.as_bytes());
    }
}

/// Appends `text` with backslash, tab, newline and carriage return escaped.
fn escape_into(buf: &mut Vec<u8>, text: &[u8]) {
    let mut start = 0;
    for (at, &byte) in text.iter().enumerate() {
        let escaped = match byte {
            b'\\' => b'\\',
            b'\t' => b't',
            b'\n' => b'n',
            b'\r' => b'r',
            _ => continue,
        };
        buf.extend_from_slice(&text[start..at]);
        buf.extend_from_slice(&[b'\\', escaped]);
        start = at + 1;
    }
    buf.extend_from_slice(&text[start..]);
}

/// A `fmt::Write` that escapes what it is given.
struct Escaping<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        escape_into(self.0, text.as_bytes());
        Ok(())
    }
}

/// A `fmt::Write` for text that needs no escaping.
struct Plain<'a>(&'a mut Vec<u8>);

impl fmt::Write for Plain<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}

macro_rules! integers {
    ($($int:ty),*) => {$(
        impl CopyValue for $int {
            fn encode(&self, field: CopyField<'_>) {
                let _ = write!(Plain(field.buf), "{self}");
            }
        }
    )*};
}

integers!(i16, i32, i64, u32);

macro_rules! floats {
    ($($float:ty),*) => {$(
        impl CopyValue for $float {
            fn encode(&self, field: CopyField<'_>) {
                if self.is_nan() {
                    field.plain("NaN");
                } else if self.is_infinite() {
                    field.plain(if *self > 0.0 { "Infinity" } else { "-Infinity" });
                } else {
                    // Rust prints the shortest text that reads back as the same number.
                    let _ = write!(Plain(field.buf), "{self}");
                }
            }
        }
    )*};
}

floats!(f32, f64);

impl CopyValue for bool {
    fn encode(&self, field: CopyField<'_>) {
        field.plain(if *self { "t" } else { "f" });
    }
}

impl CopyValue for str {
    fn encode(&self, field: CopyField<'_>) {
        field.text(self);
    }
}

impl CopyValue for String {
    fn encode(&self, field: CopyField<'_>) {
        field.text(self);
    }
}

impl CopyValue for Cow<'_, str> {
    fn encode(&self, field: CopyField<'_>) {
        field.text(self);
    }
}

impl CopyValue for char {
    fn encode(&self, field: CopyField<'_>) {
        field.text(self.encode_utf8(&mut [0; 4]));
    }
}

/// `bytea` in hex form: `\x` and two digits a byte (the backslash escaped for the text format).
impl CopyValue for [u8] {
    fn encode(&self, field: CopyField<'_>) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        field.buf.reserve(3 + 2 * self.len());
        field.buf.extend_from_slice(b"\\\\x");
        for byte in self {
            field.buf.push(DIGITS[usize::from(byte >> 4)]);
            field.buf.push(DIGITS[usize::from(byte & 0xf)]);
        }
    }
}

impl CopyValue for Vec<u8> {
    fn encode(&self, field: CopyField<'_>) {
        self.as_slice().encode(field);
    }
}

/// `timestamptz` in UTC, to the microsecond (PostgreSQL's precision; finer is cut toward the
/// past): `2026-12-05 14:03:07.123456+00`, with ` BC` for years before 1.
impl CopyValue for SystemTime {
    fn encode(&self, field: CopyField<'_>) {
        let micros: i128 = match self.duration_since(UNIX_EPOCH) {
            Ok(after) => after.as_micros() as i128,
            Err(before) => {
                let before = before.duration();
                // Toward the past: a sub-microsecond remainder takes one more microsecond.
                let extra = i128::from(before.subsec_nanos() % 1_000 != 0);
                -(before.as_micros() as i128) - extra
            }
        };
        let _ = write_timestamp(&mut Plain(field.buf), micros);
    }
}

/// Writes `micros` after the Unix epoch as PostgreSQL's `timestamptz` text, in UTC.
fn write_timestamp(out: &mut impl fmt::Write, micros: i128) -> fmt::Result {
    const MICROS_A_DAY: i128 = 86_400_000_000;
    let days = micros.div_euclid(MICROS_A_DAY);
    let in_day = micros.rem_euclid(MICROS_A_DAY);
    let (year, month, day) = civil_from_days(days);
    let seconds = in_day / 1_000_000;
    let (hour, minute, second) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let fraction = in_day % 1_000_000;
    // Year 0 is 1 BC, year -1 is 2 BC.
    let (shown, era) = if year > 0 {
        (year, "")
    } else {
        (1 - year, " BC")
    };
    write!(
        out,
        "{shown:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}.{fraction:06}+00{era}"
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01: year (0 is 1 BC), month, day. Counts
/// in 400-year eras of 146,097 days, each starting on March 1st so the leap day ends a year.
fn civil_from_days(days: i128) -> (i128, i128, i128) {
    let shifted = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i128::from(month <= 2);
    (year, month, day)
}

impl<T: CopyValue> CopyValue for Option<T> {
    fn encode(&self, field: CopyField<'_>) {
        match self {
            Some(value) => value.encode(field),
            None => field.null(),
        }
    }
}

macro_rules! pointers {
    ($($pointer:ty),*) => {$(
        impl<T: CopyValue + ?Sized> CopyValue for $pointer {
            fn encode(&self, field: CopyField<'_>) {
                (**self).encode(field);
            }
        }
    )*};
}

pointers!(&T, Box<T>, Rc<T>, Arc<T>);

macro_rules! tuples {
    ($(($($name:ident),+)),* $(,)?) => {$(
        impl<$($name: CopyValue),+> CopyRow for ($($name,)+) {
            #[allow(non_snake_case, reason = "the type parameters name the fields")]
            fn encode(&self, row: &mut CopyEncoder<'_>) {
                let ($($name,)+) = self;
                $(row.field($name);)+
            }
        }
    )*};
}

tuples!(
    (A),
    (A, B),
    (A, B, C),
    (A, B, C, D),
    (A, B, C, D, E),
    (A, B, C, D, E, F),
    (A, B, C, D, E, F, G),
    (A, B, C, D, E, F, G, H),
    (A, B, C, D, E, F, G, H, I),
    (A, B, C, D, E, F, G, H, I, J),
    (A, B, C, D, E, F, G, H, I, J, K),
    (A, B, C, D, E, F, G, H, I, J, K, L),
);

impl<V: CopyValue, const N: usize> CopyRow for [V; N] {
    fn encode(&self, row: &mut CopyEncoder<'_>) {
        for value in self {
            row.field(value);
        }
    }
}

impl<R: CopyRow + ?Sized> CopyRow for &R {
    fn encode(&self, row: &mut CopyEncoder<'_>) {
        (**self).encode(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stamp(micros: i128) -> String {
        let mut text = String::new();
        write_timestamp(&mut text, micros).unwrap();
        text
    }

    #[test]
    fn escapes_exactly_backslash_tab_newline_and_carriage_return() {
        assert_eq!(
            CopyEncoder::line(&("a\\b\tc\nd\re \u{1}\u{7f} é 日本",)),
            "a\\\\b\\tc\\nd\\re \u{1}\u{7f} é 日本\n"
        );
        assert_eq!(
            CopyEncoder::line(&("\\N", None::<&str>, "")),
            "\\\\N\t\\N\t\n"
        );
    }

    #[test]
    fn numbers_booleans_and_bytes() {
        assert_eq!(
            CopyEncoder::line(&(-5_i16, i32::MIN, i64::MAX, u32::MAX)),
            "-5\t-2147483648\t9223372036854775807\t4294967295\n"
        );
        assert_eq!(
            CopyEncoder::line(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.1, -1e300]),
            format!("NaN\tInfinity\t-Infinity\t0.1\t-1{}\n", "0".repeat(300))
        );
        assert_eq!(CopyEncoder::line(&(true, false, 1.5_f32)), "t\tf\t1.5\n");
        assert_eq!(
            CopyEncoder::line(&(vec![0_u8, 0x5c, 0xff], b"".as_slice())),
            "\\\\x005cff\t\\\\x\n"
        );
    }

    #[test]
    fn timestamps_in_utc_to_the_microsecond() {
        assert_eq!(stamp(0), "1970-01-01 00:00:00.000000+00");
        assert_eq!(stamp(-1), "1969-12-31 23:59:59.999999+00");
        // 2000-02-29 (a leap day of a century year divisible by 400), 12:34:56.789012.
        assert_eq!(stamp(951_827_696_789_012), "2000-02-29 12:34:56.789012+00");
        assert_eq!(
            stamp(4_102_444_800_000_000),
            "2100-01-01 00:00:00.000000+00"
        );
        // 0001-01-01 is 719,162 days before the epoch; the day before is 1 BC.
        let first_day = -719_162 * 86_400_000_000;
        assert_eq!(stamp(first_day), "0001-01-01 00:00:00.000000+00");
        assert_eq!(stamp(first_day - 1), "0001-12-31 23:59:59.999999+00 BC");
        let before = UNIX_EPOCH - Duration::from_nanos(1_500);
        assert_eq!(
            CopyEncoder::line(&(before,)),
            "1969-12-31 23:59:59.999998+00\n"
        );
    }

    #[test]
    fn dates_match_a_day_by_day_count() {
        // Walk 1900-01-01 .. 2100-12-31 one day at a time against the calendar rules.
        let mut date = (1900_i128, 1_i128, 1_i128);
        let leap = |y: i128| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for days in -25_567..47_847 {
            assert_eq!(civil_from_days(days), date, "{days} days after the epoch");
            let (y, m, d) = date;
            let length = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            date = match (d == length, m == 12) {
                (false, _) => (y, m, d + 1),
                (true, false) => (y, m + 1, 1),
                (true, true) => (y + 1, 1, 1),
            };
        }
    }
}
