//! The SMTP client engine, for delivery to other servers (spec 3.4 SMTP fallback).
//!
//! One value per connection: greeting, `EHLO` (with `HELO` fallback), `STARTTLS`,
//! optional `AUTH` (PLAIN or LOGIN), then any number of messages, each sent as
//! pipelined `MAIL`/`RCPT`/`DATA` when the server offers PIPELINING (one command per
//! round trip otherwise), the message dot-stuffed, with per-recipient results. A reused
//! connection starts each further transaction with `RSET`.
//!
//! # Method kinds
//!
//! * **Inputs**: [`ClientSession::feed`] (bytes from the server),
//!   [`ClientSession::tls_started`], [`ClientSession::send_message`],
//!   [`ClientSession::quit`], [`ClientSession::handle_timeout`].
//! * **Outputs**: [`ClientSession::poll`], [`ClientSession::poll_timeout`].
//! * **Getters**: [`ClientSession::is_ready`], [`ClientSession::extensions`],
//!   [`ClientSession::is_closed`].

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use chatmail_core::engine::{self, AnswerError, Engine, RequestId};
use chatmail_policy::Reply;

mod reply;

use reply::{RawReply, ReplyReader};

/// How the client treats TLS on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// `STARTTLS` is mandatory; a server not offering it fails the connection (the
    /// reference's rule for delivery, spec 3.4).
    Required,
    /// The transport is TLS already (port 465 style).
    Implicit,
    /// No TLS (the reference's special case for some domains, and tests).
    Never,
}

/// A login for servers that require AUTH (e.g. a smarthost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// SASL authentication identity.
    pub login: String,
    /// Password, sent only over TLS.
    pub password: String,
}

/// Per-connection client settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The name sent in `EHLO`/`HELO` (the relay's domain).
    pub hello_name: String,
    /// TLS handling.
    pub tls: TlsMode,
    /// AUTH after EHLO (and TLS), when set.
    pub credentials: Option<Credentials>,
    /// Longest reply line accepted, CRLF included.
    pub max_reply_line: usize,
    /// Most lines in one multi-line reply.
    pub max_reply_lines: usize,
    /// Wait for the greeting and for replies to EHLO, STARTTLS, AUTH, RSET, MAIL, RCPT
    /// (RFC 5321 4.5.3.2: 5 minutes).
    pub command_timeout: Duration,
    /// Wait for the `354` to DATA (RFC 5321: 2 minutes).
    pub data_start_timeout: Duration,
    /// Wait for the reply after the final dot (RFC 5321: 10 minutes).
    pub data_end_timeout: Duration,
}

impl ClientConfig {
    /// Settings with RFC 5321 timeouts, mandatory STARTTLS and no AUTH.
    pub fn new(hello_name: impl Into<String>) -> ClientConfig {
        ClientConfig {
            hello_name: hello_name.into(),
            tls: TlsMode::Required,
            credentials: None,
            max_reply_line: 4096,
            max_reply_lines: 128,
            command_timeout: Duration::from_secs(5 * 60),
            data_start_timeout: Duration::from_secs(2 * 60),
            data_end_timeout: Duration::from_secs(10 * 60),
        }
    }
}

/// What the server offered in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Extensions {
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// STARTTLS (RFC 3207).
    pub starttls: bool,
    /// SIZE (RFC 1870), with its limit (0: none announced).
    pub size: Option<u64>,
    /// 8BITMIME (RFC 6152).
    pub eight_bit_mime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// CHUNKING (RFC 3030).
    pub chunking: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub enhanced_status_codes: bool,
    /// AUTH PLAIN offered.
    pub auth_plain: bool,
    /// AUTH LOGIN offered.
    pub auth_login: bool,
}

