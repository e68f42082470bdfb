//! The store's state, shared by every job: [`Inner`] (the whole store), [`AccountDir`]
//! (one account), [`MailboxState`] (one mailbox), and the helpers every job uses.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use super::durability::Durability;
use super::files;
use super::uidlist::FileRef;
use super::usage::{Usage, UsageShare};
use crate::store::feed::ChangeHub;
use crate::store::index::MailboxIndex;
use crate::store::limits::StoreLimits;
use crate::types::{Address, Change, Uid};

/// The store's shared state; every job runs on a `&Inner`.
pub(super) struct Inner {
    pub(super) root: PathBuf,
    pub(super) limits: StoreLimits,
    pub(super) hub: ChangeHub,
    pub(super) accounts: Mutex<HashMap<Address, Arc<AccountDir>>>,
    pub(super) uid_validity: Mutex<IssuedUidValidity>,
    /// Makes the names of files this process writes unique (with the pid and the time).
    pub(super) name_seq: AtomicU64,
    pub(super) host: String,
    /// Whether appends sync file by file or share syncs (group commit).
    pub(super) durability: Durability,
}

/// UIDVALIDITY values handed out: the last one, and the end of the block reserved on disk.
pub(super) struct IssuedUidValidity {
    pub(super) last: u32,
    pub(super) reserved_until: u32,
}

/// One account's directory and the states of its mailboxes loaded so far.
pub(super) struct AccountDir {
    pub(super) address: Address,
    pub(super) path: PathBuf,
    /// Shared by message operations, exclusive for CREATE/DELETE/RENAME/SUBSCRIBE.
    pub(super) layout: RwLock<()>,
    pub(super) mailboxes: Mutex<HashMap<String, Arc<Mutex<MailboxState>>>>,
    /// The account's quota usage, kept up to date by the mailbox states.
    pub(super) usage: Arc<Mutex<Usage>>,
}

/// One mailbox as the store knows it: its index in memory and the index file on disk.
pub(super) struct MailboxState {
    pub(super) name: String,
    pub(super) dir: PathBuf,
    pub(super) index: MailboxIndex<FileRef>,
    /// Base file name to UID, for the rescan.
    pub(super) by_base: HashMap<String, Uid>,
    /// Whether the index file is on disk; false while the mailbox has no directory yet
    /// (INBOX of an account that never got mail). The file is opened per commit, not
    /// kept open: a descriptor per loaded mailbox would let idle sessions of many
    /// accounts exhaust the process's descriptors (BENCHMARKS.md, issue 14).
    pub(super) indexed: bool,
    pub(super) log_records: usize,
    /// Mtimes of `cur/` and `new/` at the last scan, if they can be trusted.
    pub(super) scanned: Option<(SystemTime, SystemTime)>,
    /// Whether the directories were listed (scanned) since the state was loaded.
    pub(super) listed: bool,
    /// Base names being written by an append or copy, not to be taken for foreign files.
    pub(super) pending: HashSet<String>,
    /// An index write failed: memory and disk may differ, reload before the next use.
    pub(super) broken: bool,
    /// This mailbox's part of the account's quota usage.
    pub(super) usage: UsageShare,
}

/// Whether an operation needs the index in step with files changed by others. Readers
/// do; appends do not (a message found later simply gets a later UID), which keeps a
/// delivery from reading a large directory.
#[derive(Clone, Copy)]
pub(super) enum Scan {
    Yes,
    /// Only if the mailbox was not listed since it was loaded: the index knows every
    /// file then, up to changes by others since (trimming, which a delivery starts).
    Once,
    No,
}

/// How a commit makes its index records durable.
#[derive(Clone, Copy)]
pub(super) enum IndexSync {
    /// With an fdatasync of the index file.
    Each,
    /// With the store's next shared barrier ([`Durability::barrier`]).
    Group,
}

/// Lines for the index, and changes to publish once they are durable.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) records: String,
    pub(super) record_count: usize,
    pub(super) changes: Vec<Change>,
}

pub(super) fn read_guard(l: &RwLock<()>) -> std::sync::RwLockReadGuard<'_, ()> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn write_guard(l: &RwLock<()>) -> std::sync::RwLockWriteGuard<'_, ()> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn now_secs() -> i64 {
    files::unix_secs(SystemTime::now())
}
