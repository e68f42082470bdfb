//! [`MaildirStore`]: the store's async face. Each [`MailStore`] method hands one job,
//! a method of [`Inner`] in the file of its concern, to the executor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use super::committer::{AppendJob, Committer};
use super::durability::Durability;
use super::inner::{Inner, IssuedUidValidity};
use super::{maintenance, uid_validity};
use crate::executor::{run_blocking, BlockingExecutor, InlineExecutor};
use crate::expiry::{ExpiryPolicy, ExpiryReport};
use crate::store::error::StoreError;
use crate::store::feed::{ChangeHub, ChangeSubscription};
use crate::store::limits::StoreLimits;
use crate::store::mail_store::{AppendOutcome, CopyOutcome, MailStore, StoreFlagsOutcome};
use crate::types::{Address, FlagOp, Flags, MailboxInfo, MailboxStatus, MessageMeta};
use crate::types::{ModSeq, Uid};

/// A [`MailStore`] on the reference relay's maildir layout:
///
/// ```text
/// <mailboxes_dir>/<addr>/cur/ new/ tmp/          INBOX
/// <mailboxes_dir>/<addr>/chatmail-uidlist        INBOX's index (this backend's)
/// <mailboxes_dir>/<addr>/chatmail-subscriptions  subscribed mailboxes, one per line
/// <mailboxes_dir>/<addr>/.<Name>/cur/ new/ tmp/  mailbox <Name> (Maildir++), with its own
/// <mailboxes_dir>/<addr>/.<Name>/chatmail-uidlist  index and a `maildirfolder` marker
/// ```
///
/// The other files of an account directory (`password`, `enforceE2EEincoming`,
/// `metadata.json`, Dovecot's `dovecot*` and `maildirsize`) belong to others and are
/// never written. Messages already there, as Dovecot wrote them (`new/` or `cur/`, plain
/// or gzip-compressed, `,S=<size>` in the name), are listed and read like the store's
/// own.
///
/// # Taking over from Dovecot
///
/// A mailbox without an index of this store's gets one when first opened. If Dovecot
/// served it before and left a valid `dovecot-uidlist` (format 3; see the `dovecot`
/// module for the format and its bounds), the index takes on Dovecot's UIDVALIDITY and
/// the UIDs of the listed files that exist, and UIDNEXT continues from the larger of
/// Dovecot's and one more than the highest UID taken on; files Dovecot did not list get
/// UIDs from there, in delivery order. Clients then keep their caches. HIGHESTMODSEQ
/// starts above any Dovecot can have reached (Dovecot's own is in its binary index, not
/// read), so a CONDSTORE client's cached value is never ahead of the mailbox. Flags
/// come from the maildir info letters: upper-case ones are system flags, lower-case
/// ones keywords numbered in `dovecot-keywords` (at most `max_keywords` per message).
/// Without a valid `dovecot-uidlist` (missing, unreadable, too large, malformed), the
/// mailbox gets a new UIDVALIDITY and UIDs in delivery order, and clients resynchronise.
/// Dovecot's files are only read once: the takeover is recorded in `chatmail-dovecot-adopted`
/// before the index is written, and an index of this store's that became unreadable or
/// went missing after a takeover is rebuilt under a new UIDVALIDITY, since UIDs given
/// after the takeover are not in Dovecot's list.
///
/// UIDVALIDITY values are unique per `mailboxes_dir`: `chatmail-uidvalidity` (in `mailboxes_dir`) reserves
/// the values handed out, and an adopted value is reserved too, so every value handed
/// out later (also after a restart) is larger than any adopted one. A mailbox deleted
/// and created again, or rebuilt, never gets a UIDVALIDITY it had before.
///
/// # Durability
///
/// An append writes `tmp/<name>`, makes it durable, renames it into `new/` (or `cur/`
/// when it has flags), appends the UID record to the mailbox's index
/// (`chatmail-uidlist`), and makes the name and the record durable, all before it
/// returns. By default (on Linux) concurrent appends share these syncs: one `syncfs` of
/// the file system serves every append waiting for it (group commit; the
/// `durability` module says how, and [`MaildirStore::with_group_commit`] turns it off).
/// Without it each append fsyncs its file, the directory and the index: three fsyncs.
/// UIDNEXT and the highest modseq are in the index, so UIDs never repeat across a restart.
/// A delivery killed between the write and the rename leaves its file in `tmp/`: at open
/// the store removes files in any `tmp/` older than 36 hours, as Dovecot does.
///
/// # Files changed by others
///
/// Other programs (Dovecot before the takeover, an operator's scripts) may add and
/// delete message files and whole account directories behind the store's back; the
/// store's own expiry and trimming go through the index ([`MailStore::expire`],
/// [`MailStore::trim_to_quota`]). Every operation that reads a mailbox first compares
/// the mtimes of its `cur/` and `new/` with those of its last scan, and rescans on a
/// difference (or when they are so recent that a change in the same clock tick could
/// hide). Appends do not scan: a file found later just gets a later UID. A rescan
/// turns vanished files into expunges and unknown files into new UIDs, both published
/// on the change feed. An INBOX whose directory vanished starts over with a new
/// UIDVALIDITY.
///
/// # Quota usage
///
/// Each account's usage is one figure the store keeps: computed once (the first call
/// after start loads and rescans every mailbox, which also takes in what Dovecot left)
/// and moved by every change the store commits, so the quota check of a delivery reads
/// no directory. Files others add are counted when a rescan finds them.
///
/// # Concurrency
///
/// One process owns a `mailboxes_dir`; within it any number of threads may work on the
/// same mailbox. Each mailbox has a lock held while its index changes; the message file
/// of an append is written and fsynced outside that lock, so appenders to one mailbox
/// only queue for the index write. Each account has a readers-writer lock: message
/// operations share it, CREATE/DELETE/RENAME/SUBSCRIBE take it alone.
///
/// # Blocking
///
/// All file-system work runs in jobs handed to the store's
/// [`BlockingExecutor`]. The default,
/// [`InlineExecutor`], runs them on the thread that
/// polls the future, which blocks it for the length of the fsyncs (milliseconds): right
/// for tests and blocking programs. An async program passes an executor that runs jobs
/// where blocking is allowed (`tokio::task::spawn_blocking`) via
/// [`MaildirStore::with_executor`].
pub struct MaildirStore {
    pub(super) inner: Arc<Inner>,
    executor: Arc<dyn BlockingExecutor>,
    /// In group-commit mode, the thread that makes appends durable in batches; started
    /// on the first append (so that the builder methods above still own `inner`).
    committer: OnceLock<Option<Arc<Committer>>>,
}

