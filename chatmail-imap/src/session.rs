//! The session: its state, its output buffer and what every command shares.
//!
//! The [`Engine`] implementation (`engine.rs`) turns inputs into complete commands and
//! answers; `command/mod.rs` dispatches a command to its handler, one file per command
//! under `command/`; this file owns what they all use: the state, the output buffer,
//! the outstanding request and its [`Continuation`], the selected mailbox view and the
//! timers. It names no command's types, so that the files form no circle.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chatmail_core::budget::Reservation;
use chatmail_core::config::transfer_time;
#[cfg(doc)]
use chatmail_core::engine::Engine;
use chatmail_core::engine::RequestId;
use chatmail_core::{Address, Change, Uid};
use imap_codec::imap_types::sequence::SequenceSet;

use crate::config::SessionConfig;
use crate::framing::Framer;
use crate::request::{Answer, Request};
use crate::selected::{Opening, Selected};

/// Something the session wants done: the contract's [`chatmail_core::engine::Output`]
/// with this crate's [`Request`] and no events.
pub type Output = chatmail_core::engine::Output<Request>;

/// The BYE text on [`Engine::shutdown`] (clients and tests look for it).
pub(crate) const SHUTDOWN_TEXT: &str = "Server shutting down";

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

/// What a command does with the embedder's answer to its request. Each command that
/// asks for something defines its own in its file; boxed here, so that this file needs
/// no command's types. `Send + Sync` as the session is.
pub(crate) trait Continuation: std::fmt::Debug + Send + Sync {
    /// Continues command `tag` with `answer`: writes its responses, or asks again.
    fn resume(self: Box<Self>, session: &mut Session, tag: &str, answer: Answer);
}

