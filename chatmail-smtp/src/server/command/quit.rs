//! `QUIT` (RFC 5321 4.1.1.10).

use crate::server::session::ServerSession;

impl ServerSession {
    /// `QUIT`: `221`, then [`crate::server::Output::Close`]; nothing after it is read.
    pub(super) fn on_quit(&mut self) {
        self.send_reply(221, "2.0.0 Bye");
        self.close();
    }
}
