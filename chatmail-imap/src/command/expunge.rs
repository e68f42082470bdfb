//! EXPUNGE and UID EXPUNGE (UIDPLUS).

use imap_codec::imap_types::sequence::SequenceSet;

use crate::request::{Answer, Request};
use crate::session::{Continuation, Session};

impl Session {
    /// EXPUNGE, or UID EXPUNGE set.
    pub(super) fn handle_expunge(&mut self, tag: &str, set: Option<&SequenceSet>) {
        if self.selected.as_deref().is_some_and(|sel| sel.read_only) {
            return self.no(tag, "[READ-ONLY] Mailbox is read-only.");
        }
        let uids = set.map(|set| self.resolve(set, true));
        if uids.as_ref().is_some_and(|u| u.is_empty()) {
            return self.finish_ok(tag, "Expunge completed.");
        }
        let Some((account, mailbox)) = self.request_in_selected(tag) else {
            return;
        };
        let request = Request::Expunge {
            account,
            mailbox,
            uids,
        };
        self.request(tag, request, Box::new(ExpungeTask));
    }
}

/// An EXPUNGE waiting for the storage.
#[derive(Debug)]
struct ExpungeTask;

impl Continuation for ExpungeTask {
    /// Writes `* n EXPUNGE` per removed message and the tagged reply.
    fn resume(self: Box<Self>, s: &mut Session, tag: &str, answer: Answer) {
        let Answer::Expunged(uids) = answer else {
            return s.refused(tag, answer);
        };
        let mut out = Vec::new();
        if let Some(sel) = s.selected.as_deref_mut() {
            sel.expunge(uids, &mut out);
        }
        s.raw(&out);
        s.finish_ok(tag, "Expunge completed.");
    }
}
