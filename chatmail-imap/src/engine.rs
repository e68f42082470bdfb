//! The session as an [`Engine`]: the inputs of the one contract
//! (`chatmail_core::engine`) and its outputs.
//!
//! Bytes are framed here into complete commands (literals announced and bounded before
//! a byte of them is read) and handed to `command/mod.rs`, which dispatches them; an
//! answer goes to the [`Continuation`](crate::session::Continuation) its command left.

use std::time::Instant;

use chatmail_core::engine::{AnswerError, Engine, RequestId};
use chatmail_core::store::Lagged;
use chatmail_core::Change;

use crate::framing::Frame;
use crate::request::{Answer, Request};
use crate::session::{Delayed, Mode, Output, Pending, Session, State, SHUTDOWN_TEXT};
use crate::wire;

impl Engine for Session {
    type Request = Request;
    type Answer = Answer;
    type Event = std::convert::Infallible;

    /// Input: bytes from the client, in any chunking, received at `now`.
    fn feed(&mut self, bytes: &[u8], now: Instant) {
        if self.state == State::Logout {
            return;
        }
        self.clock = self.clock.max(now);
        if self.mode == Mode::AwaitingTls {
            // Plaintext after STARTTLS is an injection attempt (CVE-2011-0411 class).
            return;
        }
        if !bytes.is_empty() {
            // The first byte of a command starts its clock; later bytes only add their
            // share at the minimum rate.
            let (_, received) = self.command.get_or_insert((now, 0));
            *received += bytes.len() as u64;
        }
        self.input.extend_from_slice(bytes);
        let waiting = self.pending.is_some() || self.delayed.is_some();
        if waiting && self.input.len() > self.config.input_pause_bytes * 4 {
            self.bye("Too much pipelined input.");
            return;
        }
        self.process();
    }

    /// Input: the embedder's answer to request `id`, at `now`.
    fn answer(&mut self, id: RequestId, answer: Answer, now: Instant) -> Result<(), AnswerError> {
        match self.pending.take() {
            Some(p) if p.id == id => {
                self.clock = self.clock.max(now);
                self.held.release();
                let Pending { tag, then, .. } = *p;
                if let Answer::RefusedUntil { refusal, until } = answer {
                    self.delayed = Some(Box::new(Delayed {
                        until,
                        tag,
                        then,
                        answer: Answer::Refused(refusal),
                    }));
                    if self.shutting_down {
                        self.release_delayed();
                    }
                    return Ok(());
                }
                then.resume(self, &tag, answer);
                self.after_answer();
                Ok(())
            }
            // The session closed meanwhile (BYE): the answer has nowhere to go.
            None if self.state == State::Logout => Ok(()),
            other => {
                self.pending = other;
                Err(AnswerError::NotWaiting(id))
            }
        }
    }

    /// Input: a change to the logged-in account's mail (from SMTP delivery, another
    /// session, expiry), from the feed asked for by [`Output::Subscribe`]. Changes to the
    /// selected mailbox reach an idling client as untagged responses in this same call's
    /// outputs; otherwise they are announced at the end of the next command. A
    /// [`Lagged`] feed resets the selected mailbox (or the one being opened): the client
    /// is told to reconnect and resynchronise.
    fn handle_change(&mut self, change: Result<Change, Lagged>, now: Instant) {
        if self.state == State::Logout {
            return;
        }
        self.clock = self.clock.max(now);
        let change = match change {
            Ok(change) => change,
            Err(Lagged { .. }) => match self.open_mailbox() {
                Some(mailbox) => Change::MailboxReset {
                    mailbox: mailbox.to_string(),
                },
                None => return,
            },
        };
        self.queue_change(&change);
        if self.is_idle() {
            self.claim_recent_if_needed();
        }
    }

    /// Input: the driver finished the TLS handshake after [`Output::StartTls`].
    fn tls_started(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        if self.mode == Mode::AwaitingTls {
            self.mode = Mode::Commands;
            self.tls_active = true;
            self.input.clear();
            self.framer.reset();
            self.command = None;
        }
    }

    /// Input: time passed; call when [`Engine::poll_timeout`] is due. Releases an
    /// answer held back ([`Answer::RefusedUntil`]); closes the session with BYE past a
    /// deadline: the login timeout (absolute, before login), a command's time (head start
    /// plus its bytes at the minimum rate), the inactivity timeout (after login, from the
    /// end of the last command). No deadline runs while an answer is held back.
    fn handle_timeout(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        if let Some(delayed) = &self.delayed {
            if now >= delayed.until {
                self.release_delayed();
            }
            return;
        }
        match self.deadline() {
            Some(deadline) if now >= deadline => self.bye("Disconnected for inactivity."),
            _ => {}
        }
    }

    /// Input: the server is shutting down. The session says `* BYE Server shutting down`
    /// and closes; a request still out is answered first and its tagged reply goes out
    /// before the BYE (an answer held back is released at once).
    fn shutdown(&mut self, now: Instant) {
        if self.state == State::Logout {
            return;
        }
        self.clock = self.clock.max(now);
        self.shutting_down = true;
        if self.delayed.is_some() {
            self.release_delayed();
        } else if self.pending.is_none() {
            self.bye(SHUTDOWN_TEXT);
        }
    }

    /// Output: the next thing to do, or `None` when the session waits for input.
    fn poll(&mut self) -> Option<Output> {
        self.next_output()
    }

