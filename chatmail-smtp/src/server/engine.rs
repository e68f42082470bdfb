//! The session as an [`Engine`]: the inputs of the one contract
//! (`chatmail_core::engine`) and its outputs.
//!
//! Input bytes are read here, in the session's current phase, into command lines (handed
//! to `command/mod.rs`, which dispatches them), SASL response lines (to `command/auth.rs`)
//! and message text (DATA, BDAT chunks; the message's end goes to `command/deliver.rs`);
//! an answer goes to the continuation of the command that asked for it.

use std::time::Instant;

use chatmail_core::engine::{AnswerError, Engine, RequestId};

#[cfg(doc)]
use super::config::ServerConfig;
use super::request::{Answer, Output, Request};
use super::session::{AuthStep, Phase, ServerSession, Wait};

impl ServerSession {
    /// Runs buffered input through the current phase until it is used up, the session
    /// blocks, or it closes.
    fn process(&mut self, now: Instant) {
        let mut input = std::mem::take(&mut self.input);
        let used = self.consume(&input, now);
        if !self.reads_on() {
            return;
        }
        input.drain(..used);
        // Keep the allocation, but not a huge one left by a burst of pipelining.
        if input.capacity() > 4 * self.config.max_line_length.max(4096) && input.is_empty() {
            input = Vec::new();
        }
        self.input = input;
    }

    /// Whether input after what was consumed is still to be read: not after QUIT/421,
    /// nor cleartext after STARTTLS.
    fn reads_on(&self) -> bool {
        !matches!(self.phase, Phase::Closed) && !matches!(self.wait, Wait::Tls)
    }

    /// Runs `input` through the current phase until it is used up, the session blocks,
    /// or it closes; returns how many bytes were used.
    fn consume(&mut self, input: &[u8], now: Instant) -> usize {
        if std::mem::take(&mut self.resumed) {
            self.ready_since = now;
        }
        let mut pos = 0;
        while pos < input.len() && matches!(self.wait, Wait::Nothing) {
            let rest = &input[pos..];
            match std::mem::replace(&mut self.phase, Phase::Command) {
                Phase::Closed => {
                    self.phase = Phase::Closed;
                    break;
                }
                Phase::Command => match memchr::memchr(b'\n', rest) {
                    Some(lf) => {
                        pos += lf + 1;
                        self.ready_since = now;
                        self.on_line(&rest[..=lf], None, now);
                        self.start_transfer(now);
                    }
                    None => {
                        if rest.len() > self.config.max_line_length {
                            pos = input.len();
                            self.line_too_long();
                        }
                        break;
                    }
                },
                Phase::AuthResponse(step) => match memchr::memchr(b'\n', rest) {
                    Some(lf) => {
                        pos += lf + 1;
                        self.ready_since = now;
                        self.on_line(&rest[..=lf], Some(step), now);
                    }
                    None => {
                        if rest.len() > self.config.max_line_length {
                            pos = input.len();
                            self.line_too_long();
                        } else {
                            self.phase = Phase::AuthResponse(step);
                        }
                        break;
                    }
                },
                Phase::DiscardLine => match memchr::memchr(b'\n', rest) {
                    Some(lf) => {
                        pos += lf + 1;
                        self.ready_since = now;
                    }
                    None => {
                        pos = input.len();
                        self.phase = Phase::DiscardLine;
                    }
                },
                Phase::Data(mut reader) => {
                    let (used, finished) = reader.consume(rest, &mut self.txn.message);
                    pos += used;
                    self.count_transfer(used, finished, now);
                    if finished {
                        self.end_of_message();
                    } else {
                        self.phase = Phase::Data(reader);
                    }
                }
                Phase::Bdat(mut chunk) => {
                    let used = chunk.consume(rest, &mut self.txn.message);
                    pos += used;
                    let complete = chunk.is_complete();
                    self.count_transfer(used, complete, now);
                    if complete {
                        self.end_of_chunk(chunk);
                    } else {
                        self.phase = Phase::Bdat(chunk);
                    }
                }
            }
        }
        pos
    }

