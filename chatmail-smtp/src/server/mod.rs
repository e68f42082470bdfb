//! The SMTP server session: one value per connection, for submission, MX or LMTP.
//!
//! # Method kinds
//!
//! [`ServerSession`] keeps the one contract of every engine,
//! [`chatmail_core::engine::Engine`]: inputs `feed`, `answer` (one [`Answer`] per
//! [`Request`]), `tls_started`, `handle_timeout`, `shutdown` (the session says its own
//! `421`); outputs `poll` and `poll_timeout`. Every input takes `now`: the session never
//! reads a clock. Getters of its own: [`ServerSession::auth_user`],
//! [`ServerSession::is_tls`], [`ServerSession::buffered_len`].
//!
//! One file per command sits next to this one (`ehlo.rs`, `auth.rs`, `mail.rs`,
//! `rcpt.rs`, `data.rs`, `bdat.rs`, ...); `deliver.rs` is the end of a message: size,
//! line endings, the policy verdict and the `Deliver` request.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatmail_core::budget::{MemoryBudget, Reservation};
use chatmail_core::config::{transfer_time, Timeouts};
use chatmail_core::engine;
pub use chatmail_core::engine::{AnswerError, Engine, RequestId};
use chatmail_policy::{Direction, Policy, Reply};

use crate::reply::{reply, write_line};

mod auth;
mod bdat;
mod data;
mod deliver;
mod ehlo;
mod expn;
mod help;
mod mail;
mod noop;
mod quit;
mod rcpt;
mod rset;
mod starttls;
mod vrfy;

pub use deliver::{Delivery, DeliveryAnswer, DeliveryFailure};

/// Which service a session provides; decides the extensions offered, whether AUTH is
/// required, which recipients are acceptable and which policy direction applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Ports 587 (STARTTLS) and 465 (implicit TLS): authenticated users send mail to any
    /// recipient; the outgoing policy applies (spec 3.2).
    Submission,
    /// Port 25: other servers deliver mail for the relay's own domain; no AUTH; the
    /// incoming policy applies (spec 3.3).
    Mx,
    /// LMTP (RFC 2033) for embedders behind another MTA: `LHLO`, recipients of the
    /// relay's domain, one reply per recipient after the message; incoming policy.
    Lmtp,
}

impl Role {
    /// The policy direction of messages received in this role.
    pub fn direction(self) -> Direction {
        match self {
            Role::Submission => Direction::Outgoing,
            Role::Mx | Role::Lmtp => Direction::Incoming,
        }
    }
}

/// Limits and identity shared by all sessions of one listener (keep it in an `Arc`).
///
/// Build it with [`ServerConfig::new`], then adjust fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The service of the listener.
    pub role: Role,
    /// Host name in the greeting, the EHLO reply and `421` goodbyes.
    pub hostname: String,
    /// Whether the driver can upgrade the connection (it has a certificate); decides
    /// whether `STARTTLS` is offered. Not used by LMTP.
    pub starttls_available: bool,
    /// Whether MAIL (and AUTH) need TLS first, as the reference configures ports 25 and
    /// 587: `530 5.7.0 Must issue a STARTTLS command first`. AUTH needs TLS always.
    pub require_tls: bool,
    /// Recipients per message (reference: 1000); more get `452 4.5.3`.
    pub max_recipients: usize,
    /// Longest command or AUTH line, CRLF included; longer lines get `500 5.5.6`.
    pub max_line_length: usize,
    /// Error replies after which the session says `421` and closes.
    pub max_errors: u32,
    /// Failed AUTH attempts after which the session says `421` and closes.
    pub max_auth_failures: u32,
    /// Delay before the n-th failed AUTH reply: n times this.
    pub auth_failure_delay: Duration,
    /// Time from a reply to the end of the next command line; past it the session says
    /// `421 4.4.2` and closes. Bytes do not restart it, a complete line does. RFC 5321
    /// 4.5.3.2.7 asks for at least 5 minutes.
    pub command_timeout: Duration,
    /// Time from the greeting to a successful AUTH, absolute (submission); `None`: no
    /// such bound (MX and LMTP have no login).
    pub login_timeout: Option<Duration>,
    /// Time for the whole session (MX), checked between transfers: a message being
    /// received at [`ServerConfig::min_transfer_rate`] is finished first. `None`: none.
    pub session_timeout: Option<Duration>,
    /// Minimum average rate of a DATA or BDAT transfer in bytes per second: a message
    /// (a chunk) of n bytes must be in within [`ServerConfig::command_timeout`] plus n at
    /// this rate of its start. 0: only the command timeout.
    pub min_transfer_rate: u32,
    /// The bound on message bytes held by all sessions together; a message that would
    /// pass it is refused with `452 4.3.1` (after its end, its bytes dropped on the way).
    /// `None`: each session is bounded by the message size only.
    pub message_budget: Option<Arc<MemoryBudget>>,
    /// Unprocessed input kept while the session waits for the embedder or the clock;
    /// a driver that honours [`ServerSession::wants_input`] never gets near it.
    pub max_pending_input: usize,
}

