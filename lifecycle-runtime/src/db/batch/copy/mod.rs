//! Writing rows with PostgreSQL's `COPY ... FROM STDIN` (feature `postgres`): the fastest way
//! into a table, one statement (so one batch is all or nothing) streaming the rows in the text
//! format. `text.rs` encodes the rows; this file names the table, streams, and says what failed.

mod text;

use std::fmt::Write as _;

use sqlx::postgres::PgConnection;

pub use self::text::{CopyEncoder, CopyField, CopyRow, CopyValue};

/// The encoded rows are sent once they pass this many bytes: big enough that a message costs
/// nothing next to its rows, small enough that the server parses one chunk while the next is
/// encoded.
const CHUNK: usize = 256 * 1024;

/// Why [`copy_rows`] wrote nothing. The COPY is one statement: on any error no row of the call
/// is in the table (unless it ran inside a transaction you commit anyway).
///
/// ```
/// use lifecycle_runtime::db::CopyError;
///
/// let error = CopyError::Row {
///     table: "events".to_owned(),
///     row: 3,
///     expected: 3,
///     found: 2,
/// };
/// assert_eq!(
///     error.to_string(),
///     "cannot COPY into events: row 3 has 2 fields, but 3 columns are named"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// A table or column name that is not a SQL name as written: a plain identifier (`events`,
    /// `public.events`) or a double-quoted one (`"Events"`). Names are put into the statement as
    /// given, so nothing else is taken.
    #[error(
        "cannot COPY: `{name}` is not a table or column name (write a plain identifier such as events or public.events, or a double-quoted one such as \"Events\")"
    )]
    Name {
        /// The name as given.
        name: String,
    },
    /// No column was named.
    #[error("cannot COPY into {table}: no columns named")]
    NoColumns {
        /// The table.
        table: String,
    },
    /// A row wrote a different number of fields than there are columns (the COPY was aborted).
    #[error(
        "cannot COPY into {table}: row {row} has {found} fields, but {expected} columns are named"
    )]
    Row {
        /// The table.
        table: String,
        /// The row's index in the slice.
        row: usize,
        /// How many columns were named.
        expected: usize,
        /// How many fields the row wrote.
        found: usize,
    },
    /// The server or the connection said no: a value the column type does not read, a missing
    /// table, a constraint, a lost connection.
    #[error("COPY into {table} failed: {source}")]
    Database {
        /// The table.
        table: String,
        /// sqlx's error (the server's message, code and detail for a database error).
        #[source]
        source: sqlx::Error,
    },
}

