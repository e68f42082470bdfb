//! The session: state, inputs, outputs and command dispatch.
//!
//! The command handlers live in [`crate::command`], one file per command group; this
//! file owns what they share: the output buffer, the outstanding request, the selected
//! mailbox view and the timers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatmail_core::budget::{MemoryBudget, Reservation};
use chatmail_core::config::transfer_time;
use chatmail_core::engine::{AnswerError, Engine, RequestId};
use chatmail_core::store::Lagged;
use chatmail_core::{Address, Change, Flags, ModSeq, Uid};
use imap_codec::decode::{CommandDecodeError, Decoder};
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_codec::CommandCodec;

use crate::command;
use crate::framing::{Frame, Framer};
use crate::request::{Answer, Request};
use crate::uidmap::UidMap;
use crate::wire;

/// Limits and switches of one listener; share one value between many sessions.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    /// The transport is already TLS (port 993, or a driver that terminated TLS).
    pub tls_active: bool,
    /// Offer STARTTLS while the transport is plaintext (port 143).
    pub starttls: bool,
    /// Allow LOGIN/AUTHENTICATE without TLS. Off in production (spec 4.1: LOGINDISABLED
    /// before TLS); for loopback tests only.
    pub allow_plaintext_login: bool,
    /// Bound of one command line and of a whole command apart from an APPEND message
    /// (literals included). Dovecot's `imap_max_line_length` is 64 KiB.
    pub max_command_bytes: usize,
    /// The same bound before login (at most `max_command_bytes`): LOGIN, AUTHENTICATE and
    /// its response line, ID. No account's password is longer than 256 bytes
    /// (`chatmail_core::account::MAX_PASSWORD_LEN`), so 4 KiB leaves room for names and
    /// quoting, while a 64 KB password literal is refused before a byte of it is read
    /// (SHA-crypt's cost grows with the square of the password length).
    pub max_login_command_bytes: usize,
    /// Largest APPEND message (`max_message_size`), refused before it is read.
    pub max_message_size: u64,
    /// Storage quota reported by GETQUOTA (`max_mailbox_size`), in bytes.
    pub max_mailbox_bytes: u64,
    /// Time from the greeting to a successful LOGIN/AUTHENTICATE, absolute (STARTTLS
    /// included): busy is not logged in.
    pub login_timeout: Duration,
    /// Time after login without a new command, counted from the end of the last one
    /// (from the IDLE command for an idling client). RFC 9051 5.4: at least 30 minutes.
    pub inactivity_timeout: Duration,
    /// Time from a command's first byte to its last, literals included, plus its length
    /// at [`SessionConfig::min_transfer_rate`]: a client that starts a command must
    /// finish it, a byte buys no more than its share.
    pub command_timeout: Duration,
    /// Minimum average rate of a command's bytes (an APPEND message included), in bytes
    /// per second, after the head start of [`SessionConfig::command_timeout`].
    pub min_transfer_rate: u32,
    /// The bound on message bytes held by all sessions together: an APPEND literal takes
    /// its bytes from it as they arrive (its announcement takes nothing); past it the
    /// rest of the literal is dropped and the command gets `NO [LIMIT]`. `None`: only
    /// `max_message_size` bounds a session.
    pub message_budget: Option<Arc<MemoryBudget>>,
    /// Consecutive invalid commands before the session says BYE.
    pub max_bad_commands: u32,
    /// Unannounced mailbox changes a non-idling session may queue before it is closed
    /// so that the client resynchronises.
    pub max_queued_changes: usize,
    /// Unprocessed input beyond which [`Engine::wants_input`] asks the driver to pause.
    pub input_pause_bytes: usize,
    /// Most message bytes one SEARCH may scan (each message's size once, and once more
    /// per BODY/TEXT key); a search that would scan more gets `NO [LIMIT]` before any
    /// message is read.
    pub max_search_bytes: u64,
}

