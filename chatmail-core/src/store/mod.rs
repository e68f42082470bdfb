//! Mail storage: traits, the change feed, and the `memory` and `maildir` backends.
//!
//! [`MailStore`] is everything the IMAP engine and local delivery need from a mail store,
//! per account ([`Address`]) and mailbox name: mailboxes (create, delete, rename, list,
//! subscribe), messages (append, list with UIDs and modseqs, read, flags, expunge, copy,
//! move), quota usage, expiry and quota trimming, and a [change feed](ChangeSubscription)
//! an IDLE session waits on.
//! The trait says nothing about files, so a networked backend (a database for the index,
//! an object store for bodies) can implement it too.
//!
//! Two backends ship here:
//!
//! * [`MemoryStore`]: everything in memory; for tests, fuzzing and embedders that want no
//!   persistence.
//! * [`MaildirStore`]: the reference relay's layout on disk, `<mailboxes_dir>/<addr>/`
//!   with `cur/ new/ tmp/` and Maildir++ folders `.<Name>/`, so an existing relay's
//!   messages (written by Dovecot, gzip-compressed or not) are served without conversion.
//!   IMAP state that maildir cannot hold lives in a sidecar index per mailbox,
//!   `chatmail-uidlist`.
//!
//! Accounts (whether an address may log in, its password) are not the store's business:
//! the caller checks them with [`crate::account`] first. The maildir store creates an
//! account's maildir on first use, as Dovecot does.
//!
//! # Semantics every backend keeps
//!
//! * `INBOX` (any case) always exists and cannot be deleted or renamed.
//! * Within one [`UidValidity`] UIDs strictly increase and are never reused, also across a
//!   restart. A mailbox that is deleted and created again gets a new UIDVALIDITY.
//! * Every change to a message (append, flags, expunge) takes a new modseq, one higher
//!   than the mailbox's highest so far; a new mailbox starts at highest modseq 1.
//! * A successful [`MailStore::append`] is durable when it returns.
//! * Every change is published on the account's change feed after it is applied.
//!
//! # Blocking
//!
//! The methods are `async` so that a networked backend can await its I/O. The `maildir`
//! backend does blocking file-system calls including `fsync`; it hands them to the
//! [`BlockingExecutor`](crate::BlockingExecutor) it was built with, so an async
//! runtime's workers never block on a disk (see [`MaildirStore::with_executor`]).
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use chatmail_core::store::{MailStore, MemoryStore};
//! use chatmail_core::{Address, Flags, INBOX};
//!
//! futures::executor::block_on(async {
//!     let store = MemoryStore::new();
//!     let alice = Address::parse("alice@chat.example.org").unwrap();
//!     let mut feed = store.subscribe(&alice);
//!
//!     let message = Bytes::from_static(b"Subject: hi\r\n\r\nhello\r\n");
//!     let appended = store.append(&alice, INBOX, message.clone(), &Flags::new(), 1_700_000_000)
//!         .await
//!         .unwrap();
//!     assert_eq!(appended.uid.0, 1);
//!
//!     // The IDLE session learns of the delivery without polling.
//!     let change = feed.next().await.unwrap();
//!     assert_eq!(change.mailbox(), INBOX);
//!
//!     let listed = store.list_messages(&alice, INBOX, None).await.unwrap();
//!     assert_eq!(listed[0].uid, appended.uid);
//!     assert_eq!(store.read_message(&alice, INBOX, appended.uid).await.unwrap(), message);
//! });
//! ```

mod feed;
mod index;
pub(crate) mod maildir;
mod memory;
mod name;

use async_trait::async_trait;
use bytes::Bytes;

use crate::expiry::{ExpiryPolicy, ExpiryReport};
use crate::types::{Address, FlagOp, Flags, MailboxInfo, MailboxStatus, MessageMeta, ModSeq};
use crate::types::{Uid, UidValidity};

pub use feed::{ChangeHub, ChangeSubscription, Lagged, DEFAULT_FEED_CAPACITY};
pub use maildir::MaildirStore;
pub use memory::MemoryStore;
pub use name::{validate_mailbox_name, MAX_MAILBOX_DEPTH, MAX_MAILBOX_NAME_LEN};

