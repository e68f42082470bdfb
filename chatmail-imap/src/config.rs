//! The limits and switches of one listener, shared by all its sessions.

use std::sync::Arc;
use std::time::Duration;

use chatmail_core::budget::MemoryBudget;

/// Limits and switches of one listener; share one value between many sessions.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SessionConfig {
    /// The transport is already TLS (port 993, or a driver that terminated TLS).
    pub tls_active: bool,
    /// Offer STARTTLS while the transport is plaintext (port 143).
    pub starttls: bool,
    /// Offer COMPRESS=DEFLATE (RFC 4978) after login (`imap_compress`): the client may
    /// then ask for the transport to be compressed, which the driver does on
    /// [`Output::StartDeflate`](crate::Output::StartDeflate).
    pub compress: bool,
    /// Allow LOGIN/AUTHENTICATE without TLS. Off in production (spec 4.1: LOGINDISABLED
    /// before TLS); for loopback tests only.
    pub allow_plaintext_login: bool,
    /// Bound of one command line and of a whole command apart from an APPEND message
    /// (literals included). Dovecot's `imap_max_line_length` is 64 KiB.
    pub max_command_bytes: usize,
    /// The same bound before login (at most `max_command_bytes`): LOGIN, AUTHENTICATE and
    /// its response line, ID. The largest legitimate one is an ID at RFC 2971's bounds
    /// (30 fields of 30 bytes with 1024-byte values, about 32 KiB), hence 40 KiB. A
    /// longer password costs no hashing: one over 256 bytes
    /// (`chatmail_core::account::MAX_PASSWORD_LEN`) is refused before any lookup or
    /// hash (SHA-crypt's cost grows with the square of the password length), and a
    /// 64 KB password literal is refused before a byte of it is read.
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
    ///
    /// [`Engine::wants_input`]: chatmail_core::engine::Engine::wants_input
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
            compress: config.imap_compress,
            allow_plaintext_login: false,
            max_command_bytes: 64 * 1024,
            max_login_command_bytes: 40 * 1024,
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
