//! `\Recent` (RFC 3501 2.3.2): a message is recent to exactly one session, the first
//! that is told of it with the mailbox selected read-write. SELECT claims what came
//! before it (`command/select.rs`); what comes while a mailbox is selected is claimed
//! here, before the session's next command, or at once while it idles, so that two
//! sessions never both see a message as recent. The store keeps the boundary
//! (`chatmail_core::store::MailStore::claim_recent`).

use crate::request::{Answer, Request};
use crate::session::{Continuation, Session, State};

impl Session {
    /// Claims the `\Recent` messages that came into the selected read-write mailbox
    /// since the last claim, if any did and no request is out. Returns whether a claim
    /// request went out (the session then waits for its answer).
    pub(crate) fn claim_recent_if_needed(&mut self) -> bool {
        if self.pending.is_some() || self.delayed.is_some() || self.state != State::Selected {
            return false;
        }
        let Some(account) = self.account.clone() else {
            return false;
        };
        let Some(sel) = self.selected.as_deref_mut() else {
            return false;
        };
        if !sel.claim_needed || sel.read_only {
            return false;
        }
        sel.claim_needed = false;
        let mailbox = sel.name.clone();
        self.request(
            "*",
            Request::ClaimRecent { account, mailbox },
            Box::new(ClaimRecent),
        );
        true
    }
}

/// A claim waiting for the store; it writes no tagged reply of its own.
#[derive(Debug)]
struct ClaimRecent;

impl Continuation for ClaimRecent {
    /// Adds the claimed UIDs; an idling client hears the new RECENT count at once,
    /// others with the next command's untagged responses.
    fn resume(self: Box<Self>, s: &mut Session, _tag: &str, answer: Answer) {
        let Answer::RecentClaimed(claimed) = answer else {
            // The mailbox went away or the store failed: nothing is recent here, which
            // costs the client nothing but a flag.
            return;
        };
        let idle = s.is_idle();
        let Some(sel) = s.selected.as_deref_mut() else {
            return;
        };
        sel.add_recent(claimed);
        if idle {
            let mut out = Vec::new();
            sel.announce_recent(&mut out);
            s.raw(&out);
            // Mail that arrived while this claim was out is claimed now, not when the
            // client ends IDLE (another session could take it meanwhile).
            s.claim_recent_if_needed();
        }
    }
}
