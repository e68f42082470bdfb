//! What a migration carries and says: the account and mailbox records, the summary,
//! the errors and the endpoints. Apart from the migration itself, so that the stores'
//! import functions can use them without depending on it.

use std::path::PathBuf;

use crate::account::{AccountError, PasswordHash};
use crate::store::error::StoreError;
use crate::types::{Address, ModSeq, Uid, UidValidity};

/// One account as a migration carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountData {
    /// The address.
    pub address: Address,
    /// The stored password hash; `None` for an address that only has mail (a maildir
    /// directory without a `password` file): no account is created for it.
    pub password: Option<PasswordHash>,
    /// The last login (the start of its UTC day), if known.
    pub last_login: Option<u64>,
    /// Whether cleartext mail from other relays is refused (`enforceE2EEincoming`).
    pub enforce_e2ee: bool,
    /// Whether the operator disabled the address (`DISABLED`).
    pub disabled: bool,
    /// The valid device tokens with the time each was last set, in insertion order.
    pub tokens: Vec<(String, u64)>,
}

/// One mailbox's identity and counters as a migration carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxData {
    /// The mailbox name (`INBOX` for the inbox).
    pub name: String,
    /// Whether it is subscribed.
    pub subscribed: bool,
    /// Its UIDVALIDITY, kept so that clients keep their caches.
    pub uid_validity: UidValidity,
    /// Its UIDNEXT: above every UID it holds, and never below the source's (UIDs handed
    /// out before and expunged since are not handed out again).
    pub uid_next: Uid,
    /// Its HIGHESTMODSEQ (CONDSTORE), at least every message's modseq.
    pub highest_modseq: ModSeq,
}

impl MailboxData {
    /// Refuses what no store could hold as given (a name not in its canonical form, a
    /// zero UIDVALIDITY): both import functions check this first.
    pub(crate) fn check(&self, address: &Address) -> Result<(), StoreError> {
        let name = crate::store::name::validate_mailbox_name(&self.name)?;
        if name != self.name {
            return Err(StoreError::InvalidMailboxName {
                name: self.name.clone(),
                reason: "not in its canonical form",
            });
        }
        if self.uid_validity.0 == 0 {
            return Err(StoreError::Corrupt(format!(
                "mailbox {name:?} of {address} has UIDVALIDITY 0"
            )));
        }
        Ok(())
    }
}

/// What a migration moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MigrationSummary {
    /// Addresses moved (accounts, and addresses that only have mail).
    pub accounts: u64,
    /// Mailboxes moved.
    pub mailboxes: u64,
    /// Messages moved.
    pub messages: u64,
    /// Bytes of the messages moved.
    pub bytes: u64,
    /// Messages left out because the source could not read them (gone meanwhile,
    /// corrupt, over the store's size limit); each is logged with its UID.
    pub skipped: u64,
}

impl std::fmt::Display for MigrationSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} accounts, {} mailboxes, {} messages, {} bytes",
            self.accounts, self.mailboxes, self.messages, self.bytes
        )?;
        if self.skipped > 0 {
            write!(f, ", {} unreadable messages skipped", self.skipped)?;
        }
        Ok(())
    }
}

/// Why a migration failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// The endpoint is neither `maildir:DIR` nor a `postgres://` URL.
    #[error("{0:?} is neither maildir:DIR nor postgres://USER@HOST:PORT/DB")]
    BadEndpoint(String),
    /// Source and destination are the same store.
    #[error("source and destination are the same")]
    SameEndpoint,
    /// The destination holds accounts or mail already.
    #[error(
        "the destination {0} is not empty: it holds accounts or mailboxes already; \
         migrate only into an empty directory or database"
    )]
    DestinationNotEmpty(String),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An account operation failed.
    #[error(transparent)]
    Account(#[from] AccountError),
}

/// One side of a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The maildir store: the mailboxes directory, the one holding one directory per
    /// address.
    Maildir(PathBuf),
    /// The PostgreSQL store: a connection URL (`postgres://USER@HOST:PORT/DB`, options
    /// such as `sslmode=require` as [`PostgresStore::open`](crate::store::PostgresStore::open) takes them).
    Postgres(String),
}

impl std::str::FromStr for Endpoint {
    type Err = MigrateError;

    /// `maildir:DIR`, or `postgres://...` / `postgresql://...`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(dir) = s.strip_prefix("maildir:").filter(|d| !d.is_empty()) {
            return Ok(Endpoint::Maildir(PathBuf::from(dir)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Endpoint::Postgres(s.to_string()));
        }
        Err(MigrateError::BadEndpoint(s.to_string()))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Maildir(dir) => write!(f, "maildir:{}", dir.display()),
            // The URL may hold a password: only its scheme and what follows the `@`.
            Endpoint::Postgres(url) => {
                let shown = url.rsplit_once('@').map_or(url.as_str(), |(_, host)| host);
                write!(f, "postgres://…@{shown}")
            }
        }
    }
}
