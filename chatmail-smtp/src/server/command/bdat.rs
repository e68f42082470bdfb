//! `BDAT chunk-size [LAST]` (RFC 3030 CHUNKING): the message in counted chunks.
//!
//! The announced octets are always consumed, even when the command is refused (no
//! transaction, too big, after a failed chunk): chunk data is never read as commands.
//! Chunks carry no dot-stuffing. Line endings are checked across chunk borders like in
//! DATA (the message must be CRLF text: 8BITMIME, not BINARYMIME).

use crate::reply::reply;
use crate::server::message::BdatChunk;
use crate::server::session::{Phase, ServerSession};

/// Whether a BDAT command line (without CRLF) is exactly `BDAT <digits> [LAST]` with a
/// size that fits 64 bits.
pub(super) fn valid_syntax(line: &str) -> bool {
    let mut words = line.split(' ').filter(|w| !w.is_empty()).skip(1);
    let size_ok = words.next().is_some_and(|size| {
        size.bytes().all(|b| b.is_ascii_digit()) && size.parse::<u64>().is_ok()
    });
    let rest: Vec<&str> = words.collect();
    size_ok && (rest.is_empty() || (rest.len() == 1 && rest[0].eq_ignore_ascii_case("LAST")))
}

impl ServerSession {
    /// `BDAT`: decides now whether the chunk is taken; its octets follow in any case.
    pub(super) fn on_bdat(&mut self, size: u64, last: bool) {
        let refusal = if self.hello.is_none() {
            Some(reply(503, "5.5.1 Error: send HELO/EHLO first"))
        } else if self.txn.mail_from.is_none() {
            Some(reply(503, "5.5.1 Error: need MAIL command"))
        } else if self.txn.recipients.is_empty() {
            Some(reply(554, "5.5.1 Error: no valid recipients"))
        } else {
            None
        };
        if refusal.is_none() {
            self.txn.bdat_started = true;
            let total = self.txn.message.bytes.len() as u64 + size;
            self.txn.message.expect(total.max(self.txn.declared_size));
        }
        let chunk = BdatChunk::new(size, last, refusal);
        if size == 0 {
            // `BDAT 0 LAST` ends a message without any octets to wait for.
            self.end_of_chunk(chunk);
        } else {
            self.phase = Phase::Bdat(chunk);
        }
    }

    /// All octets of a chunk are in: reply, or end the message after `LAST`.
    pub(in crate::server) fn end_of_chunk(&mut self, chunk: BdatChunk) {
        if let Some(refusal) = chunk.refusal {
            return self.send_error(refusal.code, &refusal.text);
        }
        let policy = &self.policy;
        if let Some(refusal) = self.txn.message.refusal(|| policy.size_exceeded_reply()) {
            // RFC 3030: after a failed chunk the transaction is over; later chunks are
            // refused (no MAIL) and consumed.
            self.reset_transaction();
            return self.send(&refusal);
        }
        if chunk.last {
            // A CR as the very last octet is bare too.
            if self.txn.message.bytes.last() == Some(&b'\r') {
                self.txn.message.bare_line_ending = true;
            }
            return self.end_of_message();
        }
        let text = format!("2.0.0 {} octets received", chunk.size);
        self.send_reply(250, &text);
    }
}
