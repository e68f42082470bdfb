//! NAMESPACE (RFC 2342): one personal namespace, `.` as the hierarchy delimiter.

use crate::session::Session;

impl Session {
    /// NAMESPACE.
    pub(super) fn handle_namespace(&mut self, tag: &str) {
        self.line("* NAMESPACE ((\"\" \".\")) NIL NIL");
        self.finish_ok(tag, "Namespace completed.");
    }
}
