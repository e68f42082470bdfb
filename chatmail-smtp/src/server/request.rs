//! What the session asks of the embedder ([`Request`]) and the answers it takes
//! ([`Answer`]): logins, recipients, and the delivery of an accepted message, with the
//! typed failures the session words as SMTP replies ([`DeliveryFailure::reply`]).

use std::time::Instant;

use bytes::Bytes;
use chatmail_core::engine;
use chatmail_policy::{Direction, MessageClass, Reply, Verdict};

use crate::reply::reply;
use crate::server::config::Role;

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

/// What the driver does next: the engine contract's output with this engine's requests
/// and events.
pub type Output = engine::Output<Request, ServerEvent>;

/// What the session reports without waiting for an answer ([`Output::Event`](engine::Output::Event)):
/// facts the embedder counts (the operator's metrics); nothing to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// The message-acceptance policy decided on a complete message (the reference's
    /// filtermail verdict). Emitted before the [`Request::Deliver`] of an accepted one.
    Verdict {
        /// Submission (outgoing) or from other servers (incoming).
        direction: Direction,
        /// What the policy decided.
        outcome: VerdictOutcome,
    },
}

/// The policy's decision on one message, as counted: the class of an accepted message
/// or the code of the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictOutcome {
    /// Accepted as this kind of message.
    Accepted(MessageClass),
    /// Refused with this SMTP reply code (`523`: cleartext where encryption is needed).
    Refused(u16),
}

impl VerdictOutcome {
    /// The outcome of a policy [`Verdict`] (the SMTP engine's and `/mxdeliv`'s alike).
    pub fn of(verdict: &Verdict) -> VerdictOutcome {
        match verdict {
            Verdict::Accept(accepted) => VerdictOutcome::Accepted(accepted.class()),
            Verdict::Reject(reply) => VerdictOutcome::Refused(reply.code),
        }
    }
}

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

/// An accepted message and its envelope, handed to the embedder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Outgoing (submission) or incoming (MX, LMTP).
    pub direction: Direction,
    /// The listener it came in on: MX mail is checked for its origin (DKIM, spec 3.3
    /// step 6) by the embedder; LMTP comes from a local MTA that did it already.
    pub role: Role,
    /// The domain of the From header's address, lower-cased, as the policy read it
    /// ([`chatmail_policy::Accepted::from_domain`]): what a DKIM signature must match.
    pub from_domain: String,
    /// The authenticated user (submission).
    pub auth_user: Option<String>,
    /// The envelope sender; `""` for `<>`, and also when the policy resets it (incoming
    /// mail whose From differs from MAIL FROM, spec 3.3 step 4).
    pub mail_from: String,
    /// The recipients in RCPT order.
    pub recipients: Vec<String>,
    /// One per recipient: whether the embedder confirmed that mailbox at RCPT
    /// ([`RecipientAnswer::Accept`], MX and LMTP), so the delivery need not look it up
    /// again. Submission asks nothing at RCPT: all `false`.
    pub confirmed: Vec<bool>,
    /// The message after the policy's rewrite (spec 4.4 on submission). It shares the
    /// buffer the session received it into: no copy was made.
    pub message: Bytes,
}

/// Why a message (or a recipient at RCPT) was not taken, as the embedder reports it.
/// The session words the reply ([`DeliveryFailure::reply`]): all SMTP reply text lives
/// in this crate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryFailure {
    /// No such mailbox: `550 5.1.1`.
    UnknownRecipient,
    /// The mailbox is over its quota: `552 5.2.2`.
    QuotaExceeded,
    /// The store does not take messages this large: `552 5.3.4`.
    MessageTooLarge,
    /// Storage or the account service failed: `451 4.3.0`, the sender retries.
    LocalError,
    /// A remote recipient, and this relay delivers to no other server: `451 4.4.0`, so
    /// the client keeps the message (never a silent drop).
    OutboundDisabled,
    /// Refused further on (the outbound queue, another server) with this reply.
    Refused(Reply),
}

impl DeliveryFailure {
    /// The reply for `recipient`, as every role of the session says it.
    pub fn reply(&self, recipient: &str) -> Reply {
        match self {
            DeliveryFailure::UnknownRecipient => reply(
                550,
                format!("5.1.1 <{recipient}>: Recipient address rejected: User unknown"),
            ),
            DeliveryFailure::QuotaExceeded => reply(
                552,
                format!("5.2.2 <{recipient}>: Quota exceeded (mailbox for user is full)"),
            ),
            DeliveryFailure::MessageTooLarge => reply(552, "5.3.4 Message exceeds maximum size"),
            DeliveryFailure::LocalError => reply(451, "4.3.0 Local error in processing"),
            DeliveryFailure::OutboundDisabled => reply(
                451,
                format!(
                    "4.4.0 <{recipient}>: delivery to other servers is not enabled on this relay"
                ),
            ),
            DeliveryFailure::Refused(reply) => reply.clone(),
        }
    }
}

/// The embedder's answer to [`Request::Deliver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryAnswer {
    /// Durable for every recipient: `250`.
    Durable,
    /// Not stored at all, for this reason (every recipient's reply on LMTP).
    Failed(DeliveryFailure),
    /// One outcome per recipient, in [`Delivery::recipients`] order. LMTP replies each;
    /// SMTP has one reply per message: the first failure when all failed. When some
    /// failed, submission says `250` (the embedder then owns the report to its
    /// authenticated sender) and MX says the failure (a temporary one if any): mail from
    /// other servers is refused in the dialogue, never bounced.
    PerRecipient(Vec<Result<(), DeliveryFailure>>),
}
