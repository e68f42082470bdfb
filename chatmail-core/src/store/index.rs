//! The IMAP state of one mailbox (UIDVALIDITY, UIDNEXT, modseqs, flags), shared by both
//! backends so that they assign UIDs and modseqs by the same rules. `T` is where the
//! backend keeps the message body (bytes in memory, a file name in a maildir).

use std::collections::BTreeMap;

use super::error::StoreError;
use super::mail_store::StoreFlagsOutcome;
use crate::types::UidValidity;
use crate::types::{Change, Flag, FlagOp, Flags, MailboxStatus, MessageMeta, ModSeq, Uid};

/// One message: what listings report, and where the body is.
#[derive(Debug, Clone)]
pub(crate) struct Entry<T> {
    pub meta: MessageMeta,
    pub body: T,
}

/// A mailbox's messages and counters.
#[derive(Debug, Clone)]
pub(crate) struct MailboxIndex<T> {
    pub uid_validity: UidValidity,
    pub uid_next: Uid,
    pub highest_modseq: ModSeq,
    pub messages: BTreeMap<Uid, Entry<T>>,
    /// Messages from this UID on are `\Recent` to the next session that claims them
    /// (RFC 3501 2.3.2; Dovecot keeps the same "first recent UID" in its index). Not
    /// persisted: after a restart every message is recent once more, which the RFC
    /// prefers to losing it ("SHOULD be considered recent").
    pub first_recent: Uid,
    /// The sum of the messages' sizes, kept up to date by every method that adds or
    /// removes one, so that quota usage costs no walk over the messages. Code outside
    /// this file reads `messages` but never adds to it or removes from it directly.
    pub size: u64,
}

/// The flag changes a STORE asks for, computed before anything is applied so that a
/// backend can make them durable first.
#[derive(Debug, Default)]
pub(crate) struct FlagPlan {
    /// (uid, new flags) for each message whose flags change.
    pub changes: Vec<(Uid, Flags)>,
    pub unchanged: Vec<MessageMeta>,
    pub failed: Vec<Uid>,
}

/// UIDs ascending without repeats: operations act on each message once, in UID order.
pub(crate) fn sorted_uids(uids: &[Uid]) -> Vec<Uid> {
    let mut uids = uids.to_vec();
    uids.sort_unstable();
    uids.dedup();
    uids
}

/// The flags a STORE gives a message that has `current`.
pub(crate) fn apply_flag_op(current: &Flags, op: FlagOp, flags: &Flags) -> Flags {
    match op {
        FlagOp::Replace => flags.clone(),
        FlagOp::Add => current.union(flags).cloned().collect(),
        FlagOp::Remove => current.difference(flags).cloned().collect(),
    }
}

/// Refuses flag sets with more than `max_keywords` keywords.
pub(crate) fn check_keywords(flags: &Flags, max_keywords: usize) -> Result<(), StoreError> {
    let keywords = flags
        .iter()
        .filter(|f| matches!(f, Flag::Keyword(_)))
        .count();
    if keywords > max_keywords {
        return Err(StoreError::TooManyKeywords(max_keywords));
    }
    Ok(())
}

impl<T> MailboxIndex<T> {
    /// An empty mailbox: UIDNEXT 1, highest modseq 1.
    pub(super) fn new(uid_validity: UidValidity) -> Self {
        MailboxIndex {
            uid_validity,
            uid_next: Uid(1),
            highest_modseq: ModSeq(1),
            messages: BTreeMap::new(),
            first_recent: Uid(1),
            size: 0,
        }
    }

    /// Claims the `\Recent` messages for one session: returns the UIDs from the first
    /// recent one up to (not including) UIDNEXT, and moves the first recent UID to
    /// UIDNEXT, so that no other session gets them.
    pub(super) fn claim_recent(&mut self) -> std::ops::Range<Uid> {
        let claimed = self.first_recent..self.uid_next;
        self.first_recent = self.first_recent.max(self.uid_next);
        claimed
    }

    /// Takes the next modseq.
    pub(super) fn bump_modseq(&mut self) -> ModSeq {
        self.highest_modseq.0 += 1;
        self.highest_modseq
    }

    /// The UID the next message will get, or an error when none is left.
    pub(super) fn peek_uid(&self) -> Result<Uid, StoreError> {
        if self.uid_next.0 == u32::MAX {
            return Err(StoreError::UidsExhausted);
        }
        Ok(self.uid_next)
    }

