//! STARTTLS (spec 4.1): the tagged OK, then the driver upgrades; plaintext buffered
//! behind the command is dropped.

use crate::session::Session;

impl Session {
    /// STARTTLS.
    pub(super) fn handle_starttls(&mut self, tag: &str) {
        if self.tls_active || !self.config.starttls {
            return self.bad(tag, "TLS is already active or not offered.");
        }
        self.ok(tag, "Begin TLS negotiation now.");
        self.start_tls();
    }
}