impl SessionConfig {
    /// The settings of a relay with configuration `config`, for a plaintext (143,
    /// STARTTLS) or TLS (993) listener; deadlines from `config.timeouts`, no shared
    /// message budget (the embedder sets one).
    pub fn from_config(config: &chatmail_core::config::Config, tls_active: bool) -> Self {
        SessionConfig {
            tls_active,
            starttls: !tls_active,
            allow_plaintext_login: false,
            max_command_bytes: 64 * 1024,
            max_login_command_bytes: 4 * 1024,
            max_message_size: config.max_message_size,
            max_mailbox_bytes: config.max_mailbox_bytes(),
            login_timeout: config.timeouts.login,
            inactivity_timeout: config.timeouts.imap_inactivity,
            command_timeout: config.timeouts.command,
            min_transfer_rate: config.timeouts.min_transfer_rate,
            message_budget: None,
            max_bad_commands: 10,
            max_queued_changes: 10_000,
            input_pause_bytes: 256 * 1024,
            // A full 500 MB mailbox searched by header; a BODY search over half of it.
            max_search_bytes: 512 * 1024 * 1024,
        }
    }
}

/// Something the session wants done: the contract's [`chatmail_core::engine::Output`]
/// with this crate's [`Request`] and no events.
pub type Output = chatmail_core::engine::Output<Request>;

/// The BYE text on [`Engine::shutdown`] (clients and tests look for it).
const SHUTDOWN_TEXT: &str = "Server shutting down";

/// The RFC 3501 session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Before LOGIN/AUTHENTICATE.
    NotAuthenticated,
    /// Logged in, no mailbox selected.
    Authenticated,
    /// A mailbox is selected.
    Selected,
    /// LOGOUT or BYE was sent; the session only drains.
    Logout,
}

/// The selected mailbox as this client sees it.
#[derive(Debug)]
pub(crate) struct Selected {
    pub name: String,
    pub read_only: bool,
    pub highest_modseq: ModSeq,
    /// Messages announced to the client, by sequence number.
    pub uids: UidMap,
    /// Changes not announced yet (announced at the end of a command, or at once in IDLE).
    pub queued: Vec<Change>,
}

/// An answer the session holds back until `until` ([`Answer::RefusedUntil`]).
#[derive(Debug)]
pub(crate) struct Delayed {
    until: Instant,
    tag: String,
    task: Task,
    answer: Answer,
}

/// A command waiting for the embedder's answer.
#[derive(Debug)]
pub(crate) struct Pending {
    pub id: RequestId,
    pub tag: String,
    pub task: Task,
}

/// The per-command continuation state; each variant belongs to one command file.
#[derive(Debug)]
pub(crate) enum Task {
    Login,
    List(command::mailbox::ListTask),
    Simple(&'static str),
    Status(command::mailbox::StatusTask),
    Select(command::select::SelectTask),
    Fetch(command::fetch::FetchTask),
    Store(command::store::StoreTask),
    Search(command::search::SearchTask),
    Expunge(command::expunge::ExpungeTask),
    Copy(command::copy::CopyTask),
    Append,
    Quota(command::quota::QuotaTask),
    GetMetadata(command::metadata::GetMetadataTask),
}

/// What the next input line means outside ordinary command parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    Commands,
    /// IDLE is running under this tag; the next line must be DONE.
    Idle(String),
    /// AUTHENTICATE PLAIN waits for the client's response under this tag.
    SaslResponse(String),
    /// STARTTLS was answered; nothing is read until the driver upgraded.
    AwaitingTls,
}

