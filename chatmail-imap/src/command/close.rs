//! CLOSE: expunge `\Deleted` messages silently (unless read-only), then leave the
//! mailbox.

use crate::request::{Answer, Request};
use crate::session::{Continuation, Session};

impl Session {
    /// CLOSE.
    pub(super) fn handle_close(&mut self, tag: &str) {
        let read_only = self.selected.as_deref().is_none_or(|sel| sel.read_only);
        if read_only {
            self.leave_mailbox();
            return self.ok(tag, "Close completed.");
        }
        let Some((account, mailbox)) = self.request_in_selected(tag) else {
            return;
        };
        let request = Request::Expunge {
            account,
            mailbox,
            uids: None,
        };
        self.request(tag, request, Box::new(CloseExpunge));
    }
}

/// A CLOSE waiting for its silent expunge.
#[derive(Debug)]
struct CloseExpunge;

impl Continuation for CloseExpunge {
    fn resume(self: Box<Self>, s: &mut Session, tag: &str, answer: Answer) {
        let Answer::Expunged(_) = answer else {
            return s.refused(tag, answer);
        };
        s.leave_mailbox();
        s.ok(tag, "Close completed.");
    }
}
