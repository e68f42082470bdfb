//! `VRFY` (RFC 5321 3.5.3): never reveals whether a user exists (spec 4.1).

use crate::server::config::Role;
use crate::server::session::ServerSession;

impl ServerSession {
    /// `VRFY`: always `252 2.0.0`, for existing, unknown and malformed names alike; but
    /// where TLS is required, only after STARTTLS, as Postfix with
    /// `smtpd_tls_security_level = encrypt` answers on port 25 (spec 7.4, item 5).
    pub(super) fn on_vrfy(&mut self) {
        if self.config.role != Role::Lmtp && self.config.require_tls && !self.tls {
            return self.send_error(530, "5.7.0 Must issue a STARTTLS command first");
        }
        self.send_reply(
            252,
            "2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
        );
    }
}