    /// A command just moved the session into DATA or BDAT: the transfer's clock starts.
    fn start_transfer(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Data(_) | Phase::Bdat(_)) && self.transfer.is_none() {
            self.transfer = Some((now, 0));
        }
    }

    /// `used` more bytes of the transfer arrived; at its end the command clock restarts.
    fn count_transfer(&mut self, used: usize, finished: bool, now: Instant) {
        if finished {
            self.transfer = None;
            self.ready_since = now;
        } else if let Some((_, received)) = &mut self.transfer {
            *received += used as u64;
        }
    }

    /// A command or AUTH line grew past the bound without LF: answer now (bounded
    /// memory) and drop the rest of the line.
    fn line_too_long(&mut self) {
        self.phase = Phase::DiscardLine;
        self.send_error(500, "5.5.6 Error: line too long");
    }

    /// One complete line (LF included) in command or AUTH phase.
    fn on_line(&mut self, line: &[u8], auth_step: Option<AuthStep>, now: Instant) {
        if line.len() > self.config.max_line_length {
            return self.send_error(500, "5.5.6 Error: line too long");
        }
        let Some(content) = line.strip_suffix(b"\r\n") else {
            // RFC 5321 2.3.8: only CRLF ends a line; a bare LF is where SMTP smuggling
            // starts. Nothing before it runs, and nothing after it may run as a command
            // of its own: the session ends (spec 3.2; Postfix's
            // smtpd_forbid_bare_newline says 521 and disconnects too).
            let text = format!("5.5.2 {} Error: bare <LF> received", self.config.hostname);
            self.send_reply(521, &text);
            return self.close();
        };
        if memchr::memchr(b'\r', content).is_some() {
            return self.send_error(500, "5.5.2 Error: bare <CR> received");
        }
        if memchr::memchr(0, content).is_some() {
            return self.send_error(500, "5.5.2 Error: NUL byte in command");
        }
        if let Some(step) = auth_step {
            return self.on_auth_response(step, content);
        }
        let Ok(text) = std::str::from_utf8(content) else {
            return self.send_error(500, "5.5.2 Error: command is not valid UTF-8");
        };
        self.on_command(text, line, now);
    }
}

impl Engine for ServerSession {
    type Request = Request;
    type Answer = Answer;
    type Event = crate::server::request::ServerEvent;