impl ServerConfig {
    /// A configuration with the reference's limits: TLS required, 1000 recipients,
    /// 2048-byte lines, 20 errors, 3 AUTH failures (1 s, 2 s, 3 s delays), 1 MiB pending
    /// input, `STARTTLS` offered; the deadlines of [`Timeouts::default`] (5 minutes per
    /// command, 60 s to log in on submission, 10 minutes per MX session, 500 bytes/s);
    /// no shared message budget.
    pub fn new(role: Role, hostname: impl Into<String>) -> ServerConfig {
        ServerConfig {
            role,
            hostname: hostname.into(),
            starttls_available: true,
            require_tls: true,
            max_recipients: 1000,
            max_line_length: 2048,
            max_errors: 20,
            max_auth_failures: 3,
            auth_failure_delay: Duration::from_secs(1),
            command_timeout: Duration::ZERO,
            login_timeout: None,
            session_timeout: None,
            min_transfer_rate: 0,
            message_budget: None,
            max_pending_input: 1 << 20,
        }
        .with_timeouts(&Timeouts::default())
    }

    /// Takes the deadlines of `timeouts` that apply to this role: the command timeout
    /// and minimum rate always, the login timeout on submission, the session timeout on
    /// MX.
    pub fn with_timeouts(mut self, timeouts: &Timeouts) -> ServerConfig {
        self.command_timeout = timeouts.command;
        self.min_transfer_rate = timeouts.min_transfer_rate;
        self.login_timeout = (self.role == Role::Submission).then_some(timeouts.login);
        self.session_timeout = (self.role == Role::Mx).then_some(timeouts.smtp_session);
        self
    }
}

/// The state of the transport when the session starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP (ports 25 and 587 before `STARTTLS`, LMTP).
    Cleartext,
    /// TLS from the first byte (port 465).
    Tls,
}

/// A decision the session needs from the embedder, emitted as
/// [`Output::Request`](engine::Output::Request) with its id. The session processes no
/// further input until the matching [`Answer`] arrives.
#[derive(Debug)]
pub enum Request {
    /// Check a login, creating the account on first login (spec 2.2). Answer with
    /// [`Answer::Auth`].
    Authenticate {
        /// The SASL authentication identity as sent.
        login: String,
        /// The cleartext password (the transport is TLS).
        password: String,
    },
    /// May this local recipient receive mail (MX and LMTP), and does it accept cleartext
    /// (no `enforceE2EEincoming` marker)? Answer with [`Answer::Recipient`].
    Recipient {
        /// The recipient address, already known to be in the relay's domain.
        address: String,
    },
    /// The policy accepted a message: make it durable for every recipient (local
    /// mailboxes, outbound queue), then answer with [`Answer::Delivery`]. The `250` goes
    /// out only then.
    Deliver(Delivery),
}

