//! The `memory` backend: every account's mailboxes in process memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use super::error::StoreError;
use super::feed::{ChangeHub, ChangeSubscription};
use super::index::{check_keywords, flag_changes, sorted_uids, MailboxIndex};
use super::limits::StoreLimits;
use super::lock::lock;
use super::mail_store::{AppendOutcome, CopyOutcome, MailStore, StoreFlagsOutcome};
use super::name::{renamed_names, validate_deletable, validate_mailbox_name, validate_rename};
use crate::expiry::{
    plan_trim, ExpiryPolicy, ExpiryReport, Removal, RemovalKind, TrimCandidate, LARGE_MESSAGE_BYTES,
};
use crate::types::{Address, Change, Flag, FlagOp, Flags, MailboxInfo, MailboxStatus, MessageMeta};
use crate::types::{ModSeq, SpecialUse, Uid, UidValidity, INBOX};

/// A [`MailStore`] in memory: for tests, fuzzing and embedders that want no persistence.
/// Nothing survives the value; accounts stay until the store is dropped.
///
/// Every operation on one account runs under that account's lock, so operations on one
/// account are linearisable and its changes are published in the order applied.
#[derive(Debug)]
pub struct MemoryStore {
    accounts: Mutex<HashMap<Address, Arc<Mutex<Account>>>>,
    hub: ChangeHub,
    limits: StoreLimits,
    last_uid_validity: AtomicU32,
}

#[derive(Debug)]
struct Account {
    mailboxes: BTreeMap<String, Mailbox>,
}

#[derive(Debug)]
struct Mailbox {
    index: MailboxIndex<Bytes>,
    subscribed: bool,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store with [`StoreLimits::default`].
    pub fn new() -> Self {
        Self::with_limits(StoreLimits::default())
    }

    /// An empty store with the given bounds.
    pub fn with_limits(limits: StoreLimits) -> Self {
        MemoryStore {
            accounts: Mutex::new(HashMap::new()),
            hub: ChangeHub::new(),
            limits,
            last_uid_validity: AtomicU32::new(0),
        }
    }

    /// The change feed's publishing side, e.g. to share it with other components.
    pub fn hub(&self) -> &ChangeHub {
        &self.hub
    }

    fn new_mailbox(&self) -> Mailbox {
        let uid_validity = self.last_uid_validity.fetch_add(1, Ordering::Relaxed) + 1;
        Mailbox {
            index: MailboxIndex::new(UidValidity(uid_validity)),
            subscribed: false,
        }
    }

    fn account(&self, account: &Address) -> Arc<Mutex<Account>> {
        lock(&self.accounts)
            .entry(account.clone())
            .or_insert_with(|| {
                let mut mailboxes = BTreeMap::new();
                mailboxes.insert(INBOX.to_string(), self.new_mailbox());
                Arc::new(Mutex::new(Account { mailboxes }))
            })
            .clone()
    }
}

impl Account {
    fn mailbox(&mut self, name: &str) -> Result<&mut Mailbox, StoreError> {
        self.mailboxes
            .get_mut(name)
            .ok_or_else(|| StoreError::NoSuchMailbox(name.to_string()))
    }
}

#[async_trait]
impl MailStore for MemoryStore {
    async fn create_mailbox(&self, account: &Address, mailbox: &str) -> Result<(), StoreError> {
        let name = validate_mailbox_name(mailbox)?;
        let account = self.account(account);
        let mut account = lock(&account);
        if name == INBOX {
            // See `MailStore::create_mailbox`: nothing to make in memory.
            let used = account
                .mailboxes
                .get(INBOX)
                .is_some_and(|m| m.index.uid_next > Uid(1));
            return if used {
                Err(StoreError::MailboxExists(name))
            } else {
                Ok(())
            };
        }
        if account.mailboxes.contains_key(&name) {
            return Err(StoreError::MailboxExists(name));
        }
        // INBOX is always there and does not count.
        if account.mailboxes.len() > self.limits.max_mailboxes {
            return Err(StoreError::TooManyMailboxes(self.limits.max_mailboxes));
        }
        account.mailboxes.insert(name, self.new_mailbox());
        Ok(())
    }