impl Extensions {
    fn parse(lines: &[String]) -> Extensions {
        let mut ext = Extensions::default();
        // The first line is the server's name.
        for line in lines.iter().skip(1) {
            let mut words = line.split([' ', '=']).filter(|w| !w.is_empty());
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => ext.pipelining = true,
                "STARTTLS" => ext.starttls = true,
                "SIZE" => ext.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => ext.eight_bit_mime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "CHUNKING" => ext.chunking = true,
                "ENHANCEDSTATUSCODES" => ext.enhanced_status_codes = true,
                "AUTH" => {
                    for mechanism in words {
                        match mechanism.to_ascii_uppercase().as_str() {
                            "PLAIN" => ext.auth_plain = true,
                            "LOGIN" => ext.auth_login = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        ext
    }
}

/// The envelope of one message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEnvelope {
    /// Reverse path; `""` sends `MAIL FROM:<>`.
    pub mail_from: String,
    /// Forward paths, at least one.
    pub recipients: Vec<String>,
}

/// The server's replies for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionOutcome {
    /// Reply to `MAIL FROM`.
    pub mail_from: Reply,
    /// Reply to each `RCPT TO`, in envelope order.
    pub recipients: Vec<Reply>,
    /// Reply to `DATA` if it failed, else the reply after the final dot; `None` when
    /// DATA was not sent (no recipient accepted, without pipelining).
    pub data: Option<Reply>,
}

impl TransactionOutcome {
    /// The result for recipient `index`: its RCPT refusal, the message's refusal, or
    /// `Ok` when the server took the message for it.
    pub fn recipient_result(&self, index: usize) -> Result<(), &Reply> {
        let rcpt = self.recipients.get(index).unwrap_or(&self.mail_from);
        if !is_positive(rcpt.code) {
            return Err(rcpt);
        }
        if !is_positive(self.mail_from.code) {
            return Err(&self.mail_from);
        }
        match &self.data {
            Some(data) if data.code / 100 == 2 => Ok(()),
            Some(data) => Err(data),
            None => Err(rcpt),
        }
    }
}

/// Why a connection failed; after it the session closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The greeting was not `220`.
    #[error("server refused the session: {0}")]
    Greeting(Reply),
    /// Both EHLO and HELO were refused.
    #[error("EHLO/HELO refused: {0}")]
    Hello(Reply),
    /// TLS is required but the server does not offer STARTTLS.
    #[error("STARTTLS not offered")]
    TlsNotOffered,
    /// STARTTLS was refused.
    #[error("STARTTLS refused: {0}")]
    StartTls(Reply),
    /// Credentials are set but no supported mechanism is offered (or no TLS).
    #[error("no usable AUTH mechanism offered")]
    AuthNotOffered,
    /// Authentication failed.
    #[error("authentication failed: {0}")]
    Auth(Reply),
    /// The server said goodbye (`421`) or replied out of turn.
    #[error("server closed the session: {0}")]
    ServerClosed(Reply),
    /// The server's bytes are not SMTP replies (malformed, too long).
    #[error("malformed reply from server: {0}")]
    MalformedReply(&'static str),
    /// No reply within the RFC 5321 timeout.
    #[error("timeout waiting for the server")]
    Timeout,
}

/// [`ClientSession::send_message`] called at the wrong time or with a bad envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The session is not ready (still greeting, busy with a message, or closed).
    #[error("the session is not ready for a message")]
    NotReady,
    /// The envelope has no recipient, or an address with CR, LF, `<` or `>`.
    #[error("invalid envelope")]
    InvalidEnvelope,
}

/// What happened, for the embedder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Greeting, EHLO, TLS and AUTH are done: [`ClientSession::send_message`] may be
    /// called (again after every [`ClientEvent::Sent`]).
    Ready,
    /// A message transaction ended; the session is ready again.
    Sent(TransactionOutcome),
    /// The connection failed; [`ClientOutput::Close`] follows.
    Failed(ClientError),
}

/// What the driver does next: the engine contract's output with no requests (a client
/// asks nothing of the embedder) and [`ClientEvent`]s.
pub type ClientOutput = engine::Output<Infallible, ClientEvent>;

/// What a pending reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    /// AUTH PLAIN with initial response, or the LOGIN password.
    AuthResult,
    /// `334` to `AUTH LOGIN <user>`: send the password.
    AuthLoginPassword,
    Rset,
    Mail,
    Rcpt,
    Data,
    DataEnd,
    Quit,
}

/// A message in flight.
#[derive(Debug)]
struct Transaction {
    message: Vec<u8>,
    recipients_total: usize,
    mail_from: Option<Reply>,
    recipients: Vec<Reply>,
    data: Option<Reply>,
    /// Commands not yet sent (without PIPELINING, one per round trip).
    unsent: VecDeque<(Vec<u8>, Expect)>,
}

