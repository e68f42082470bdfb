//! The `maildir` backend: [`MaildirStore`], the reference relay's layout on disk (the
//! layout and the guarantees are in its docs).
//!
//! # Where the code is
//!
//! This file only declares and re-exports. `maildir_store` is the store's async face
//! ([`MaildirStore`]: each [`MailStore`](crate::store::MailStore) method hands one job
//! to the executor), `inner` its state shared by every job. The jobs are in files by
//! concern: `mailboxes` (CREATE, DELETE, RENAME, subscriptions, LIST), `messages`
//! (append, read, expunge, copy), `flags` (STORE), `usage` and `quota` (quota usage),
//! `maintenance` (expiry, trimming and the sweep of `tmp/`, with [`expiry`] deciding on
//! files); `state` loads a mailbox and makes its changes durable, `rescan` follows files
//! changed by others, `dovecot` reads and takes over what Dovecot left, `import` writes
//! what a migration brings (feature `postgres`), `account` and `uid_validity` keep the
//! store-wide bookkeeping; `files` and `uidlist` are the formats on disk.

mod account;
mod committer;
mod dovecot;
mod durability;
pub(crate) mod expiry;
mod files;
mod flags;
#[cfg(feature = "postgres")]
mod import;
mod inner;
mod mailboxes;
mod maildir_store;
mod maintenance;
mod messages;
mod quota;
mod rescan;
mod state;
mod uid_validity;
mod uidlist;
mod usage;

#[cfg(feature = "postgres")]
pub use import::{MaildirImport, MaildirMailboxImport};
pub use maildir_store::MaildirStore;
