//! The `postgres` backend (feature `postgres`): mailboxes, messages and their IMAP state
//! in a PostgreSQL database that several relay nodes of one domain share.
//!
//! [`PostgresStore`] keeps exactly the [`MemoryStore`](super::MemoryStore)'s semantics
//! (the model test `tests/store_model.rs` compares the two), with these choices:
//!
//! * **Durability.** Every change is one transaction; a successful
//!   [`append`](super::MailStore::append) means it committed.
//! * **UIDs and modseqs.** Each mailbox is one row of `mailboxes` holding UIDVALIDITY,
//!   UIDNEXT, HIGHESTMODSEQ, the first `\Recent` UID and the bytes used. A change takes
//!   that row's lock first (`UPDATE mailboxes SET uid_next = uid_next + 1 ... RETURNING`,
//!   or `SELECT ... FOR UPDATE`), so appends from any number of processes get distinct,
//!   increasing UIDs, and a mailbox's modseqs are committed in their order. A new
//!   mailbox's UIDVALIDITY comes from a database sequence, so it is never handed out
//!   twice (a migration that imports UIDVALIDITYs must set the sequence past them).
//! * **Expunges** leave a tombstone (`expunged`: UID, modseq, time), which is what lets a
//!   node tell its subscribers about an expunge another node made. The daily
//!   [`expire`](super::MailStore::expire) prunes tombstones older than a day.
//! * **`\Recent`** is claimed in the database, so a message is recent to one session
//!   across all nodes.
//! * **Bounds.** Every connection has a `statement_timeout`; the pool has a size and
//!   wait/create/recycle timeouts ([`PostgresOptions`]).
//! * **Schema.** Migrations run at [`open`](PostgresStore::open) under an advisory lock,
//!   so nodes starting together do not race; the `schema_version` table says which ran.
//! * **Expiry** runs on one node at a time: [`expire`](super::MailStore::expire) takes a
//!   session advisory lock and does nothing (an empty report) when another node holds it.
//! * **Accounts.** [`PostgresStore`] is also an [`AccountStore`](crate::account::AccountStore)
//!   (password hash, last login day, the `enforceE2EEincoming` and disabled markers; a
//!   first login is one `INSERT ... ON CONFLICT`, so concurrent first logins on any
//!   nodes create the account once) and a
//!   [`DeviceTokenStore`](crate::account::DeviceTokenStore). Mailboxes do not need an
//!   account row: an address's INBOX is made on first use, as the memory store does;
//!   `expire` removes accounts whose last login is too old, with their mail, and keeps
//!   the mail of addresses without an account row.
//!
//! # The change feed across nodes
//!
//! After a commit the store publishes the changes on its local [`ChangeHub`](super::ChangeHub) and, inside
//! the transaction, `NOTIFY chatmail_changes` with the node and the account. Each store
//! keeps a listener connection (`LISTEN chatmail_changes`); a notification from another
//! node is only a hint: for each mailbox of that account the store reads what changed
//! since the last modseq it published (messages with a higher modseq, tombstones with a
//! higher modseq, mailboxes gone or renamed) and publishes that. After the listener
//! reconnects it does the same for every account with local subscribers, so a
//! notification lost while it was away loses nothing. An account's cursors are read when
//! it gets its first local subscriber, and its reads (`status`, `list_messages`,
//! `claim_recent`) wait for that, so a session never misses a change between its
//! SELECT and its cursor. A subscriber may see a change twice (a local change published
//! at once and read back again later); the IMAP session ignores what it knows already.
//!
//! On an engine without `NOTIFY` (CockroachDB) set [`PostgresOptions::listen`] to false
//! and [`PostgresOptions::poll_interval`] to a bound: the store then reads the changes of
//! the accounts with local subscribers at that interval (one query per account, more
//! only for the mailboxes that changed), so a wake-up across nodes takes at most that
//! long. [`PostgresStore::catch_up`] runs one such round on demand.

//!
//! # Where the code is
//!
//! `postgres_store` has [`PostgresStore`] and its options; `inner` what its handles
//! share; `schema` the migrations; `mailboxes`, `messages`, `flags` and `expiry` the
//! operations (quota usage with expiry); `feed` the change feed across nodes, with its
//! per-account state in `cursors`; `accounts` and `tokens` the account store and device
//! tokens; `import` the readers and writers of a migration ([`crate::store::migrate`]);
//! `queue` the shared delivery queue's rows, `push_pending` the waiting push
//! notifications'; `secrets` the domain-wide secrets (the
//! DKIM key); `tls` the connector (TLS with
//! `sslmode=require`); `rows` decodes rows, `sql` runs statements.

mod accounts;
mod cursors;
mod expiry;
mod feed;
mod flags;
mod import;
mod inner;
mod mailboxes;
mod messages;
mod postgres_store;
mod push_pending;
mod queue;
mod rows;
mod schema;
mod secrets;
mod sql;
mod tls;
mod tokens;

pub use import::ImportedMailbox;
pub use postgres_store::{PostgresOptions, PostgresStore};
pub use push_pending::PendingPushRow;
pub use queue::QueuedRow;
pub use schema::SCHEMA_VERSION;
pub use secrets::MAX_DOMAIN_SECRET_LEN;
