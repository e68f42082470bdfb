//! `HELP` (RFC 5321 4.1.1.8).

use crate::server::session::ServerSession;

impl ServerSession {
    /// `HELP`: lists the commands this session understands.
    pub(super) fn on_help(&mut self) {
        self.send_reply(
            214,
            "2.0.0 Commands: EHLO HELO LHLO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP VRFY \
             HELP QUIT",
        );
    }
}
