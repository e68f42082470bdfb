//! The session's state and what every command shares: replies and their coalescing,
//! requests to the embedder and the wait for their answers, the mail transaction and
//! its reset, the deadlines, the goodbye.
//!
//! The [`Engine`](chatmail_core::engine::Engine) implementation (`engine.rs`) reads
//! input into command lines and message text; `command/mod.rs` dispatches a line to its
//! handler, one file per command under `command/`. This file names no command's
//! handlers and no engine input, so that the files form no circle.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chatmail_core::budget::Reservation;
use chatmail_core::config::transfer_time;
use chatmail_core::engine::{AnswerError, RequestId};
use chatmail_policy::{Policy, Reply};

use super::config::{Role, ServerConfig, Transport};
use super::message::{BdatChunk, DataReader, MessageSink};
use super::request::{Output, Request};
use crate::reply::{reply, write_line};

/// Which greeting command the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hello {
    Helo,
    Ehlo,
    Lhlo,
}

/// What the next client line of a SASL exchange carries.
#[derive(Debug)]
pub(super) enum AuthStep {
    /// PLAIN without initial response: `authzid NUL authcid NUL password`.
    Plain,
    /// LOGIN, first prompt: the user name.
    LoginUser,
    /// LOGIN, second prompt: the password for this user.
    LoginPassword(String),
}

/// Where the byte stream from the peer currently goes.
#[derive(Debug)]
pub(super) enum Phase {
    /// Command lines.
    Command,
    /// A line exceeded the bound and was answered; drop bytes up to its LF.
    DiscardLine,
    /// A SASL exchange is waiting for the client's next base64 line.
    AuthResponse(AuthStep),
    /// Message text after `354`, up to `<CRLF>.<CRLF>`.
    Data(DataReader),
    /// The octets of a `BDAT` chunk.
    Bdat(BdatChunk),
    /// After `Output::Close`: everything is ignored.
    Closed,
}

/// What the session is blocked on; input is only buffered meanwhile.
#[derive(Debug)]
pub(super) enum Wait {
    Nothing,
    Answer(RequestId, Awaited),
    /// A reply held back until `until` (failed AUTH slows guessing).
    Delay {
        until: Instant,
        reply: Reply,
        then_close: bool,
    },
    /// `Output::StartTls` was emitted; waiting for `tls_started`.
    Tls,
}

/// The kind of answer expected for an outstanding request.
#[derive(Debug)]
pub(super) enum Awaited {
    Auth,
    Recipient(String),
    /// The number of recipients (for LMTP's per-recipient replies).
    Delivery(Vec<String>),
}

/// A recipient accepted in the current transaction.
#[derive(Debug)]
pub(super) struct Recipient {
    pub(super) address: String,
    pub(super) accepts_cleartext: bool,
    /// The embedder confirmed the mailbox at RCPT (MX, LMTP).
    pub(super) confirmed: bool,
}

/// The mail transaction between MAIL and the end of the message (or RSET).
#[derive(Debug, Default)]
pub(super) struct Transaction {
    /// The reverse path after a successful MAIL (`""` for `<>`).
    pub(super) mail_from: Option<String>,
    /// The message size MAIL announced (`SIZE=`), 0 if none.
    pub(super) declared_size: u64,
    /// Submission: why the sender may not send (identity or rate); every RCPT gets it.
    pub(super) sender_failure: Option<Reply>,
    pub(super) recipients: Vec<Recipient>,
    /// [`ServerSession::recipient_key`] of every accepted recipient: a repeated RCPT
    /// (SMTP, submission) is acknowledged but not added, so one message is delivered
    /// once per mailbox.
    pub(super) recipient_keys: HashSet<String>,
    /// The message as received (unstuffed), bounded by the size limit.
    pub(super) message: MessageSink,
    /// A BDAT chunk was accepted; DATA is no longer allowed in this transaction.
    pub(super) bdat_started: bool,
}

