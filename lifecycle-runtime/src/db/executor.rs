//! `&Database` as a sqlx executor: `query.execute(&db)`, `query_as(..).fetch_all(&db)`,
//! `sqlx::query!(..).fetch_one(&db)`. Each query takes its connection through the same tracked
//! path as [`Database::acquire`]: it is listed among the holders (by its task, and by its SQL
//! once the driver starts it), counted in the pool's metrics, and a pool timeout names the
//! oldest holders instead of sqlx's bare `PoolTimedOut`.
//!
//! A query on `db.pool()` bypasses all of this, as it always did; the docs of
//! [`Database::pool`] say so.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use either::Either;
use futures_core::Stream;
use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use sqlx::{Error, Execute, Executor};
use tokio::sync::mpsc;

use super::held::{Holder, Site};
use super::{Database, DbConnection, DbError, Driver};

impl<DB: Driver> Database<DB> {
    /// A connection for one query run on the database itself, tracked like one from
    /// [`acquire`](Self::acquire); errors in sqlx's terms, for the executor.
    async fn acquire_for_query(
        &self,
        task: Option<crate::TaskName>,
    ) -> Result<DbConnection<DB>, Error> {
        self.acquire_at(Site::Query(None), task)
            .await
            .map_err(into_sqlx)
    }
}

/// sqlx's error for one of ours: a pool timeout keeps its message naming the holders (as an I/O
/// error of kind `TimedOut` whose inner error is the [`DbError`]; see [`DbError::of`]).
fn into_sqlx(error: DbError) -> Error {
    match error {
        DbError::Query(error) => error,
        DbError::Closed(_) => Error::PoolClosed,
        timed_out @ DbError::AcquireTimedOut { .. } => {
            Error::Io(io::Error::new(io::ErrorKind::TimedOut, timed_out))
        }
        other => Error::Configuration(Box::new(other)),
    }
}

impl DbError {
    /// The `DbError` inside an error a query on `&Database` returned, if it is one of ours: a
    /// pool timeout naming the holders is an `sqlx::Error::Io` of kind `TimedOut` carrying a
    /// [`DbError::AcquireTimedOut`].
    ///
    /// ```
    /// use lifecycle_runtime::db::DbError;
    ///
    /// let plain = sqlx::Error::RowNotFound;
    /// assert!(DbError::of(&plain).is_none());
    /// ```
    pub fn of(error: &Error) -> Option<&DbError> {
        match error {
            Error::Io(io) => io.get_ref()?.downcast_ref::<DbError>(),
            Error::Configuration(inner) => inner.downcast_ref::<DbError>(),
            _ => None,
        }
    }
}

/// A query that tells its connection's holder entry its SQL when the driver takes it.
struct Named<DB: Driver, E> {
    query: E,
    holder: Holder<DB>,
}

impl<'q, DB: Driver, E: Execute<'q, DB>> Execute<'q, DB> for Named<DB, E> {
    fn sql(self) -> sqlx::SqlStr {
        let sql = self.query.sql();
        self.holder.running(sql.as_str());
        sql
    }

    fn statement(&self) -> Option<&DB::Statement> {
        self.query.statement()
    }

    fn take_arguments(
        &mut self,
    ) -> Result<Option<<DB as sqlx::Database>::Arguments>, sqlx::error::BoxDynError> {
        self.query.take_arguments()
    }

    fn persistent(&self) -> bool {
        self.query.persistent()
    }
}

/// One step of `fetch_many`.
type Step<DB> =
    Result<Either<<DB as sqlx::Database>::QueryResult, <DB as sqlx::Database>::Row>, Error>;

impl<'d, DB> Executor<'d> for &'d Database<DB>
where
    DB: Driver,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Step<DB>>
    where
        'd: 'e,
        E: 'q + Execute<'q, DB>,
    {
        let database = self.clone();
        let task = crate::workers::current_task_name();
        Generated::boxed(move |out: mpsc::Sender<Step<DB>>| async move {
            let mut connection = match database.acquire_for_query(task).await {
                Ok(connection) => connection,
                Err(error) => {
                    let _ = out.send(Err(error)).await;
                    return;
                }
            };
            let named = Named {
                query,
                holder: connection.holder(),
            };
            let mut steps = (&mut *connection).fetch_many(named);
            while let Some(step) = futures_util::StreamExt::next(&mut steps).await {
                if out.send(step).await.is_err() {
                    // The caller dropped the stream: stop reading rows.
                    return;
                }
            }
        })
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<<DB as sqlx::Database>::Row>, Error>>
    where
        'd: 'e,
        E: 'q + Execute<'q, DB>,
    {
        let database = self.clone();
        let task = crate::workers::current_task_name();
        Box::pin(async move {
            let mut connection = database.acquire_for_query(task).await?;
            let named = Named {
                query,
                holder: connection.holder(),
            };
            (&mut *connection).fetch_optional(named).await
        })
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [<DB as sqlx::Database>::TypeInfo],
    ) -> BoxFuture<'e, Result<<DB as sqlx::Database>::Statement, Error>>
    where
        'd: 'e,
    {
        let database = self.clone();
        let task = crate::workers::current_task_name();
        Box::pin(async move {
            let mut connection = database.acquire_for_query(task).await?;
            connection.running(sql.as_str());
            (&mut *connection).prepare_with(sql, parameters).await
        })
    }

    fn describe<'e>(self, sql: sqlx::SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<DB>, Error>>
    where
        'd: 'e,
    {
        let database = self.clone();
        let task = crate::workers::current_task_name();
        Box::pin(async move {
            let mut connection = database.acquire_for_query(task).await?;
            connection.running(sql.as_str());
            (&mut *connection).describe(sql).await
        })
    }
}

/// A stream whose items a future produces through a channel of one, polled by the stream itself:
/// no task is spawned, nothing is buffered beyond one item, and dropping the stream drops the
/// future (and with it the connection, back to the pool).
struct Generated<'a, T> {
    producer: Option<BoxFuture<'a, ()>>,
    items: mpsc::Receiver<T>,
}

impl<'a, T: Send + 'a> Generated<'a, T> {
    fn boxed<F, Fut>(make: F) -> BoxStream<'a, T>
    where
        F: FnOnce(mpsc::Sender<T>) -> Fut,
        Fut: Future<Output = ()> + Send + 'a,
    {
        let (sender, items) = mpsc::channel(1);
        Box::pin(Generated {
            producer: Some(Box::pin(make(sender))),
            items,
        })
    }
}

impl<T> Stream for Generated<'_, T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        if let Poll::Ready(Some(item)) = this.items.poll_recv(cx) {
            return Poll::Ready(Some(item));
        }
        if let Some(producer) = this.producer.as_mut()
            && producer.as_mut().poll(cx).is_ready()
        {
            // Its sender is gone with it: the channel ends once drained.
            this.producer = None;
        }
        // What the producer sent while it was polled, or the end.
        this.items.poll_recv(cx)
    }
}