/// A sans-IO IMAP server session (see the crate docs for the drive loop).
#[derive(Debug)]
pub struct Session {
    pub(crate) config: Arc<SessionConfig>,
    pub(crate) state: State,
    pub(crate) mode: Mode,
    pub(crate) tls_active: bool,
    pub(crate) account: Option<Address>,
    pub(crate) selected: Option<Box<Selected>>,
    pub(crate) condstore: bool,
    pub(crate) pending: Option<Box<Pending>>,
    /// An answer held back until a failed-login penalty ends.
    delayed: Option<Box<Delayed>>,
    framer: Framer,
    input: Vec<u8>,
    out: Vec<u8>,
    outputs: VecDeque<Output>,
    next_request: u64,
    bad_commands: u32,
    /// The greeting plus the login timeout.
    login_deadline: Instant,
    /// When the last command ended (or the greeting was sent): inactivity counts from here.
    ready_since: Instant,
    /// The command being received: the time of its first byte and its bytes so far.
    command: Option<(Instant, u64)>,
    /// The latest time an input brought (`answer` has none of its own).
    clock: Instant,
    /// The budget share of an APPEND message handed to the embedder, until it answers.
    held: Reservation,
    /// [`Engine::shutdown`] came while a command waited for its answer: BYE after it.
    shutting_down: bool,
}

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
                let Pending { tag, task, .. } = *p;
                if let Answer::RefusedUntil { refusal, until } = answer {
                    self.delayed = Some(Box::new(Delayed {
                        until,
                        tag,
                        task,
                        answer: Answer::Refused(refusal),
                    }));
                    if self.shutting_down {
                        self.release_delayed();
                    }
                    return Ok(());
                }
                self.resume(tag, task, answer);
                self.after_answer();
                Ok(())
            }
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
        command::idle::handle_change(self, &change);
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
        self.flush_out();
        self.outputs.pop_front()
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

impl Session {
    /// A new session for a freshly accepted connection; queues the greeting.
    pub fn new(config: Arc<SessionConfig>, now: Instant) -> Session {
        let mut session = Session {
            tls_active: config.tls_active,
            login_deadline: now + config.login_timeout,
            ready_since: now,
            command: None,
            clock: now,
            held: Reservation::default(),
            framer: Framer::new(
                config.max_login_command_bytes.min(config.max_command_bytes),
                config.message_budget.clone(),
            ),
            config,
            state: State::NotAuthenticated,
            mode: Mode::Commands,
            account: None,
            selected: None,
            condstore: false,
            pending: None,
            delayed: None,
            input: Vec::new(),
            out: Vec::new(),
            outputs: VecDeque::new(),
            next_request: 0,
            bad_commands: 0,
            shutting_down: false,
        };
        let caps = session.capabilities();
        session.line(&format!("* OK [CAPABILITY {caps}] chatmail IMAP ready."));
        session
    }

    // ----- getters -----

    /// The current RFC 3501 state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The logged-in account.
    pub fn account(&self) -> Option<&Address> {
        self.account.as_ref()
    }

    /// The selected mailbox's name.
    pub fn selected_mailbox(&self) -> Option<&str> {
        self.selected.as_deref().map(|s| s.name.as_str())
    }

    /// Whether the client is in IDLE.
    pub fn is_idle(&self) -> bool {
        matches!(self.mode, Mode::Idle(_))
    }

    /// Bytes of memory this session holds: its own size plus heap buffers (the shared
    /// config not counted). An idling session with a small inbox holds a few hundred.
    pub fn memory_footprint(&self) -> usize {
        let selected = self.selected.as_deref().map_or(0, |s| {
            std::mem::size_of::<Selected>()
                + s.name.capacity()
                + s.uids.heap_bytes()
                + s.queued.capacity() * std::mem::size_of::<Change>()
        });
        std::mem::size_of::<Session>()
            + self.framer.heap_bytes()
            + self.input.capacity()
            + self.out.capacity()
            + self.outputs.capacity() * std::mem::size_of::<Output>()
            + self.account.as_ref().map_or(0, |a| a.as_str().len())
            + selected
            + match &self.mode {
                Mode::Idle(t) | Mode::SaslResponse(t) => t.capacity(),
                _ => 0,
            }
            + match &self.delayed {
                Some(d) => std::mem::size_of::<Delayed>() + d.tag.capacity(),
                None => 0,
            }
    }