/// One SMTP client connection, without any I/O.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    tls: bool,
    extensions: Extensions,
    reader: ReplyReader,
    input: Vec<u8>,
    /// Commands not yet handed out.
    out: Vec<u8>,
    expected: VecDeque<Expect>,
    outputs: VecDeque<ClientOutput>,
    transaction: Option<Transaction>,
    transactions_started: u64,
    ready: bool,
    closed: bool,
    waiting_for_tls: bool,
    quit_requested: bool,
    deadline: Option<Instant>,
}

impl ClientSession {
    /// Starts a session on a fresh connection; the first thing is waiting for the
    /// server's greeting.
    pub fn new(config: ClientConfig, now: Instant) -> ClientSession {
        let reader = ReplyReader::new(config.max_reply_line, config.max_reply_lines);
        let mut session = ClientSession {
            tls: config.tls == TlsMode::Implicit,
            config,
            extensions: Extensions::default(),
            reader,
            input: Vec::new(),
            out: Vec::new(),
            expected: VecDeque::new(),
            outputs: VecDeque::new(),
            transaction: None,
            transactions_started: 0,
            ready: false,
            closed: false,
            waiting_for_tls: false,
            quit_requested: false,
            deadline: None,
        };
        session.expect(Expect::Greeting, now);
        session
    }

    // ----- inputs -----

    /// Input: send one message. Only when [`ClientSession::is_ready`]; the outcome comes
    /// as [`ClientEvent::Sent`]. `message` is CRLF text; it is dot-stuffed here.
    pub fn send_message(
        &mut self,
        envelope: &OutgoingEnvelope,
        message: &[u8],
        now: Instant,
    ) -> Result<(), SendError> {
        if !self.ready || self.closed || self.transaction.is_some() {
            return Err(SendError::NotReady);
        }
        let bad = |a: &str| a.bytes().any(|b| matches!(b, b'\r' | b'\n' | b'<' | b'>'));
        if envelope.recipients.is_empty()
            || bad(&envelope.mail_from)
            || envelope.recipients.iter().any(|r| bad(r))
        {
            return Err(SendError::InvalidEnvelope);
        }
        let mut commands: VecDeque<(Vec<u8>, Expect)> = VecDeque::new();
        if self.transactions_started > 0 {
            // A reused connection: start from a clean state, and learn it is alive.
            commands.push_back((b"RSET\r\n".to_vec(), Expect::Rset));
        }
        self.transactions_started += 1;
        let mut mail = format!("MAIL FROM:<{}>", envelope.mail_from);
        if self.extensions.size.is_some() {
            mail.push_str(&format!(" SIZE={}", message.len()));
        }
        if self.extensions.eight_bit_mime && !message.is_ascii() {
            mail.push_str(" BODY=8BITMIME");
        }
        let non_ascii_address =
            !envelope.mail_from.is_ascii() || envelope.recipients.iter().any(|r| !r.is_ascii());
        if self.extensions.smtputf8 && non_ascii_address {
            mail.push_str(" SMTPUTF8");
        }
        mail.push_str("\r\n");
        commands.push_back((mail.into_bytes(), Expect::Mail));
        for recipient in &envelope.recipients {
            let rcpt = format!("RCPT TO:<{recipient}>\r\n");
            commands.push_back((rcpt.into_bytes(), Expect::Rcpt));
        }
        commands.push_back((b"DATA\r\n".to_vec(), Expect::Data));
        self.ready = false;
        self.transaction = Some(Transaction {
            message: dot_stuff(message),
            recipients_total: envelope.recipients.len(),
            mail_from: None,
            recipients: Vec::with_capacity(envelope.recipients.len()),
            data: None,
            unsent: VecDeque::new(),
        });
        if self.extensions.pipelining {
            let mut batch = Vec::new();
            for (command, expect) in commands {
                batch.extend_from_slice(&command);
                self.expect(expect, now);
            }
            self.send_command(batch);
        } else {
            let (command, expect) = commands.pop_front().ok_or(SendError::NotReady)?;
            self.send_command(command);
            self.expect(expect, now);
            if let Some(txn) = &mut self.transaction {
                txn.unsent = commands;
            }
        }
        Ok(())
    }

    /// Input: end the session politely (`QUIT`), now if idle, else after the current
    /// message.
    pub fn quit(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.quit_requested = true;
        if self.ready {
            self.send_quit(now);
        }
    }

    // ----- getters -----

    /// Whether a message can be sent now.
    pub fn is_ready(&self) -> bool {
        self.ready && !self.closed
    }

    /// The extensions of the last EHLO reply.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    // ----- internals -----

