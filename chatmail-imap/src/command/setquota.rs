//! SETQUOTA (RFC 9208): refused; the quota is the operator's `max_mailbox_size`.

use crate::session::Session;

impl Session {
    /// SETQUOTA root (limits).
    pub(super) fn handle_setquota(&mut self, tag: &str) {
        self.no(tag, "[NOPERM] Quota is set by the operator.");
    }
}
