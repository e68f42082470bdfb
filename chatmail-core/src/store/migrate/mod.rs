//! Moving a relay's accounts and mail between the maildir store and the PostgreSQL store
//! (feature `postgres`), both ways, keeping what clients have cached: UIDVALIDITY, UIDs,
//! UIDNEXT, modseqs, flags, keywords, internal dates and the exact bytes of every
//! message, and keeping what logins and pushes need: password hashes, last logins,
//! the `enforceE2EEincoming` and disabled markers, and device tokens with the times they
//! were set. Clients then neither re-download nor resynchronise.
//!
//! [`migrate`] reads the source through the stores' own interfaces
//! ([`MailStore`] for mailboxes and messages,
//! [`AccountStore`] for accounts) plus the two readers they lack (every address, and
//! device tokens with their times), and writes the destination with the import
//! functions that keep identities exactly: [`MaildirImport`] and
//! [`PostgresStore::import_account`] and its siblings. It streams: one message body is
//! in memory at a time (the metadata of one mailbox is listed first).
//!
//! The destination must hold no account and no mailbox: [`migrate`] refuses anything else
//! with [`MigrateError::DestinationNotEmpty`], since merging into a live store could hand
//! out a UID or UIDVALIDITY twice. A migration that failed half-way leaves a partial
//! destination, to be emptied (the directory removed, or the database dropped and
//! created) before the next attempt. Neither store may be served by a relay meanwhile.

use std::path::PathBuf;
use std::sync::Arc;

use super::error::StoreError;
use super::mail_store::MailStore;
use super::maildir::MaildirStore;
use super::postgres::{PostgresOptions, PostgresStore};
use crate::account::{AccountStore, MaildirAccountStore};
use crate::executor::InlineExecutor;
use crate::types::{Address, MessageMeta, Uid};

pub(crate) mod data;

pub use super::maildir::{MaildirImport, MaildirMailboxImport};
pub use super::postgres::ImportedMailbox;
pub use data::{AccountData, Endpoint, MailboxData, MigrateError, MigrationSummary};

/// The store migrated from.
enum Source {
    Maildir {
        store: MaildirStore,
        accounts: MaildirAccountStore,
        root: PathBuf,
    },
    Postgres(PostgresStore),
}

impl Source {
    async fn open(endpoint: &Endpoint) -> Result<Source, MigrateError> {
        Ok(match endpoint {
            Endpoint::Maildir(root) => {
                if !root.is_dir() {
                    return Err(StoreError::io(
                        format!("opening {}", root.display()),
                        std::io::Error::from(std::io::ErrorKind::NotFound),
                    )
                    .into());
                }
                Source::Maildir {
                    store: MaildirStore::open(root)?,
                    accounts: MaildirAccountStore::new(root, Arc::new(InlineExecutor)),
                    root: root.clone(),
                }
            }
            Endpoint::Postgres(url) => {
                Source::Postgres(PostgresStore::open(url, PostgresOptions::default()).await?)
            }
        })
    }

    fn mail(&self) -> &dyn MailStore {
        match self {
            Source::Maildir { store, .. } => store,
            Source::Postgres(store) => store,
        }
    }

    fn account_store(&self) -> &dyn AccountStore {
        match self {
            Source::Maildir { accounts, .. } => accounts,
            Source::Postgres(store) => store,
        }
    }

    /// Every address with an account or mail.
    async fn addresses(&self) -> Result<Vec<Address>, MigrateError> {
        match self {
            // Every directory named like an address, with a password file or not.
            Source::Maildir { accounts, .. } => Ok(accounts.list().await?),
            Source::Postgres(store) => Ok(store.addresses().await?),
        }
    }

    async fn account(&self, address: &Address, now: u64) -> Result<AccountData, MigrateError> {
        let accounts = self.account_store();
        let password = accounts.lookup(address).await?.map(|r| r.password);
        let enforce_e2ee = password.is_some() && !accounts.accepts_cleartext(address).await?;
        let tokens = match self {
            Source::Maildir { root, .. } => {
                crate::account::read_token_times(&root.join(address.as_str()), now)?
            }
            Source::Postgres(store) => store.token_times(address, now).await?,
        };
        Ok(AccountData {
            address: address.clone(),
            last_login: match password {
                Some(_) => accounts.last_login(address).await?,
                None => None,
            },
            password,
            enforce_e2ee,
            disabled: accounts.is_disabled(address).await?,
            tokens,
        })
    }
}

/// The store migrated to.
enum Destination {
    Maildir(MaildirImport),
    Postgres(PostgresStore),
}

/// A mailbox being written to the destination.
enum MailboxWriter {
    Maildir(MaildirMailboxImport),
    Postgres(ImportedMailbox),
}

impl Destination {
    /// Opens the destination, refusing one that is not empty.
    async fn open(endpoint: &Endpoint) -> Result<Destination, MigrateError> {
        let destination = match endpoint {
            Endpoint::Maildir(root) => Destination::Maildir(MaildirImport::open(root)?),
            Endpoint::Postgres(url) => {
                let store = PostgresStore::open(url, PostgresOptions::default()).await?;
                if !store.is_empty().await? {
                    return Err(MigrateError::DestinationNotEmpty(endpoint.to_string()));
                }
                Destination::Postgres(store)
            }
        };
        Ok(destination)
    }