/// One SMTP, submission or LMTP connection, without any I/O.
///
/// See the [crate docs](crate) for the drive loop and the [module docs](crate::server)
/// for the method kinds.
pub struct ServerSession {
    pub(super) config: Arc<ServerConfig>,
    pub(super) policy: Arc<Policy>,
    pub(super) tls: bool,
    pub(super) hello: Option<Hello>,
    pub(super) auth_user: Option<String>,
    pub(super) auth_failures: u32,
    pub(super) errors: u32,
    pub(super) txn: Transaction,
    pub(super) phase: Phase,
    pub(super) wait: Wait,
    /// Bytes fed but not yet processed.
    pub(super) input: Vec<u8>,
    /// Replies not yet handed out: consecutive replies leave as one `Output::Send`.
    pub(super) out: Vec<u8>,
    pub(super) outputs: VecDeque<Output>,
    pub(super) next_request: u64,
    /// When the session last became ready for a command (greeting, a reply, the end of
    /// a wait): the command timeout counts from here.
    pub(super) ready_since: Instant,
    /// A wait for the embedder or a delay ended; the next `process(now)` restarts the
    /// command clock (the answer methods of the command files need not know).
    pub(super) resumed: bool,
    /// Greeting plus the login timeout (submission, until AUTH succeeds).
    pub(super) login_deadline: Option<Instant>,
    /// Greeting plus the session timeout (MX).
    pub(super) session_deadline: Option<Instant>,
    /// The DATA or BDAT transfer being received: its start and the bytes so far.
    pub(super) transfer: Option<(Instant, u64)>,
    /// The budget share of a message handed to the embedder, until it answers.
    pub(super) held: Reservation,
    /// `shutdown` came while a request was out: the goodbye follows its answer.
    pub(super) shutting_down: bool,
}

impl std::fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSession")
            .field("role", &self.config.role)
            .field("tls", &self.tls)
            .field("hello", &self.hello)
            .field("auth_user", &self.auth_user)
            .field("phase", &self.phase)
            .field("wait", &self.wait)
            .field("recipients", &self.txn.recipients.len())
            .finish_non_exhaustive()
    }
}

impl ServerSession {
    /// Starts a session: the `220` greeting is the first output.
    pub fn new(
        config: Arc<ServerConfig>,
        policy: Arc<Policy>,
        transport: Transport,
        now: Instant,
    ) -> ServerSession {
        let login_deadline = config.login_timeout.map(|t| now + t);
        let session_deadline = config.session_timeout.map(|t| now + t);
        let mut session = ServerSession {
            tls: transport == Transport::Tls,
            hello: None,
            auth_user: None,
            auth_failures: 0,
            errors: 0,
            txn: Transaction::default(),
            phase: Phase::Command,
            wait: Wait::Nothing,
            input: Vec::new(),
            out: Vec::new(),
            outputs: VecDeque::new(),
            next_request: 0,
            ready_since: now,
            resumed: false,
            login_deadline,
            session_deadline,
            transfer: None,
            held: Reservation::default(),
            shutting_down: false,
            config,
            policy,
        };
        session.reset_transaction();
        let service = if session.config.role == Role::Lmtp {
            "LMTP"
        } else {
            "ESMTP"
        };
        let greeting = format!("{} {service} chatmail", session.config.hostname);
        session.send_reply(220, &greeting);
        session
    }

    // ----- getters -----

    /// Bytes fed but not processed yet: never more than a line while the session reads
    /// commands, at most [`ServerConfig::max_pending_input`] while it waits.
    pub fn buffered_len(&self) -> usize {
        self.input.len()
    }

    /// The account the client authenticated as (submission).
    pub fn auth_user(&self) -> Option<&str> {
        self.auth_user.as_deref()
    }

    /// Whether the transport is TLS (implicit or after `STARTTLS`).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    // ----- internals shared by the engine and the command files -----

