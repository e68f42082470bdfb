//! The message text as it arrives after `DATA` or in `BDAT` chunks, and the bounded
//! buffer it goes into.
//!
//! The DATA reader removes dot-stuffing and ends only at `<CRLF>.<CRLF>`. A bare LF or
//! bare CR anywhere is remembered and the message refused after the terminator (RFC 5321
//! 2.3.8), never taken as a line end: `\n.\r\n` is text, not an end of data, so nothing
//! can be smuggled past the policy. Bytes are carried unchanged otherwise (8-bit,
//! non-UTF-8). BDAT chunks carry no dot-stuffing; their line endings are checked across
//! chunk borders in the same way (the message must be CRLF text: 8BITMIME, not
//! BINARYMIME). The size bound applies while reading: past it nothing more is stored,
//! and the reply after the message is `552`. So does the shared memory budget: bytes are
//! taken from it as they arrive; past it they are dropped and the reply is `452 4.3.1`.

use chatmail_core::budget::Reservation;
use chatmail_policy::Reply;

use crate::reply::reply;

/// The message being received, bounded by the size limit and the shared memory budget,
/// with what was seen on the way.
#[derive(Debug, Default)]
pub(super) struct MessageSink {
    /// Received bytes, never more than `max_size`.
    pub(super) bytes: Vec<u8>,
    max_size: u64,
    /// More than `max_size` bytes arrived; the excess was dropped.
    pub(super) too_big: bool,
    /// The shared memory budget was exhausted; the bytes were dropped.
    pub(super) over_budget: bool,
    /// A CR not followed by LF, or an LF not preceded by CR, was seen.
    pub(super) bare_line_ending: bool,
    /// What `bytes` holds of the shared budget; given back when the sink is dropped.
    pub(super) reservation: Reservation,
}

impl MessageSink {
    pub(super) fn new(max_size: u64, reservation: Reservation) -> MessageSink {
        MessageSink {
            bytes: Vec::new(),
            max_size,
            too_big: false,
            over_budget: false,
            bare_line_ending: false,
            reservation,
        }
    }

    /// Sets room aside for a message of `size` bytes the client announced (`SIZE=` on
    /// MAIL, a BDAT chunk's size), so that it is received without the buffer growing
    /// (each growth copies it). Address space only: pages are taken as bytes arrive,
    /// and so is the memory budget ([`MessageSink::store`]); a size past the bound, or
    /// room the allocator refuses, is simply not set aside.
    pub(super) fn expect(&mut self, size: u64) {
        if size <= self.max_size {
            let more = (size as usize).saturating_sub(self.bytes.len());
            let _ = self.bytes.try_reserve_exact(more);
        }
    }

    /// Appends `data` unless that crosses the size bound or the memory budget (then only
    /// notes it and lets go of what it holds).
    pub(super) fn store(&mut self, data: &[u8]) {
        if self.too_big || self.over_budget {
            return;
        }
        if self.bytes.len() as u64 + data.len() as u64 > self.max_size {
            self.too_big = true;
        } else if !self.reservation.grow(data.len() as u64) {
            self.over_budget = true;
        } else {
            self.bytes.extend_from_slice(data);
            return;
        }
        self.bytes = Vec::new();
        self.reservation.release();
    }

    /// The refusal of a message that was not kept whole: too big or over the budget.
    pub(super) fn refusal(&self, size_exceeded: impl FnOnce() -> Reply) -> Option<Reply> {
        if self.too_big {
            Some(size_exceeded())
        } else if self.over_budget {
            Some(over_budget_reply())
        } else {
            None
        }
    }
}

/// The reply to a message dropped because all sessions together hold too many bytes:
/// temporary, so the client retries later (RFC 3463 X.3.1 "mail system full").
fn over_budget_reply() -> Reply {
    reply(
        452,
        "4.3.1 Insufficient system resources, too many messages in transfer; try again later",
    )
}

