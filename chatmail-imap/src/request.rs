//! What the session asks of the embedder, and what the embedder answers.
//!
//! Every storage access of an IMAP session leaves the engine as one [`Request`] inside
//! [`crate::Output::Request`], tagged with a [`RequestId`](chatmail_core::engine::RequestId). The embedder performs it
//! (usually on a `chatmail_core` store) and hands the result back with
//! [`Engine::answer`](chatmail_core::engine::Engine::answer). A session has at most one request outstanding.
//!
//! Each request names the account it acts for, so the embedder needs no per-session
//! state. Unless a request says otherwise, [`Answer::Refused`] is always a valid answer:
//! the session turns it into a tagged `NO` with the matching response code.

use std::ops::Range;
use std::time::Instant;

use bytes::Bytes;

use crate::search_program::ContentSearch;
use chatmail_core::{
    Address, FlagOp, Flags, MailboxInfo, MailboxName, MailboxStatus, MessageMeta, ModSeq, Uid,
    UidValidity,
};

/// A storage or account operation the session needs (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Check `login`/`password` (spec 2.2: lower-cased login, creation on first login
    /// under the same rules as SMTP AUTH). Answer [`Answer::Authenticated`] with the
    /// account address, or [`Refusal::AuthenticationFailed`].
    Authenticate {
        /// The login name as the client sent it.
        login: String,
        /// The cleartext password.
        password: String,
    },
    /// List the account's mailboxes (INBOX included). Answer [`Answer::Mailboxes`].
    ListMailboxes {
        /// The account.
        account: Address,
    },
    /// Create a mailbox. Answer [`Answer::Done`], [`Refusal::AlreadyExists`] or
    /// [`Refusal::Cannot`].
    CreateMailbox {
        /// The account.
        account: Address,
        /// The new mailbox's name (`.`-separated hierarchy).
        mailbox: MailboxName,
    },
    /// Delete a mailbox and its messages (never INBOX; the session refuses that itself).
    /// Answer [`Answer::Done`] or [`Refusal::NonExistent`].
    DeleteMailbox {
        /// The account.
        account: Address,
        /// The mailbox to delete.
        mailbox: MailboxName,
    },
    /// Rename a mailbox. Answer [`Answer::Done`], [`Refusal::NonExistent`] or
    /// [`Refusal::AlreadyExists`].
    RenameMailbox {
        /// The account.
        account: Address,
        /// The current name.
        from: MailboxName,
        /// The new name.
        to: MailboxName,
    },
    /// Mark a mailbox subscribed or not. Answer [`Answer::Done`].
    Subscribe {
        /// The account.
        account: Address,
        /// The mailbox.
        mailbox: MailboxName,
        /// `true` for SUBSCRIBE, `false` for UNSUBSCRIBE.
        subscribed: bool,
    },
    /// The counters of one mailbox (STATUS). Answer [`Answer::Status`] or
    /// [`Refusal::NonExistent`].
    MailboxStatus {
        /// The account.
        account: Address,
        /// The mailbox.
        mailbox: MailboxName,
    },
    /// Open a mailbox (SELECT/EXAMINE): its counters and every message's metadata in
    /// ascending UID order. Answer [`Answer::Selected`] or [`Refusal::NonExistent`].
    /// Changes the embedder passes in after this request and before the answer (the
    /// account's feed, asked for at login by `Output::Subscribe`) are kept and applied
    /// once the mailbox is open.
    Select {
        /// The account.
        account: Address,
        /// The mailbox.
        mailbox: MailboxName,
        /// SELECT (read-write) claims the mailbox's `\Recent` messages
        /// ([`chatmail_core::store::MailStore::claim_recent`]) before listing them;
        /// EXAMINE does not.
        claim_recent: bool,
    },
    /// Claim the `\Recent` messages of the selected (read-write) mailbox that arrived
    /// since the last claim ([`chatmail_core::store::MailStore::claim_recent`]). Answer
    /// [`Answer::RecentClaimed`].
    ClaimRecent {
        /// The account.
        account: Address,
        /// The selected mailbox.
        mailbox: MailboxName,
    },
    /// Metadata of the listed messages that still exist, ascending by UID. Answer
    /// [`Answer::Messages`] (missing UIDs are simply left out).
    Messages {
        /// The account.
        account: Address,
        /// The selected mailbox.
        mailbox: MailboxName,
        /// Ascending UIDs.
        uids: Vec<Uid>,
    },
    /// The full bytes of one message as delivered. Answer [`Answer::Message`] (a
    /// reference-counted [`Bytes`] so a large message is held once) or
    /// [`Refusal::NonExistent`] when it was expunged meanwhile.
    FetchMessage {
        /// The account.
        account: Address,
        /// The selected mailbox.
        mailbox: MailboxName,
        /// The message.
        uid: Uid,
    },
    /// Which of `candidates` match a SEARCH on their content. For each message still
    /// there, read its bytes (as for [`Request::FetchMessage`]) and call
    /// [`ContentSearch::matches`] with its metadata; that call scans the message (linear
    /// in its size) and belongs where blocking is allowed, not on an async worker.
    /// Answer [`Answer::Matched`] (messages expunged meanwhile are left out). The session
    /// has checked the work against its budget before asking.
    SearchContent {
        /// The account.
        account: Address,
        /// The selected mailbox.
        mailbox: MailboxName,
        /// Metadata of the messages to check, ascending by UID.
        candidates: Vec<MessageMeta>,
        /// The search program.
        search: ContentSearch,
    },
    /// Change flags (STORE, and `\Seen` on a non-PEEK body fetch). With
    /// `unchanged_since` (CONDSTORE), leave messages whose modseq is higher untouched and
    /// report them as `modified`. Answer [`Answer::FlagsStored`].
    StoreFlags {
        /// The account.
        account: Address,
        /// The selected mailbox.
        mailbox: MailboxName,
        /// Ascending UIDs.
        uids: Vec<Uid>,
        /// Replace, add or remove.
        op: FlagOp,
        /// The flags.
        flags: Flags,
        /// The CONDSTORE precondition.
        unchanged_since: Option<ModSeq>,
    },
    /// Remove messages flagged `\Deleted` (EXPUNGE, CLOSE, UID EXPUNGE): all of them, or
    /// only those among `uids`. Answer [`Answer::Expunged`].
    Expunge {
        /// The account.
        account: Address,
        /// The selected mailbox.
        mailbox: MailboxName,
        /// `Some` restricts the expunge to these UIDs (UID EXPUNGE).
        uids: Option<Vec<Uid>>,
    },
    /// Copy (or move, removing the originals) messages to another mailbox. Answer
    /// [`Answer::Copied`] with the UID pairs, or [`Refusal::NonExistent`] (target
    /// missing, the session adds `[TRYCREATE]`) or [`Refusal::OverQuota`].
    CopyMessages {
        /// The account.
        account: Address,
        /// The selected mailbox.
        from: MailboxName,
        /// Ascending UIDs.
        uids: Vec<Uid>,
        /// The target mailbox.
        to: MailboxName,
        /// MOVE instead of COPY.
        remove_originals: bool,
    },
    /// Store a message (APPEND), counted against the quota. Answer [`Answer::Appended`],
    /// [`Refusal::NonExistent`] or [`Refusal::OverQuota`].
    Append {
        /// The account.
        account: Address,
        /// The target mailbox.
        mailbox: MailboxName,
        /// Initial flags.
        flags: Flags,
        /// INTERNALDATE the client asked for (Unix seconds); `None` means now.
        internal_date: Option<i64>,
        /// The message.
        message: Bytes,
    },
    /// Storage used by the account, in bytes (GETQUOTA/GETQUOTAROOT). Answer
    /// [`Answer::QuotaUsage`].
    QuotaUsage {
        /// The account.
        account: Address,
    },
    /// Read metadata entries (GETMETADATA, RFC 5464). `mailbox` is `""` for server
    /// entries. Answer [`Answer::Metadata`] with the entries that have a value:
    /// `/private/devicetoken` is all valid tokens joined by single spaces (spec 5.1);
    /// `/shared/vendor/deltachat/irohrelay`, `.../turn`, `.../maxsmtprecipients`,
    /// `.../appversions`, `.../unixtimestamp` and `/shared/admin` come from
    /// configuration, the clock or a provider.
    GetMetadata {
        /// The account.
        account: Address,
        /// The mailbox named in the command (ignored for device tokens).
        mailbox: MailboxName,
        /// The entry names, as the client wrote them.
        entries: Vec<String>,
    },
    /// Add (or refresh the timestamp of) a push device token (SETMETADATA
    /// `/private/devicetoken`, spec 5.2: valid 90 days from the last set). Answer
    /// [`Answer::Done`].
    AddDeviceToken {
        /// The account.
        account: Address,
        /// The opaque token.
        token: String,
    },
}

