//! CAPABILITY: the list depends on the state (STARTTLS and AUTH=PLAIN or LOGINDISABLED
//! before login, the extensions after it).

use crate::session::Session;

impl Session {
    /// CAPABILITY.
    pub(super) fn handle_capability(&mut self, tag: &str) {
        let caps = self.capabilities();
        self.line(&format!("* CAPABILITY {caps}"));
        self.finish_ok(tag, "Capability completed.");
    }
}