    /// Output: when to call [`Engine::handle_timeout`] next; `None` after BYE and while
    /// a request is out (the embedder's time is not the client's).
    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline()
    }

    /// False while enough unprocessed input is buffered: the driver should stop reading
    /// from the socket until this turns true again (after answers are given).
    fn wants_input(&self) -> bool {
        self.state != State::Logout
            && self.mode != Mode::AwaitingTls
            && self.input.len() < self.config.input_pause_bytes
    }

    /// True once the session said BYE or answered LOGOUT: it only drains.
    fn is_closed(&self) -> bool {
        self.state == State::Logout
    }

    /// Before login the session's own deadline bounds writes too; after it, `None`: the
    /// driver's minimum rate alone (a large FETCH on a slow link is legitimate).
    fn send_deadline(&self) -> Option<Instant> {
        match self.state {
            State::NotAuthenticated => self.deadline(),
            _ => None,
        }
    }
}

/// The input plumbing behind the [`Engine`] methods.
impl Session {
    /// Gives the answer held back its effect now (its time came, or the server shuts
    /// down).
    fn release_delayed(&mut self) {
        let Some(delayed) = self.delayed.take() else {
            return;
        };
        // The session waited, not the client: inactivity, and the time of a command
        // pipelined meanwhile, count from the answer.
        self.ready_since = self.clock;
        if let Some((start, _)) = &mut self.command {
            *start = self.clock;
        }
        let Delayed {
            tag, then, answer, ..
        } = *delayed;
        then.resume(self, &tag, answer);
        self.after_answer();
    }

    /// After an answer took effect: on with the buffered input, or, when the server is
    /// shutting down, BYE once no request is out any more.
    fn after_answer(&mut self) {
        if self.pending.is_none() && self.delayed.is_none() {
            if let Some(text) = self.bye_pending.take() {
                return self.bye(text);
            }
        }
        if !self.shutting_down {
            self.process();
        } else if self.pending.is_none() {
            self.bye(SHUTDOWN_TEXT);
        }
    }

    /// Consume input while no request is outstanding.
    fn process(&mut self) {
        while self.pending.is_none()
            && self.delayed.is_none()
            && self.state != State::Logout
            && self.mode != Mode::AwaitingTls
            && !self.input.is_empty()
        {
            // New messages are claimed as \Recent before the next command starts, so
            // that the command sees them recent (or another session's claim won).
            if self.mode == Mode::Commands
                && !self.framer.in_progress()
                && self.claim_recent_if_needed()
            {
                break;
            }
            let (used, frame) = self.framer.advance(&self.input);
            self.input.drain(..used);
            match frame {
                None => break,
                Some(Frame::LineTooLong) => {
                    self.command_ended();
                    // An overlong AUTHENTICATE response ends the exchange under its tag.
                    let tag = match std::mem::replace(&mut self.mode, Mode::Commands) {
                        Mode::SaslResponse(tag) => tag,
                        other => {
                            self.mode = other;
                            wire::tag_of(self.framer.tag_and_verb().0)
                        }
                    };
                    self.framer.reset();
                    self.bad(&tag, "[TOOBIG] Command line too long.");
                }
                Some(Frame::Literal { length, sync }) => self.literal_announced(length, sync),
                Some(Frame::Command) => {
                    self.command_ended();
                    self.command_complete();
                    self.framer.reset();
                }
            }
        }
        // Bytes left over start the next command's clock; a command that ended without
        // a frame (a refused literal) ends its clock.
        let in_progress = self.framer.in_progress() || !self.input.is_empty();
        match (in_progress, self.command) {
            (true, None) => {
                let buffered = self.input.len() + self.framer.buffered();
                self.command = Some((self.clock, buffered as u64));
            }
            (false, Some(_)) => self.command_ended(),
            _ => {}
        }
        if self.input.is_empty() && self.input.capacity() > 4096 {
            self.input = Vec::new();
        }
    }

    /// A command's last byte arrived: its clock stops, inactivity counts from now.
    fn command_ended(&mut self) {
        self.command = None;
        self.ready_since = self.clock;
    }

    /// Decides on a literal before any of its bytes is read.
    fn literal_announced(&mut self, length: u64, sync: bool) {
        let (tag, verb) = self.framer.tag_and_verb();
        let tag = wire::tag_of(tag);
        let is_append = verb.eq_ignore_ascii_case(b"APPEND")
            && matches!(self.state, State::Authenticated | State::Selected)
            && self.mode == Mode::Commands;
        let room = self
            .framer
            .max_command()
            .saturating_sub(self.framer.buffered()) as u64;
        let large = is_append && length > 1024 && !self.framer.has_large();
        let limit = if large {
            self.config.max_message_size
        } else {
            room
        };
        if length > limit {
            if sync {
                self.framer.refuse_literal();
                if large {
                    self.no(&tag, "[TOOBIG] Message too large.");
                } else {
                    self.bad(&tag, "[TOOBIG] Literal too large.");
                }
            } else {
                // A non-synchronizing literal is already on its way; reading gigabytes to
                // skip it is no better than closing (RFC 7888 section 4).
                self.bye("[TOOBIG] Literal too large.");
            }
            return;
        }
        self.framer.accept_literal(large);
        if sync {
            self.raw(b"+ Ready for literal data\r\n");
        }
    }
}
