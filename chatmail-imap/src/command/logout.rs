//! LOGOUT.

use crate::session::Session;

impl Session {
    /// LOGOUT: BYE, the tagged OK, then the connection closes.
    pub(super) fn handle_logout(&mut self, tag: &str) {
        self.line("* BYE Logging out");
        self.ok(tag, "Logout completed.");
        self.close();
    }
}