/// The embedder's answer to a [`Request`], handed to `answer` with the request's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// To [`Request::Authenticate`].
    Auth(AuthAnswer),
    /// To [`Request::Recipient`].
    Recipient(RecipientAnswer),
    /// To [`Request::Deliver`].
    Delivery(DeliveryAnswer),
}

/// What the driver does next: the engine contract's output with this engine's requests.
pub type Output = engine::Output<Request>;

/// The embedder's answer to [`Request::Authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthAnswer {
    /// Logged in as `user` (the canonical address, e.g. lower-cased).
    Success {
        /// The account the session is now authenticated as.
        user: String,
    },
    /// Wrong password, unknown user, or creation refused: `535 5.7.8` after a delay.
    Invalid,
    /// Like [`AuthAnswer::Invalid`], and the embedder's failed-login limits (shared by
    /// all sessions) ask that the `535` not go out before this instant. The session holds
    /// it with its timer (`poll_timeout`); nothing blocks meanwhile.
    InvalidUntil(Instant),
    /// The account store is unavailable: `454 4.7.0`, not counted as a failure.
    TemporaryFailure,
}

/// The embedder's answer to [`Request::Recipient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientAnswer {
    /// Take mail for this recipient.
    Accept {
        /// The recipient lacks the `enforceE2EEincoming` marker, so incoming cleartext
        /// may be delivered to it (spec 3.3, step 5).
        accepts_cleartext: bool,
    },
    /// Refuse this recipient for this reason (the session words the reply).
    Refuse(DeliveryFailure),
}

/// Which greeting command the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hello {
    Helo,
    Ehlo,
    Lhlo,
}

/// Where the byte stream from the peer currently goes.
#[derive(Debug)]
enum Phase {
    /// Command lines.
    Command,
    /// A line exceeded the bound and was answered; drop bytes up to its LF.
    DiscardLine,
    /// A SASL exchange is waiting for the client's next base64 line.
    AuthResponse(auth::AuthStep),
    /// Message text after `354`, up to `<CRLF>.<CRLF>`.
    Data(data::DataReader),
    /// The octets of a `BDAT` chunk.
    Bdat(bdat::BdatChunk),
    /// After `Output::Close`: everything is ignored.
    Closed,
}

/// What the session is blocked on; input is only buffered meanwhile.
#[derive(Debug)]
enum Wait {
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
enum Awaited {
    Auth,
    Recipient(String),
    /// The number of recipients (for LMTP's per-recipient replies).
    Delivery(Vec<String>),
}

/// A recipient accepted in the current transaction.
#[derive(Debug)]
struct Recipient {
    address: String,
    accepts_cleartext: bool,
    /// The embedder confirmed the mailbox at RCPT (MX, LMTP).
    confirmed: bool,
}

/// The mail transaction between MAIL and the end of the message (or RSET).
#[derive(Debug, Default)]
struct Transaction {
    /// The reverse path after a successful MAIL (`""` for `<>`).
    mail_from: Option<String>,
    /// The message size MAIL announced (`SIZE=`), 0 if none.
    declared_size: u64,
    /// Submission: why the sender may not send (identity or rate); every RCPT gets it.
    sender_failure: Option<Reply>,
    recipients: Vec<Recipient>,
    /// [`ServerSession::recipient_key`] of every accepted recipient: a repeated RCPT
    /// (SMTP, submission) is acknowledged but not added, so one message is delivered
    /// once per mailbox.
    recipient_keys: HashSet<String>,
    /// The message as received (unstuffed), bounded by the size limit.
    message: data::MessageSink,
    /// A BDAT chunk was accepted; DATA is no longer allowed in this transaction.
    bdat_started: bool,
}

/// One SMTP, submission or LMTP connection, without any I/O.
///
/// See the [crate docs](crate) for the drive loop and the [module docs](self) for the
/// method kinds.
pub struct ServerSession {
    config: Arc<ServerConfig>,
    policy: Arc<Policy>,
    tls: bool,
    hello: Option<Hello>,
    auth_user: Option<String>,
    auth_failures: u32,
    errors: u32,
    txn: Transaction,
    phase: Phase,
    wait: Wait,
    /// Bytes fed but not yet processed.
    input: Vec<u8>,
    /// Replies not yet handed out: consecutive replies leave as one `Output::Send`.
    out: Vec<u8>,
    outputs: VecDeque<Output>,
    next_request: u64,
    /// When the session last became ready for a command (greeting, a reply, the end of
    /// a wait): the command timeout counts from here.
    ready_since: Instant,
    /// A wait for the embedder or a delay ended; the next `process(now)` restarts the
    /// command clock (the answer methods of the command files need not know).
    resumed: bool,
    /// Greeting plus the login timeout (submission, until AUTH succeeds).
    login_deadline: Option<Instant>,
    /// Greeting plus the session timeout (MX).
    session_deadline: Option<Instant>,
    /// The DATA or BDAT transfer being received: its start and the bytes so far.
    transfer: Option<(Instant, u64)>,
    /// The budget share of a message handed to the embedder, until it answers.
    held: Reservation,
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

