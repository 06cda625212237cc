//! Which sqlx driver a [`Database`](super::Database) is typed with: [`Any`](sqlx::Any) (the
//! default: PostgreSQL or SQLite chosen by the URL, with the SQLite fallback), or
//! [`Postgres`](sqlx::Postgres) / [`Sqlite`](sqlx::Sqlite), whose pools are sqlx's own typed
//! pools (`sqlx::query!`, PostgreSQL types, `COPY`, `LISTEN`).
//!
//! The trait is sealed: its hidden methods are what the layer needs of each driver, each written
//! once per driver instead of as generic bounds every caller would repeat.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};

use futures_core::future::BoxFuture;

use super::{Backend, DbError, DbInner};

/// A sqlx driver a [`Database`](super::Database) can be typed with: `sqlx::Any` (the default),
/// `sqlx::Postgres` (feature `postgres`) or `sqlx::Sqlite` (feature `sqlite`). Sealed.
pub trait Driver: sqlx::Database + private::DriverImpl {}

impl Driver for sqlx::Any {}
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
impl Driver for sqlx::Postgres {}
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
impl Driver for sqlx::Sqlite {}

/// One pool per URL per process, per driver.
pub(crate) type Pools<DB> = Mutex<Option<HashMap<String, Weak<DbInner<DB>>>>>;

pub(crate) mod private {
    use super::*;

    /// What the layer needs of a driver. Public in a private module: nameable by no one else,
    /// so [`Driver`] cannot be implemented outside this crate.
    pub trait DriverImpl: sqlx::Database + Sized {
        /// The backend a URL gets with this driver, or why this driver cannot take it.
        #[doc(hidden)]
        fn backend_for(url: &str, redacted: &str) -> Result<Backend, DbError>;

        /// The open pools of this driver.
        #[doc(hidden)]
        fn pools() -> &'static Pools<Self>;

        /// Runs a statement on a fresh connection (`SET statement_timeout`, PostgreSQL only).
        #[doc(hidden)]
        fn run_on(
            connection: &mut Self::Connection,
            statement: String,
        ) -> BoxFuture<'_, Result<(), sqlx::Error>>;

        /// Whether the SQLite fallback can stand in for the primary: only an `Any` pool can
        /// be either.
        #[doc(hidden)]
        fn can_fall_back() -> bool {
            false
        }
    }
}

/// Runs one statement the layer wrote itself (never user input) on `connection`.
fn run_statement<DB>(
    connection: &mut DB::Connection,
    statement: String,
) -> BoxFuture<'_, Result<(), sqlx::Error>>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    Box::pin(async move {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(connection)
            .await
            .map(drop)
    })
}

/// The backend a URL names, as `Any` reads it.
fn backend_of(url: &str) -> Backend {
    if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    }
}

impl private::DriverImpl for sqlx::Any {
    fn backend_for(url: &str, _redacted: &str) -> Result<Backend, DbError> {
        Ok(backend_of(url))
    }

    fn pools() -> &'static Pools<Self> {
        static POOLS: Pools<sqlx::Any> = Mutex::new(None);
        &POOLS
    }

    fn run_on(
        connection: &mut sqlx::AnyConnection,
        statement: String,
    ) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        run_statement::<Self>(connection, statement)
    }

    fn can_fall_back() -> bool {
        true
    }
}

#[cfg(feature = "postgres")]
impl private::DriverImpl for sqlx::Postgres {
    fn backend_for(url: &str, redacted: &str) -> Result<Backend, DbError> {
        match backend_of(url) {
            Backend::Postgres => Ok(Backend::Postgres),
            Backend::Sqlite => Err(DbError::Configuration(format!(
                "the database URL {redacted} is SQLite, but this is a `Database<Postgres>`; \
                 give a postgres:// URL, or use `Database<Sqlite>` (or the default `Database`, \
                 which takes either)"
            ))),
        }
    }

    fn pools() -> &'static Pools<Self> {
        static POOLS: Pools<sqlx::Postgres> = Mutex::new(None);
        &POOLS
    }

    fn run_on(
        connection: &mut sqlx::PgConnection,
        statement: String,
    ) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        run_statement::<Self>(connection, statement)
    }
}

#[cfg(feature = "sqlite")]
impl private::DriverImpl for sqlx::Sqlite {
    fn backend_for(url: &str, redacted: &str) -> Result<Backend, DbError> {
        match backend_of(url) {
            Backend::Sqlite => Ok(Backend::Sqlite),
            Backend::Postgres => Err(DbError::Configuration(format!(
                "the database URL {redacted} is not SQLite, but this is a `Database<Sqlite>`; \
                 give a sqlite:// URL, or use `Database<Postgres>` (or the default `Database`, \
                 which takes either)"
            ))),
        }
    }

    fn pools() -> &'static Pools<Self> {
        static POOLS: Pools<sqlx::Sqlite> = Mutex::new(None);
        &POOLS
    }

    fn run_on(
        connection: &mut sqlx::SqliteConnection,
        statement: String,
    ) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        run_statement::<Self>(connection, statement)
    }
}
