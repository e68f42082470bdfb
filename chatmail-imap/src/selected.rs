//! The selected mailbox as this client sees it: the UIDs it was told of (a sequence
//! number is a position among them) and the changes from elsewhere (SMTP delivery,
//! other sessions, expiry) it has not been told of yet.
//!
//! A change for the selected mailbox is queued here; an idling session announces it
//! within the same input call, others at the end of their next command. Changes the
//! client already learnt from its own command (its EXPUNGE, its APPEND) are recognised
//! by UID and not announced twice.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;

use chatmail_core::{Change, Flag, Flags, ModSeq, Uid};
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use crate::uidmap::UidMap;
use crate::wire;

/// The selected mailbox as this client sees it.
#[derive(Debug)]
pub(crate) struct Selected {
    pub name: String,
    pub read_only: bool,
    pub highest_modseq: ModSeq,
    /// Messages announced to the client, by sequence number.
    pub uids: UidMap,
    /// Changes not announced yet (announced at the end of a command, or at once in IDLE).
    pub queued: Vec<Change>,
    /// Keywords the client was told of in FLAGS and PERMANENTFLAGS: a FETCH may only
    /// show those, so a new one is announced first ([`Selected::announce_keywords`]).
    pub keywords: BTreeSet<String>,
    /// This session's `\Recent` messages: the UID ranges it claimed from the store.
    pub recent: Vec<Range<Uid>>,
    /// The RECENT count the client was last told.
    pub recent_told: u32,
    /// New messages came into this read-write mailbox since the last claim: the
    /// session claims them before its next command (or at once in IDLE).
    pub claim_needed: bool,
}

/// Most keywords announced in FLAGS: a mailbox with more gets no further FLAGS
/// responses. Each announcement repeats the whole list, so the bound keeps that output
/// small; Dovecot's maildir keeps at most 26 keywords per mailbox.
pub(crate) const MAX_ANNOUNCED_KEYWORDS: usize = 64;

/// A mailbox a SELECT/EXAMINE is opening: changes to it that arrive before the answer
/// are kept and applied once it is open, so that none falls between listing and
/// listening.
#[derive(Debug)]
pub(crate) struct Opening {
    pub name: String,
    /// Changes for this mailbox that arrived before the answer.
    pub early: Vec<Change>,
}

impl Selected {
    /// A freshly opened mailbox with the client's view `uids`; `keywords` were
    /// announced in its FLAGS response, `recent` claimed by SELECT.
    pub(crate) fn new(
        name: String,
        read_only: bool,
        highest_modseq: ModSeq,
        uids: UidMap,
        keywords: BTreeSet<String>,
        recent: Range<Uid>,
    ) -> Selected {
        let mut selected = Selected {
            name,
            read_only,
            highest_modseq,
            uids,
            queued: Vec::new(),
            keywords,
            recent: Vec::new(),
            recent_told: 0,
            claim_needed: false,
        };
        selected.add_recent(recent);
        selected.recent_told = selected.recent_count();
        selected
    }

    /// Whether `uid` is `\Recent` in this session. The ranges ascend (the store's
    /// boundary only moves up): a binary search.
    pub(crate) fn is_recent(&self, uid: Uid) -> bool {
        let i = self.recent.partition_point(|r| r.end <= uid);
        self.recent.get(i).is_some_and(|r| r.contains(&uid))
    }

    /// Adds UIDs this session claimed as `\Recent`.
    pub(crate) fn add_recent(&mut self, claimed: Range<Uid>) {
        if claimed.is_empty() {
            return;
        }
        match self.recent.last_mut() {
            Some(last) if last.end >= claimed.start => last.end = last.end.max(claimed.end),
            _ => self.recent.push(claimed),
        }
        // Ranges wholly below the lowest message in view are dropped: the list stays as
        // short as the claims that still name messages. (An empty view keeps them: the
        // claimed messages may not be announced yet.)
        if let Some((_, lowest)) = self.uids.iter().next() {
            self.recent.retain(|r| r.end > lowest);
        }
    }