/// The continuation of commands whose success has nothing to report (CREATE, DELETE,
/// RENAME, SUBSCRIBE, SETMETADATA): [`Answer::Done`] gets the tagged OK with this text.
#[derive(Debug)]
pub(crate) struct Completes(pub &'static str);

impl Continuation for Completes {
    fn resume(self: Box<Self>, session: &mut Session, tag: &str, answer: Answer) {
        match answer {
            Answer::Done => session.finish_ok(tag, self.0),
            other => session.refused(tag, other),
        }
    }
}

/// A command waiting for the embedder's answer.
#[derive(Debug)]
pub(crate) struct Pending {
    pub id: RequestId,
    pub tag: String,
    pub then: Box<dyn Continuation>,
}

/// An answer the session holds back until `until` ([`Answer::RefusedUntil`]).
#[derive(Debug)]
pub(crate) struct Delayed {
    pub until: Instant,
    pub tag: String,
    pub then: Box<dyn Continuation>,
    pub answer: Answer,
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
    /// COMPRESS DEFLATE was answered OK: the transport is compressed.
    pub(crate) deflate: bool,
    pub(crate) account: Option<Address>,
    pub(crate) selected: Option<Box<Selected>>,
    /// The mailbox a SELECT waiting for its answer opens.
    pub(crate) opening: Option<Opening>,
    pub(crate) condstore: bool,
    pub(crate) pending: Option<Box<Pending>>,
    /// An answer held back until a failed-login penalty ends.
    pub(crate) delayed: Option<Box<Delayed>>,
    pub(crate) framer: Framer,
    /// Received bytes not yet framed.
    pub(crate) input: Vec<u8>,
    /// Response bytes not yet turned into an [`Output::Send`].
    out: Vec<u8>,
    outputs: VecDeque<Output>,
    next_request: u64,
    /// Consecutive invalid commands (see [`SessionConfig::max_bad_commands`]).
    pub(crate) bad_commands: u32,
    /// The greeting plus the login timeout.
    login_deadline: Instant,
    /// When the last command ended (or the greeting was sent): inactivity counts from here.
    pub(crate) ready_since: Instant,
    /// The command being received: the time of its first byte and its bytes so far.
    pub(crate) command: Option<(Instant, u64)>,
    /// The latest time an input brought.
    pub(crate) clock: Instant,
    /// The budget share of an APPEND message handed to the embedder, until it answers.
    pub(crate) held: Reservation,
    /// [`Engine::shutdown`] came while a command waited for its answer: BYE after it.
    pub(crate) shutting_down: bool,
    /// A BYE that waits for the request out to be answered
    /// ([`Session::bye_after_answer`]).
    pub(crate) bye_pending: Option<&'static str>,
}

// Drivers move sessions between threads (a tokio task, a thread pool).
const _: fn() = || {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Session>();
};

impl Session {
    /// A new session for a freshly accepted connection; queues the greeting.
    pub fn new(config: Arc<SessionConfig>, now: Instant) -> Session {
        let mut session = Session {
            tls_active: config.tls_active,
            deflate: false,
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
            opening: None,
            input: Vec::new(),
            out: Vec::new(),
            outputs: VecDeque::new(),
            next_request: 0,
            bad_commands: 0,
            shutting_down: false,
            bye_pending: None,
        };
        let caps = session.capabilities();
        session.line(&format!("* OK [CAPABILITY {caps}] chatmail IMAP ready."));
        session
    }

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
                + s.keywords.iter().map(|k| k.capacity() + 48).sum::<usize>()
                + s.recent.capacity() * std::mem::size_of::<std::ops::Range<Uid>>()
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
            + self.opening.as_ref().map_or(0, |o| {
                std::mem::size_of::<Opening>()
                    + o.name.capacity()
                    + o.early.capacity() * std::mem::size_of::<Change>()
            })
    }

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
            // RFC 4978: a command of the authenticated state; once active, not offered
            // again (as Cyrus does).
            if self.config.compress && !self.deflate {
                caps.push_str(" COMPRESS=DEFLATE");
            }
        }
        caps.push_str(" XCHATMAIL XDELTAPUSH");
        caps
    }

    /// Lifts the command bound from the login one to the full one.
    pub(crate) fn command_bound_after_login(&mut self) {
        self.framer.set_max_command(self.config.max_command_bytes);
    }

    /// Whether LOGIN/AUTHENTICATE may be used on this transport.
    pub(crate) fn login_allowed(&self) -> bool {
        self.tls_active || self.config.allow_plaintext_login
    }

    /// The client's deadline now (see [`Engine::handle_timeout`]).
    pub(crate) fn deadline(&self) -> Option<Instant> {
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

    /// Appends raw bytes to the pending output. Nothing goes out after the goodbye (a command's tagged reply after a BYE its own
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

    /// Turns the buffered response bytes into an [`Output::Send`], so that what is
    /// queued next goes out after them.
    pub(crate) fn flush_out(&mut self) {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            self.outputs.push_back(Output::Send(Bytes::from(out)));
        }
    }

    /// The next output, the buffered response bytes first.
    pub(crate) fn next_output(&mut self) -> Option<Output> {
        self.flush_out();
        self.outputs.pop_front()
    }

    /// Tagged OK, without announcing queued changes (see [`Session::finish_ok`]).
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

    /// BYE now, or, while a request is out (the change may be the command's own, a
    /// RENAME of the selected mailbox), once its tagged reply is written.
    pub(crate) fn bye_after_answer(&mut self, text: &'static str) {
        if self.pending.is_some() || self.delayed.is_some() {
            self.bye_pending.get_or_insert(text);
        } else {
            self.bye(text);
        }
    }

    /// Close after what is queued (for LOGOUT, after its tagged OK).
    pub(crate) fn close(&mut self) {
        self.state = State::Logout;
        self.pending = None;
        self.delayed = None;
        self.opening = None;
        self.held.release();
        self.input = Vec::new();
        self.framer.reset();
        self.flush_out();
        self.outputs.push_back(Output::Close);
    }

    /// Sends a request and parks the command until its answer, which goes to `then`.
    pub(crate) fn request(&mut self, tag: &str, request: Request, then: Box<dyn Continuation>) {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        self.flush_out();
        self.outputs.push_back(Output::Request(id, request));
        self.pending = Some(Box::new(Pending {
            id,
            tag: tag.to_string(),
            then,
        }));
    }

    /// Asks the driver to upgrade to TLS; input is ignored until [`Engine::tls_started`].
    pub(crate) fn start_tls(&mut self) {
        self.mode = Mode::AwaitingTls;
        self.input.clear();
        self.flush_out();
        self.outputs.push_back(Output::StartTls);
    }

    /// Asks the driver to compress the transport from now on (after the tagged OK just
    /// queued). Input buffered behind the command is dropped: it can only be compressed
    /// data a client pipelined against RFC 4978 section 3, undecodable here.
    pub(crate) fn start_deflate(&mut self) {
        self.deflate = true;
        self.input.clear();
        self.flush_out();
        self.outputs.push_back(Output::StartDeflate);
    }

    /// From now on the driver passes `account`'s change feed to [`Engine::handle_change`].
    pub(crate) fn listen_to(&mut self, account: Address) {
        self.flush_out();
        self.outputs.push_back(Output::Subscribe(account));
    }

    /// The logged-in account for a request of command `tag`, or a tagged NO if there is
    /// none (cannot happen after the state check, but a peer must never be able to cause
    /// a panic).
    pub(crate) fn request_account(&mut self, tag: &str) -> Option<Address> {
        let account = self.account.clone();
        if account.is_none() {
            self.no(tag, "[SERVERBUG] No account.");
        }
        account
    }

    /// The account and the selected mailbox for a request of command `tag`, or a tagged
    /// NO if either is missing (cannot happen after the state check, as above).
    pub(crate) fn request_in_selected(&mut self, tag: &str) -> Option<(Address, String)> {
        let account = self.request_account(tag)?;
        match self.selected_mailbox() {
            Some(mailbox) => Some((account, mailbox.to_string())),
            None => {
                self.no(tag, "[SERVERBUG] No mailbox selected.");
                None
            }
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
        self.announce(true);
        self.ok(tag, text);
    }

    /// Like [`Session::finish_ok`] but keeps EXPUNGE back (after FETCH, STORE, SEARCH:
    /// RFC 3501 7.4.1 forbids EXPUNGE while sequence numbers are in use).
    pub(crate) fn finish_ok_no_expunge(&mut self, tag: &str, text: &str) {
        self.announce(false);
        self.ok(tag, text);
    }

    /// The tagged OK of a command that names messages: a UID command's announces every
    /// queued change, one by sequence numbers keeps EXPUNGEs back.
    pub(crate) fn finish_ok_numbered(&mut self, tag: &str, text: &str, uid_command: bool) {
        if uid_command {
            self.finish_ok(tag, text);
        } else {
            self.finish_ok_no_expunge(tag, text);
        }
    }

    /// Writes the selected mailbox's queued changes; EXPUNGEs only `with_expunges`.
    pub(crate) fn announce(&mut self, with_expunges: bool) {
        let condstore = self.condstore;
        let Some(sel) = self.selected.as_deref_mut() else {
            return;
        };
        let mut out = Vec::new();
        sel.announce(with_expunges, condstore, &mut out);
        self.raw(&out);
    }

    /// Queues (and, in IDLE, announces) a change to the account's mail: kept for a
    /// mailbox being opened, queued for the selected one, ignored for others. A reset of
    /// the selected mailbox, or too many changes, closes the session so that the client
    /// resynchronises.
    pub(crate) fn queue_change(&mut self, change: &Change) {
        let limit = self.config.max_queued_changes;
        if let Some(opening) = self.opening.as_mut() {
            if opening.name == change.mailbox() {
                if opening.early.len() >= limit {
                    return self.bye("Too many mailbox changes, please reconnect.");
                }
                opening.early.push(change.clone());
                return;
            }
        }
        if self.state != State::Selected {
            return;
        }
        let Some(sel) = self.selected.as_deref_mut() else {
            return;
        };
        if sel.name != change.mailbox() {
            return;
        }
        if matches!(change, Change::MailboxReset { .. }) {
            return self.bye_after_answer("Mailbox was deleted or renamed, please reconnect.");
        }
        if sel.queued.len() >= limit {
            return self.bye_after_answer("Too many mailbox changes, please reconnect.");
        }
        if matches!(change, Change::Appended { .. }) && !sel.read_only {
            sel.claim_needed = true;
        }
        sel.queued.push(change.clone());
        if self.is_idle() {
            self.announce(true);
        }
    }

    /// The mailbox this client has a view of: the selected one, or the one a SELECT
    /// waiting for its answer opens.
    pub(crate) fn open_mailbox(&self) -> Option<&str> {
        match &self.opening {
            Some(opening) => Some(&opening.name),
            None => self.selected_mailbox(),
        }
    }

    /// Leaves the selected mailbox (CLOSE, UNSELECT).
    pub(crate) fn leave_mailbox(&mut self) {
        self.selected = None;
        self.state = State::Authenticated;
    }

    /// Every UID of the selected mailbox, ascending.
    pub(crate) fn resolve_all(&self) -> Vec<Uid> {
        self.selected
            .as_deref()
            .map(Selected::all_uids)
            .unwrap_or_default()
    }

    /// Resolves a sequence or UID set against the selected mailbox to ascending UIDs.
    pub(crate) fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<Uid> {
        self.selected
            .as_deref()
            .map(|sel| sel.resolve(set, uid))
            .unwrap_or_default()
    }
}