    /// The peer's deadline while the session waits for it (see `handle_timeout`).
    pub(super) fn deadline(&self) -> Instant {
        if let Some((start, received)) = self.transfer {
            let config = &self.config;
            return start
                + transfer_time(config.command_timeout, config.min_transfer_rate, received);
        }
        let mut deadline = self.ready_since + self.config.command_timeout;
        if self.auth_user.is_none() {
            deadline = self.login_deadline.map_or(deadline, |d| d.min(deadline));
        }
        self.session_deadline.map_or(deadline, |d| d.min(deadline))
    }

    pub(super) fn max_message_size(&self) -> u64 {
        self.policy.config().max_message_size
    }

    fn new_request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// Emits a request and blocks input processing until its answer.
    pub(super) fn request(&mut self, request: Request, awaited: Awaited) {
        let id = self.new_request_id();
        self.wait = Wait::Answer(id, awaited);
        self.push_output(Output::Request(id, request));
    }

    /// Queues a non-`Send` output after the replies queued before it.
    pub(super) fn push_output(&mut self, output: Output) {
        self.flush_replies();
        self.outputs.push_back(output);
    }

    /// Hands the coalesced replies out as one `Send`.
    pub(super) fn flush_replies(&mut self) {
        if !self.out.is_empty() {
            let bytes = Bytes::from(std::mem::take(&mut self.out));
            self.outputs.push_back(Output::Send(bytes));
        }
    }

    /// Ends the wait for request `id` if `extract` recognises the awaited kind (it
    /// hands back what it does not recognise; the wait then goes on).
    pub(super) fn take_awaited<T>(
        &mut self,
        id: RequestId,
        extract: impl FnOnce(Awaited) -> Result<T, Awaited>,
    ) -> Result<T, AnswerError> {
        match std::mem::replace(&mut self.wait, Wait::Nothing) {
            Wait::Answer(waiting, awaited) if waiting == id => match extract(awaited) {
                Ok(value) => {
                    self.resumed = true;
                    Ok(value)
                }
                Err(awaited) => {
                    self.wait = Wait::Answer(waiting, awaited);
                    Err(AnswerError::WrongKind(id))
                }
            },
            other => {
                self.wait = other;
                Err(AnswerError::NotWaiting(id))
            }
        }
    }

    /// Queues one single-line reply.
    pub(super) fn send_reply(&mut self, code: u16, text: &str) {
        write_line(&mut self.out, code, false, text);
    }

    pub(super) fn send(&mut self, reply: &Reply) {
        self.send_reply(reply.code, &reply.text);
    }

    /// Queues a reply that reports a client error and counts it against the budget;
    /// the budget exhausted, the session says `421` and closes.
    pub(super) fn send_error(&mut self, code: u16, text: &str) {
        self.send_reply(code, text);
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            self.goodbye("4.7.0", "Error: too many errors");
        }
    }

    /// `421 <host> <text>` then close: the peer always gets a goodbye.
    pub(super) fn goodbye(&mut self, enhanced: &str, text: &str) {
        let line = format!("{enhanced} {} {text}", self.config.hostname);
        self.send_reply(421, &line);
        self.close();
    }

    pub(super) fn close(&mut self) {
        self.phase = Phase::Closed;
        self.wait = Wait::Nothing;
        self.input = Vec::new();
        self.txn = Transaction::default();
        self.held.release();
        self.push_output(Output::Close);
    }

    pub(super) fn reset_transaction(&mut self) {
        let size = self.max_message_size();
        let budget = self.config.message_budget.clone();
        self.txn = Transaction {
            message: MessageSink::new(size, Reservation::new(budget)),
            ..Transaction::default()
        };
    }
}

/// Shortens peer-chosen text quoted in a reply.
pub(super) fn printable(text: &str) -> Cow<'_, str> {
    if text.len() <= 64 {
        Cow::Borrowed(text)
    } else {
        let mut end = 64;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Cow::Owned(format!("{}...", &text[..end]))
    }
}

/// The domain of an address (after the last `@`), if it has one.
pub(super) fn domain_of(address: &str) -> Option<&str> {
    address.rsplit_once('@').map(|(_, domain)| domain)
}

/// `Ok` reply used by several commands.
pub(super) fn ok() -> Reply {
    reply(250, "2.0.0 Ok")
}
