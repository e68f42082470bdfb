//! The foundation of a chatmail relay (the minimal e-mail server Delta Chat uses): the
//! domain types, the configuration, accounts, mail storage with its change feed, and the
//! one contract every sans-IO protocol engine keeps.
//!
//! The protocol engines (`chatmail-smtp`, `chatmail-imap`) and the filter
//! (`chatmail-policy`) build on this crate and touch no file, socket or clock; everything
//! here that does is behind a trait an embedder can replace. The `chatmail` crate
//! assembles it all into a relay.
//!
//! # For embedders
//!
//! Someone assembling a relay (the `chatmail` crate's `Relay` builder does it for you):
//!
//! * [`config`]: [`Config`](config::Config), read from the reference relay's
//!   `chatmail.ini`, and the connection [`Timeouts`](config::Timeouts).
//! * [`account`]: [`Accounts`](account::Accounts), the login algorithm with creation on
//!   first login, over an account store ([`MemoryAccountStore`](account::MemoryAccountStore),
//!   [`MaildirAccountStore`](account::MaildirAccountStore)); device tokens for push;
//!   the failed-login throttle and the password-hashing pool.
//! * [`store`]: the mail stores ([`MemoryStore`](store::MemoryStore),
//!   [`MaildirStore`](store::MaildirStore), the reference relay's layout on disk) and
//!   the change feed.
//! * [`BlockingExecutor`]: where blocking work (file systems, password hashes) runs;
//!   [`InlineExecutor`] and [`ThreadExecutor`] ship here, a tokio program passes one that
//!   calls `spawn_blocking` (see [`executor`]).
//! * [`engine`]: the contract between a protocol engine and its driver (below).
//! * [`budget`]: the one bound on message bytes all connections hold in memory.
//! * The domain types, at the crate root: [`Address`], [`Change`], [`Flag`], [`Flags`],
//!   [`Uid`], [`MessageMeta`], [`INBOX`] and the rest of [`types`].
//!
//! # For backend authors
//!
//! Someone storing mail, accounts or tokens elsewhere (a database, an object store)
//! implements a trait, with the error type its signatures name:
//!
//! * [`store::MailStore`] ([`store::StoreError`]): mailboxes, messages, quota usage,
//!   expiry and trimming; every change is published to a [`store::ChangeHub`].
//!   [`store::validate_mailbox_name`] and the thresholds and oldest-first order of
//!   [`expiry`] keep a new backend's answers the same as the two shipped here.
//! * [`account::AccountStore`] ([`account::AccountError`]): password hashes, last-login
//!   days ([`account::last_login_day`]), the end-to-end-encryption marker.
//! * [`account::DeviceTokenStore`] ([`account::TokenError`]): push device tokens.
//! * [`BlockingExecutor`] ([`ExecutorGone`]): a runtime's blocking pool;
//!   [`run_blocking`] awaits a job on any executor.
//!
//! # The engine contract
//!
//! Every protocol engine (SMTP server and client, IMAP server, and those still to come)
//! implements [`engine::Engine`]: input bytes with the time (`feed(bytes, now)`),
//! outputs drained with `poll()` ([`engine::Output`]: bytes to send, a request with an
//! id, TLS, a change-feed subscription, an event, close), `answer(id, answer)` for each request,
//! `handle_timeout(now)` at `poll_timeout()`, and `shutdown(now)`, after which the
//! engine writes its own goodbye. The [`engine`] module docs give the method kinds and
//! the drive loop every driver runs.
//!
//! # The change feed
//!
//! Each store publishes every change it makes ([`Change`]: appended, flags changed,
//! expunged, mailbox reset), per account, after applying it, on a
//! [`store::ChangeHub`]. An engine asks for its account's feed with
//! [`engine::Output::Subscribe`]; the driver then takes a
//! [`store::ChangeSubscription`] ([`store::MailStore::subscribe`]) and passes every item
//! to [`engine::Engine::handle_change`], so an IDLE session hears of a delivery, an
//! expiry or a trim at once. A subscriber that falls too far behind gets
//! [`store::Lagged`] once, and the engine resynchronises by itself: no driver has to
//! handle it.
//!
//! Comments cite the reference relay's behaviour as "spec N.N": the section of that name
//! in the repository's `docs/reference-relay.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// `pub` means the public surface: everything else says `pub(crate)` or less.
#![warn(unreachable_pub)]

pub mod account;
pub mod budget;
pub mod config;
pub mod dns;
pub mod engine;
pub mod executor;
pub mod expiry;
pub mod store;
pub mod types;

pub use executor::{run_blocking, BlockingExecutor, ExecutorGone, InlineExecutor, ThreadExecutor};
pub use types::*;

/// Durable file writes (atomic replace, directory fsync) for the other crates of the
/// workspace that keep files of their own (the delivery queue of `chatmail`).
pub mod durable {
    pub use crate::account::fsutil::{create_dir_all_durable, sync_dir, write_atomic};
}

/// Internals the fuzz targets reach (`fuzz/`; cargo-fuzz builds with `--cfg fuzzing`):
/// parsers of untrusted input that are not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::store::maildir::expiry::parse_dovecot_name;
}

#[cfg(test)]
mod tests;