    // ----- internals shared by the command files -----

    /// The capability list for the current state.
    pub(crate) fn capabilities(&self) -> String {
        let mut caps = String::from("IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE");
        if self.state == State::NotAuthenticated {
            if !self.tls_active && self.config.starttls {
                caps.push_str(" STARTTLS");
            }
            if self.login_allowed() {
                caps.push_str(" AUTH=PLAIN");
            } else {
                caps.push_str(" LOGINDISABLED");
            }
        } else {
            caps.push_str(
                " NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE CONDSTORE QUOTA \
                 QUOTA=RES-STORAGE METADATA",
            );
        }
        caps.push_str(" XCHATMAIL XDELTAPUSH");
        caps
    }

    /// Lifts the command bound from the login one to the full one.
    pub(crate) fn command_bound_after_login(&mut self) {
        self.framer.set_max_command(self.config.max_command_bytes);
    }

    pub(crate) fn login_allowed(&self) -> bool {
        self.tls_active || self.config.allow_plaintext_login
    }

    /// The client's deadline now (see [`Engine::handle_timeout`]).
    fn deadline(&self) -> Option<Instant> {
        if self.state == State::Logout || self.pending.is_some() {
            return None;
        }
        if let Some(delayed) = &self.delayed {
            return Some(delayed.until);
        }
        let config = &self.config;
        let deadline = match self.command {
            Some((start, received)) => {
                start + transfer_time(config.command_timeout, config.min_transfer_rate, received)
            }
            None if self.state == State::NotAuthenticated => self.login_deadline,
            None => self.ready_since + config.inactivity_timeout,
        };
        Some(if self.state == State::NotAuthenticated {
            deadline.min(self.login_deadline)
        } else {
            deadline
        })
    }

    /// Appends raw bytes to the pending output.
    /// Nothing goes out after the goodbye (a command's tagged reply after a BYE its own
    /// handling caused, say).
    pub(crate) fn raw(&mut self, bytes: &[u8]) {
        if self.state != State::Logout {
            self.out.extend_from_slice(bytes);
        }
    }

    /// Appends one response line (CRLF added).
    pub(crate) fn line(&mut self, text: &str) {
        if self.state != State::Logout {
            self.out.extend_from_slice(text.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        }
    }

    /// Sends shared bytes (a message body) after what is buffered, without copying.
    pub(crate) fn send_shared(&mut self, bytes: Bytes) {
        self.flush_out();
        if !bytes.is_empty() && self.state != State::Logout {
            self.outputs.push_back(Output::Send(bytes));
        }
    }

    fn flush_out(&mut self) {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            self.outputs.push_back(Output::Send(Bytes::from(out)));
        }
    }

    /// Tagged OK (queued changes are announced first).
    pub(crate) fn ok(&mut self, tag: &str, text: &str) {
        self.line(&format!("{tag} OK {text}"));
    }

    /// Tagged NO.
    pub(crate) fn no(&mut self, tag: &str, text: &str) {
        self.line(&format!("{tag} NO {text}"));
    }

    /// Tagged BAD; counts towards the flood limit.
    pub(crate) fn bad(&mut self, tag: &str, text: &str) {
        self.line(&format!("{tag} BAD {text}"));
        self.bad_commands += 1;
        if self.bad_commands >= self.config.max_bad_commands {
            self.bye("Too many invalid IMAP commands.");
        }
    }

    /// Untagged BYE and close; the session only drains afterwards.
    pub(crate) fn bye(&mut self, text: &str) {
        if self.state == State::Logout {
            return;
        }
        self.line(&format!("* BYE {text}"));
        self.close();
    }

    /// Close after what is queued (for LOGOUT, after its tagged OK).
    pub(crate) fn close(&mut self) {
        self.state = State::Logout;
        self.pending = None;
        self.delayed = None;
        self.held.release();
        self.input = Vec::new();
        self.framer.reset();
        self.flush_out();
        self.outputs.push_back(Output::Close);
    }