/// Why a storage operation failed. The IMAP engine turns each into a tagged `NO`; none of
/// them means the session must end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The mailbox does not exist.
    #[error("mailbox {0:?} does not exist")]
    NoSuchMailbox(String),
    /// CREATE or RENAME to a name that exists already.
    #[error("mailbox {0:?} already exists")]
    MailboxExists(String),
    /// The name is not an acceptable mailbox name.
    #[error("invalid mailbox name {name:?}: {reason}")]
    InvalidMailboxName {
        /// The name as given (control characters escaped by `Debug`).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The account has the maximum number of mailboxes already.
    #[error("the account has {0} mailboxes, no more can be created")]
    TooManyMailboxes(usize),
    /// DELETE or RENAME of INBOX.
    #[error("INBOX cannot be deleted or renamed")]
    InboxImmutable,
    /// The message (UID) does not exist (any more) in the mailbox.
    #[error("no message with UID {0}")]
    NoSuchMessage(u32),
    /// A message larger than [`StoreLimits::max_message_bytes`].
    #[error("message of {size} bytes exceeds the store's limit of {limit} bytes")]
    MessageTooLarge {
        /// The message's size (for a compressed file: at least this much).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A message would carry more keywords than [`StoreLimits::max_keywords`].
    #[error("a message may carry at most {0} keywords")]
    TooManyKeywords(usize),
    /// The mailbox has used up the UID space; it needs a new UIDVALIDITY.
    #[error("the mailbox has no UIDs left")]
    UidsExhausted,
    /// A stored file is unreadable as a message (for example a broken gzip stream).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The blocking executor dropped the job instead of running it (shutting down).
    #[error("the store's blocking executor is gone")]
    ExecutorGone,
    /// A file-system (or, for other backends, network) error.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Locks a mutex even if a thread panicked while holding it. Every store keeps its state
/// consistent at each step that can panic, and a mail server must not stop serving an
/// account because one request panicked.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl From<crate::executor::ExecutorGone> for StoreError {
    fn from(_: crate::executor::ExecutorGone) -> Self {
        StoreError::ExecutorGone
    }
}

impl StoreError {
    /// Wraps an I/O error with what the store was doing.
    pub(crate) fn io(context: impl std::fmt::Display, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.to_string(),
            source,
        }
    }
}

/// Bounds a store enforces whatever its callers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Mailboxes per account besides INBOX.
    pub max_mailboxes: usize,
    /// Keywords (`$MDNSent` ...) per message.
    pub max_keywords: usize,
    /// Size of one message, also after decompressing a stored gzip file.
    pub max_message_bytes: u64,
}

impl Default for StoreLimits {
    /// 256 mailboxes, 32 keywords, 64 MiB per message (the protocol engines apply the
    /// configured, smaller `max_message_size` before a message gets here).
    fn default() -> Self {
        StoreLimits {
            max_mailboxes: 256,
            max_keywords: 32,
            max_message_bytes: 64 << 20,
        }
    }
}

/// The result of an append: the `APPENDUID` of UIDPLUS plus the message's modseq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// UIDVALIDITY of the mailbox appended to.
    pub uid_validity: UidValidity,
    /// UID the message got.
    pub uid: Uid,
    /// Modseq of the append.
    pub modseq: ModSeq,
}

/// The result of a flag change (STORE), for the untagged FETCH answers and the
/// `MODIFIED` response code of CONDSTORE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreFlagsOutcome {
    /// Messages whose flags changed, with their new flags and modseq.
    pub modified: Vec<MessageMeta>,
    /// Messages the operation matched but did not change (flags already so).
    pub unchanged: Vec<MessageMeta>,
    /// UIDs not changed because their modseq is above `unchanged_since` (`MODIFIED`).
    pub failed: Vec<Uid>,
}

/// The result of a copy or move: the `COPYUID` of UIDPLUS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOutcome {
    /// UIDVALIDITY of the destination mailbox.
    pub uid_validity: UidValidity,
    /// (source UID, destination UID) for every message copied, ascending source UIDs.
    /// UIDs that did not exist in the source are absent.
    pub mapping: Vec<(Uid, Uid)>,
}

/// A mail store: every operation the IMAP engine and local delivery need, per account
/// and mailbox. Mailbox names are validated with [`validate_mailbox_name`]; `INBOX` in
/// any case means INBOX. See the [module docs](self) for the guarantees.
#[async_trait]
pub trait MailStore: Send + Sync {
    /// Creates a mailbox (IMAP CREATE). Its UIDVALIDITY is new.
    async fn create_mailbox(&self, account: &Address, mailbox: &str) -> Result<(), StoreError>;

    /// Deletes a mailbox and its messages (IMAP DELETE); inferior mailboxes (`Name.Sub`)
    /// are kept. The subscription goes with it.
    async fn delete_mailbox(&self, account: &Address, mailbox: &str) -> Result<(), StoreError>;

    /// Renames a mailbox and its inferiors (IMAP RENAME), keeping UIDs, UIDVALIDITY and
    /// the subscription.
    async fn rename_mailbox(
        &self,
        account: &Address,
        from: &str,
        to: &str,
    ) -> Result<(), StoreError>;

    /// Subscribes to (the mailbox must exist) or unsubscribes from a mailbox.
    async fn set_subscribed(
        &self,
        account: &Address,
        mailbox: &str,
        subscribed: bool,
    ) -> Result<(), StoreError>;