    fn expect(&mut self, expect: Expect, now: Instant) {
        if self.expected.is_empty() {
            self.deadline = Some(now + self.timeout_for(expect));
        }
        self.expected.push_back(expect);
    }

    fn timeout_for(&self, expect: Expect) -> Duration {
        match expect {
            Expect::Data => self.config.data_start_timeout,
            Expect::DataEnd => self.config.data_end_timeout,
            _ => self.config.command_timeout,
        }
    }

    /// Queues command bytes; consecutive commands leave as one `Output::Send`.
    fn send_command(&mut self, bytes: Vec<u8>) {
        self.out.extend_from_slice(&bytes);
    }

    /// Queues a non-`Send` output after the commands queued before it.
    fn push_output(&mut self, output: ClientOutput) {
        self.flush_commands();
        self.outputs.push_back(output);
    }

    fn flush_commands(&mut self) {
        if !self.out.is_empty() {
            let bytes = Bytes::from(std::mem::take(&mut self.out));
            self.outputs.push_back(ClientOutput::Send(bytes));
        }
    }

    fn event(&mut self, event: ClientEvent) {
        self.push_output(ClientOutput::Event(event));
    }

    fn fail(&mut self, error: ClientError) {
        if self.closed {
            return;
        }
        let polite = !matches!(
            error,
            ClientError::MalformedReply(_) | ClientError::Timeout | ClientError::ServerClosed(_)
        );
        if polite {
            self.send_command(b"QUIT\r\n".to_vec());
        }
        self.event(ClientEvent::Failed(error));
        self.close();
    }

    fn close(&mut self) {
        self.closed = true;
        self.ready = false;
        self.deadline = None;
        self.input = Vec::new();
        self.expected.clear();
        self.transaction = None;
        self.push_output(ClientOutput::Close);
    }

    fn send_quit(&mut self, now: Instant) {
        self.ready = false;
        self.send_command(b"QUIT\r\n".to_vec());
        self.expect(Expect::Quit, now);
    }

    fn on_reply(&mut self, raw: RawReply, now: Instant) {
        let Some(expect) = self.expected.pop_front() else {
            // Out of turn: typically `421` before closing an idle connection.
            return self.fail(ClientError::ServerClosed(raw.to_reply()));
        };
        self.deadline = self
            .expected
            .front()
            .map(|&next| now + self.timeout_for(next));
        let positive = is_positive(raw.code);
        match expect {
            Expect::Greeting => {
                if raw.code != 220 {
                    return self.fail(ClientError::Greeting(raw.to_reply()));
                }
                self.send_command(format!("EHLO {}\r\n", self.config.hello_name).into_bytes());
                self.expect(Expect::Ehlo, now);
            }
            Expect::Ehlo => {
                if positive {
                    self.extensions = Extensions::parse(&raw.lines);
                    self.after_hello(now);
                } else if raw.code / 100 == 5 {
                    // RFC 5321 3.2: an old server; try HELO.
                    self.send_command(format!("HELO {}\r\n", self.config.hello_name).into_bytes());
                    self.expect(Expect::Helo, now);
                } else {
                    self.fail(ClientError::Hello(raw.to_reply()));
                }
            }
            Expect::Helo => {
                if !positive {
                    return self.fail(ClientError::Hello(raw.to_reply()));
                }
                self.extensions = Extensions::default();
                self.after_hello(now);
            }
            Expect::StartTls => {
                if raw.code != 220 {
                    return self.fail(ClientError::StartTls(raw.to_reply()));
                }
                self.waiting_for_tls = true;
                self.push_output(ClientOutput::StartTls);
            }
            Expect::AuthLoginPassword => {
                if raw.code != 334 {
                    return self.fail(ClientError::Auth(raw.to_reply()));
                }
                let password = self
                    .config
                    .credentials
                    .as_ref()
                    .map(|c| STANDARD.encode(&c.password))
                    .unwrap_or_default();
                self.send_command(format!("{password}\r\n").into_bytes());
                self.expect(Expect::AuthResult, now);
            }
            Expect::AuthResult => {
                if raw.code != 235 {
                    return self.fail(ClientError::Auth(raw.to_reply()));
                }
                self.become_ready();
            }
            Expect::Quit => self.close(),
            Expect::Rset => {
                if !positive {
                    return self.fail(ClientError::ServerClosed(raw.to_reply()));
                }
                self.send_next_unsent(now);
            }
            Expect::Mail | Expect::Rcpt | Expect::Data | Expect::DataEnd => {
                self.on_transaction_reply(expect, raw.to_reply(), now)
            }
        }
    }

