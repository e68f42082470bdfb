//! The change feed's state in one store instance: the accounts with local subscribers
//! and, per mailbox, what was published of it (see `feed` for how it is used).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::rows::MailboxRow;
use crate::store::feed::ChangeHub;
use crate::store::lock::lock;
use crate::types::{Address, ModSeq, Uid};

/// The feed's state in one store instance.
pub(super) struct Feed {
    /// This instance's name in notifications, so that it skips its own.
    pub node: String,
    /// Accounts with local subscribers, and what was published of each.
    pub watched: Mutex<HashMap<Address, Arc<Watch>>>,
    /// The listener task, ended with the store.
    pub listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// One watched account. The async lock orders publishing: local changes and changes
/// read back are published under it, so cursors and the hub agree.
#[derive(Default)]
pub(super) struct Watch {
    pub state: tokio::sync::Mutex<WatchState>,
}

#[derive(Default)]
pub(super) struct WatchState {
    /// The cursors were read from the database.
    pub ready: bool,
    /// Per mailbox row id.
    pub cursors: HashMap<i64, Cursor>,
}

/// What this instance published of one mailbox: every change up to `modseq`, and the
/// messages below `uid_next`.
pub(super) struct Cursor {
    pub name: String,
    pub modseq: ModSeq,
    pub uid_next: Uid,
}

impl Cursor {
    /// A mailbox created after the account's cursors were read: all of it is news.
    pub(super) fn new_mailbox(name: String) -> Self {
        Cursor {
            name,
            modseq: ModSeq(1),
            uid_next: Uid(1),
        }
    }
}

/// A committed change to one mailbox: its highest modseq went from `before` to `after`.
pub(super) struct Progress {
    pub mailbox_id: i64,
    pub name: String,
    pub before: ModSeq,
    pub after: ModSeq,
    pub uid_next: Uid,
}

impl Progress {
    /// A change to `mailbox`, whose row was read (and locked) before it, that took its
    /// highest modseq to `after` and its UIDNEXT to `uid_next`.
    pub(super) fn on(mailbox: &MailboxRow, name: &str, after: ModSeq, uid_next: Uid) -> Self {
        Progress {
            mailbox_id: mailbox.id,
            name: name.to_string(),
            before: mailbox.highest_modseq,
            after,
            uid_next,
        }
    }
}

impl Feed {
    pub(super) fn new() -> Self {
        let mut bytes = [0u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            // Unique enough among the nodes of one database without randomness.
            bytes = (u64::from(std::process::id())
                ^ std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64))
            .to_le_bytes();
        }
        Feed {
            node: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            watched: Mutex::new(HashMap::new()),
            listener: Mutex::new(None),
        }
    }

    /// Ends the listener (the store is gone).
    pub(super) fn stop(&self) {
        if let Some(task) = lock(&self.listener).take() {
            task.abort();
        }
    }

    /// The account's watch while it has local subscribers; without, it stops being
    /// watched (a later subscriber reads fresh cursors), so only accounts with sessions
    /// on this node cost read-backs.
    pub(super) fn get_subscribed(&self, account: &Address, hub: &ChangeHub) -> Option<Arc<Watch>> {
        let mut watched = lock(&self.watched);
        if !hub.has_subscribers(account) {
            watched.remove(account);
            return None;
        }
        watched.get(account).cloned()
    }

    /// The account's watch, if it is watched.
    pub(super) fn get(&self, account: &Address) -> Option<Arc<Watch>> {
        lock(&self.watched).get(account).cloned()
    }
}