/// Where in a line the DATA reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// After CRLF (or right after `354`): a dot here is special.
    LineStart,
    /// A dot at the start of a line.
    Dot,
    /// `.` `CR` at the start of a line: LF ends the data.
    DotCr,
    /// Inside a line.
    Text,
    /// A CR inside a line; LF completes the line.
    Cr,
}

/// Streaming reader of the text after `354`.
#[derive(Debug)]
pub(super) struct DataReader {
    at: At,
}

impl DataReader {
    pub(super) fn new() -> DataReader {
        DataReader { at: At::LineStart }
    }

    /// Reads from `input` into `sink`. Returns the bytes used and whether the
    /// terminating `<CRLF>.<CRLF>` was reached (input after it is not touched).
    pub(super) fn consume(&mut self, input: &[u8], sink: &mut MessageSink) -> (usize, bool) {
        let mut pos = 0;
        while pos < input.len() {
            match self.at {
                At::Text => {
                    // The common case: a run of text up to the next CR or LF.
                    let rest = &input[pos..];
                    match memchr::memchr2(b'\r', b'\n', rest) {
                        None => {
                            sink.store(rest);
                            return (input.len(), false);
                        }
                        Some(i) => {
                            sink.store(&rest[..i]);
                            pos += i + 1;
                            if rest[i] == b'\r' {
                                self.at = At::Cr;
                            } else {
                                // Bare LF: kept as text, never a line start.
                                sink.bare_line_ending = true;
                                sink.store(b"\n");
                            }
                        }
                    }
                }
                At::Cr => {
                    let byte = input[pos];
                    pos += 1;
                    match byte {
                        b'\n' => {
                            sink.store(b"\r\n");
                            self.at = At::LineStart;
                        }
                        b'\r' => {
                            sink.bare_line_ending = true;
                            sink.store(b"\r");
                        }
                        _ => {
                            sink.bare_line_ending = true;
                            sink.store(b"\r");
                            pos -= 1;
                            self.at = At::Text;
                        }
                    }
                }
                At::LineStart => {
                    if input[pos] == b'.' {
                        pos += 1;
                        self.at = At::Dot;
                    } else {
                        self.at = At::Text;
                    }
                }
                At::Dot => {
                    if input[pos] == b'\r' {
                        pos += 1;
                        self.at = At::DotCr;
                    } else {
                        // A stuffed dot (RFC 5321 4.5.2): drop it, keep the rest.
                        self.at = At::Text;
                    }
                }
                At::DotCr => {
                    if input[pos] == b'\n' {
                        return (pos + 1, true);
                    }
                    // `.` CR x: the dot was stuffing, and the CR is bare.
                    sink.bare_line_ending = true;
                    sink.store(b"\r");
                    self.at = At::Text;
                }
            }
        }
        (pos, false)
    }
}

/// One announced chunk being read.
#[derive(Debug)]
pub(super) struct BdatChunk {
    /// Octets still to come.
    remaining: u64,
    /// The announced size.
    pub(super) size: u64,
    /// `LAST` was given: the chunk ends the message.
    pub(super) last: bool,
    /// Why the chunk is refused; its octets are read and dropped.
    pub(super) refusal: Option<Reply>,
}

impl BdatChunk {
    /// A chunk of `size` octets, none read yet.
    pub(super) fn new(size: u64, last: bool, refusal: Option<Reply>) -> BdatChunk {
        BdatChunk {
            remaining: size,
            size,
            last,
            refusal,
        }
    }

    /// Reads up to the rest of the chunk from `input`; returns the bytes used.
    pub(super) fn consume(&mut self, input: &[u8], sink: &mut MessageSink) -> usize {
        let take = input
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        if self.refusal.is_none() {
            let data = &input[..take];
            sink.check_line_endings(data);
            sink.store(data);
        }
        self.remaining -= take as u64;
        take
    }

    pub(super) fn is_complete(&self) -> bool {
        self.remaining == 0
    }
}

