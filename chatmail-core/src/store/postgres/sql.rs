//! Running statements and reading columns: every database error and every malformed
//! value becomes a [`StoreError`], never a panic.

use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::store::error::StoreError;

/// A pooled connection, or why none could be had in time.
pub(super) async fn get(pool: &Pool) -> Result<deadpool_postgres::Object, StoreError> {
    pool.get().await.map_err(|e| {
        let kind = match e {
            deadpool_postgres::PoolError::Timeout(_) => std::io::ErrorKind::TimedOut,
            _ => std::io::ErrorKind::Other,
        };
        StoreError::io(
            "postgres: no connection",
            std::io::Error::new(kind, e.to_string()),
        )
    })
}

/// Wraps a database error with what the store was doing.
pub(super) fn db(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |e| {
        let kind = if e.is_closed() {
            std::io::ErrorKind::ConnectionAborted
        } else {
            std::io::ErrorKind::Other
        };
        StoreError::io(
            format_args!("postgres: {context}"),
            std::io::Error::new(kind, e),
        )
    }
}

/// Runs a (cached, prepared) query: the rows.
pub(super) async fn query<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    context: &'static str,
) -> Result<Vec<Row>, StoreError> {
    let statement = client.prepare_cached(sql).await.map_err(db(context))?;
    client.query(&statement, params).await.map_err(db(context))
}

/// Runs a (cached, prepared) query: at most one row.
pub(super) async fn query_opt<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    context: &'static str,
) -> Result<Option<Row>, StoreError> {
    let statement = client.prepare_cached(sql).await.map_err(db(context))?;
    client
        .query_opt(&statement, params)
        .await
        .map_err(db(context))
}

/// Runs a (cached, prepared) statement: the rows it touched.
pub(super) async fn execute<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    context: &'static str,
) -> Result<u64, StoreError> {
    let statement = client.prepare_cached(sql).await.map_err(db(context))?;
    client
        .execute(&statement, params)
        .await
        .map_err(db(context))
}

/// Reads a column, a malformed value being [`StoreError::Corrupt`].
pub(super) fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|e| StoreError::Corrupt(format!("postgres column {index}: {e}")))
}

/// A column that must hold a UID (or UIDVALIDITY): 0 ..= u32::MAX.
pub(super) fn to_u32(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} out of range")))
}

/// A column that must hold a count, size or modseq: never negative.
pub(super) fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} is negative")))
}

/// A count, size, time or modseq as a `bigint` parameter (saturating: no real value
/// comes near 2^63).
pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