    /// Sends a request and parks the command until its answer.
    pub(crate) fn request(&mut self, tag: &str, request: Request, task: Task) {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        self.flush_out();
        self.outputs.push_back(Output::Request(id, request));
        self.pending = Some(Box::new(Pending {
            id,
            tag: tag.to_string(),
            task,
        }));
    }

    /// Asks the driver to upgrade to TLS; input is ignored until [`Engine::tls_started`].
    pub(crate) fn start_tls(&mut self) {
        self.mode = Mode::AwaitingTls;
        self.input.clear();
        self.flush_out();
        self.outputs.push_back(Output::StartTls);
    }

    /// The account for post-login requests (always set in those states).
    pub(crate) fn account_for_request(&self) -> Option<Address> {
        self.account.clone()
    }

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
            tag, task, answer, ..
        } = *delayed;
        self.resume(tag, task, answer);
        self.after_answer();
    }

    /// After an answer took effect: on with the buffered input, or, when the server is
    /// shutting down, BYE once no request is out any more.
    fn after_answer(&mut self) {
        if !self.shutting_down {
            self.process();
        } else if self.pending.is_none() {
            self.bye(SHUTDOWN_TEXT);
        }
    }

    /// The mailbox this client has a view of: the selected one, or the one a SELECT
    /// waiting for its answer opens.
    fn open_mailbox(&self) -> Option<&str> {
        if let Some(Task::Select(task)) = self.pending.as_deref().map(|p| &p.task) {
            return Some(task.mailbox());
        }
        self.selected_mailbox()
    }

    /// From now on the driver passes `account`'s change feed to [`Engine::handle_change`].
    pub(crate) fn subscribe(&mut self, account: Address) {
        self.flush_out();
        self.outputs.push_back(Output::Subscribe(account));
    }

    /// Consume input while no request is outstanding.
    fn process(&mut self) {
        while self.pending.is_none()
            && self.delayed.is_none()
            && self.state != State::Logout
            && self.mode != Mode::AwaitingTls
            && !self.input.is_empty()
        {
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
                            tag_of(self.framer.tag_and_verb().0)
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
        let tag = tag_of(tag);
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

    /// A whole command (or an IDLE/SASL continuation line) arrived.
    fn command_complete(&mut self) {
        match std::mem::replace(&mut self.mode, Mode::Commands) {
            Mode::Idle(tag) => {
                command::idle::done(self, &tag);
                return;
            }
            Mode::SaslResponse(tag) => {
                let line = self.framer.command().to_vec();
                command::login::sasl_response(self, &tag, &line);
                return;
            }
            Mode::AwaitingTls | Mode::Commands => {}
        }
        if self.framer.over_budget() {
            let tag = tag_of(self.framer.tag_and_verb().0);
            return self.no(
                &tag,
                "[LIMIT] Too many messages in transfer on this server, try again later.",
            );
        }
        let large = self.framer.take_large();
        let held = self.framer.take_reservation();
        let buf = self.framer.command().to_vec();
        let decoded = CommandCodec::default().decode(&buf);
        match decoded {
            Ok((&[], cmd)) => {
                self.bad_commands = 0;
                let large = large.map(|(at, data)| (buf.as_ptr() as usize + at, data));
                self.dispatch(cmd, large);
                if self.pending.is_some() {
                    // The message is with the embedder: its share stays taken until the
                    // answer (dropped here otherwise, with the refused message).
                    self.held = held;
                }
            }
            Ok(_) | Err(CommandDecodeError::Failed) | Err(CommandDecodeError::Incomplete) => {
                let tag = tag_of(self.framer.tag_and_verb().0);
                self.bad(&tag, "Error in IMAP command: invalid syntax.");
            }
            Err(CommandDecodeError::LiteralFound { .. }) => {
                let tag = tag_of(self.framer.tag_and_verb().0);
                self.bad(&tag, "Error in IMAP command: unexpected literal.");
            }
        }
    }

    /// Routes a decoded command to its handler after the state check.
    fn dispatch(&mut self, cmd: Command<'_>, large: Option<(usize, Vec<u8>)>) {
        let tag = cmd.tag.inner().to_string();
        let state = self.state;
        let authed = matches!(state, State::Authenticated | State::Selected);
        let selected = state == State::Selected;
        use CommandBody as C;
        let refusal = match &cmd.body {
            C::Capability | C::Noop | C::Logout | C::Id { .. } => None,
            C::StartTLS | C::Login { .. } | C::Authenticate { .. } => {
                (state != State::NotAuthenticated).then_some("Command not allowed in this state.")
            }
            C::Check
            | C::Close
            | C::Unselect
            | C::Expunge
            | C::ExpungeUid { .. }
            | C::Search { .. }
            | C::Fetch { .. }
            | C::Store { .. }
            | C::Copy { .. }
            | C::Move { .. }
                if !selected =>
            {
                Some(if authed {
                    "No mailbox selected."
                } else {
                    "Not logged in."
                })
            }
            _ => (!authed).then_some("Not logged in."),
        };
        if let Some(text) = refusal {
            return self.bad(&tag, text);
        }
        match cmd.body {
            C::Capability => {
                let caps = self.capabilities();
                self.line(&format!("* CAPABILITY {caps}"));
                self.finish_ok(&tag, "Capability completed.");
            }
            C::Noop | C::Check => self.finish_ok(&tag, "NOOP completed."),
            C::Logout => {
                self.line("* BYE Logging out");
                self.ok(&tag, "Logout completed.");
                self.close();
            }
            C::Id { .. } => {
                self.line("* ID (\"name\" \"chatmail\")");
                self.finish_ok(&tag, "ID completed.");
            }
            C::StartTLS => command::login::starttls(self, &tag),
            C::Login { username, password } => command::login::login(
                self,
                &tag,
                username.as_ref(),
                password.declassify().as_ref(),
            ),
            C::Authenticate {
                mechanism,
                initial_response,
            } => command::login::authenticate(
                self,
                &tag,
                &mechanism,
                initial_response.as_ref().map(|r| r.declassify().as_ref()),
            ),
            C::Enable { capabilities } => command::select::enable(self, &tag, capabilities),
            C::Namespace => {
                self.line("* NAMESPACE ((\"\" \".\")) NIL NIL");
                self.finish_ok(&tag, "Namespace completed.");
            }
            C::Select {
                mailbox,
                parameters,
            } => command::select::select(self, &tag, &mailbox, false, &parameters),
            C::Examine {
                mailbox,
                parameters,
            } => command::select::select(self, &tag, &mailbox, true, &parameters),
            C::Unselect => command::expunge::unselect(self, &tag),
            C::Close => command::expunge::close(self, &tag),
            C::Expunge => command::expunge::expunge(self, &tag, None),
            C::ExpungeUid { sequence_set } => {
                command::expunge::expunge(self, &tag, Some(&sequence_set))
            }
            C::Create { mailbox } => command::mailbox::create(self, &tag, &mailbox),
            C::Delete { mailbox } => command::mailbox::delete(self, &tag, &mailbox),
            C::Rename { from, to } => command::mailbox::rename(self, &tag, &from, &to),
            C::Subscribe { mailbox } => command::mailbox::subscribe(self, &tag, &mailbox, true),
            C::Unsubscribe { mailbox } => command::mailbox::subscribe(self, &tag, &mailbox, false),
            C::List {
                reference,
                mailbox_wildcard,
            } => command::mailbox::list(self, &tag, &reference, &mailbox_wildcard, false),
            C::Lsub {
                reference,
                mailbox_wildcard,
            } => command::mailbox::list(self, &tag, &reference, &mailbox_wildcard, true),
            C::Status {
                mailbox,
                item_names,
            } => command::mailbox::status(self, &tag, &mailbox, &item_names),
            C::Append {
                mailbox,
                flags,
                date,
                message,
            } => command::append::append(self, &tag, &mailbox, &flags, date, &message, large),
            C::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => command::fetch::fetch(
                self,
                &tag,
                &sequence_set,
                macro_or_item_names,
                uid,
                &modifiers,
            ),
            C::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => command::store::store(
                self,
                &tag,
                &sequence_set,
                kind,
                response,
                &flags,
                uid,
                &modifiers,
            ),
            C::Search {
                charset,
                criteria,
                uid,
            } => {
                let charset = charset.as_ref().map(|c| c.as_ref());
                command::search::search(self, &tag, charset, criteria.as_ref(), uid)
            }
            C::Copy {
                sequence_set,
                mailbox,
                uid,
            } => command::copy::copy(self, &tag, &sequence_set, &mailbox, uid, false),
            C::Move {
                sequence_set,
                mailbox,
                uid,
            } => command::copy::copy(self, &tag, &sequence_set, &mailbox, uid, true),
            C::Idle => command::idle::idle(self, &tag),
            C::GetQuota { root } => command::quota::get_quota(self, &tag, root.as_ref()),
            C::GetQuotaRoot { mailbox } => command::quota::get_quota_root(self, &tag, &mailbox),
            C::SetQuota { .. } => self.no(&tag, "[NOPERM] Quota is set by the operator."),
            C::GetMetadata {
                options,
                mailbox,
                entries,
            } => command::metadata::get(self, &tag, &options, &mailbox, entries.as_ref()),
            C::SetMetadata {
                mailbox,
                entry_values,
            } => command::metadata::set(self, &tag, &mailbox, entry_values.as_ref()),
            C::Compress { .. } | C::Sort { .. } | C::Thread { .. } => {
                self.bad(&tag, "Unknown command.")
            }
        }
    }

    /// Routes an answer to the command file that asked.
    fn resume(&mut self, tag: String, task: Task, answer: Answer) {
        match task {
            Task::Login => command::login::login_answered(self, &tag, answer),
            Task::Simple(done_text) => match answer {
                Answer::Done => self.finish_ok(&tag, done_text),
                other => self.refused(&tag, other),
            },
            Task::List(t) => command::mailbox::list_answered(self, &tag, t, answer),
            Task::Status(t) => command::mailbox::status_answered(self, &tag, t, answer),
            Task::Select(t) => command::select::select_answered(self, &tag, t, answer),
            Task::Fetch(t) => command::fetch::fetch_answered(self, &tag, t, answer),
            Task::Store(t) => command::store::store_answered(self, &tag, t, answer),
            Task::Search(t) => command::search::search_answered(self, &tag, t, answer),
            Task::Expunge(t) => command::expunge::expunge_answered(self, &tag, t, answer),
            Task::Copy(t) => command::copy::copy_answered(self, &tag, t, answer),
            Task::Append => command::append::append_answered(self, &tag, answer),
            Task::Quota(t) => command::quota::quota_answered(self, &tag, t, answer),
            Task::GetMetadata(t) => command::metadata::get_answered(self, &tag, t, answer),
        }
    }

    /// Tagged NO for a refusal, or for an answer that does not fit the request.
    pub(crate) fn refused(&mut self, tag: &str, answer: Answer) {
        match answer {
            Answer::Refused(r) => self.no(tag, &r.response_text()),
            _ => self.no(tag, "[SERVERBUG] Unexpected storage answer."),
        }
    }

    /// Announces queued changes, then the tagged OK.
    pub(crate) fn finish_ok(&mut self, tag: &str, text: &str) {
        command::idle::announce(self, true);
        self.ok(tag, text);
    }

    /// Like [`Session::finish_ok`] but keeps EXPUNGE back (after FETCH, STORE, SEARCH:
    /// RFC 3501 7.4.1 forbids EXPUNGE while sequence numbers are in use).
    pub(crate) fn finish_ok_no_expunge(&mut self, tag: &str, text: &str) {
        command::idle::announce(self, false);
        self.ok(tag, text);
    }

    /// Every UID of the selected mailbox, ascending.
    pub(crate) fn resolve_all(&self) -> Vec<Uid> {
        self.selected
            .as_deref()
            .map(|sel| sel.uids.iter().map(|(_, u)| u).collect())
            .unwrap_or_default()
    }

    /// The command or continuation line just completed.
    pub(crate) fn framer_command(&self) -> &[u8] {
        self.framer.command()
    }

    /// Resolves a sequence or UID set against the selected mailbox to ascending UIDs.
    /// Work is bounded by the mailbox size, never by the numbers in the set.
    pub(crate) fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<Uid> {
        let Some(sel) = self.selected.as_deref() else {
            return Vec::new();
        };
        let star = if uid {
            sel.uids.last().map_or(0, |u| u.0)
        } else {
            sel.uids.len()
        };
        let value = |v: &SeqOrUid| match v {
            SeqOrUid::Value(n) => n.get(),
            SeqOrUid::Asterisk => star,
        };
        let mut ranges: Vec<(u32, u32)> = set
            .0
            .as_ref()
            .iter()
            .map(|s| match s {
                Sequence::Single(v) => (value(v), value(v)),
                Sequence::Range(a, b) => {
                    let (a, b) = (value(a), value(b));
                    (a.min(b), a.max(b))
                }
            })
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some((_, e)) if a <= e.saturating_add(1) => *e = (*e).max(b),
                _ => merged.push((a, b)),
            }
        }
        let contains = |n: u32| {
            let i = merged.partition_point(|&(_, e)| e < n);
            merged.get(i).is_some_and(|&(s, _)| s <= n)
        };
        sel.uids
            .iter()
            .filter(|&(seq, u)| contains(if uid { u.0 } else { seq }))
            .map(|(_, u)| u)
            .collect()
    }
}