    // ----- internals shared by the command files -----

    /// The peer's deadline while the session waits for it (see `handle_timeout`).
    fn deadline(&self) -> Instant {
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

    fn max_message_size(&self) -> u64 {
        self.policy.config().max_message_size
    }

    fn new_request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// Emits a request and blocks input processing until its answer.
    fn request(&mut self, request: Request, awaited: Awaited) {
        let id = self.new_request_id();
        self.wait = Wait::Answer(id, awaited);
        self.push_output(Output::Request(id, request));
    }

    /// Queues a non-`Send` output after the replies queued before it.
    fn push_output(&mut self, output: Output) {
        self.flush_replies();
        self.outputs.push_back(output);
    }

    /// Hands the coalesced replies out as one `Send`.
    fn flush_replies(&mut self) {
        if !self.out.is_empty() {
            let bytes = Bytes::from(std::mem::take(&mut self.out));
            self.outputs.push_back(Output::Send(bytes));
        }
    }

    /// Ends the wait for request `id` if `extract` recognises the awaited kind (it
    /// hands back what it does not recognise; the wait then goes on).
    fn take_awaited<T>(
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
    fn send_reply(&mut self, code: u16, text: &str) {
        write_line(&mut self.out, code, false, text);
    }

    fn send(&mut self, reply: &Reply) {
        self.send_reply(reply.code, &reply.text);
    }

    /// Queues a reply that reports a client error and counts it against the budget;
    /// the budget exhausted, the session says `421` and closes.
    fn send_error(&mut self, code: u16, text: &str) {
        self.send_reply(code, text);
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            self.goodbye("4.7.0", "Error: too many errors");
        }
    }

    /// `421 <host> <text>` then close: the peer always gets a goodbye.
    fn goodbye(&mut self, enhanced: &str, text: &str) {
        let line = format!("{enhanced} {} {text}", self.config.hostname);
        self.send_reply(421, &line);
        self.close();
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.wait = Wait::Nothing;
        self.input = Vec::new();
        self.txn = Transaction::default();
        self.held.release();
        self.push_output(Output::Close);
    }

    fn reset_transaction(&mut self) {
        let size = self.max_message_size();
        let budget = self.config.message_budget.clone();
        self.txn = Transaction {
            message: data::MessageSink::new(size, Reservation::new(budget)),
            ..Transaction::default()
        };
    }

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
    fn on_line(&mut self, line: &[u8], auth_step: Option<auth::AuthStep>, now: Instant) {
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

    /// Dispatches one command line to the file that handles it.
    fn on_command(&mut self, text: &str, line: &[u8], now: Instant) {
        use smtp_proto::{Error as ParseError, Request as Command};
        let parsed = Command::parse(&mut line.iter());
        match parsed {
            Ok(Command::Ehlo { host }) => self.on_ehlo(&host),
            Ok(Command::Helo { host }) => self.on_helo(&host),
            Ok(Command::Lhlo { host }) => self.on_lhlo(&host),
            Ok(Command::StartTls) => self.on_starttls(),
            Ok(Command::Auth {
                mechanism,
                initial_response,
            }) => self.on_auth(mechanism, &initial_response),
            Ok(Command::Mail { from }) => self.on_mail(from, now),
            Ok(Command::Rcpt { to }) => self.on_rcpt(to, text),
            Ok(Command::Data) => self.on_data(),
            Ok(Command::Bdat { .. }) if !bdat::valid_syntax(text) => {
                // The grammar saturates or ignores what it does not expect; a size
                // that is not exactly a number, or anything after LAST, is refused
                // before any octet is taken as chunk data.
                self.send_error(501, "5.5.4 Syntax: BDAT chunk-size [LAST]")
            }
            Ok(Command::Bdat {
                chunk_size,
                is_last,
            }) => self.on_bdat(chunk_size as u64, is_last),
            Ok(Command::Rset) => self.on_rset(),
            Ok(Command::Noop { .. }) => self.on_noop(),
            Ok(Command::Vrfy { .. }) => self.on_vrfy(),
            Ok(Command::Expn { .. }) => self.on_expn(),
            Ok(Command::Help { .. }) => self.on_help(),
            Ok(Command::Quit) => self.on_quit(),
            Ok(Command::Etrn { .. } | Command::Atrn { .. } | Command::Burl { .. }) => {
                self.send_error(502, "5.5.1 Error: command not implemented")
            }
            Err(ParseError::UnknownCommand) => {
                self.send_error(500, "5.5.2 Error: command not recognized")
            }
            Err(ParseError::InvalidSenderAddress) => {
                self.send_error(501, "5.1.7 Bad sender address syntax")
            }
            Err(ParseError::InvalidRecipientAddress) => {
                self.send_error(501, "5.1.3 Bad recipient address syntax")
            }
            Err(ParseError::UnsupportedParameter { param }) => {
                let text = format!("5.5.4 Unsupported parameter {}", printable(&param));
                self.send_error(555, &text)
            }
            Err(ParseError::InvalidParameter { param }) => {
                let text = format!("5.5.4 Invalid parameter {param}");
                self.send_error(501, &text)
            }
            Err(ParseError::SyntaxError { syntax }) => {
                if syntax.starts_with("AUTH") && text.trim_end().contains(' ') {
                    // The grammar knows the mechanism names; one we do not offer.
                    self.send_error(504, "5.5.4 Unrecognized authentication type")
                } else {
                    self.send_error(501, &format!("5.5.4 Syntax: {syntax}"))
                }
            }
            Err(_) => self.send_error(500, "5.5.2 Error: syntax error"),
        }
    }
}

impl Engine for ServerSession {
    type Request = Request;
    type Answer = Answer;
    type Event = std::convert::Infallible;

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

    fn answer(&mut self, id: RequestId, answer: Answer, now: Instant) -> Result<(), AnswerError> {
        match answer {
            Answer::Auth(answer) => self.on_auth_answer(id, answer, now),
            Answer::Recipient(answer) => self.on_recipient_answer(id, answer, now),
            Answer::Delivery(answer) => self.on_delivery_answer(id, answer, now),
        }
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

    /// Output: the next thing for the driver to do, `None` when there is nothing now.
    /// Input: the process is shutting down: `421 4.3.2`, then close.
    fn shutdown(&mut self, _now: Instant) {
        if !matches!(self.phase, Phase::Closed) {
            self.goodbye("4.3.2", "Service shutting down");
        }
    }

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

/// Shortens peer-chosen text quoted in a reply.
fn printable(text: &str) -> Cow<'_, str> {
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
fn domain_of(address: &str) -> Option<&str> {
    address.rsplit_once('@').map(|(_, domain)| domain)
}

/// `Ok` reply used by several commands.
fn ok() -> Reply {
    reply(250, "2.0.0 Ok")
}
