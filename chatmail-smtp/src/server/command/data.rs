//! `DATA` (RFC 5321 4.1.1.4): the message text follows the `354`, read by the
//! [`DataReader`] up to `<CRLF>.<CRLF>` (`message.rs` says how it is read and bounded).

use crate::server::message::DataReader;
use crate::server::session::{Phase, ServerSession};

impl ServerSession {
    /// `DATA`: `354` when a transaction has a sender and at least one recipient.
    pub(super) fn on_data(&mut self) {
        if self.hello.is_none() {
            return self.send_error(503, "5.5.1 Error: send HELO/EHLO first");
        }
        if self.txn.mail_from.is_none() {
            return self.send_error(503, "5.5.1 Error: need MAIL command");
        }
        if self.txn.bdat_started {
            return self.send_error(503, "5.5.1 Error: BDAT transaction in progress");
        }
        if self.txn.recipients.is_empty() {
            return self.send_error(554, "5.5.1 Error: no valid recipients");
        }
        self.send_reply(354, "End data with <CR><LF>.<CR><LF>");
        let declared = self.txn.declared_size;
        self.txn.message.expect(declared);
        self.phase = Phase::Data(DataReader::new());
    }
}