    /// EHLO/HELO done: TLS next if needed, then AUTH, then ready.
    fn after_hello(&mut self, now: Instant) {
        if self.config.tls == TlsMode::Required && !self.tls {
            if !self.extensions.starttls {
                return self.fail(ClientError::TlsNotOffered);
            }
            self.send_command(b"STARTTLS\r\n".to_vec());
            return self.expect(Expect::StartTls, now);
        }
        let Some(credentials) = self.config.credentials.clone() else {
            return self.become_ready();
        };
        if !self.tls && self.config.tls != TlsMode::Never {
            return self.fail(ClientError::AuthNotOffered);
        }
        if self.extensions.auth_plain {
            let plain = format!("\0{}\0{}", credentials.login, credentials.password);
            let command = format!("AUTH PLAIN {}\r\n", STANDARD.encode(plain));
            self.send_command(command.into_bytes());
            self.expect(Expect::AuthResult, now);
        } else if self.extensions.auth_login {
            let command = format!("AUTH LOGIN {}\r\n", STANDARD.encode(&credentials.login));
            self.send_command(command.into_bytes());
            self.expect(Expect::AuthLoginPassword, now);
        } else {
            self.fail(ClientError::AuthNotOffered);
        }
    }

    /// Without PIPELINING: the next command of the transaction, after a reply.
    fn send_next_unsent(&mut self, now: Instant) {
        let next = self
            .transaction
            .as_mut()
            .and_then(|txn| txn.unsent.pop_front());
        if let Some((command, expect)) = next {
            self.send_command(command);
            self.expect(expect, now);
        }
    }

    fn become_ready(&mut self) {
        self.ready = true;
        self.event(ClientEvent::Ready);
        if self.quit_requested {
            self.ready = false;
            self.send_command(b"QUIT\r\n".to_vec());
            self.expected.push_back(Expect::Quit);
        }
    }

    fn on_transaction_reply(&mut self, expect: Expect, reply: Reply, now: Instant) {
        let Some(mut txn) = self.transaction.take() else {
            return self.fail(ClientError::ServerClosed(reply));
        };
        if reply.code == 421 {
            // The server is going away mid-transaction.
            return self.fail(ClientError::ServerClosed(reply));
        }
        let mut finished = false;
        match expect {
            Expect::Mail => {
                let failed = !is_positive(reply.code);
                txn.mail_from = Some(reply.clone());
                if failed && !txn.unsent.is_empty() {
                    // Without pipelining nothing else was sent: every recipient gets the
                    // MAIL refusal and the transaction ends here.
                    txn.unsent.clear();
                    txn.recipients = vec![reply; txn.recipients_total];
                    finished = true;
                }
            }
            Expect::Rcpt => {
                txn.recipients.push(reply);
                let all_in = txn.recipients.len() == txn.recipients_total;
                let none_accepted = !txn.recipients.iter().any(|r| is_positive(r.code));
                if all_in && none_accepted && !txn.unsent.is_empty() {
                    // Not pipelined: no need for DATA at all.
                    txn.unsent.clear();
                    finished = true;
                }
            }
            Expect::Data => {
                if reply.code == 354 {
                    let accepted = txn.recipients.iter().any(|r| is_positive(r.code))
                        && txn.mail_from.as_ref().is_some_and(|m| is_positive(m.code));
                    let mut body = std::mem::take(&mut txn.message);
                    if !accepted {
                        // RFC 2920 3.1: DATA was pipelined, every RCPT failed, yet the
                        // server wants the text: send an empty message.
                        body.clear();
                    }
                    body.extend_from_slice(b".\r\n");
                    self.send_command(body);
                    self.expect(Expect::DataEnd, now);
                    if !accepted {
                        txn.data = Some(reply);
                    }
                } else {
                    txn.data = Some(reply);
                    finished = true;
                }
            }
            Expect::DataEnd => {
                if txn.data.is_none() {
                    txn.data = Some(reply);
                }
                finished = true;
            }
            _ => {}
        }
        if !finished {
            self.transaction = Some(txn);
            return self.send_next_unsent(now);
        }
        let outcome = TransactionOutcome {
            mail_from: txn
                .mail_from
                .unwrap_or_else(|| crate::reply::reply(554, "no reply")),
            recipients: txn.recipients,
            data: txn.data,
        };
        self.event(ClientEvent::Sent(outcome));
        self.ready = true;
        if self.quit_requested {
            self.send_quit(now);
        }
    }
}

