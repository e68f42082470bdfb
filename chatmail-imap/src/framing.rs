//! Splits client bytes into whole commands: lines plus the literals they announce.
//!
//! Every line is bounded; a literal is checked against its bound when it is announced,
//! before a byte of it is read. Bare LF ends a line like CRLF (spec 5.1); the assembled
//! command carries CRLF so that `imap-codec` sees canonical line ends. The message
//! literal of an APPEND is kept outside the command buffer and replaced there by a
//! one-byte placeholder, so a 30 MB message is held once and handed on without copying.
//! Its memory is taken as its bytes arrive, from the shared budget too: an announcement
//! costs nothing, and past the budget the rest of the literal is read and dropped.

use chatmail_core::budget::{MemoryBudget, Reservation};
use std::sync::Arc;

/// What [`Framer::advance`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A whole command is in [`Framer::command`].
    Command,
    /// The current line ends in a literal announcement; the session decides with
    /// [`Framer::accept_literal`] or [`Framer::refuse_literal`].
    Literal {
        /// Announced length in bytes.
        length: u64,
        /// `{n}` (true, the client waits for a continuation) or `{n+}` (false).
        sync: bool,
    },
    /// A line grew past the bound; it has been dropped up to its end.
    LineTooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a line into `buf`.
    Line,
    /// Waiting for the session to accept or refuse an announced literal.
    Announced { length: u64, sync: bool },
    /// Reading literal bytes (into `buf`, or into `large` when `large_literal`).
    Literal { remaining: u64, large_literal: bool },
    /// Dropping an overlong line up to its LF.
    Discarding,
}

/// The command assembler (see the module docs).
#[derive(Debug)]
pub(crate) struct Framer {
    state: State,
    /// The command so far: lines with CRLF and small literals.
    buf: Vec<u8>,
    /// Where the current line starts in `buf`.
    line_start: usize,
    /// The APPEND message literal, if the command has one kept aside.
    large: Option<Vec<u8>>,
    /// Offset in `buf` of the placeholder byte standing for `large`.
    placeholder_at: Option<usize>,
    /// Bound of one line and of the command without its APPEND message.
    max_command: usize,
    /// What `large` holds of the shared budget.
    reservation: Reservation,
    /// The shared budget ran out while `large` was read; its bytes were dropped.
    over_budget: bool,
}

/// The byte that stands for a large literal in the command buffer.
pub(crate) const PLACEHOLDER: u8 = b'X';

impl Framer {
    /// A framer whose commands (without an APPEND message) stay within `max_command`
    /// bytes, and whose APPEND messages take their bytes from `budget`.
    pub(crate) fn new(max_command: usize, budget: Option<Arc<MemoryBudget>>) -> Framer {
        Framer {
            state: State::Line,
            buf: Vec::new(),
            line_start: 0,
            large: None,
            placeholder_at: None,
            max_command,
            reservation: Reservation::new(budget),
            over_budget: false,
        }
    }

