//! COPY, MOVE and their UID forms, with COPYUID (UIDPLUS).

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;

use super::account;
use crate::request::{Answer, Refusal, Request};
use crate::session::{mailbox_name, Session, Task};
use crate::wire;

/// A COPY/MOVE waiting for the storage.
#[derive(Debug)]
pub(crate) struct CopyTask {
    remove_originals: bool,
}

/// COPY/MOVE set mailbox.
pub(crate) fn copy(
    s: &mut Session,
    tag: &str,
    set: &SequenceSet,
    mailbox: &Mailbox<'_>,
    uid_command: bool,
    remove_originals: bool,
) {
    if remove_originals && s.selected.as_deref().is_some_and(|sel| sel.read_only) {
        return s.no(tag, "[READ-ONLY] Mailbox is read-only.");
    }
    let uids = s.resolve(set, uid_command);
    let verb = if remove_originals { "Move" } else { "Copy" };
    if uids.is_empty() {
        return s.finish_ok(tag, &format!("No messages found. {verb} completed."));
    }
    let (Some(account), Some(from)) = (account(s, tag), s.selected_mailbox()) else {
        return;
    };
    let request = Request::CopyMessages {
        account,
        from: from.to_string(),
        uids,
        to: mailbox_name(mailbox),
        remove_originals,
    };
    s.request(tag, request, Task::Copy(CopyTask { remove_originals }));
}

/// Writes COPYUID and, for MOVE, the EXPUNGEs of the originals.
pub(crate) fn copy_answered(s: &mut Session, tag: &str, task: CopyTask, answer: Answer) {
    let (uid_validity, mapping) = match answer {
        Answer::Copied {
            uid_validity,
            mapping,
        } => (uid_validity, mapping),
        Answer::Refused(Refusal::NonExistent) => {
            return s.no(tag, "[TRYCREATE] Mailbox doesn't exist.");
        }
        other => return s.refused(tag, other),
    };
    if mapping.is_empty() {
        return s.finish_ok(tag, "No messages were left to copy.");
    }
    let mut code = format!("COPYUID {} ", uid_validity.0).into_bytes();
    wire::uid_set(&mut code, mapping.iter().map(|(src, _)| src.0));
    code.push(b' ');
    wire::uid_set(&mut code, mapping.iter().map(|(_, dst)| dst.0));
    let code = String::from_utf8_lossy(&code).into_owned();
    if !task.remove_originals {
        return s.finish_ok(tag, &format!("[{code}] Copy completed."));
    }
    // RFC 6851: COPYUID goes in an untagged OK before the EXPUNGEs.
    s.line(&format!("* OK [{code}] Moved UIDs."));
    let mut out = Vec::new();
    if let Some(sel) = s.selected.as_deref_mut() {
        for (src, _) in &mapping {
            if let Some(seq) = sel.uids.remove(*src) {
                out.extend_from_slice(format!("* {seq} EXPUNGE\r\n").as_bytes());
            }
        }
    }
    s.raw(&out);
    s.finish_ok(tag, "Move completed.");
}
