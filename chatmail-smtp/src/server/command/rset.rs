//! `RSET`: abandon the current mail transaction (RFC 5321 4.1.1.5).

use crate::server::session::{ok, ServerSession};

impl ServerSession {
    /// `RSET`: drops sender, recipients and message; greeting and login stay.
    pub(super) fn on_rset(&mut self) {
        self.reset_transaction();
        self.send(&ok());
    }
}
