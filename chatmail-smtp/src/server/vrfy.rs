//! `VRFY` (RFC 5321 3.5.3): never reveals whether a user exists (spec 4.1).

use super::ServerSession;

impl ServerSession {
    /// `VRFY`: always `252 2.0.0`, for existing, unknown and malformed names alike.
    pub(super) fn on_vrfy(&mut self) {
        self.send_reply(
            252,
            "2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
        );
    }
}