/// The embedder's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// The operation failed; the reason decides the response code.
    Refused(Refusal),
    /// Like [`Answer::Refused`], but the tagged `NO` waits until `until` (a failed-login
    /// penalty of the embedder). The session holds it on its own timer
    /// ([`Engine::poll_timeout`](chatmail_core::engine::Engine::poll_timeout)) and reads no further command meanwhile; nothing
    /// blocks.
    RefusedUntil {
        /// The reason.
        refusal: Refusal,
        /// When the `NO` may go out.
        until: Instant,
    },
    /// The operation succeeded and returns nothing.
    Done,
    /// Login accepted for this account.
    Authenticated(Address),
    /// The account's mailboxes.
    Mailboxes(Vec<MailboxInfo>),
    /// A mailbox's counters.
    Status(MailboxStatus),
    /// A mailbox was opened.
    Selected {
        /// Its counters.
        status: MailboxStatus,
        /// Every message, ascending by UID.
        messages: Vec<MessageMeta>,
        /// The `\Recent` UIDs this session claimed (empty for EXAMINE).
        recent: Range<Uid>,
    },
    /// The `\Recent` UIDs claimed by [`Request::ClaimRecent`].
    RecentClaimed(Range<Uid>),
    /// Message metadata, ascending by UID.
    Messages(Vec<MessageMeta>),
    /// One message's bytes.
    Message(Bytes),
    /// The UIDs among [`Request::SearchContent`]'s candidates that matched.
    Matched(Vec<Uid>),
    /// The result of a flag change.
    FlagsStored {
        /// Messages whose flags were written, with their new flags and modseq.
        updated: Vec<MessageMeta>,
        /// Messages left alone because of `unchanged_since`.
        modified: Vec<Uid>,
    },
    /// UIDs that were expunged, ascending.
    Expunged(Vec<Uid>),
    /// Messages were copied or moved.
    Copied {
        /// UIDVALIDITY of the target mailbox.
        uid_validity: UidValidity,
        /// `(source UID, new UID)` pairs, ascending by source UID.
        mapping: Vec<(Uid, Uid)>,
    },
    /// A message was appended.
    Appended {
        /// UIDVALIDITY of the target mailbox.
        uid_validity: UidValidity,
        /// The new message's UID.
        uid: Uid,
    },
    /// Storage the account uses, in bytes.
    QuotaUsage(u64),
    /// Metadata entries with values: `(entry name, value)`.
    Metadata(Vec<(String, Bytes)>),
}

