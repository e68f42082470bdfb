//! The account storage trait: where password hashes, last-login days and the
//! end-to-end-encryption marker live.

use std::path::PathBuf;

use async_trait::async_trait;

use crate::types::Address;

use super::password::{PasswordError, PasswordHash};

/// Seconds in a day; last-login times are kept at this granularity (spec 2.7).
const DAY: u64 = 86_400;

/// The start of the UTC day containing `unix_secs`: what is stored as last login.
pub fn last_login_day(unix_secs: u64) -> u64 {
    unix_secs / DAY * DAY
}

/// A storage or infrastructure failure (not a refused login): the protocol answers with a
/// temporary error (IMAP `NO [UNAVAILABLE]`, SMTP 454) rather than "wrong password".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`read`, `write`, `rename` ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another process held the per-address creation lock longer than the timeout.
    #[error("timed out waiting for the creation lock of {0}")]
    LockTimeout(Address),
    /// A new password could not be hashed.
    #[error("password hashing failed: {0}")]
    Password(#[from] PasswordError),
    /// The [`BlockingExecutor`](crate::BlockingExecutor) dropped a job without running it.
    #[error("the blocking executor dropped the job")]
    ExecutorGone,
    /// The [`super::HashingPool`] is full: the login may be tried again later.
    #[error("{0}")]
    HashingBusy(#[from] super::hashing::PoolBusy),
    /// The account does not exist (for operations that need one).
    #[error("no account {0}")]
    NoAccount(Address),
    /// A networked store's operation failed (a database error, no connection in time,
    /// a malformed stored value).
    #[error(transparent)]
    Backend(#[from] crate::store::error::StoreError),
}

impl AccountError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AccountError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// What the store knows about one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// The account's address (lower-case).
    pub address: Address,
    /// The stored password hash.
    pub password: PasswordHash,
}

/// The result of [`AccountStore::create_if_absent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creation {
    /// This call created the account with the given hash.
    Created(AccountRecord),
    /// The account existed already (possibly created concurrently a moment ago); its
    /// stored hash is returned and the given one discarded.
    Existed(AccountRecord),
}

impl Creation {
    /// The account as stored after the call.
    pub fn record(&self) -> &AccountRecord {
        match self {
            Creation::Created(r) | Creation::Existed(r) => r,
        }
    }
}

/// What [`AccountStore::record_login`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastLoginUpdate {
    /// The stored day changed to the given value.
    Updated(u64),
    /// The stored day was already the given value; nothing was written.
    Unchanged(u64),
    /// There is no such account (logged and ignored, as the reference does).
    NoAccount,
}

/// Account storage. Implementations: [`super::MemoryAccountStore`],
/// [`super::MaildirAccountStore`]; a networked backend implements the same.
///
/// Every method takes an already validated [`Address`] (see [`super::parse_login`]).
/// Times are unix seconds passed in by the caller; stores never read a clock.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// The account, if it exists. An account whose stored hash is empty does not exist
    /// (the reference logs this as an error).
    async fn lookup(&self, address: &Address) -> Result<Option<AccountRecord>, AccountError>;

    /// Creates the account with `password` unless it exists, atomically: concurrent calls
    /// for one address create it exactly once and all return the winning hash. A new
    /// account refuses cleartext mail from outside (`enforceE2EEincoming`) and gets
    /// `last_login_day(now)` as its last login.
    async fn create_if_absent(
        &self,
        address: &Address,
        password: PasswordHash,
        now: u64,
    ) -> Result<Creation, AccountError>;

    /// Records a login at `now`, truncated to the UTC day; writes only if the day changed.
    async fn record_login(
        &self,
        address: &Address,
        now: u64,
    ) -> Result<LastLoginUpdate, AccountError>;

    /// The stored last-login day, if the account exists.
    async fn last_login(&self, address: &Address) -> Result<Option<u64>, AccountError>;

    /// Whether cleartext mail from other relays may be delivered to the account: true only
    /// for accounts without the `enforceE2EEincoming` marker (spec 2.1, 3.3). False for
    /// unknown addresses.
    async fn accepts_cleartext(&self, address: &Address) -> Result<bool, AccountError>;

    /// Whether the operator disabled the address: mail from it and to it is accepted
    /// and dropped (the reference filter's `DISABLED` file in the account directory,
    /// silent-drop semantics). False for unknown addresses.
    async fn is_disabled(&self, address: &Address) -> Result<bool, AccountError>;

    /// Sets or clears the `enforceE2EEincoming` marker of an existing account.
    async fn set_enforce_e2ee(&self, address: &Address, enforce: bool) -> Result<(), AccountError>;

    /// Every account, sorted by address.
    async fn list(&self) -> Result<Vec<Address>, AccountError>;

    /// Removes the account and everything stored for it; false if it did not exist.
    async fn delete(&self, address: &Address) -> Result<bool, AccountError>;
}

impl From<crate::executor::ExecutorGone> for AccountError {
    fn from(_: crate::executor::ExecutorGone) -> Self {
        AccountError::ExecutorGone
    }
}
