//! COPY and MOVE (RFC 6851) and their UID forms, with COPYUID (UIDPLUS).

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;

use crate::request::{Answer, Refusal, Request};
use crate::session::{Continuation, Session};
use crate::wire;

impl Session {
    /// COPY set mailbox, or MOVE set mailbox (`remove_originals`).
    pub(super) fn handle_copy_move(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        mailbox: &Mailbox<'_>,
        uid_command: bool,
        remove_originals: bool,
    ) {
        if remove_originals && self.selected.as_deref().is_some_and(|sel| sel.read_only) {
            return self.no(tag, "[READ-ONLY] Mailbox is read-only.");
        }
        let uids = self.resolve(set, uid_command);
        let verb = if remove_originals { "Move" } else { "Copy" };
        if uids.is_empty() {
            return self.finish_ok(tag, &format!("No messages found. {verb} completed."));
        }
        let Some((account, from)) = self.request_in_selected(tag) else {
            return;
        };
        let request = Request::CopyMessages {
            account,
            from,
            uids,
            to: wire::mailbox_name(mailbox),
            remove_originals,
        };
        self.request(tag, request, Box::new(CopyTask { remove_originals }));
    }
}

/// A COPY/MOVE waiting for the storage.
#[derive(Debug)]
struct CopyTask {
    remove_originals: bool,
}

impl Continuation for CopyTask {
    /// Writes COPYUID and, for MOVE, the EXPUNGEs of the originals.
    fn resume(self: Box<Self>, s: &mut Session, tag: &str, answer: Answer) {
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
        if !self.remove_originals {
            return s.finish_ok(tag, &format!("[{code}] Copy completed."));
        }
        // RFC 6851: COPYUID goes in an untagged OK before the EXPUNGEs.
        s.line(&format!("* OK [{code}] Moved UIDs."));
        let mut out = Vec::new();
        if let Some(sel) = s.selected.as_deref_mut() {
            sel.expunge(mapping.iter().map(|(src, _)| *src), &mut out);
        }
        s.raw(&out);
        s.finish_ok(tag, "Move completed.");
    }
}