    /// Consumes bytes from `input` until a frame is found or the input ends; returns the
    /// number of bytes consumed and the frame, if any.
    pub(crate) fn advance(&mut self, input: &[u8]) -> (usize, Option<Frame>) {
        let mut used = 0;
        while used < input.len() {
            match self.state {
                State::Announced { .. } => break,
                State::Line => {
                    let rest = &input[used..];
                    let room = self.max_command.saturating_sub(self.buf.len());
                    match rest.iter().position(|&b| b == b'\n') {
                        Some(pos) if pos <= room => {
                            self.buf.extend_from_slice(&rest[..pos]);
                            // The CR may have come in an earlier chunk than the LF.
                            if self.buf.len() > self.line_start && self.buf.last() == Some(&b'\r') {
                                self.buf.pop();
                            }
                            used += pos + 1;
                            if let Some((length, sync)) = announcement(&self.buf[self.line_start..])
                            {
                                self.buf.extend_from_slice(b"\r\n");
                                self.state = State::Announced { length, sync };
                                return (used, Some(Frame::Literal { length, sync }));
                            }
                            self.buf.extend_from_slice(b"\r\n");
                            return (used, Some(Frame::Command));
                        }
                        Some(_) => {
                            self.keep_tag(rest);
                            used += rest.len().min(room + 1);
                            self.state = State::Discarding;
                        }
                        None if rest.len() <= room => {
                            self.buf.extend_from_slice(rest);
                            used = input.len();
                        }
                        None => {
                            self.keep_tag(rest);
                            used = input.len();
                            self.state = State::Discarding;
                        }
                    }
                }
                State::Literal {
                    remaining,
                    large_literal,
                } => {
                    let take = (input.len() - used).min(remaining.min(usize::MAX as u64) as usize);
                    let bytes = &input[used..used + take];
                    if large_literal {
                        self.keep_large(bytes, remaining);
                    } else {
                        self.buf.extend_from_slice(bytes);
                    }
                    used += take;
                    let remaining = remaining - take as u64;
                    if remaining == 0 {
                        self.state = State::Line;
                        self.line_start = self.buf.len();
                    } else {
                        self.state = State::Literal {
                            remaining,
                            large_literal,
                        };
                    }
                }
                State::Discarding => match input[used..].iter().position(|&b| b == b'\n') {
                    Some(pos) => {
                        used += pos + 1;
                        self.state = State::Line;
                        return (used, Some(Frame::LineTooLong));
                    }
                    None => used = input.len(),
                },
            }
        }
        (used, None)
    }

    /// Appends arrived bytes of the APPEND message (`remaining` of it still to come,
    /// these included) if the shared budget has room; otherwise drops all of it.
    fn keep_large(&mut self, bytes: &[u8], remaining: u64) {
        let Some(large) = self.large.as_mut() else {
            return;
        };
        if self.over_budget {
            return;
        }
        if !self.reservation.grow(bytes.len() as u64) {
            self.over_budget = true;
            *large = Vec::new();
            self.reservation.release();
            return;
        }
        if large.capacity() - large.len() < bytes.len() {
            // Double as bytes come, never past the announced length: memory follows the
            // bytes that arrived, not the number the client wrote.
            let rest = usize::try_from(remaining).unwrap_or(usize::MAX);
            large.reserve_exact(bytes.len().max(large.len().min(rest)));
        }
        large.extend_from_slice(bytes);
    }

    /// Keeps the start of an overlong line so that its tag can be answered.
    fn keep_tag(&mut self, rest: &[u8]) {
        let keep = 80usize.saturating_sub(self.buf.len()).min(rest.len());
        self.buf.extend_from_slice(&rest[..keep]);
    }

    /// Accepts the announced literal. `large` keeps it outside the command buffer (the
    /// APPEND message); otherwise it must fit the command bound (the caller checked).
    pub(crate) fn accept_literal(&mut self, large: bool) {
        if let State::Announced { length, .. } = self.state {
            let large = large && self.large.is_none();
            if large {
                // The placeholder literal `{1}` CRLF X replaces the announced one.
                if let Some(open) = self.buf[self.line_start..].iter().rposition(|&b| b == b'{') {
                    self.buf.truncate(self.line_start + open);
                }
                self.buf.extend_from_slice(b"{1}\r\n");
                self.placeholder_at = Some(self.buf.len());
                self.buf.push(PLACEHOLDER);
                self.large = Some(Vec::new());
                self.line_start = self.buf.len();
            }
            if length == 0 {
                self.state = State::Line;
                self.line_start = self.buf.len();
            } else {
                self.state = State::Literal {
                    remaining: length,
                    large_literal: large,
                };
            }
        }
    }

    /// Refuses a synchronizing literal: the client will not send it, and the command ends.
    pub(crate) fn refuse_literal(&mut self) {
        self.reset();
    }

    /// The assembled command (valid after [`Frame::Command`]).
    pub(crate) fn command(&self) -> &[u8] {
        &self.buf
    }

    /// The bound of one command (without an APPEND message).
    pub(crate) fn max_command(&self) -> usize {
        self.max_command
    }