    /// Input: bytes received from the peer, in any chunking.
    ///
    /// Processes as much as possible; while the session waits for an answer, the clock
    /// or the TLS handshake, bytes are only buffered (bounded by
    /// [`ServerConfig::max_pending_input`], beyond which the session says `421`).
    fn feed(&mut self, bytes: &[u8], now: Instant) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        // No deadline moves here: a byte buys no time (only a complete line or the
        // bytes of a transfer do, in `process`).
        match self.wait {
            // Cleartext bytes after STARTTLS are an injection attempt or a broken
            // client; they must never be read as commands of the TLS session.
            Wait::Tls => return,
            Wait::Nothing => {}
            Wait::Answer(..) | Wait::Delay { .. } => {
                if self.input.len() + bytes.len() > self.config.max_pending_input {
                    self.goodbye("4.7.0", "Error: too much pipelined input");
                    return;
                }
            }
        }
        if self.input.is_empty() && matches!(self.wait, Wait::Nothing) {
            // Nothing older waits: the bytes are read where they are, and only an
            // incomplete line is kept. A message's bytes thus go from the driver's read
            // buffer straight into the message (one copy, not two).
            let used = self.consume(bytes, now);
            if self.reads_on() {
                self.input.extend_from_slice(&bytes[used..]);
            }
            return;
        }
        self.input.extend_from_slice(bytes);
        self.process(now);
    }

    /// Input: the embedder's answer to request `id`. It goes to the continuation of the
    /// command that asked (`command/auth.rs`, `rcpt.rs`, `deliver.rs`), which replies;
    /// then the session reads on in what the peer pipelined meanwhile, unless the answer
    /// left it waiting again (a failed AUTH's delay: `handle_timeout` reads on then).
    fn answer(&mut self, id: RequestId, answer: Answer, now: Instant) -> Result<(), AnswerError> {
        match answer {
            Answer::Auth(answer) => self.on_auth_answer(id, answer, now)?,
            Answer::Recipient(answer) => self.on_recipient_answer(id, answer)?,
            Answer::Delivery(answer) => self.on_delivery_answer(id, answer)?,
        }
        if self.shutting_down && !matches!(self.phase, Phase::Closed) {
            // The outcome went out above; pipelined commands are not read any more.
            self.goodbye("4.3.2", "Service shutting down");
        } else if matches!(self.wait, Wait::Nothing) {
            self.process(now);
        }
        Ok(())
    }

    /// Input: the TLS handshake asked for by `Output::StartTls` completed. The session
    /// starts over (RFC 3207): the client must send EHLO again.
    fn tls_started(&mut self, now: Instant) {
        if !matches!(self.wait, Wait::Tls) {
            return;
        }
        self.wait = Wait::Nothing;
        self.tls = true;
        self.hello = None;
        self.reset_transaction();
        self.ready_since = now;
    }

    /// Input: the clock reached [`ServerSession::poll_timeout`]. Releases a delayed
    /// reply, or closes with `421 4.4.2` a session past a deadline: the command timeout
    /// (a command line must be complete within it of the previous reply), the login
    /// timeout (submission, from the greeting), the session timeout (MX, between
    /// transfers), or a transfer's time (the head start plus its bytes at the minimum
    /// rate).
    fn handle_timeout(&mut self, now: Instant) {
        match self.wait {
            Wait::Delay { until, .. } if now >= until => {
                let Wait::Delay {
                    reply, then_close, ..
                } = std::mem::replace(&mut self.wait, Wait::Nothing)
                else {
                    return;
                };
                self.send(&reply);
                if then_close {
                    self.goodbye("4.7.0", "Error: too many failed authentication attempts");
                    return;
                }
                // The peer was not silent; it was us who waited.
                self.ready_since = now;
                self.process(now);
            }
            Wait::Nothing | Wait::Tls
                if now >= self.deadline() && !matches!(self.phase, Phase::Closed) =>
            {
                self.goodbye("4.4.2", "Error: timeout exceeded");
            }
            _ => {}
        }
    }

    /// Input: the process is shutting down: `421 4.3.2`, then close. A request already
    /// out (a delivery being made durable) is answered first and its reply sent before
    /// the goodbye; a reply held back by a failed-login delay goes out at once.
    fn shutdown(&mut self, _now: Instant) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        match std::mem::replace(&mut self.wait, Wait::Nothing) {
            Wait::Answer(id, awaited) => {
                self.wait = Wait::Answer(id, awaited);
                self.shutting_down = true;
            }
            Wait::Delay { reply, .. } => {
                self.send(&reply);
                self.goodbye("4.3.2", "Service shutting down");
            }
            Wait::Nothing | Wait::Tls => self.goodbye("4.3.2", "Service shutting down"),
        }
    }

    /// Output: the next thing for the driver to do, `None` when there is nothing now.
    fn poll(&mut self) -> Option<Output> {
        self.flush_replies();
        self.outputs.pop_front()
    }

    /// Output: when [`ServerSession::handle_timeout`] must be called next; `None` while
    /// waiting for the embedder (not the peer's time) or after close.
    fn poll_timeout(&self) -> Option<Instant> {
        if matches!(self.phase, Phase::Closed) {
            return None;
        }
        match self.wait {
            Wait::Delay { until, .. } => Some(until),
            Wait::Answer(..) => None,
            Wait::Nothing | Wait::Tls => Some(self.deadline()),
        }
    }

    /// Whether the driver should read more from the peer now. False while the session
    /// waits (answer, delay, handshake) or after close: reading on would only buffer.
    fn wants_input(&self) -> bool {
        matches!(self.wait, Wait::Nothing) && !matches!(self.phase, Phase::Closed)
    }

    /// Whether the session has emitted [`Output::Close`].
    fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Replies are small: a peer that does not take them is past its deadline, not slow.
    fn send_deadline(&self) -> Option<Instant> {
        self.poll_timeout()
    }
}
