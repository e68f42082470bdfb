//! NOOP and CHECK: nothing to do but announce the mailbox's changes.

use crate::session::Session;

impl Session {
    /// NOOP, and CHECK (a maildir needs no checkpoint).
    pub(super) fn handle_noop(&mut self, tag: &str) {
        self.finish_ok(tag, "NOOP completed.");
    }
}
