//! Where the pending notifications live: files in `<mailboxes_dir>/pending_notifications`
//! (the reference's layout, the [`pending`] module), or, when the nodes of a domain
//! share a PostgreSQL database, its `push_pending` rows, each held by one node; the
//! notifications of a node that stopped are taken over by another
//! ([`PendingStorage::adopt`]).

#[cfg(feature = "postgres")]
use super::engine::ItemId;
use super::engine::PendingItem;
use super::pending::{self, FileOp};
use chatmail_core::BlockingExecutor;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Most notifications loaded or adopted at once (as many as the queue holds at most by
/// default, [`PushSettings::max_pending`](super::PushSettings::max_pending)).
#[cfg(feature = "postgres")]
const MAX_LOAD: usize = 100_000;

/// The pending notifications' storage.
pub enum PendingStorage {
    /// Files in this directory, written on `executor`.
    Files {
        /// `<mailboxes_dir>/pending_notifications`.
        dir: PathBuf,
        /// Where the blocking file work runs.
        executor: Arc<dyn BlockingExecutor>,
    },
    /// Rows of the database the nodes share; this node holds those whose owner is `node`.
    #[cfg(feature = "postgres")]
    Shared {
        /// The shared store.
        store: Arc<chatmail_core::store::PostgresStore>,
        /// This node's name (as the shared delivery queue's).
        node: String,
    },
}

#[cfg(feature = "postgres")]
fn store_error(e: chatmail_core::store::StoreError) -> io::Error {
    match e {
        chatmail_core::store::StoreError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

/// A stored row as an item; malformed rows (an address or token a relay never wrote)
/// are skipped with a warning.
#[cfg(feature = "postgres")]
fn item(row: chatmail_core::store::postgres::PendingPushRow) -> Option<PendingItem> {
    let parsed = ItemId::parse(&row.id).zip(chatmail_core::Address::parse(&row.address).ok());
    let valid_token = !row.token.is_empty()
        && row.token.len() <= chatmail_core::account::MAX_TOKEN_LEN
        && row.token.bytes().all(|b| b.is_ascii_graphic());
    match parsed {
        Some((id, account)) if valid_token => Some(PendingItem {
            id,
            account,
            start_ts: row.start_ts,
            token: row.token,
        }),
        _ => {
            tracing::warn!(
                id = row.id,
                "skipping a malformed pending push notification"
            );
            None
        }
    }
}

impl PendingStorage {
    /// Every notification this node holds (at start).
    pub async fn load(&self) -> io::Result<Vec<PendingItem>> {
        match self {
            PendingStorage::Files { dir, executor } => {
                let dir = dir.clone();
                chatmail_core::run_blocking(&**executor, move || pending::load(&dir))
                    .await
                    .map_err(io::Error::other)?
            }
            #[cfg(feature = "postgres")]
            PendingStorage::Shared { store, node } => Ok(store
                .push_pending_load(node, MAX_LOAD)
                .await
                .map_err(store_error)?
                .into_iter()
                .filter_map(item)
                .collect()),
        }
    }

    /// Applies `ops` in order. For files: one batch, one directory sync. In the
    /// database: an item written and removed within the batch is never written.
    pub async fn apply(&self, ops: Vec<FileOp>) -> io::Result<()> {
        match self {
            PendingStorage::Files { dir, executor } => {
                let dir = dir.clone();
                chatmail_core::run_blocking(&**executor, move || pending::apply(&dir, ops))
                    .await
                    .map_err(io::Error::other)?
            }
            #[cfg(feature = "postgres")]
            PendingStorage::Shared { store, node } => {
                let removed: std::collections::HashSet<ItemId> = ops
                    .iter()
                    .filter_map(|op| match op {
                        FileOp::Remove(id) => Some(*id),
                        FileOp::Write(_) => None,
                    })
                    .collect();
                let mut written = std::collections::HashSet::new();
                for op in ops {
                    match op {
                        FileOp::Write(item) if !removed.contains(&item.id) => {
                            let row = chatmail_core::store::postgres::PendingPushRow {
                                id: item.id.to_string(),
                                address: item.account.as_str().to_string(),
                                start_ts: item.start_ts,
                                token: item.token,
                            };
                            store
                                .push_pending_write(node, &row)
                                .await
                                .map_err(store_error)?;
                            written.insert(item.id);
                        }
                        FileOp::Write(item) => {
                            written.insert(item.id);
                        }
                        FileOp::Remove(id) if !written.contains(&id) => {
                            store
                                .push_pending_remove(node, &id.to_string())
                                .await
                                .map_err(store_error)?;
                        }
                        FileOp::Remove(_) => {}
                    }
                }
                Ok(())
            }
        }
    }

    /// For the database: says this node is alive at `now_ms` and takes over the
    /// notifications of nodes not seen since `seen_before_ms`. Nothing for files.
    pub async fn adopt(&self, now_ms: u64, seen_before_ms: u64) -> io::Result<Vec<PendingItem>> {
        match self {
            PendingStorage::Files { .. } => {
                let _ = (now_ms, seen_before_ms);
                Ok(Vec::new())
            }
            #[cfg(feature = "postgres")]
            PendingStorage::Shared { store, node } => {
                store.node_alive(node, now_ms).await.map_err(store_error)?;
                Ok(store
                    .push_pending_adopt(node, seen_before_ms, MAX_LOAD)
                    .await
                    .map_err(store_error)?
                    .into_iter()
                    .filter_map(item)
                    .collect())
            }
        }
    }

    /// Whether notifications of other nodes may need taking over.
    pub fn is_shared(&self) -> bool {
        !matches!(self, PendingStorage::Files { .. })
    }
}