    async fn delete_mailbox(&self, address: &Address, mailbox: &str) -> Result<(), StoreError> {
        let name = validate_deletable(mailbox)?;
        let account = self.account(address);
        let mut account = lock(&account);
        account
            .mailboxes
            .remove(&name)
            .ok_or_else(|| StoreError::NoSuchMailbox(name.clone()))?;
        self.hub
            .publish(address, [Change::MailboxReset { mailbox: name }]);
        Ok(())
    }

    async fn rename_mailbox(
        &self,
        address: &Address,
        from: &str,
        to: &str,
    ) -> Result<(), StoreError> {
        let (from, to) = validate_rename(from, to)?;
        let account = self.account(address);
        let mut account = lock(&account);
        if !account.mailboxes.contains_key(&from) {
            return Err(StoreError::NoSuchMailbox(from));
        }
        let renames = renamed_names(account.mailboxes.keys(), &from, &to)?;
        for (_, new) in &renames {
            if account.mailboxes.contains_key(new) {
                return Err(StoreError::MailboxExists(new.clone()));
            }
        }
        let mut moved = Vec::with_capacity(renames.len());
        for (old, new) in &renames {
            if let Some(mailbox) = account.mailboxes.remove(old) {
                moved.push((new.clone(), mailbox));
            }
        }
        account.mailboxes.extend(moved);
        self.hub.publish(
            address,
            renames
                .into_iter()
                .map(|(old, _)| Change::MailboxReset { mailbox: old }),
        );
        Ok(())
    }

    async fn set_subscribed(
        &self,
        account: &Address,
        mailbox: &str,
        subscribed: bool,
    ) -> Result<(), StoreError> {
        let name = validate_mailbox_name(mailbox)?;
        let account = self.account(account);
        let mut account = lock(&account);
        match account.mailboxes.get_mut(&name) {
            Some(mailbox) => mailbox.subscribed = subscribed,
            None if subscribed => return Err(StoreError::NoSuchMailbox(name)),
            None => {}
        }
        Ok(())
    }

    async fn list_mailboxes(&self, account: &Address) -> Result<Vec<MailboxInfo>, StoreError> {
        let account = self.account(account);
        let account = lock(&account);
        let info = |(name, mailbox): (&String, &Mailbox)| MailboxInfo {
            name: name.clone(),
            special_use: SpecialUse::for_name(name),
            subscribed: mailbox.subscribed,
        };
        let inbox = account.mailboxes.get_key_value(INBOX).map(info);
        let others = account
            .mailboxes
            .iter()
            .filter(|(name, _)| *name != INBOX)
            .map(info);
        Ok(inbox.into_iter().chain(others).collect())
    }

    async fn status(&self, account: &Address, mailbox: &str) -> Result<MailboxStatus, StoreError> {
        let name = validate_mailbox_name(mailbox)?;
        let account = self.account(account);
        let mut account = lock(&account);
        Ok(account.mailbox(&name)?.index.status())
    }

    async fn claim_recent(
        &self,
        account: &Address,
        mailbox: &str,
    ) -> Result<std::ops::Range<Uid>, StoreError> {
        let name = validate_mailbox_name(mailbox)?;
        let account = self.account(account);
        let mut account = lock(&account);
        Ok(account.mailbox(&name)?.index.claim_recent())
    }

    async fn append(
        &self,
        address: &Address,
        mailbox: &str,
        message: Bytes,
        flags: &Flags,
        internal_date: i64,
    ) -> Result<AppendOutcome, StoreError> {
        let name = validate_mailbox_name(mailbox)?;
        let size = message.len() as u64;
        self.limits.check_new_message(size, flags)?;
        let account = self.account(address);
        let mut account = lock(&account);
        let mailbox = account.mailbox(&name)?;
        let meta = mailbox
            .index
            .insert(size, internal_date, flags.clone(), message)?;
        let outcome = AppendOutcome {
            uid_validity: mailbox.index.uid_validity,
            uid: meta.uid,
            modseq: meta.modseq,
        };
        self.hub.publish(
            address,
            [Change::Appended {
                mailbox: name,
                meta,
            }],
        );
        Ok(outcome)
    }

    async fn list_messages(
        &self,
        account: &Address,
        mailbox: &str,
        changed_since: Option<ModSeq>,
    ) -> Result<Vec<MessageMeta>, StoreError> {
        let name = validate_mailbox_name(mailbox)?;
        let account = self.account(account);
        let mut account = lock(&account);
        Ok(account.mailbox(&name)?.index.list(changed_since))
    }