impl Drop for MaildirStore {
    fn drop(&mut self) {
        if let Some(Some(committer)) = self.committer.get() {
            committer.close();
        }
    }
}

impl std::fmt::Debug for MaildirStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaildirStore")
            .field("root", &self.inner.root)
            .field("limits", &self.inner.limits)
            .finish()
    }
}

impl MaildirStore {
    /// Serves the maildirs under `mailboxes_dir` (created if missing), running file-system
    /// work inline (see "Blocking" above).
    pub fn open(mailboxes_dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = mailboxes_dir.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| StoreError::io(format!("creating {}", root.display()), e))?;
        let reserved = uid_validity::read_reserved(&root)?;
        let swept = maintenance::sweep_tmp(&root, SystemTime::now());
        if swept > 0 {
            tracing::info!(
                files = swept,
                "removed files left in tmp/ for over 36 hours"
            );
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect::<String>();
        let durability = Durability::new(&root, true)
            .map_err(|e| StoreError::io(format!("opening {}", root.display()), e))?;
        Ok(MaildirStore {
            inner: Arc::new(Inner {
                durability,
                root,
                limits: StoreLimits::default(),
                hub: ChangeHub::new(),
                accounts: Mutex::new(HashMap::new()),
                uid_validity: Mutex::new(IssuedUidValidity {
                    last: reserved,
                    reserved_until: reserved,
                }),
                name_seq: AtomicU64::new(0),
                host: if host.is_empty() {
                    "localhost".into()
                } else {
                    host
                },
            }),
            executor: Arc::new(InlineExecutor),
            committer: OnceLock::new(),
        })
    }

    /// Runs file-system work through `executor` (e.g. one that calls
    /// `tokio::task::spawn_blocking`).
    pub fn with_executor(mut self, executor: Arc<dyn BlockingExecutor>) -> Self {
        self.executor = executor;
        self
    }

    /// Uses other bounds (only before the store is shared).
    pub fn with_limits(mut self, limits: StoreLimits) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.limits = limits;
        }
        self
    }

    /// Shares the syncs of concurrent appends (`true`, the default on Linux: group commit,
    /// see "Durability" above) or syncs each file (`false`: for a `mailboxes_dir` on a
    /// file system shared with heavy writers, whose dirty data a shared sync would flush
    /// too). Only before the store is shared.
    pub fn with_group_commit(mut self, group: bool) -> Result<Self, StoreError> {
        let durability = Durability::new(&self.inner.root, group)
            .map_err(|e| StoreError::io(format!("opening {}", self.inner.root.display()), e))?;
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.durability = durability;
        }
        Ok(self)
    }

    /// Publishes on (and subscribes from) `hub` instead of the store's own, so that other
    /// components share one change feed.
    pub fn with_hub(mut self, hub: ChangeHub) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.hub = hub;
        }
        self
    }

    /// The change feed's publishing side.
    pub fn hub(&self) -> &ChangeHub {
        &self.inner.hub
    }

    /// The `mailboxes_dir` served.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    async fn run<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        run_blocking(&*self.executor, move || job(&inner)).await?
    }
}