impl MessageSink {
    /// Notes bare CR or LF in chunk data, including a CR ending the previous chunk.
    fn check_line_endings(&mut self, data: &[u8]) {
        if self.bare_line_ending || data.is_empty() {
            return;
        }
        let mut prev_cr = self.bytes.last() == Some(&b'\r');
        if prev_cr && data[0] != b'\n' {
            self.bare_line_ending = true;
            return;
        }
        for i in memchr::memchr2_iter(b'\r', b'\n', data) {
            let is_cr = data[i] == b'\r';
            if is_cr {
                if data.get(i + 1).is_some_and(|&b| b != b'\n') {
                    self.bare_line_ending = true;
                    return;
                }
            } else {
                let preceded = if i == 0 {
                    prev_cr
                } else {
                    data[i - 1] == b'\r'
                };
                if !preceded {
                    self.bare_line_ending = true;
                    return;
                }
            }
            prev_cr = is_cr;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8]) -> (MessageSink, usize, bool) {
        let mut sink = MessageSink::new(1 << 20, Reservation::default());
        let (used, done) = DataReader::new().consume(input, &mut sink);
        (sink, used, done)
    }

    #[test]
    fn unstuffs_and_stops_at_the_terminator() {
        let (sink, used, done) = read(b"a\r\n..b\r\n.c\r\n\r\n.\r\nQUIT\r\n");
        assert!(done);
        assert_eq!(used, b"a\r\n..b\r\n.c\r\n\r\n.\r\n".len());
        assert_eq!(sink.bytes, b"a\r\n.b\r\nc\r\n\r\n");
        assert!(!sink.bare_line_ending);
    }

    #[test]
    fn empty_message() {
        let (sink, used, done) = read(b".\r\n");
        assert!(done && used == 3 && sink.bytes.is_empty());
    }

    #[test]
    fn bare_lf_dot_is_not_a_terminator() {
        for smuggle in [
            &b"a\n.\nMAIL FROM:<x>\r\n"[..],
            b"a\n.\r\nRCPT",
            b"a\r\n.\nb",
            b"a\r.\r\n",
        ] {
            let (sink, _, done) = read(smuggle);
            assert!(!done, "{smuggle:?}");
            assert!(sink.bare_line_ending, "{smuggle:?}");
        }
    }

    #[test]
    fn dot_cr_without_lf_is_a_bare_cr() {
        let (sink, _, done) = read(b".\rx\r\n.\r\n");
        assert!(done);
        assert!(sink.bare_line_ending);
    }

    #[test]
    fn eight_bit_bytes_pass_unchanged() {
        let (sink, _, done) = read(b"\xff\xfe\x80 \xc3\xa9\r\n.\r\n");
        assert!(done);
        assert_eq!(sink.bytes, b"\xff\xfe\x80 \xc3\xa9\r\n");
    }

    #[test]
    fn size_bound_drops_the_excess() {
        let mut sink = MessageSink::new(10, Reservation::default());
        let mut reader = DataReader::new();
        let (_, done) = reader.consume(&[b'x'; 100], &mut sink);
        assert!(!done && sink.too_big && sink.bytes.capacity() == 0);
        let (_, done) = reader.consume(b"\r\n.\r\n", &mut sink);
        assert!(done && sink.too_big && sink.bytes.is_empty());
    }

    fn bare(chunks: &[&[u8]]) -> bool {
        let mut sink = MessageSink::new(1 << 20, Default::default());
        for chunk in chunks {
            sink.check_line_endings(chunk);
            sink.store(chunk);
        }
        sink.bare_line_ending
    }

    #[test]
    fn line_endings_across_chunks() {
        assert!(!bare(&[b"a\r\nb\r\n"]));
        assert!(!bare(&[b"a\r", b"\nb\r\n"]));
        assert!(bare(&[b"a\r", b"b\r\n"]));
        assert!(bare(&[b"a\nb"]));
        assert!(bare(&[b"a\rb"]));
        assert!(bare(&[b"\nb"]));
        assert!(bare(&[b"a\r\r\n"]));
    }
}