/// Why the embedder could not do what a request asked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Wrong login or password, or account creation refused (`[AUTHENTICATIONFAILED]`).
    AuthenticationFailed,
    /// The mailbox or message does not exist (`[NONEXISTENT]`).
    NonExistent,
    /// The mailbox already exists (`[ALREADYEXISTS]`).
    AlreadyExists,
    /// The account is over its storage quota (`[OVERQUOTA]`).
    OverQuota,
    /// The message is larger than allowed (`[TOOBIG]`).
    TooBig,
    /// Temporarily unavailable, e.g. a storage error (`[UNAVAILABLE]`).
    Unavailable,
    /// Refused for another reason (`[CANNOT]`), with a short human-readable text.
    Cannot(String),
}

impl Refusal {
    /// The tagged `NO` text: response code and human text.
    pub(crate) fn response_text(&self) -> String {
        match self {
            Refusal::AuthenticationFailed => {
                "[AUTHENTICATIONFAILED] Authentication failed.".to_string()
            }
            Refusal::NonExistent => "[NONEXISTENT] Mailbox or message doesn't exist.".to_string(),
            Refusal::AlreadyExists => "[ALREADYEXISTS] Mailbox already exists.".to_string(),
            Refusal::OverQuota => "[OVERQUOTA] Quota exceeded (mailbox for user is full)".into(),
            Refusal::TooBig => "[TOOBIG] Message too large.".to_string(),
            Refusal::Unavailable => "[UNAVAILABLE] Temporary storage failure.".to_string(),
            Refusal::Cannot(text) => {
                let clean: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
                format!("[CANNOT] {clean}")
            }
        }
    }
}