#[async_trait]
impl MailStore for MaildirStore {
    async fn create_mailbox(&self, account: &Address, mailbox: &str) -> Result<(), StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(move |inner| inner.create_mailbox(&account, &mailbox))
            .await
    }

    async fn delete_mailbox(&self, account: &Address, mailbox: &str) -> Result<(), StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(move |inner| inner.delete_mailbox(&account, &mailbox))
            .await
    }

    async fn rename_mailbox(
        &self,
        account: &Address,
        from: &str,
        to: &str,
    ) -> Result<(), StoreError> {
        let (account, from, to) = (account.clone(), from.to_string(), to.to_string());
        self.run(move |inner| inner.rename_mailbox(&account, &from, &to))
            .await
    }

    async fn set_subscribed(
        &self,
        account: &Address,
        mailbox: &str,
        subscribed: bool,
    ) -> Result<(), StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(move |inner| inner.set_subscribed(&account, &mailbox, subscribed))
            .await
    }

    async fn list_mailboxes(&self, account: &Address) -> Result<Vec<MailboxInfo>, StoreError> {
        let account = account.clone();
        self.run(move |inner| inner.list_mailboxes(&account)).await
    }

    async fn status(&self, account: &Address, mailbox: &str) -> Result<MailboxStatus, StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(move |inner| {
            inner.with_mailbox(&account, &mailbox, |_, state| Ok(state.index.status()))
        })
        .await
    }

    async fn claim_recent(
        &self,
        account: &Address,
        mailbox: &str,
    ) -> Result<std::ops::Range<Uid>, StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        // The boundary and UIDNEXT only: no rescan of the directory per claim (one per
        // idling session on each delivery).
        self.run(move |inner| inner.claim_recent(&account, &mailbox))
            .await
    }

    async fn append(
        &self,
        account: &Address,
        mailbox: &str,
        message: Bytes,
        flags: &Flags,
        internal_date: i64,
    ) -> Result<AppendOutcome, StoreError> {
        let (account, mailbox, flags) = (account.clone(), mailbox.to_string(), flags.clone());
        let committer = self.committer.get_or_init(|| {
            if !self.inner.durability.is_grouped() {
                return None;
            }
            match Committer::start(self.inner.clone()) {
                Ok(committer) => Some(committer),
                Err(e) => {
                    // Appends then run as blocking jobs, sharing syncs all the same.
                    tracing::warn!(error = %e, "no committer thread");
                    None
                }
            }
        });
        let Some(committer) = committer else {
            return self
                .run(move |inner| inner.append(&account, &mailbox, &message, flags, internal_date))
                .await;
        };
        let (reply, answer) = futures::channel::oneshot::channel();
        committer.submit(AppendJob {
            account,
            mailbox,
            message,
            flags,
            internal_date,
            reply,
        });
        answer.await.map_err(|_| StoreError::ExecutorGone)?
    }

    async fn list_messages(
        &self,
        account: &Address,
        mailbox: &str,
        changed_since: Option<ModSeq>,
    ) -> Result<Vec<MessageMeta>, StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(move |inner| {
            inner.with_mailbox(&account, &mailbox, |_, state| {
                Ok(state.index.list(changed_since))
            })
        })
        .await
    }

    async fn read_message(
        &self,
        account: &Address,
        mailbox: &str,
        uid: Uid,
    ) -> Result<Bytes, StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(move |inner| inner.read_message(&account, &mailbox, uid))
            .await
    }

    async fn store_flags(
        &self,
        account: &Address,
        mailbox: &str,
        uids: &[Uid],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<ModSeq>,
    ) -> Result<StoreFlagsOutcome, StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        let (uids, flags) = (uids.to_vec(), flags.clone());
        self.run(move |inner| {
            inner.store_flags(&account, &mailbox, &uids, op, &flags, unchanged_since)
        })
        .await
    }

    async fn expunge(
        &self,
        account: &Address,
        mailbox: &str,
        uids: &[Uid],
    ) -> Result<Vec<Uid>, StoreError> {
        let (account, mailbox, uids) = (account.clone(), mailbox.to_string(), uids.to_vec());
        self.run(move |inner| inner.expunge(&account, &mailbox, &uids))
            .await
    }

    async fn copy(
        &self,
        account: &Address,
        from: &str,
        uids: &[Uid],
        to: &str,
    ) -> Result<CopyOutcome, StoreError> {
        let (account, from, to) = (account.clone(), from.to_string(), to.to_string());
        let uids = uids.to_vec();
        self.run(move |inner| inner.copy(&account, &from, &uids, &to))
            .await
    }

    async fn quota_usage(&self, account: &Address) -> Result<u64, StoreError> {
        let account = account.clone();
        self.run(move |inner| inner.quota_usage(&account)).await
    }

    async fn expire(&self, policy: &ExpiryPolicy, now: u64) -> Result<ExpiryReport, StoreError> {
        let policy = *policy;
        self.run(move |inner| Ok(inner.expire(&policy, now))).await
    }

    async fn trim_to_quota(
        &self,
        account: &Address,
        target_bytes: u64,
        now: u64,
    ) -> Result<Vec<Uid>, StoreError> {
        let account = account.clone();
        self.run(move |inner| inner.trim_to_quota(&account, target_bytes, now))
            .await
    }

    fn subscribe(&self, account: &Address) -> ChangeSubscription {
        self.inner.hub.subscribe(account)
    }
}