/// A tag to answer with: the client's first word if it is a valid tag, else `*`.
pub(crate) fn tag_of(word: &[u8]) -> String {
    let valid = !word.is_empty()
        && word.len() <= 64
        && word.iter().all(|&b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
        });
    if valid {
        String::from_utf8_lossy(word).into_owned()
    } else {
        "*".to_string()
    }
}

/// A mailbox name from the wire (`INBOX` case-insensitively canonical).
pub(crate) fn mailbox_name(mailbox: &Mailbox<'_>) -> String {
    match mailbox {
        Mailbox::Inbox => chatmail_core::INBOX.to_string(),
        Mailbox::Other(other) => String::from_utf8_lossy(other.as_ref()).into_owned(),
    }
}

/// Converts wire flags to storable flags (`\Recent` and unknown system flags dropped).
pub(crate) fn to_flags<'a>(
    flags: impl IntoIterator<Item = &'a imap_codec::imap_types::flag::Flag<'a>>,
) -> Flags {
    flags
        .into_iter()
        .filter_map(|f| chatmail_core::Flag::from_imap(&f.to_string()))
        .collect()
}

/// Writes `* n FETCH (UID u FLAGS (...) [MODSEQ (m)])` for a flag change.
pub(crate) fn write_flags_fetch(
    out: &mut Vec<u8>,
    seq: u32,
    uid: Uid,
    flags: &Flags,
    modseq: Option<ModSeq>,
) {
    out.extend_from_slice(b"* ");
    wire::number(out, seq.into());
    out.extend_from_slice(b" FETCH (UID ");
    wire::number(out, uid.0.into());
    out.extend_from_slice(b" FLAGS ");
    wire::flag_list(out, flags);
    if let Some(m) = modseq {
        out.extend_from_slice(b" MODSEQ (");
        wire::number(out, m.0);
        out.push(b')');
    }
    out.extend_from_slice(b")\r\n");
}
