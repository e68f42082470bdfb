//! `NOOP` (RFC 5321 4.1.1.9).

use crate::server::session::{ok, ServerSession};

impl ServerSession {
    /// `NOOP`: `250`, nothing else changes (clients use it as a keep-alive).
    pub(super) fn on_noop(&mut self) {
        self.send(&ok());
    }
}