    /// `\Recent` messages in the client's view (the RECENT count): per claimed range,
    /// the messages below its end minus those below its start, over the view's runs.
    pub(crate) fn recent_count(&self) -> u32 {
        self.recent
            .iter()
            .map(|r| self.uids.count_below(r.end) - self.uids.count_below(r.start))
            .sum()
    }

    /// The `\Recent` UIDs in the client's view, ascending (SEARCH RECENT).
    pub(crate) fn recent_uids(&self) -> Vec<Uid> {
        if self.recent.is_empty() {
            return Vec::new();
        }
        self.uids
            .iter()
            .map(|(_, u)| u)
            .filter(|&u| self.is_recent(u))
            .collect()
    }

    /// Writes `* n RECENT` if the count changed since the client was last told.
    pub(crate) fn announce_recent(&mut self, out: &mut Vec<u8>) {
        let count = self.recent_count();
        if count != self.recent_told {
            self.recent_told = count;
            out.extend_from_slice(format!("* {count} RECENT\r\n").as_bytes());
        }
    }

    /// Announces keywords in `flags` the client was not told of yet: a new FLAGS
    /// response and, read-write, PERMANENTFLAGS (imaptest: "Keyword used without being
    /// in FLAGS"). Call before writing `flags` in a FETCH response.
    pub(crate) fn announce_keywords(&mut self, flags: &Flags, out: &mut Vec<u8>) {
        let mut added = false;
        for flag in flags {
            if let Flag::Keyword(k) = flag {
                if self.keywords.len() < MAX_ANNOUNCED_KEYWORDS && !self.keywords.contains(k) {
                    self.keywords.insert(k.clone());
                    added = true;
                }
            }
        }
        if added {
            wire::flags_responses(out, &self.keywords, self.read_only);
        }
    }

    /// Every UID, ascending.
    pub(crate) fn all_uids(&self) -> Vec<Uid> {
        self.uids.iter().map(|(_, u)| u).collect()
    }

