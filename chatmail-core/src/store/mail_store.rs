//! [`MailStore`], the trait every mail store implements, and the outcomes its
//! operations report.

use async_trait::async_trait;
use bytes::Bytes;

use super::error::StoreError;
use super::feed::ChangeSubscription;
use crate::expiry::{ExpiryPolicy, ExpiryReport};
use crate::types::{Address, FlagOp, Flags, MailboxInfo, MailboxStatus, MessageMeta, ModSeq};
use crate::types::{Uid, UidValidity};

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
/// and mailbox. Mailbox names are validated with [`validate_mailbox_name`](super::validate_mailbox_name); `INBOX` in
/// any case means INBOX. See the [module docs](super) for the guarantees.
#[async_trait]
pub trait MailStore: Send + Sync {
    /// Creates a mailbox (IMAP CREATE). Its UIDVALIDITY is new. INBOX always exists, but
    /// CREATE INBOX succeeds while it never held a message: Dovecot, the reference
    /// relay's server, creates a fresh account's INBOX on first use and accepts CREATE
    /// INBOX until then (imaptest's `pipeline` group relies on it); once INBOX held
    /// mail it is [`StoreError::MailboxExists`], as RFC 3501 6.3.3 has it.
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

    /// Claims the mailbox's `\Recent` messages for one session (RFC 3501 2.3.2: a
    /// message is recent to exactly one session, the first told of it): returns the UID
    /// range claimed, from the first unclaimed UID to UIDNEXT, and no later claim gets
    /// those UIDs again. SELECT claims; EXAMINE and STATUS only look
    /// ([`MailboxStatus::recent`]). A backend that does not track it claims nothing.
    async fn claim_recent(
        &self,
        account: &Address,
        mailbox: &str,
    ) -> Result<std::ops::Range<Uid>, StoreError> {
        let status = self.status(account, mailbox).await?;
        Ok(status.uid_next..status.uid_next)
    }

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
