//! IDLE (RFC 2177) and the DONE that ends it. While idling, a change to the selected
//! mailbox is announced in the same input call that brings it
//! ([`Session::queue_change`]).

use crate::session::{Mode, Session};

impl Session {
    /// IDLE: `+ idling`, then changes flow until DONE.
    pub(super) fn handle_idle(&mut self, tag: &str) {
        self.raw(b"+ idling\r\n");
        self.announce(true);
        self.mode = Mode::Idle(tag.to_string());
    }

    /// The line that ends IDLE.
    pub(super) fn handle_idle_done(&mut self, tag: &str, line: &[u8]) {
        if line.eq_ignore_ascii_case(b"DONE\r\n") {
            self.finish_ok(tag, "Idle completed.");
        } else {
            self.bad(tag, "Expected DONE.");
        }
    }
}
