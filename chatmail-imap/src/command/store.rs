//! STORE and UID STORE, with UNCHANGEDSINCE (CONDSTORE, RFC 7162).

use chatmail_core::{FlagOp, ModSeq, Uid};
use imap_codec::imap_types::command::StoreModifier;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;

use crate::request::{Answer, Request};
use crate::session::{Continuation, Session};
use crate::wire;

impl Session {
    /// STORE set [(UNCHANGEDSINCE n)] (+|-)FLAGS[.SILENT] (flags).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_store(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'_>],
        uid_command: bool,
        modifiers: &[StoreModifier],
    ) {
        if self.selected.as_deref().is_some_and(|sel| sel.read_only) {
            return self.no(tag, "[READ-ONLY] Mailbox is read-only.");
        }
        let mut unchanged_since = None;
        for m in modifiers {
            let StoreModifier::UnchangedSince(n) = m;
            unchanged_since = Some(ModSeq(*n));
            self.condstore = true;
        }
        let op = match kind {
            StoreType::Replace => FlagOp::Replace,
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
        };
        let uids = self.resolve(set, uid_command);
        let task = StoreTask {
            silent: response == StoreResponse::Silent,
            uid_command,
        };
        if uids.is_empty() {
            return task.finish(self, tag, &[]);
        }
        let Some((account, mailbox)) = self.request_in_selected(tag) else {
            return;
        };
        let request = Request::StoreFlags {
            account,
            mailbox,
            uids,
            op,
            flags: wire::to_flags(flags),
            unchanged_since,
        };
        self.request(tag, request, Box::new(task));
    }
}

/// A STORE waiting for the flag change.
#[derive(Debug)]
struct StoreTask {
    silent: bool,
    uid_command: bool,
}

impl Continuation for StoreTask {
    /// Writes the FETCH responses of the new flags and the tagged reply.
    fn resume(self: Box<Self>, s: &mut Session, tag: &str, answer: Answer) {
        let Answer::FlagsStored { updated, modified } = answer else {
            return s.refused(tag, answer);
        };
        let condstore = s.condstore;
        let mut out = Vec::new();
        if let Some(sel) = s.selected.as_deref_mut() {
            let told: Vec<_> = updated.iter().map(|m| (m.uid, m.modseq)).collect();
            sel.told_flags(&told);
            for meta in &updated {
                sel.highest_modseq = sel.highest_modseq.max(meta.modseq);
                // With CONDSTORE, even .SILENT reports the new MODSEQ (RFC 7162 3.1.3).
                if self.silent && !condstore {
                    continue;
                }
                if let Some(seq) = sel.uids.seq_of(meta.uid) {
                    sel.announce_keywords(&meta.flags, &mut out);
                    let recent = sel.is_recent(meta.uid);
                    wire::flags_fetch(
                        &mut out,
                        seq,
                        meta.uid,
                        &meta.flags,
                        recent,
                        condstore.then_some(meta.modseq),
                    );
                }
            }
        }
        s.raw(&out);
        self.finish(s, tag, &modified);
    }
}

impl StoreTask {
    /// The tagged reply, with MODIFIED for the messages UNCHANGEDSINCE left alone.
    fn finish(&self, s: &mut Session, tag: &str, modified: &[Uid]) {
        let text = if modified.is_empty() {
            "Store completed.".to_string()
        } else {
            let mut set = Vec::new();
            let numbers: Vec<u32> = match s.selected.as_deref() {
                Some(sel) if !self.uid_command => {
                    let mut seqs: Vec<u32> = modified
                        .iter()
                        .filter_map(|u| sel.uids.seq_of(*u))
                        .collect();
                    seqs.sort_unstable();
                    seqs
                }
                _ => modified.iter().map(|u| u.0).collect(),
            };
            wire::uid_set(&mut set, numbers);
            format!(
                "[MODIFIED {}] Conditional STORE failed.",
                String::from_utf8_lossy(&set)
            )
        };
        s.finish_ok_numbered(tag, &text, self.uid_command);
    }
}
