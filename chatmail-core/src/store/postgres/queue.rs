//! The rows of the delivery queue that the nodes of a domain share (the queue itself,
//! its retries and bounds, is the relay's `DeliveryQueue`; here it is only stored).
//!
//! Each queued message is held by one node, its `owner`, which alone attempts it. Nodes
//! tell `nodes` they are alive; [`PostgresStore::queue_adopt`] moves the messages of a
//! node not seen for a while to the caller, under `FOR UPDATE SKIP LOCKED`, so that two
//! nodes adopting at once never take the same message. Updates and removals name the
//! owner: a node that was taken for dead and comes back learns that a message is no
//! longer its own (false) instead of overwriting the adopter's record.

use bytes::Bytes;

use super::postgres_store::PostgresStore;
use super::sql::{column, db, execute, get, query, query_opt, to_i64};
use crate::store::error::StoreError;

/// A queued message as stored: its id and the queue's envelope (JSON, opaque here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRow {
    /// The queue's id of the message.
    pub id: String,
    /// The envelope as the queue wrote it.
    pub envelope: String,
}

fn rows(rows: Vec<tokio_postgres::Row>) -> Result<Vec<QueuedRow>, StoreError> {
    rows.iter()
        .map(|row| {
            Ok(QueuedRow {
                id: column(row, 0)?,
                envelope: column(row, 1)?,
            })
        })
        .collect()
}

impl PostgresStore {
    /// Records that node `name` is alive at `now_ms` (unix milliseconds).
    pub async fn node_alive(&self, name: &str, now_ms: u64) -> Result<(), StoreError> {
        let name = name.to_string();
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            execute(
                &client,
                "INSERT INTO nodes (name, seen_ms) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET seen_ms = GREATEST(nodes.seen_ms, $2)",
                &[&name, &to_i64(now_ms)],
                "node alive",
            )
            .await
            .map(|_| ())
        })
        .await
    }

    /// Stores a new queued message held by `owner`; durable once this returns.
    pub async fn queue_insert(
        &self,
        owner: &str,
        id: &str,
        envelope: &str,
        message: Bytes,
    ) -> Result<(), StoreError> {
        let (owner, id, envelope) = (owner.to_string(), id.to_string(), envelope.to_string());
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            execute(
                &client,
                "INSERT INTO outbound_queue (id, owner, envelope, message) VALUES ($1, $2, $3, $4)",
                &[&id, &owner, &envelope, &message.as_ref()],
                "queue insert",
            )
            .await
            .map(|_| ())
        })
        .await
    }

    /// Replaces the envelope of `id` if `owner` still holds it (false: it does not).
    pub async fn queue_update(
        &self,
        owner: &str,
        id: &str,
        envelope: &str,
    ) -> Result<bool, StoreError> {
        let (owner, id, envelope) = (owner.to_string(), id.to_string(), envelope.to_string());
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            execute(
                &client,
                "UPDATE outbound_queue SET envelope = $3 WHERE id = $1 AND owner = $2",
                &[&id, &owner, &envelope],
                "queue update",
            )
            .await
            .map(|n| n == 1)
        })
        .await
    }

    /// Removes `id` if `owner` still holds it (false: it does not).
    pub async fn queue_remove(&self, owner: &str, id: &str) -> Result<bool, StoreError> {
        let (owner, id) = (owner.to_string(), id.to_string());
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            execute(
                &client,
                "DELETE FROM outbound_queue WHERE id = $1 AND owner = $2",
                &[&id, &owner],
                "queue remove",
            )
            .await
            .map(|n| n == 1)
        })
        .await
    }

    /// The message bytes of `id`, if it is queued.
    pub async fn queue_message(&self, id: &str) -> Result<Option<Bytes>, StoreError> {
        let id = id.to_string();
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            let row = query_opt(
                &client,
                "SELECT message FROM outbound_queue WHERE id = $1",
                &[&id],
                "queue message",
            )
            .await?;
            row.map(|row| column::<Vec<u8>>(&row, 0).map(Bytes::from))
                .transpose()
        })
        .await
    }

    /// Every message `owner` holds, in id order: what a node reloads at start.
    pub async fn queue_load(&self, owner: &str) -> Result<Vec<QueuedRow>, StoreError> {
        let owner = owner.to_string();
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            rows(
                query(
                    &client,
                    "SELECT id, envelope FROM outbound_queue WHERE owner = $1 ORDER BY id",
                    &[&owner],
                    "queue load",
                )
                .await?,
            )
        })
        .await
    }

    /// Moves to `owner` up to `max` messages held by nodes not seen alive since
    /// `seen_before_ms` (or never), oldest first, and returns them. Rows another node is
    /// adopting at the same moment are skipped (`SKIP LOCKED`), so each message goes to
    /// one node.
    pub async fn queue_adopt(
        &self,
        owner: &str,
        seen_before_ms: u64,
        max: usize,
    ) -> Result<Vec<QueuedRow>, StoreError> {
        let owner = owner.to_string();
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.run(|inner| async move {
            let mut client = get(&inner.pool).await?;
            let tx = client.transaction().await.map_err(db("queue adopt"))?;
            let adopted = rows(
                query(
                    &tx,
                    "UPDATE outbound_queue q SET owner = $1 FROM ( \
                         SELECT id FROM outbound_queue WHERE owner <> $1 AND owner NOT IN \
                             (SELECT name FROM nodes WHERE seen_ms >= $2) \
                         ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED) picked \
                     WHERE q.id = picked.id RETURNING q.id, q.envelope",
                    &[&owner, &to_i64(seen_before_ms), &limit],
                    "queue adopt",
                )
                .await?,
            )?;
            tx.commit().await.map_err(db("queue adopt"))?;
            Ok(adopted)
        })
        .await
    }
}
