//! UNSELECT (RFC 3691): leave the mailbox without expunging.

use crate::session::Session;

impl Session {
    /// UNSELECT.
    pub(super) fn handle_unselect(&mut self, tag: &str) {
        self.leave_mailbox();
        self.ok(tag, "Unselect completed.");
    }
}
