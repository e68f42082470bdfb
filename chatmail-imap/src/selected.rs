//! The selected mailbox as this client sees it: the UIDs it was told of (a sequence
//! number is a position among them) and the changes from elsewhere (SMTP delivery,
//! other sessions, expiry) it has not been told of yet.
//!
//! A change for the selected mailbox is queued here; an idling session announces it
//! within the same input call, others at the end of their next command. Changes the
//! client already learnt from its own command (its EXPUNGE, its APPEND) are recognised
//! by UID and not announced twice.

use chatmail_core::{Change, ModSeq, Uid};
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
}

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
    }

    /// Writes the queued changes as untagged responses; EXPUNGEs only when
    /// `with_expunges`, else they stay queued (sequence numbers are in use).
    pub(crate) fn announce(&mut self, with_expunges: bool, condstore: bool, out: &mut Vec<u8>) {
        if self.queued.is_empty() {
            return;
        }
        let mut exists_changed = false;
        let mut kept = Vec::new();
        for change in std::mem::take(&mut self.queued) {
            match change {
                Change::Appended { meta, .. } => {
                    exists_changed |= self.uids.push(meta.uid);
                    self.highest_modseq = self.highest_modseq.max(meta.modseq);
                }
                Change::FlagsChanged {
                    uid, flags, modseq, ..
                } => {
                    self.highest_modseq = self.highest_modseq.max(modseq);
                    if let Some(seq) = self.uids.seq_of(uid) {
                        wire::flags_fetch(out, seq, uid, &flags, condstore.then_some(modseq));
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
                        out.extend_from_slice(
                            format!("* {} EXISTS\r\n", self.uids.len()).as_bytes(),
                        );
                        exists_changed = false;
                    }
                    if let Some(seq) = self.uids.remove(uid) {
                        out.extend_from_slice(format!("* {seq} EXPUNGE\r\n").as_bytes());
                    }
                }
                Change::MailboxReset { .. } => {}
            }
        }
        if exists_changed {
            out.extend_from_slice(format!("* {} EXISTS\r\n", self.uids.len()).as_bytes());
        }
        self.queued = kept;
        if self.queued.is_empty() {
            self.queued = Vec::new();
        }
    }
}
