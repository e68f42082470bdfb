//! `EXPN` (RFC 5321 3.5.3): the relay has no mailing lists to expand and reveals no users.

use crate::server::session::ServerSession;

impl ServerSession {
    /// `EXPN`: refused with `502 5.5.1`.
    pub(super) fn on_expn(&mut self) {
        self.send_reply(502, "5.5.1 Error: EXPN is not supported");
    }
}