    /// Resolves a sequence or UID set to ascending UIDs. Work is bounded by the mailbox
    /// size, never by the numbers in the set.
    pub(crate) fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<Uid> {
        let star = if uid {
            self.uids.last().map_or(0, |u| u.0)
        } else {
            self.uids.len()
        };
        let value = |v: &SeqOrUid| match v {
            SeqOrUid::Value(n) => n.get(),
            SeqOrUid::Asterisk => star,
        };
        let mut ranges: Vec<(u32, u32)> = set
            .0
            .as_ref()
            .iter()
            .map(|s| match s {
                Sequence::Single(v) => (value(v), value(v)),
                Sequence::Range(a, b) => {
                    let (a, b) = (value(a), value(b));
                    (a.min(b), a.max(b))
                }
            })
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some((_, e)) if a <= e.saturating_add(1) => *e = (*e).max(b),
                _ => merged.push((a, b)),
            }
        }
        let contains = |n: u32| {
            let i = merged.partition_point(|&(_, e)| e < n);
            merged.get(i).is_some_and(|&(s, _)| s <= n)
        };
        self.uids
            .iter()
            .filter(|&(seq, u)| contains(if uid { u.0 } else { seq }))
            .map(|(_, u)| u)
            .collect()
    }

    /// Removes messages the client's own command expunged (EXPUNGE, MOVE) and writes
    /// `* n EXPUNGE` for each it knew of.
    pub(crate) fn expunge(&mut self, uids: impl IntoIterator<Item = Uid>, out: &mut Vec<u8>) {
        for uid in uids {
            if let Some(seq) = self.uids.remove(uid) {
                out.extend_from_slice(format!("* {seq} EXPUNGE\r\n").as_bytes());
            }
        }
        // An expunged recent message no longer counts; RFC 3501 needs no new RECENT.
        self.recent_told = self.recent_count();
    }

    /// Writes the queued changes as untagged responses; EXPUNGEs only when
    /// `with_expunges`, else they stay queued (sequence numbers are in use).
    pub(crate) fn announce(&mut self, with_expunges: bool, condstore: bool, out: &mut Vec<u8>) {
        if self.queued.is_empty() {
            // A claim may have made messages recent that the client already knew of.
            self.announce_recent(out);
            return;
        }
        // Only the newest flag change of a message is told: an older one arriving later
        // (changes of different sessions race to the feed) would move its MODSEQ back.
        let mut newest: HashMap<Uid, ModSeq> = HashMap::new();
        for change in &self.queued {
            if let Change::FlagsChanged { uid, modseq, .. } = change {
                let m = newest.entry(*uid).or_insert(*modseq);
                *m = (*m).max(*modseq);
            }
        }
        let mut exists_changed = false;
        let mut kept = Vec::new();
        for change in std::mem::take(&mut self.queued) {
            match change {
                Change::Appended { meta, .. } => {
                    self.announce_keywords(&meta.flags, out);
                    exists_changed |= self.uids.push(meta.uid);
                    self.highest_modseq = self.highest_modseq.max(meta.modseq);
                }
                Change::FlagsChanged {
                    uid, flags, modseq, ..
                } => {
                    self.highest_modseq = self.highest_modseq.max(modseq);
                    if newest.get(&uid).is_some_and(|&m| m > modseq) {
                        continue;
                    }
                    if let Some(seq) = self.uids.seq_of(uid) {
                        if exists_changed {
                            // The client must know the number before a FETCH names it.
                            self.announce_exists(out);
                            exists_changed = false;
                        }
                        self.announce_keywords(&flags, out);
                        let recent = self.is_recent(uid);
                        wire::flags_fetch(
                            out,
                            seq,
                            uid,
                            &flags,
                            recent,
                            condstore.then_some(modseq),
                        );
                    }
                }
                Change::Expunged { uid, modseq, .. } => {
                    if !with_expunges {
                        kept.push(Change::Expunged {
                            mailbox: String::new(),
                            uid,
                            modseq,
                        });
                        continue;
                    }
                    self.highest_modseq = self.highest_modseq.max(modseq);
                    if exists_changed {
                        // Announce new messages before sequence numbers shift.
                        self.announce_exists(out);
                        exists_changed = false;
                    }
                    let recent = self.is_recent(uid);
                    if let Some(seq) = self.uids.remove(uid) {
                        out.extend_from_slice(format!("* {seq} EXPUNGE\r\n").as_bytes());
                        // The client counts an expunged recent message out itself
                        // (RFC 3501 7.4.1): no RECENT response for that alone.
                        if recent {
                            self.recent_told = self.recent_told.saturating_sub(1);
                        }
                    }
                }
                Change::MailboxReset { .. } => {}
            }
        }
        if exists_changed {
            self.announce_exists(out);
        }
        self.announce_recent(out);
        self.queued = kept;
        if self.queued.is_empty() {
            self.queued = Vec::new();
        }
    }

    /// Writes `* n EXISTS` for the client's view, and the RECENT count if it changed.
    fn announce_exists(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("* {} EXISTS\r\n", self.uids.len()).as_bytes());
        self.announce_recent(out);
    }

    /// The client was just told the flags of these messages as of these modseqs (a
    /// STORE's or FETCH's own responses): queued flag changes that are not newer are
    /// dropped, so that no later response moves a message's MODSEQ back. One pass over
    /// the queue.
    pub(crate) fn told_flags(&mut self, told: &[(Uid, ModSeq)]) {
        if told.is_empty()
            || !self
                .queued
                .iter()
                .any(|c| matches!(c, Change::FlagsChanged { .. }))
        {
            return;
        }
        let told: HashMap<Uid, ModSeq> = told.iter().copied().collect();
        self.queued.retain(|c| match c {
            Change::FlagsChanged { uid, modseq, .. } => told.get(uid).is_none_or(|m| modseq > m),
            _ => true,
        });
    }
}