    /// Changes the command bound; takes effect from the next line (call between commands).
    pub(crate) fn set_max_command(&mut self, max_command: usize) {
        self.max_command = max_command;
    }

    /// How many bytes of the current command the command buffer holds.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The APPEND message kept aside and the placeholder offset, taken out.
    pub(crate) fn take_large(&mut self) -> Option<(usize, Vec<u8>)> {
        let at = self.placeholder_at.take()?;
        self.large.take().map(|l| (at, l))
    }

    /// Whether a large literal is already kept for this command.
    pub(crate) fn has_large(&self) -> bool {
        self.large.is_some()
    }

    /// Whether the APPEND message of this command was dropped for the shared budget.
    pub(crate) fn over_budget(&self) -> bool {
        self.over_budget
    }

    /// The budget share of the APPEND message, taken out with it (the framer keeps an
    /// empty one for the next command).
    pub(crate) fn take_reservation(&mut self) -> Reservation {
        let fresh = self.reservation.fresh();
        std::mem::replace(&mut self.reservation, fresh)
    }

    /// Whether bytes of a command have arrived and its end has not.
    pub(crate) fn in_progress(&self) -> bool {
        self.state != State::Line || !self.buf.is_empty()
    }

    /// Forgets the current command and gets ready for the next one.
    pub(crate) fn reset(&mut self) {
        self.state = State::Line;
        self.buf.clear();
        if self.buf.capacity() > 4096 {
            // An idle session keeps no large buffer around.
            self.buf = Vec::new();
        }
        self.line_start = 0;
        self.large = None;
        self.placeholder_at = None;
        self.reservation.release();
        self.over_budget = false;
    }

    /// Bytes of heap the framer holds.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buf.capacity() + self.large.as_ref().map_or(0, |l| l.capacity())
    }

    /// The first two words of the command (tag, command name), for early decisions.
    pub(crate) fn tag_and_verb(&self) -> (&[u8], &[u8]) {
        let line_end = self
            .buf
            .iter()
            .position(|&b| b == b'\r')
            .unwrap_or(self.buf.len());
        let mut words = self.buf[..line_end].splitn(3, |&b| b == b' ');
        let tag = words.next().unwrap_or_default();
        let verb = words.next().unwrap_or_default();
        (tag, verb)
    }
}

/// Parses a trailing `{n}` / `{n+}` (optionally `~{n}`) at the end of a line.
fn announcement(line: &[u8]) -> Option<(u64, bool)> {
    let body = line.strip_suffix(b"}")?;
    let (digits_part, sync) = match body.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (body, true),
    };
    let open = digits_part.iter().rposition(|&b| b == b'{')?;
    let digits = &digits_part[open + 1..];
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let length = digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Some((length, sync))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: &mut Framer, mut input: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let (n, frame) = f.advance(input);
            input = &input[n..];
            match frame {
                Some(Frame::Literal { .. }) => {
                    frames.push(frame.unwrap());
                    f.accept_literal(false);
                }
                Some(fr) => frames.push(fr),
                None => return frames,
            }
        }
    }

    #[test]
    fn lines_and_literals() {
        let mut f = Framer::new(100, None);
        assert_eq!(run(&mut f, b"a NOOP\n"), [Frame::Command]);
        assert_eq!(f.command(), b"a NOOP\r\n");
        f.reset();
        let frames = run(&mut f, b"b LOGIN {3}\r\nabc {2+}\r\nxy\r\n");
        assert_eq!(frames.len(), 3);
        assert_eq!(f.command(), b"b LOGIN {3}\r\nabc {2+}\r\nxy\r\n");
        assert_eq!(f.tag_and_verb(), (&b"b"[..], &b"LOGIN"[..]));
        f.reset();
        assert_eq!(run(&mut f, &[b'a'; 300]), []);
        assert_eq!(
            run(&mut f, b"aaa\r\nc NOOP\r\n"),
            [Frame::LineTooLong, Frame::Command]
        );
        assert_eq!(announcement(b"x {4294967295}"), Some((4294967295, true)));
        assert_eq!(announcement(b"x {}"), None);
    }
}