fn is_positive(code: u16) -> bool {
    code / 100 == 2
}

/// Dot-stuffs a message (RFC 5321 4.5.2) and makes sure it ends with CRLF, ready for
/// the final `.\r\n`.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 8);
    let mut line_start = true;
    let mut rest = message;
    // Built once: `memmem::find` would build a searcher for every line.
    let crlf = memchr::memmem::Finder::new(b"\r\n");
    while !rest.is_empty() {
        if line_start && rest[0] == b'.' {
            out.push(b'.');
        }
        match crlf.find(rest) {
            Some(i) => {
                out.extend_from_slice(&rest[..i + 2]);
                rest = &rest[i + 2..];
                line_start = true;
            }
            None => {
                out.extend_from_slice(rest);
                rest = &[];
                line_start = false;
            }
        }
    }
    if !line_start {
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Engine for ClientSession {
    type Request = Infallible;
    type Answer = Infallible;
    type Event = ClientEvent;

    /// Input: bytes from the server, in any chunking.
    fn feed(&mut self, bytes: &[u8], now: Instant) {
        if self.closed || self.waiting_for_tls {
            return;
        }
        self.input.extend_from_slice(bytes);
        loop {
            if self.closed || self.waiting_for_tls {
                // Bytes after the 220 to STARTTLS are not trusted (RFC 3207 5).
                self.input.clear();
                return;
            }
            match self.reader.next(&mut self.input) {
                Ok(Some(reply)) => self.on_reply(reply, now),
                Ok(None) => return,
                Err(_) => return self.fail(ClientError::MalformedReply("not an SMTP reply")),
            }
        }
    }

    /// Input: the TLS handshake asked for by `Output::StartTls` completed.
    fn tls_started(&mut self, now: Instant) {
        if !self.waiting_for_tls {
            return;
        }
        self.waiting_for_tls = false;
        self.tls = true;
        self.extensions = Extensions::default();
        self.send_command(format!("EHLO {}\r\n", self.config.hello_name).into_bytes());
        self.expect(Expect::Ehlo, now);
    }

    /// Input: the clock reached `poll_timeout`.
    fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.deadline {
            if now >= deadline && !self.closed {
                self.fail(ClientError::Timeout);
            }
        }
    }

    /// Output: the next thing for the driver to do.
    fn poll(&mut self) -> Option<ClientOutput> {
        self.flush_commands();
        self.outputs.pop_front()
    }

    /// Output: when to call [`ClientSession::handle_timeout`]; `None` while idle
    /// (the embedder decides how long to keep an idle connection) or closed.
    fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            None
        } else {
            self.deadline
        }
    }

    /// Whether the session has emitted [`ClientOutput::Close`].
    fn is_closed(&self) -> bool {
        self.closed
    }

    /// A client asks nothing, so there is nothing to answer.
    fn answer(
        &mut self,
        id: RequestId,
        answer: Infallible,
        _now: Instant,
    ) -> Result<(), AnswerError> {
        let _ = id;
        match answer {}
    }

    /// Input: the process is shutting down: `QUIT` now if idle, else after the current
    /// message (a transaction under way is not cut off).
    fn shutdown(&mut self, now: Instant) {
        self.quit(now);
    }

    fn wants_input(&self) -> bool {
        !self.closed && !self.waiting_for_tls
    }

    fn send_deadline(&self) -> Option<Instant> {
        self.poll_timeout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n..\r\n"), b"..a\r\nb\r\n...\r\n");
        assert_eq!(dot_stuff(b"a\r\n."), b"a\r\n..\r\n");
        assert_eq!(dot_stuff(b""), b"");
        assert_eq!(dot_stuff(b"x\n.y\r\n"), b"x\n.y\r\n");
    }

    #[test]
    fn ehlo_keywords() {
        let lines: Vec<String> = [
            "mx",
            "PIPELINING",
            "SIZE 100",
            "AUTH LOGIN PLAIN",
            "starttls",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let ext = Extensions::parse(&lines);
        assert!(ext.pipelining && ext.starttls && ext.auth_plain && ext.auth_login);
        assert_eq!(ext.size, Some(100));
        assert!(!ext.chunking);
    }
}
