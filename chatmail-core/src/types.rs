//! Domain types shared by every crate: addresses, mailboxes, UIDs, flags, modseqs and
//! the changes a mailbox goes through.
//!
//! These are plain values with no I/O. The engines (`chatmail-smtp`, `chatmail-imap`)
//! put them into their requests, the storage backends return them, and the embedder
//! moves them between the two.

use std::fmt;

/// A validated, lower-case mail address `local@domain` of this relay or another one.
///
/// Construction checks only the shape every path derivation relies on (spec 2.1: non-empty,
/// exactly one `@`, no `/`, no NUL, no `..`); account creation applies the stricter
/// rules of [`crate::account`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(String);

/// Why a string is not a usable [`Address`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The string is empty.
    #[error("address is empty")]
    Empty,
    /// No `@`, or more than one.
    #[error("address {0:?} must contain exactly one '@'")]
    NotOneAt(String),
    /// Empty local part or domain.
    #[error("address {0:?} has an empty local part or domain")]
    EmptyPart(String),
    /// A character that would escape a directory or a protocol field.
    #[error("address {0:?} contains a forbidden character or sequence ('/', '\\\\', NUL, control, '..', whitespace)")]
    Forbidden(String),
    /// Longer than an SMTP path may be (RFC 5321: 254 octets).
    #[error("address is {0} bytes long, at most 254 are allowed")]
    TooLong(usize),
}

impl Address {
    /// Maximum length of an address (RFC 5321 path minus the angle brackets).
    pub const MAX_LEN: usize = 254;

    /// Parses and lower-cases an address (Dovecot lower-cases login names too, spec 2.2).
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(AddressError::TooLong(s.len()));
        }
        let lower = s.to_ascii_lowercase();
        let mut parts = lower.split('@');
        let (local, domain) = match (parts.next(), parts.next(), parts.next()) {
            (Some(l), Some(d), None) => (l, d),
            _ => return Err(AddressError::NotOneAt(s.to_string())),
        };
        if local.is_empty() || domain.is_empty() {
            return Err(AddressError::EmptyPart(s.to_string()));
        }
        if lower.contains("..")
            || lower
                .chars()
                .any(|c| c == '/' || c == '\\' || c.is_control() || c.is_whitespace())
        {
            return Err(AddressError::Forbidden(s.to_string()));
        }
        Ok(Address(lower))
    }

    /// The whole address, lower-case.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before `@`.
    pub fn local_part(&self) -> &str {
        self.0.split('@').next().unwrap_or_default()
    }

    /// The part after `@` (a DNS name or a `[a.b.c.d]` literal).
    pub fn domain(&self) -> &str {
        self.0.rsplit('@').next().unwrap_or_default()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.0)
    }
}

impl AsRef<str> for Address {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// An IMAP message UID: strictly increasing within one [`UidValidity`], never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(pub u32);

/// An IMAP UIDVALIDITY value: when it changes, clients drop their cached UIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UidValidity(pub u32);

/// A CONDSTORE modification sequence (RFC 7162): grows with every change to a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ModSeq(pub u64);

/// A mailbox name as the client sees it (`INBOX`, `DeltaChat`, `Sent` ...), hierarchy
/// separator `.` as in a Maildir++ layout.
pub type MailboxName = String;

/// The name of the mailbox every account has.
pub const INBOX: &str = "INBOX";

/// A message flag (RFC 3501 system flags plus keywords).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// `\Seen`
    Seen,
    /// `\Answered`
    Answered,
    /// `\Flagged`
    Flagged,
    /// `\Deleted`
    Deleted,
    /// `\Draft`
    Draft,
    /// A keyword such as `$MDNSent`; atom characters only.
    Keyword(String),
}

impl Flag {
    /// The IMAP wire form (`\Seen`, `$MDNSent`).
    pub fn as_imap(&self) -> &str {
        match self {
            Flag::Seen => "\\Seen",
            Flag::Answered => "\\Answered",
            Flag::Flagged => "\\Flagged",
            Flag::Deleted => "\\Deleted",
            Flag::Draft => "\\Draft",
            Flag::Keyword(k) => k,
        }
    }

    /// Parses the IMAP wire form; system flags case-insensitively. `\Recent` and other
    /// unknown backslash flags are not storable and give `None`.
    pub fn from_imap(s: &str) -> Option<Flag> {
        if let Some(system) = s.strip_prefix('\\') {
            return match system.to_ascii_lowercase().as_str() {
                "seen" => Some(Flag::Seen),
                "answered" => Some(Flag::Answered),
                "flagged" => Some(Flag::Flagged),
                "deleted" => Some(Flag::Deleted),
                "draft" => Some(Flag::Draft),
                _ => None,
            };
        }
        let atom_ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes().all(|b| {
                b.is_ascii_graphic()
                    && !matches!(b, b'(' | b')' | b'{' | b'"' | b'\\' | b']' | b'%' | b'*')
            });
        atom_ok.then(|| Flag::Keyword(s.to_string()))
    }

