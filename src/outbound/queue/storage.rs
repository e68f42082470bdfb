//! Where a [`DeliveryQueue`](super::DeliveryQueue) keeps its messages: a directory of
//! this node (`spool`), or rows of the PostgreSQL database that the nodes of a domain
//! share, each message held by one node at a time (`chatmail_core::store::postgres`'s
//! `queue`). The queue's scheduling is the same for both.

use super::error::QueueError;
use super::spool::{Envelope, Spool};
use bytes::Bytes;
use chatmail_core::BlockingExecutor;
#[cfg(feature = "postgres")]
use std::io;
use std::sync::Arc;

/// Most bytes of one envelope read back (as the spool's file bound).
#[cfg(feature = "postgres")]
const MAX_ENVELOPE: usize = 4 * 1024 * 1024;

/// The queue's storage.
pub(super) enum QueueStorage {
    /// Files in a directory of this node; blocking work runs on `executor`.
    Files {
        spool: Arc<Spool>,
        executor: Arc<dyn BlockingExecutor>,
    },
    /// Rows shared by the nodes; this node holds those whose owner is `node`.
    #[cfg(feature = "postgres")]
    Shared {
        store: Arc<chatmail_core::store::PostgresStore>,
        node: String,
    },
}

/// What became of a change to a message's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Held {
    /// Written.
    Yes,
    /// Another node adopted the message while this one was taken for dead: it is no
    /// longer this node's to attempt.
    ByAnother,
}

#[cfg(feature = "postgres")]
fn store_error(e: chatmail_core::store::StoreError) -> io::Error {
    match e {
        chatmail_core::store::StoreError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

/// An envelope read back from the shared queue, checked as the spool checks its files.
#[cfg(feature = "postgres")]
fn parse_envelope(id: &str, json: &str) -> Option<Envelope> {
    if json.len() > MAX_ENVELOPE {
        tracing::error!(id, "queued envelope too large; not attempted");
        return None;
    }
    match serde_json::from_str::<Envelope>(json) {
        Ok(envelope) if envelope.version == 1 => Some(envelope),
        Ok(envelope) => {
            tracing::error!(
                id,
                version = envelope.version,
                "unknown queue envelope version; not attempted"
            );
            None
        }
        Err(e) => {
            tracing::error!(id, error = %e, "unreadable queue envelope; not attempted");
            None
        }
    }
}

impl QueueStorage {
    /// Stores a new message and its envelope durably.
    pub(super) async fn create(
        &self,
        id: &str,
        message: Bytes,
        envelope: &Envelope,
    ) -> Result<(), QueueError> {
        match self {
            QueueStorage::Files { spool, executor } => {
                let (spool, id, envelope) = (spool.clone(), id.to_string(), envelope.clone());
                chatmail_core::run_blocking(&**executor, move || {
                    spool.create(&id, &message, &envelope)
                })
                .await??;
                Ok(())
            }
            #[cfg(feature = "postgres")]
            QueueStorage::Shared { store, node } => {
                let json = serde_json::to_string(envelope).map_err(io::Error::other)?;
                store
                    .queue_insert(node, id, &json, message)
                    .await
                    .map_err(store_error)?;
                Ok(())
            }
        }
    }

    /// Replaces the envelope of `id` (or removes the message when `finished`).
    pub(super) async fn record(
        &self,
        id: &str,
        envelope: &Envelope,
        finished: bool,
    ) -> Result<Held, QueueError> {
        match self {
            QueueStorage::Files { spool, executor } => {
                let (spool, id, envelope) = (spool.clone(), id.to_string(), envelope.clone());
                chatmail_core::run_blocking(&**executor, move || {
                    if finished {
                        spool.remove(&id)
                    } else {
                        spool.update(&id, &envelope)
                    }
                })
                .await??;
                Ok(Held::Yes)
            }
            #[cfg(feature = "postgres")]
            QueueStorage::Shared { store, node } => {
                let held = if finished {
                    store.queue_remove(node, id).await
                } else {
                    let json = serde_json::to_string(envelope).map_err(io::Error::other)?;
                    store.queue_update(node, id, &json).await
                }
                .map_err(store_error)?;
                Ok(if held { Held::Yes } else { Held::ByAnother })
            }
        }
    }

    /// The message bytes of `id`.
    pub(super) async fn message(&self, id: &str) -> Result<Bytes, QueueError> {
        match self {
            QueueStorage::Files { spool, executor } => {
                let (spool, id) = (spool.clone(), id.to_string());
                let bytes =
                    chatmail_core::run_blocking(&**executor, move || spool.message(&id)).await??;
                Ok(Bytes::from(bytes))
            }
            #[cfg(feature = "postgres")]
            QueueStorage::Shared { store, .. } => store
                .queue_message(id)
                .await
                .map_err(store_error)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no longer queued").into()),
        }
    }

    /// Tells the other nodes this one is alive and takes over, at most `max`, the
    /// messages of nodes not seen since `seen_before_ms`. Nothing for a directory.
    pub(super) async fn adopt(
        &self,
        now_ms: u64,
        seen_before_ms: u64,
        max: usize,
    ) -> Result<Vec<(String, Envelope)>, QueueError> {
        match self {
            QueueStorage::Files { .. } => {
                let _ = (now_ms, seen_before_ms, max);
                Ok(Vec::new())
            }
            #[cfg(feature = "postgres")]
            QueueStorage::Shared { store, node } => {
                store.node_alive(node, now_ms).await.map_err(store_error)?;
                let rows = store
                    .queue_adopt(node, seen_before_ms, max)
                    .await
                    .map_err(store_error)?;
                Ok(rows
                    .into_iter()
                    .filter_map(|row| parse_envelope(&row.id, &row.envelope).map(|e| (row.id, e)))
                    .collect())
            }
        }
    }

    /// Every message this node holds (at start).
    #[cfg(feature = "postgres")]
    pub(super) async fn load_shared(&self) -> Result<Vec<(String, Envelope)>, QueueError> {
        match self {
            QueueStorage::Files { .. } => Ok(Vec::new()),
            QueueStorage::Shared { store, node } => Ok(store
                .queue_load(node)
                .await
                .map_err(store_error)?
                .into_iter()
                .filter_map(|row| parse_envelope(&row.id, &row.envelope).map(|e| (row.id, e)))
                .collect()),
        }
    }
}