    async fn read_message(
        &self,
        account: &Address,
        mailbox: &str,
        uid: Uid,
    ) -> Result<Bytes, StoreError> {
        let name = validate_mailbox_name(mailbox)?;
        let account = self.account(account);
        let mut account = lock(&account);
        let mailbox = account.mailbox(&name)?;
        mailbox
            .index
            .messages
            .get(&uid)
            .map(|entry| entry.body.clone())
            .ok_or(StoreError::NoSuchMessage(uid.0))
    }

    async fn store_flags(
        &self,
        address: &Address,
        mailbox: &str,
        uids: &[Uid],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<ModSeq>,
    ) -> Result<StoreFlagsOutcome, StoreError> {
        let name = validate_mailbox_name(mailbox)?;
        check_keywords(flags, self.limits.max_keywords)?;
        let account = self.account(address);
        let mut account = lock(&account);
        let mailbox = account.mailbox(&name)?;
        let plan =
            mailbox
                .index
                .plan_flags(uids, op, flags, unchanged_since, self.limits.max_keywords)?;
        let outcome = mailbox.index.apply_plan(plan);
        self.hub
            .publish(address, flag_changes(&name, &outcome.modified));
        Ok(outcome)
    }

    async fn expunge(
        &self,
        address: &Address,
        mailbox: &str,
        uids: &[Uid],
    ) -> Result<Vec<Uid>, StoreError> {
        let name = validate_mailbox_name(mailbox)?;
        let account = self.account(address);
        let mut account = lock(&account);
        let mailbox = account.mailbox(&name)?;
        let mut changes = Vec::new();
        let removed = expunge_from(&name, &mut mailbox.index, uids, &mut changes);
        self.hub.publish(address, changes);
        Ok(removed)
    }

    async fn copy(
        &self,
        address: &Address,
        from: &str,
        uids: &[Uid],
        to: &str,
    ) -> Result<CopyOutcome, StoreError> {
        let from = validate_mailbox_name(from)?;
        let to = validate_mailbox_name(to)?;
        let account = self.account(address);
        let mut account = lock(&account);
        let source = account.mailbox(&from)?;
        let uids = sorted_uids(uids);
        let picked: Vec<_> = uids
            .iter()
            .filter_map(|uid| source.index.messages.get(uid).cloned())
            .collect();
        let target = account.mailbox(&to)?;
        let mut outcome = CopyOutcome {
            uid_validity: target.index.uid_validity,
            mapping: Vec::with_capacity(picked.len()),
        };
        let mut changes = Vec::with_capacity(picked.len());
        for entry in picked {
            let meta = target.index.insert(
                entry.meta.size,
                entry.meta.internal_date,
                entry.meta.flags,
                entry.body,
            )?;
            outcome.mapping.push((entry.meta.uid, meta.uid));
            changes.push(Change::Appended {
                mailbox: to.clone(),
                meta,
            });
        }
        self.hub.publish(address, changes);
        Ok(outcome)
    }

    async fn quota_usage(&self, account: &Address) -> Result<u64, StoreError> {
        let account = self.account(account);
        let account = lock(&account);
        Ok(account.mailboxes.values().map(|m| m.index.size).sum())
    }

