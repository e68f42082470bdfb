//! [`StoreError`]: why a storage operation failed.

/// Why a storage operation failed. The IMAP engine turns each into a tagged `NO`; none of
/// them means the session must end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The mailbox does not exist.
    #[error("mailbox {0:?} does not exist")]
    NoSuchMailbox(String),
    /// CREATE or RENAME to a name that exists already.
    #[error("mailbox {0:?} already exists")]
    MailboxExists(String),
    /// The name is not an acceptable mailbox name.
    #[error("invalid mailbox name {name:?}: {reason}")]
    InvalidMailboxName {
        /// The name as given (control characters escaped by `Debug`).
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The account has the maximum number of mailboxes already.
    #[error("the account has {0} mailboxes, no more can be created")]
    TooManyMailboxes(usize),
    /// DELETE or RENAME of INBOX.
    #[error("INBOX cannot be deleted or renamed")]
    InboxImmutable,
    /// The message (UID) does not exist (any more) in the mailbox.
    #[error("no message with UID {0}")]
    NoSuchMessage(u32),
    /// A message larger than [`StoreLimits::max_message_bytes`](super::StoreLimits::max_message_bytes).
    #[error("message of {size} bytes exceeds the store's limit of {limit} bytes")]
    MessageTooLarge {
        /// The message's size (for a compressed file: at least this much).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A message would carry more keywords than [`StoreLimits::max_keywords`](super::StoreLimits::max_keywords).
    #[error("a message may carry at most {0} keywords")]
    TooManyKeywords(usize),
    /// The mailbox has used up the UID space; it needs a new UIDVALIDITY.
    #[error("the mailbox has no UIDs left")]
    UidsExhausted,
    /// A stored file is unreadable as a message (for example a broken gzip stream).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The blocking executor dropped the job instead of running it (shutting down).
    #[error("the store's blocking executor is gone")]
    ExecutorGone,
    /// A file-system (or, for other backends, network) error.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl From<crate::executor::ExecutorGone> for StoreError {
    fn from(_: crate::executor::ExecutorGone) -> Self {
        StoreError::ExecutorGone
    }
}

impl StoreError {
    /// Wraps an I/O error with what the store was doing.
    pub(crate) fn io(context: impl std::fmt::Display, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.to_string(),
            source,
        }
    }
}
