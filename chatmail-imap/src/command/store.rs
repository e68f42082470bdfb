//! STORE and UID STORE, with UNCHANGEDSINCE (CONDSTORE, RFC 7162).

use chatmail_core::{FlagOp, ModSeq, Uid};
use imap_codec::imap_types::command::StoreModifier;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;

use super::account;
use crate::request::{Answer, Request};
use crate::session::{to_flags, write_flags_fetch, Session, Task};
use crate::wire;

/// A STORE waiting for the flag change.
#[derive(Debug)]
pub(crate) struct StoreTask {
    silent: bool,
    uid_command: bool,
}

/// STORE set [(UNCHANGEDSINCE n)] (+|-)FLAGS[.SILENT] (flags).
#[allow(clippy::too_many_arguments)]
pub(crate) fn store(
    s: &mut Session,
    tag: &str,
    set: &SequenceSet,
    kind: StoreType,
    response: StoreResponse,
    flags: &[Flag<'_>],
    uid_command: bool,
    modifiers: &[StoreModifier],
) {
    if s.selected.as_deref().is_some_and(|sel| sel.read_only) {
        return s.no(tag, "[READ-ONLY] Mailbox is read-only.");
    }
    let mut unchanged_since = None;
    for m in modifiers {
        let StoreModifier::UnchangedSince(n) = m;
        unchanged_since = Some(ModSeq(*n));
        s.condstore = true;
    }
    let op = match kind {
        StoreType::Replace => FlagOp::Replace,
        StoreType::Add => FlagOp::Add,
        StoreType::Remove => FlagOp::Remove,
    };
    let uids = s.resolve(set, uid_command);
    let task = StoreTask {
        silent: response == StoreResponse::Silent,
        uid_command,
    };
    if uids.is_empty() {
        return finish(s, tag, &task, &[]);
    }
    let (Some(account), Some(mailbox)) = (account(s, tag), s.selected_mailbox()) else {
        return;
    };
    let request = Request::StoreFlags {
        account,
        mailbox: mailbox.to_string(),
        uids,
        op,
        flags: to_flags(flags),
        unchanged_since,
    };
    s.request(tag, request, Task::Store(task));
}

/// Writes the FETCH responses of the new flags and the tagged reply.
pub(crate) fn store_answered(s: &mut Session, tag: &str, task: StoreTask, answer: Answer) {
    let Answer::FlagsStored { updated, modified } = answer else {
        return s.refused(tag, answer);
    };
    let condstore = s.condstore;
    let mut out = Vec::new();
    if let Some(sel) = s.selected.as_deref_mut() {
        for meta in &updated {
            sel.highest_modseq = sel.highest_modseq.max(meta.modseq);
            // With CONDSTORE, even .SILENT reports the new MODSEQ (RFC 7162 3.1.3).
            if task.silent && !condstore {
                continue;
            }
            if let Some(seq) = sel.uids.seq_of(meta.uid) {
                write_flags_fetch(
                    &mut out,
                    seq,
                    meta.uid,
                    &meta.flags,
                    condstore.then_some(meta.modseq),
                );
            }
        }
    }
    s.raw(&out);
    finish(s, tag, &task, &modified);
}

fn finish(s: &mut Session, tag: &str, task: &StoreTask, modified: &[Uid]) {
    let text = if modified.is_empty() {
        "Store completed.".to_string()
    } else {
        let mut set = Vec::new();
        let numbers: Vec<u32> = match s.selected.as_deref() {
            Some(sel) if !task.uid_command => {
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
    if task.uid_command {
        s.finish_ok(tag, &text);
    } else {
        s.finish_ok_no_expunge(tag, &text);
    }
}