/// Writes `rows` into `columns` of `table` with one `COPY table (columns) FROM STDIN` statement
/// in the text format, streaming them in chunks as they are encoded; returns how many rows the
/// server stored. All or nothing: one statement, so on an error none of these rows is stored.
///
/// `conn` is any PostgreSQL connection: a tracked one from a typed database
/// (`&mut db.acquire().await?` on a `Database<Postgres>`), a pooled one, or a transaction
/// (`&mut *transaction`, to commit the COPY with other statements). As the write function of a
/// [`BatchWriter`](crate::db::BatchWriter) on a `Database<Postgres>`, it writes a batch in one
/// statement instead of one `INSERT` per row:
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::SystemTime;
/// use lifecycle_runtime::db::{BatchWriter, Database, copy_rows};
/// use lifecycle_runtime::db::sqlx::Postgres;
///
/// type Event = (i64, String, SystemTime);
/// type BoxError = Box<dyn std::error::Error + Send + Sync>;
///
/// # async fn run(db: Database<Postgres>) -> Result<(), Box<dyn std::error::Error>> {
/// let events: BatchWriter<Event> = BatchWriter::builder("events", &db, |db: Database<Postgres>, rows: Arc<[Event]>| async move {
///     let mut conn = db.acquire().await?;
///     copy_rows(&mut conn, "events", &["id", "body", "at"], &rows).await?;
///     Ok::<(), BoxError>(())
/// })
/// .max_batch(10_000)
/// .spawn();
/// events.write((1, "stored on return".to_owned(), SystemTime::now())).await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// [`CopyError::Name`] or [`CopyError::NoColumns`] before anything is sent;
/// [`CopyError::Row`] when a row's field count differs from the columns' (the COPY is aborted);
/// [`CopyError::Database`] when the server refuses the statement or a value, or the connection
/// fails.
pub async fn copy_rows<R: CopyRow>(
    conn: &mut PgConnection,
    table: &str,
    columns: &[&str],
    rows: &[R],
) -> Result<u64, CopyError> {
    let statement = statement(table, columns)?;
    let failed = |source| CopyError::Database {
        table: table.to_owned(),
        source,
    };
    let mut copy = conn.copy_in_raw(&statement).await.map_err(failed)?;
    let mut buf = Vec::with_capacity(CHUNK + CHUNK / 4);
    for (at, row) in rows.iter().enumerate() {
        let found = text::encode_row(&mut buf, row);
        if found != columns.len() {
            let row_error = CopyError::Row {
                table: table.to_owned(),
                row: at,
                expected: columns.len(),
                found,
            };
            // The server answers an abort with the error it is told; only another one matters.
            return match copy.abort(row_error.to_string()).await {
                Ok(()) => Err(row_error),
                Err(source) => Err(failed(source)),
            };
        }
        if buf.len() >= CHUNK {
            copy.send(buf.as_slice()).await.map_err(failed)?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        copy.send(buf.as_slice()).await.map_err(failed)?;
    }
    copy.finish().await.map_err(failed)
}

/// `COPY table (columns) FROM STDIN`, once every name is checked.
fn statement(table: &str, columns: &[&str]) -> Result<String, CopyError> {
    check_name(table, true)?;
    if columns.is_empty() {
        return Err(CopyError::NoColumns {
            table: table.to_owned(),
        });
    }
    let mut statement = format!("COPY {table} (");
    for (at, column) in columns.iter().enumerate() {
        check_name(column, false)?;
        let separator = if at == 0 { "" } else { ", " };
        let _ = write!(statement, "{separator}{column}");
    }
    statement.push_str(") FROM STDIN");
    Ok(statement)
}

/// Accepts a SQL name as written: identifiers (a letter or `_`, then letters, digits, `_` or
/// `$`) or double-quoted identifiers (`""` inside for a quote, not empty), joined by dots when
/// `dotted` (schema-qualified table names).
fn check_name(name: &str, dotted: bool) -> Result<(), CopyError> {
    let refuse = || CopyError::Name {
        name: name.to_owned(),
    };
    let mut rest = name;
    loop {
        rest = if let Some(quoted) = rest.strip_prefix('"') {
            // Up to the closing quote: one not followed by another.
            let mut end = None;
            let mut chars = quoted.char_indices().peekable();
            while let Some((at, c)) = chars.next() {
                if c == '"' {
                    if chars.peek().is_some_and(|&(_, next)| next == '"') {
                        chars.next();
                    } else {
                        end = Some(at);
                        break;
                    }
                }
            }
            match end {
                Some(end) if end > 0 && !quoted[..end].contains('\0') => &quoted[end + 1..],
                _ => return Err(refuse()),
            }
        } else {
            let length = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
                .unwrap_or(rest.len());
            let starts_well = rest
                .chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_');
            if length == 0 || !starts_well {
                return Err(refuse());
            }
            &rest[length..]
        };
        match rest.strip_prefix('.') {
            None if rest.is_empty() => return Ok(()),
            Some(next) if dotted => rest = next,
            _ => return Err(refuse()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_written_are_taken_and_anything_else_refused() {
        assert_eq!(
            statement("public.events", &["id", "\"Body\"", "at_2"]).unwrap(),
            "COPY public.events (id, \"Body\", at_2) FROM STDIN"
        );
        assert!(statement("\"odd \"\" name\".t", &["été"]).is_ok());
        for bad in [
            "",
            "events; DROP TABLE x",
            "1events",
            "a..b",
            "a.",
            "\"\"",
            "\"open",
            "\"a\"b",
            "e(x)",
        ] {
            assert!(
                matches!(statement(bad, &["id"]), Err(CopyError::Name { .. })),
                "{bad:?} was taken"
            );
        }
        assert!(matches!(
            statement("events", &["public.id"]),
            Err(CopyError::Name { .. })
        ));
        assert!(matches!(
            statement("events", &[]),
            Err(CopyError::NoColumns { .. })
        ));
        assert_eq!(
            statement("events", &["a b"]).unwrap_err().to_string(),
            "cannot COPY: `a b` is not a table or column name (write a plain identifier such as \
             events or public.events, or a double-quoted one such as \"Events\")"
        );
    }
}