    async fn import_account(&mut self, account: &AccountData) -> Result<(), MigrateError> {
        match self {
            Destination::Maildir(import) => import.import_account(account)?,
            Destination::Postgres(store) => store.import_account(account).await?,
        }
        Ok(())
    }

    async fn begin_mailbox(
        &mut self,
        address: &Address,
        mailbox: &MailboxData,
    ) -> Result<MailboxWriter, MigrateError> {
        Ok(match self {
            Destination::Maildir(import) => {
                MailboxWriter::Maildir(import.begin_mailbox(address, mailbox)?)
            }
            Destination::Postgres(store) => {
                MailboxWriter::Postgres(store.import_mailbox(address, mailbox).await?)
            }
        })
    }

    async fn add_message(
        &mut self,
        writer: &mut MailboxWriter,
        meta: &MessageMeta,
        body: bytes::Bytes,
    ) -> Result<(), MigrateError> {
        match (self, writer) {
            (_, MailboxWriter::Maildir(writer)) => writer.add(meta, &body)?,
            (Destination::Postgres(store), MailboxWriter::Postgres(mailbox)) => {
                store.import_message(mailbox, meta, body).await?
            }
            (Destination::Maildir(_), MailboxWriter::Postgres(_)) => {
                return Err(StoreError::Corrupt("mailbox of another destination".into()).into())
            }
        }
        Ok(())
    }

    fn finish_mailbox(&mut self, writer: MailboxWriter) -> Result<(), MigrateError> {
        match (self, writer) {
            (Destination::Maildir(import), MailboxWriter::Maildir(writer)) => {
                import.finish_mailbox(writer)?
            }
            // Each message was committed as it came.
            (_, MailboxWriter::Postgres(_)) => {}
            (Destination::Postgres(_), MailboxWriter::Maildir(_)) => {
                return Err(StoreError::Corrupt("mailbox of another destination".into()).into())
            }
        }
        Ok(())
    }

    fn finish_account(&mut self, address: &Address) -> Result<(), MigrateError> {
        match self {
            Destination::Maildir(import) => import.finish_account(address)?,
            // Subscriptions are columns of the mailbox rows, written with them.
            Destination::Postgres(_) => {}
        }
        Ok(())
    }
}

/// Copies every account, mailbox and message of `from` into `to`, which must be empty,
/// keeping UIDVALIDITY, UIDs, UIDNEXT, modseqs, flags, keywords, internal dates, message
/// bytes, password hashes, last logins, markers and device tokens (see the
/// [module docs](self)). `now` (unix seconds) decides which device tokens are still
/// valid. Returns what was moved.
///
/// Must run within a tokio runtime (the PostgreSQL store's queries run there). The
/// maildir side does blocking file work on the calling task: a command-line tool runs
/// this with `block_on`, not inside a serving relay.
pub async fn migrate(
    from: &Endpoint,
    to: &Endpoint,
    now: u64,
) -> Result<MigrationSummary, MigrateError> {
    if from == to {
        return Err(MigrateError::SameEndpoint);
    }
    let source = Source::open(from).await?;
    let mut destination = Destination::open(to).await?;
    let mut summary = MigrationSummary::default();
    for address in source.addresses().await? {
        let account = source.account(&address, now).await?;
        destination.import_account(&account).await?;
        summary.accounts += 1;
        let mail = source.mail();
        for info in mail.list_mailboxes(&address).await? {
            let status = mail.status(&address, &info.name).await?;
            // Metadata only: the bodies are read one at a time below.
            let messages = mail.list_messages(&address, &info.name, None).await?;
            let highest_uid = messages.last().map_or(0, |m| m.uid.0);
            let highest_modseq = messages.iter().map(|m| m.modseq).max();
            let data = MailboxData {
                subscribed: info.subscribed,
                uid_validity: status.uid_validity,
                uid_next: status.uid_next.max(Uid(highest_uid.saturating_add(1))),
                highest_modseq: highest_modseq
                    .map_or(status.highest_modseq, |m| m.max(status.highest_modseq)),
                name: info.name,
            };
            let mut writer = destination.begin_mailbox(&address, &data).await?;
            for meta in messages {
                let body = match mail.read_message(&address, &data.name, meta.uid).await {
                    Ok(body) => body,
                    Err(e @ (StoreError::Io { .. } | StoreError::ExecutorGone)) => {
                        return Err(e.into())
                    }
                    Err(e) => {
                        tracing::warn!(
                            "{address} {:?} UID {}: not migrated: {e}",
                            data.name,
                            meta.uid.0
                        );
                        summary.skipped += 1;
                        continue;
                    }
                };
                // The size the destination serves is that of the bytes it holds.
                let meta = MessageMeta {
                    size: body.len() as u64,
                    ..meta
                };
                summary.messages += 1;
                summary.bytes += meta.size;
                destination.add_message(&mut writer, &meta, body).await?;
            }
            destination.finish_mailbox(writer)?;
            summary.mailboxes += 1;
        }
        destination.finish_account(&address)?;
    }
    Ok(summary)
}