    /// The daily clean-up by internal date: messages older than
    /// `delete_mails_after_secs`, messages over [`LARGE_MESSAGE_BYTES`] flagged `\Seen`
    /// older than `delete_large_after_secs` (the maildir rule says "in `cur/`", which a
    /// message reaches once a client has seen it), then each INBOX trimmed. This store
    /// knows no logins: removing inactive accounts is left to the account service.
    async fn expire(&self, policy: &ExpiryPolicy, now: u64) -> Result<ExpiryReport, StoreError> {
        let accounts: Vec<(Address, Arc<Mutex<Account>>)> = lock(&self.accounts)
            .iter()
            .map(|(address, account)| (address.clone(), account.clone()))
            .collect();
        let old_cutoff = now.saturating_sub(policy.delete_mails_after_secs);
        let large_cutoff = now.saturating_sub(policy.delete_large_after_secs);
        let mut report = ExpiryReport::default();
        for (address, account) in accounts {
            let mut account = lock(&account);
            let mut changes = Vec::new();
            report.accounts_total += 1;
            for (name, mailbox) in &mut account.mailboxes {
                report.messages_total += mailbox.index.messages.len();
                let expired: Vec<Uid> = mailbox
                    .index
                    .messages
                    .values()
                    .map(|entry| &entry.meta)
                    .filter(|meta| {
                        let date = delivery_time(meta);
                        date < old_cutoff
                            || (meta.size > LARGE_MESSAGE_BYTES
                                && date < large_cutoff
                                && meta.flags.contains(&Flag::Seen))
                    })
                    .map(|meta| meta.uid)
                    .collect();
                let old = |uid: &Uid| {
                    mailbox
                        .index
                        .messages
                        .get(uid)
                        .is_some_and(|e| delivery_time(&e.meta) < old_cutoff)
                };
                for uid in &expired {
                    let kind = if old(uid) {
                        RemovalKind::OldMessage
                    } else {
                        RemovalKind::LargeOldMessage
                    };
                    report
                        .removals
                        .push(memory_removal(kind, &address, name, *uid));
                }
                report.messages_removed += if policy.dry_run {
                    expired.len()
                } else {
                    expunge_from(name, &mut mailbox.index, &expired, &mut changes).len()
                };
            }
            if let Some(inbox) = account.mailboxes.get_mut(INBOX) {
                let trimmed = trim_plan(&inbox.index, policy.quota_target_bytes, now);
                for uid in &trimmed {
                    report.removals.push(memory_removal(
                        RemovalKind::QuotaTrim,
                        &address,
                        INBOX,
                        *uid,
                    ));
                }
                report.messages_removed += if policy.dry_run {
                    trimmed.len()
                } else {
                    expunge_from(INBOX, &mut inbox.index, &trimmed, &mut changes).len()
                };
            }
            self.hub.publish(&address, changes);
        }
        Ok(report)
    }

    /// Trims by internal date and size as delivered.
    async fn trim_to_quota(
        &self,
        address: &Address,
        target_bytes: u64,
        now: u64,
    ) -> Result<Vec<Uid>, StoreError> {
        let account = self.account(address);
        let mut account = lock(&account);
        let inbox = account.mailbox(INBOX)?;
        let trimmed = trim_plan(&inbox.index, target_bytes, now);
        let mut changes = Vec::new();
        let removed = expunge_from(INBOX, &mut inbox.index, &trimmed, &mut changes);
        self.hub.publish(address, changes);
        Ok(removed)
    }

    fn subscribe(&self, account: &Address) -> ChangeSubscription {
        self.hub.subscribe(account)
    }
}

/// Removes `uids` from a mailbox's index, adding their `Expunged` changes to `changes`;
/// returns the UIDs removed, ascending.
fn expunge_from(
    mailbox: &str,
    index: &mut MailboxIndex<Bytes>,
    uids: &[Uid],
    changes: &mut Vec<Change>,
) -> Vec<Uid> {
    let mut removed = Vec::new();
    for uid in sorted_uids(uids) {
        if let Some((_, modseq)) = index.remove(uid) {
            removed.push(uid);
            changes.push(Change::Expunged {
                mailbox: mailbox.to_string(),
                uid,
                modseq,
            });
        }
    }
    removed
}

/// A message's delivery time for expiry: its internal date (before 1970: the epoch).
fn delivery_time(meta: &MessageMeta) -> u64 {
    meta.internal_date.max(0).unsigned_abs()
}

/// The messages oldest-first trimming removes from a mailbox (see [`plan_trim`]).
fn trim_plan(index: &MailboxIndex<Bytes>, target_bytes: u64, now: u64) -> Vec<Uid> {
    let candidates = index
        .messages
        .values()
        .map(|entry| TrimCandidate {
            time: delivery_time(&entry.meta),
            size: entry.meta.size,
            key: entry.meta.uid,
        })
        .collect();
    plan_trim(candidates, target_bytes, now)
}

/// How the memory store names a message in an expiry report: `account/mailbox/UID`.
fn memory_removal(kind: RemovalKind, address: &Address, mailbox: &str, uid: Uid) -> Removal {
    Removal {
        kind,
        path: format!("{}/{mailbox}/{}", address.as_str(), uid.0).into(),
    }
}