    /// The Maildir info letter for system flags (`S`, `R`, `F`, `T`, `D`); keywords have none.
    pub(crate) fn maildir_letter(&self) -> Option<char> {
        match self {
            Flag::Draft => Some('D'),
            Flag::Flagged => Some('F'),
            Flag::Answered => Some('R'),
            Flag::Seen => Some('S'),
            Flag::Deleted => Some('T'),
            Flag::Keyword(_) => None,
        }
    }
}

/// A set of flags, kept sorted so that equal sets compare equal.
pub type Flags = std::collections::BTreeSet<Flag>;

/// How a STORE changes the flags of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// `FLAGS`: replace.
    Replace,
    /// `+FLAGS`: add.
    Add,
    /// `-FLAGS`: remove.
    Remove,
}

/// What a mailbox listing says about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// The message's UID.
    pub uid: Uid,
    /// Size in bytes of the message as delivered (RFC822.SIZE), not the on-disk size.
    pub size: u64,
    /// Arrival time, seconds since the Unix epoch (INTERNALDATE).
    pub internal_date: i64,
    /// Current flags.
    pub flags: Flags,
    /// Modseq of the last change to this message.
    pub modseq: ModSeq,
}

/// The counters SELECT and STATUS report for a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxStatus {
    /// UIDVALIDITY of the mailbox.
    pub uid_validity: UidValidity,
    /// The UID the next appended message will get.
    pub uid_next: Uid,
    /// Highest modseq of any message or expunge in the mailbox.
    pub highest_modseq: ModSeq,
    /// Number of messages.
    pub exists: u32,
    /// Number of messages without `\Seen`.
    pub unseen: u32,
    /// Number of messages no session has claimed as `\Recent` yet
    /// ([`MailStore::claim_recent`](crate::store::MailStore::claim_recent)).
    pub recent: u32,
    /// Sum of the messages' sizes in bytes.
    pub size: u64,
}

/// The special-use attribute of a mailbox (RFC 6154).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    /// `\Drafts`
    Drafts,
    /// `\Junk`
    Junk,
    /// `\Trash`
    Trash,
    /// `\Sent`
    Sent,
    /// `\Archive`
    Archive,
}

impl SpecialUse {
    /// The IMAP attribute (`\Sent` ...).
    pub fn as_imap(&self) -> &'static str {
        match self {
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Archive => "\\Archive",
        }
    }

    /// The special use the reference relay declares for a mailbox name (spec 4.2).
    pub fn for_name(name: &str) -> Option<SpecialUse> {
        match name {
            "Drafts" => Some(SpecialUse::Drafts),
            "Junk" => Some(SpecialUse::Junk),
            "Trash" => Some(SpecialUse::Trash),
            "Sent" | "Sent Messages" => Some(SpecialUse::Sent),
            _ => None,
        }
    }
}

/// One entry of a mailbox list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// Mailbox name.
    pub name: MailboxName,
    /// Special-use attribute, if any.
    pub special_use: Option<SpecialUse>,
    /// Whether the account subscribed to it.
    pub subscribed: bool,
}

/// A change to one account's mail, as published on the change feed so that IDLE
/// sessions learn of it at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A message was appended (delivery, APPEND, COPY, MOVE).
    Appended {
        /// The mailbox it was appended to.
        mailbox: MailboxName,
        /// Its metadata.
        meta: MessageMeta,
    },
    /// A message's flags changed.
    FlagsChanged {
        /// The mailbox holding the message.
        mailbox: MailboxName,
        /// The message's UID.
        uid: Uid,
        /// The new flags.
        flags: Flags,
        /// The modseq of this change.
        modseq: ModSeq,
    },
    /// A message was expunged.
    Expunged {
        /// The mailbox that held the message.
        mailbox: MailboxName,
        /// The UID it had.
        uid: Uid,
        /// The modseq of this change.
        modseq: ModSeq,
    },
    /// The mailbox was deleted, renamed or got a new UIDVALIDITY: resynchronise.
    MailboxReset {
        /// The mailbox concerned.
        mailbox: MailboxName,
    },
}

impl Change {
    /// The mailbox the change concerns.
    pub fn mailbox(&self) -> &str {
        match self {
            Change::Appended { mailbox, .. }
            | Change::FlagsChanged { mailbox, .. }
            | Change::Expunged { mailbox, .. }
            | Change::MailboxReset { mailbox } => mailbox,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_shapes() {
        assert_eq!(Address::parse("Ab@X.org").unwrap().as_str(), "ab@x.org");
        assert_eq!(Address::parse("a@[1.2.3.4]").unwrap().domain(), "[1.2.3.4]");
        for bad in [
            "", "a", "a@b@c", "@b", "a@", "a/b@c", "a..b@c", "a\0@c", "a b@c", "a@c\r\n",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            Address::parse(&"a".repeat(300)),
            Err(AddressError::TooLong(300))
        ));
    }

    #[test]
    fn flags_round_trip() {
        for f in [
            "\\Seen",
            "\\Answered",
            "\\Flagged",
            "\\Deleted",
            "\\Draft",
            "$MDNSent",
        ] {
            assert_eq!(Flag::from_imap(f).unwrap().as_imap(), f);
        }
        assert_eq!(Flag::from_imap("\\SEEN"), Some(Flag::Seen));
        assert_eq!(Flag::from_imap("\\Recent"), None);
        assert_eq!(Flag::from_imap("a(b"), None);
    }
}
