//! The push notifications waiting for a retry (the relay's `PushQueue` decides; here
//! they are only stored), held per node like the delivery queue's messages (see
//! `queue`): a node that stopped has its waiting notifications taken over by another,
//! each by one node (`FOR UPDATE SKIP LOCKED`).

use super::postgres_store::PostgresStore;
use super::sql::{column, db, execute, get, query, to_i64, to_u64};
use crate::store::error::StoreError;

/// One waiting notification as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPushRow {
    /// Its id (32 hex digits, as the reference's file name).
    pub id: String,
    /// The account the new message is for.
    pub address: String,
    /// When the delivery happened, unix seconds.
    pub start_ts: u64,
    /// The device token.
    pub token: String,
}

fn rows(rows: Vec<tokio_postgres::Row>) -> Result<Vec<PendingPushRow>, StoreError> {
    rows.iter()
        .map(|row| {
            Ok(PendingPushRow {
                id: column(row, 0)?,
                address: column(row, 1)?,
                start_ts: to_u64(column(row, 2)?, "push start")?,
                token: column(row, 3)?,
            })
        })
        .collect()
}

impl PostgresStore {
    /// Stores (or replaces) a waiting notification held by `owner`.
    pub async fn push_pending_write(
        &self,
        owner: &str,
        row: &PendingPushRow,
    ) -> Result<(), StoreError> {
        let (owner, row) = (owner.to_string(), row.clone());
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            execute(
                &client,
                "INSERT INTO push_pending (id, owner, address, start_ts, token) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
                 owner = EXCLUDED.owner, address = EXCLUDED.address, \
                 start_ts = EXCLUDED.start_ts, token = EXCLUDED.token",
                &[
                    &row.id,
                    &owner,
                    &row.address,
                    &to_i64(row.start_ts),
                    &row.token,
                ],
                "push pending write",
            )
            .await
            .map(|_| ())
        })
        .await
    }

    /// Removes a waiting notification if `owner` holds it (false: it does not).
    pub async fn push_pending_remove(&self, owner: &str, id: &str) -> Result<bool, StoreError> {
        let (owner, id) = (owner.to_string(), id.to_string());
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            execute(
                &client,
                "DELETE FROM push_pending WHERE id = $1 AND owner = $2",
                &[&id, &owner],
                "push pending remove",
            )
            .await
            .map(|n| n == 1)
        })
        .await
    }

    /// Every waiting notification `owner` holds (at its start), at most `max`.
    pub async fn push_pending_load(
        &self,
        owner: &str,
        max: usize,
    ) -> Result<Vec<PendingPushRow>, StoreError> {
        let owner = owner.to_string();
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            rows(
                query(
                    &client,
                    "SELECT id, address, start_ts, token FROM push_pending \
                     WHERE owner = $1 ORDER BY start_ts, id LIMIT $2",
                    &[&owner, &limit],
                    "push pending load",
                )
                .await?,
            )
        })
        .await
    }

    /// Moves to `owner` up to `max` waiting notifications of nodes not seen alive since
    /// `seen_before_ms` (or never), oldest first; each goes to one node.
    pub async fn push_pending_adopt(
        &self,
        owner: &str,
        seen_before_ms: u64,
        max: usize,
    ) -> Result<Vec<PendingPushRow>, StoreError> {
        let owner = owner.to_string();
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.run(|inner| async move {
            let mut client = get(&inner.pool).await?;
            let tx = client
                .transaction()
                .await
                .map_err(db("push pending adopt"))?;
            let adopted = rows(
                query(
                    &tx,
                    "UPDATE push_pending p SET owner = $1 FROM ( \
                         SELECT id FROM push_pending WHERE owner <> $1 AND owner NOT IN \
                             (SELECT name FROM nodes WHERE seen_ms >= $2) \
                         ORDER BY start_ts, id LIMIT $3 FOR UPDATE SKIP LOCKED) picked \
                     WHERE p.id = picked.id \
                     RETURNING p.id, p.address, p.start_ts, p.token",
                    &[&owner, &to_i64(seen_before_ms), &limit],
                    "push pending adopt",
                )
                .await?,
            )?;
            tx.commit().await.map_err(db("push pending adopt"))?;
            Ok(adopted)
        })
        .await
    }
}
