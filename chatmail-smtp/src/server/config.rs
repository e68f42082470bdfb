//! What a listener decides for all its sessions: the role, the limits and deadlines
//! ([`ServerConfig`]), and the transport a session starts on.

use std::sync::Arc;
use std::time::Duration;

use chatmail_core::budget::MemoryBudget;
use chatmail_core::config::Timeouts;
use chatmail_policy::Direction;

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
    ///
    /// [`ServerSession::wants_input`]: crate::server::Engine::wants_input
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
