//! Mail storage: traits, the change feed, and the `memory` and `maildir` backends.
//!
//! [`MailStore`] is everything the IMAP engine and local delivery need from a mail store,
//! per account ([`Address`](crate::types::Address)) and mailbox name: mailboxes (create, delete, rename, list,
//! subscribe), messages (append, list with UIDs and modseqs, read, flags, expunge, copy,
//! move), quota usage, expiry and quota trimming, and a [change feed](ChangeSubscription)
//! an IDLE session waits on.
//! The trait says nothing about files, so a networked backend (a database for the index,
//! an object store for bodies) can implement it too.
//!
//! Three backends ship here:
//!
//! * [`MemoryStore`]: everything in memory; for tests, fuzzing and embedders that want no
//!   persistence.
//! * [`MaildirStore`]: the reference relay's layout on disk, `<mailboxes_dir>/<addr>/`
//!   with `cur/ new/ tmp/` and Maildir++ folders `.<Name>/`, so an existing relay's
//!   messages (written by Dovecot, gzip-compressed or not) are served without conversion.
//!   IMAP state that maildir cannot hold lives in a sidecar index per mailbox,
//!   `chatmail-uidlist`.
//! * `PostgresStore` (feature `postgres`): a PostgreSQL database that several relay
//!   nodes of one domain share, with the change feed carried across nodes.
//!
//! Accounts (whether an address may log in, its password) are not the store's business:
//! the caller checks them with [`crate::account`] first. The maildir store creates an
//! account's maildir on first use, as Dovecot does.
//!
//! # Semantics every backend keeps
//!
//! * `INBOX` (any case) always exists and cannot be deleted or renamed.
//! * Within one [`UidValidity`](crate::types::UidValidity) UIDs strictly increase and are never reused, also across a
//!   restart. A mailbox that is deleted and created again gets a new UIDVALIDITY.
//! * Every change to a message (append, flags, expunge) takes a new modseq, one higher
//!   than the mailbox's highest so far; a new mailbox starts at highest modseq 1.
//! * A successful [`MailStore::append`] is durable when it returns.
//! * Every change is published on the account's change feed after it is applied.
//!
//! # Blocking
//!
//! The methods are `async` so that a networked backend can await its I/O. The `maildir`
//! backend does blocking file-system calls including `fsync`; it hands them to the
//! [`BlockingExecutor`](crate::BlockingExecutor) it was built with, so an async
//! runtime's workers never block on a disk (see [`MaildirStore::with_executor`]).
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use chatmail_core::store::{MailStore, MemoryStore};
//! use chatmail_core::{Address, Flags, INBOX};
//!
//! futures::executor::block_on(async {
//!     let store = MemoryStore::new();
//!     let alice = Address::parse("alice@chat.example.org").unwrap();
//!     let mut feed = store.subscribe(&alice);
//!
//!     let message = Bytes::from_static(b"Subject: hi\r\n\r\nhello\r\n");
//!     let appended = store.append(&alice, INBOX, message.clone(), &Flags::new(), 1_700_000_000)
//!         .await
//!         .unwrap();
//!     assert_eq!(appended.uid.0, 1);
//!
//!     // The IDLE session learns of the delivery without polling.
//!     let change = feed.next().await.unwrap();
//!     assert_eq!(change.mailbox(), INBOX);
//!
//!     let listed = store.list_messages(&alice, INBOX, None).await.unwrap();
//!     assert_eq!(listed[0].uid, appended.uid);
//!     assert_eq!(store.read_message(&alice, INBOX, appended.uid).await.unwrap(), message);
//! });
//! ```
//!
//! # Where the code is
//!
//! This file only declares and re-exports. [`MailStore`] and its outcomes are in
//! `mail_store`, [`StoreError`] in `error`, [`StoreLimits`] in `limits`; `feed` is the
//! change feed, `name` mailbox names, `index` the IMAP state of one mailbox both
//! backends keep; `memory` and `maildir` are the backends.

pub(crate) mod error;
mod feed;
pub mod fsreport;
mod index;
mod limits;
pub(crate) mod lock;
mod mail_store;
pub(crate) mod maildir;
mod memory;
#[cfg(feature = "postgres")]
pub mod migrate;
mod name;
#[cfg(feature = "postgres")]
pub mod postgres;

pub use error::StoreError;
pub use feed::{ChangeHub, ChangeSubscription, Lagged, DEFAULT_FEED_CAPACITY};
pub use limits::StoreLimits;
pub use mail_store::{AppendOutcome, CopyOutcome, MailStore, StoreFlagsOutcome};
pub use maildir::MaildirStore;
pub use memory::MemoryStore;
pub use name::{validate_mailbox_name, MAX_MAILBOX_DEPTH, MAX_MAILBOX_NAME_LEN};
#[cfg(feature = "postgres")]
pub use postgres::{PostgresOptions, PostgresStore};
