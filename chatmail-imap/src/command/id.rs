//! ID (RFC 2971): the client's identification is not used; the server names itself.

use crate::session::Session;

impl Session {
    /// ID (...).
    pub(super) fn handle_id(&mut self, tag: &str) {
        self.line("* ID (\"name\" \"chatmail\")");
        self.finish_ok(tag, "ID completed.");
    }
}