    /// Adds a message with the next UID and modseq.
    pub(super) fn insert(
        &mut self,
        size: u64,
        internal_date: i64,
        flags: Flags,
        body: T,
    ) -> Result<MessageMeta, StoreError> {
        let uid = self.peek_uid()?;
        self.uid_next = Uid(uid.0 + 1);
        let meta = MessageMeta {
            uid,
            size,
            internal_date,
            flags,
            modseq: self.bump_modseq(),
        };
        self.messages.insert(
            uid,
            Entry {
                meta: meta.clone(),
                body,
            },
        );
        self.size = self.size.saturating_add(size);
        Ok(meta)
    }

    /// Puts back a message with known UID and modseq (replaying a persisted index).
    pub(super) fn restore(&mut self, meta: MessageMeta, body: T) {
        self.uid_next = self.uid_next.max(Uid(meta.uid.0.saturating_add(1)));
        self.highest_modseq = self.highest_modseq.max(meta.modseq);
        self.size = self.size.saturating_add(meta.size);
        if let Some(replaced) = self.messages.insert(meta.uid, Entry { meta, body }) {
            self.size = self.size.saturating_sub(replaced.meta.size);
        }
    }

    /// Drops a message without a new modseq (replaying a persisted expunge).
    pub(super) fn forget(&mut self, uid: Uid) {
        if let Some(entry) = self.messages.remove(&uid) {
            self.size = self.size.saturating_sub(entry.meta.size);
        }
    }

    /// SELECT/STATUS counters.
    pub(super) fn status(&self) -> MailboxStatus {
        let mut status = MailboxStatus {
            uid_validity: self.uid_validity,
            uid_next: self.uid_next,
            highest_modseq: self.highest_modseq,
            exists: 0,
            unseen: 0,
            recent: 0,
            size: self.size,
        };
        for entry in self.messages.values() {
            status.exists += 1;
            if !entry.meta.flags.contains(&Flag::Seen) {
                status.unseen += 1;
            }
            if entry.meta.uid >= self.first_recent {
                status.recent += 1;
            }
        }
        status
    }

    /// Messages by ascending UID, optionally only those changed after `changed_since`.
    pub(super) fn list(&self, changed_since: Option<ModSeq>) -> Vec<MessageMeta> {
        self.messages
            .values()
            .filter(|e| changed_since.is_none_or(|since| e.meta.modseq > since))
            .map(|e| e.meta.clone())
            .collect()
    }

    /// Works out what a STORE changes, without changing anything.
    pub(super) fn plan_flags(
        &self,
        uids: &[Uid],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<ModSeq>,
        max_keywords: usize,
    ) -> Result<FlagPlan, StoreError> {
        let mut plan = FlagPlan::default();
        let uids = sorted_uids(uids);
        for uid in uids {
            let Some(entry) = self.messages.get(&uid) else {
                continue;
            };
            if unchanged_since.is_some_and(|since| entry.meta.modseq > since) {
                plan.failed.push(uid);
                continue;
            }
            let new_flags = apply_flag_op(&entry.meta.flags, op, flags);
            if new_flags == entry.meta.flags {
                plan.unchanged.push(entry.meta.clone());
            } else {
                check_keywords(&new_flags, max_keywords)?;
                plan.changes.push((uid, new_flags));
            }
        }
        Ok(plan)
    }

    /// Applies one planned flag change with a new modseq.
    pub(super) fn set_flags(&mut self, uid: Uid, flags: Flags) -> Option<&mut Entry<T>> {
        let modseq = self.bump_modseq();
        let entry = self.messages.get_mut(&uid)?;
        entry.meta.flags = flags;
        entry.meta.modseq = modseq;
        Some(entry)
    }

    /// Applies a whole plan; the outcome of the STORE.
    pub(super) fn apply_plan(&mut self, plan: FlagPlan) -> StoreFlagsOutcome {
        let mut outcome = StoreFlagsOutcome {
            modified: Vec::with_capacity(plan.changes.len()),
            unchanged: plan.unchanged,
            failed: plan.failed,
        };
        for (uid, flags) in plan.changes {
            if let Some(entry) = self.set_flags(uid, flags) {
                outcome.modified.push(entry.meta.clone());
            }
        }
        outcome
    }

    /// Removes a message; returns it and the modseq of the expunge.
    pub(super) fn remove(&mut self, uid: Uid) -> Option<(Entry<T>, ModSeq)> {
        let entry = self.messages.remove(&uid)?;
        self.size = self.size.saturating_sub(entry.meta.size);
        Some((entry, self.bump_modseq()))
    }
}

/// The `FlagsChanged` changes of a STORE.
pub(crate) fn flag_changes(mailbox: &str, modified: &[MessageMeta]) -> Vec<Change> {
    modified
        .iter()
        .map(|meta| Change::FlagsChanged {
            mailbox: mailbox.to_string(),
            uid: meta.uid,
            flags: meta.flags.clone(),
            modseq: meta.modseq,
        })
        .collect()
}