    /// All mailboxes of the account, INBOX first, then by name.
    async fn list_mailboxes(&self, account: &Address) -> Result<Vec<MailboxInfo>, StoreError>;

    /// The counters of SELECT and STATUS.
    async fn status(&self, account: &Address, mailbox: &str) -> Result<MailboxStatus, StoreError>;

    /// Appends a message with `flags` and `internal_date` (seconds since the epoch);
    /// durable before it returns. Publishes [`crate::Change::Appended`].
    async fn append(
        &self,
        account: &Address,
        mailbox: &str,
        message: Bytes,
        flags: &Flags,
        internal_date: i64,
    ) -> Result<AppendOutcome, StoreError>;

    /// The mailbox's messages by ascending UID; with `changed_since`, only those whose
    /// modseq is greater (CONDSTORE `CHANGEDSINCE`).
    async fn list_messages(
        &self,
        account: &Address,
        mailbox: &str,
        changed_since: Option<ModSeq>,
    ) -> Result<Vec<MessageMeta>, StoreError>;

    /// The message as delivered (decompressed if it is stored compressed).
    async fn read_message(
        &self,
        account: &Address,
        mailbox: &str,
        uid: Uid,
    ) -> Result<Bytes, StoreError>;

    /// Changes the flags of the messages `uids` (UIDs that do not exist are ignored).
    /// With `unchanged_since` (CONDSTORE), messages whose modseq is greater are left
    /// alone and reported in [`StoreFlagsOutcome::failed`]. Publishes
    /// [`crate::Change::FlagsChanged`] per modified message.
    async fn store_flags(
        &self,
        account: &Address,
        mailbox: &str,
        uids: &[Uid],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<ModSeq>,
    ) -> Result<StoreFlagsOutcome, StoreError>;

    /// Removes exactly the messages `uids` (the caller picks the `\Deleted` ones);
    /// returns the UIDs removed, ascending. Publishes [`crate::Change::Expunged`].
    async fn expunge(
        &self,
        account: &Address,
        mailbox: &str,
        uids: &[Uid],
    ) -> Result<Vec<Uid>, StoreError>;

    /// Copies messages, with their flags and internal dates, to another (or the same)
    /// mailbox of the account.
    async fn copy(
        &self,
        account: &Address,
        from: &str,
        uids: &[Uid],
        to: &str,
    ) -> Result<CopyOutcome, StoreError>;

    /// Moves messages (IMAP MOVE): a copy, then an expunge of the copied source messages.
    /// If the expunge fails after the copy, the messages exist in both mailboxes and the
    /// error is returned (no message is ever lost).
    async fn move_messages(
        &self,
        account: &Address,
        from: &str,
        uids: &[Uid],
        to: &str,
    ) -> Result<CopyOutcome, StoreError> {
        let copied = self.copy(account, from, uids, to).await?;
        let sources: Vec<Uid> = copied.mapping.iter().map(|(source, _)| *source).collect();
        self.expunge(account, from, &sources).await?;
        Ok(copied)
    }

    /// Bytes used by the account's messages across all its mailboxes (message sizes as
    /// delivered), for QUOTA and the quota check before delivery. Called once per
    /// delivery: backends keep the figure rather than walk the messages.
    async fn quota_usage(&self, account: &Address) -> Result<u64, StoreError>;

    /// Removes what the daily clean-up removes (spec 6.1; see [`crate::expiry`]) from
    /// every account, at `now` (unix seconds): messages older than
    /// `policy.delete_mails_after_secs`, large seen ones older than
    /// `delete_large_after_secs`, then each INBOX trimmed as by
    /// [`MailStore::trim_to_quota`] to `quota_target_bytes`. A backend that knows the
    /// accounts' last logins (maildir: the `password` file's mtime) also removes accounts
    /// unused for `delete_inactive_after_secs`, and empty account directories.
    ///
    /// Each message removed is expunged as by [`MailStore::expunge`], publishing
    /// [`crate::Change::Expunged`]; a removed account's mailboxes are published as
    /// [`crate::Change::MailboxReset`]. Best effort: what fails is in the report, and
    /// the run goes on.
    async fn expire(&self, policy: &ExpiryPolicy, now: u64) -> Result<ExpiryReport, StoreError>;

    /// Removes the oldest messages of the account's INBOX while its messages take more
    /// than `target_bytes`, never one younger than 24 hours at `now` (spec 6.2, the
    /// trimming a delivery past 75 % of the quota starts); returns their UIDs, ascending.
    /// Publishes [`crate::Change::Expunged`] as [`MailStore::expunge`] does.
    async fn trim_to_quota(
        &self,
        account: &Address,
        target_bytes: u64,
        now: u64,
    ) -> Result<Vec<Uid>, StoreError>;

    /// Starts listening to the account's changes; the subscription sees every change
    /// published after this call.
    fn subscribe(&self, account: &Address) -> ChangeSubscription;
}
