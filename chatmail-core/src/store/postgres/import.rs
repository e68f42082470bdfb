//! Export and import for a migration ([`crate::store::migrate`]): the readers the
//! [`MailStore`](crate::store::MailStore) and [`AccountStore`](crate::account::AccountStore)
//! traits lack (every address, device tokens with their times), and writers that keep
//! identities exactly: an account row as given, a mailbox row with the given
//! UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ (the UIDVALIDITY sequence set past it, so that
//! no new mailbox gets it), and messages with the given UIDs and modseqs.

use bytes::Bytes;

use super::postgres_store::PostgresStore;
use super::rows::encode;
use super::sql::{column, db, execute, get, query, query_opt, to_i64, to_u64};
use crate::store::error::StoreError;
use crate::store::migrate::data::{AccountData, MailboxData};
use crate::types::{Address, MessageMeta};

/// A mailbox created by [`PostgresStore::import_mailbox`], which its messages go to.
#[derive(Debug, Clone)]
pub struct ImportedMailbox {
    id: i64,
}

impl PostgresStore {
    /// Whether the database holds no account and no mailbox (a migration's destination
    /// must not).
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            let row = query_opt(
                &client,
                "SELECT 1 WHERE EXISTS (SELECT 1 FROM accounts) \
                 OR EXISTS (SELECT 1 FROM mailboxes)",
                &[],
                "is empty",
            )
            .await?;
            Ok(row.is_none())
        })
        .await
    }

    /// Every address with an account or a mailbox, sorted (a mailbox needs no account
    /// row, so [`AccountStore::list`](crate::account::AccountStore::list) does not list
    /// them all). Stored addresses that are not valid ones are logged and left out.
    pub async fn addresses(&self) -> Result<Vec<Address>, StoreError> {
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            let rows = query(
                &client,
                "SELECT address FROM accounts UNION SELECT account FROM mailboxes ORDER BY 1",
                &[],
                "addresses",
            )
            .await?;
            let mut addresses = Vec::with_capacity(rows.len());
            for row in &rows {
                let stored: &str = column(row, 0)?;
                match Address::parse(stored) {
                    Ok(address) if address.as_str() == stored => addresses.push(address),
                    _ => tracing::warn!("ignoring stored address {stored:?}"),
                }
            }
            Ok(addresses)
        })
        .await
    }

    /// The account's device tokens valid at `now`, with the time each was last set, in
    /// insertion order.
    pub async fn token_times(
        &self,
        address: &Address,
        now: u64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let address = address.clone();
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            let oldest = to_i64(now.saturating_sub(crate::account::TOKEN_LIFETIME_SECS));
            let newest = to_i64(now.saturating_add(crate::account::TOKEN_FUTURE_SLACK_SECS));
            query(
                &client,
                "SELECT token, set_at FROM device_tokens \
                 WHERE address = $1 AND set_at > $2 AND set_at < $3 ORDER BY added",
                &[&address.as_str(), &oldest, &newest],
                "tokens",
            )
            .await?
            .iter()
            .map(|row| Ok((column(row, 0)?, to_u64(column(row, 1)?, "token time")?)))
            .collect()
        })
        .await
    }

    /// Writes an account as given: password hash, last login, markers and device tokens
    /// (in their order, with their times), in one transaction. An address without a
    /// password gets no row (its mailboxes need none). Fails if the account exists.
    pub async fn import_account(&self, account: &AccountData) -> Result<(), StoreError> {
        let Some(password) = account.password.clone() else {
            return Ok(());
        };
        let account = account.clone();
        self.run(|inner| async move {
            let mut client = get(&inner.pool).await?;
            let tx = client.transaction().await.map_err(db("import account"))?;
            let address = account.address.as_str();
            execute(
                &tx,
                "INSERT INTO accounts (address, password, last_login, enforce_e2ee, disabled) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &address,
                    &password.as_str(),
                    &to_i64(account.last_login.unwrap_or(0)),
                    &account.enforce_e2ee,
                    &account.disabled,
                ],
                "import account",
            )
            .await?;
            for (token, set_at) in &account.tokens {
                if crate::account::check_token(token).is_err() {
                    continue;
                }
                // `added` (insertion order) follows the order of these inserts.
                execute(
                    &tx,
                    "INSERT INTO device_tokens (address, token, set_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (address, token) DO NOTHING",
                    &[&address, token, &to_i64(*set_at)],
                    "import tokens",
                )
                .await?;
            }
            tx.commit().await.map_err(db("import account"))
        })
        .await
    }

    /// Creates a mailbox with the given UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and
    /// subscription, none of its messages `\Recent`, and sets the UIDVALIDITY sequence
    /// past its UIDVALIDITY, in one transaction. Fails if the mailbox exists.
    pub async fn import_mailbox(
        &self,
        address: &Address,
        mailbox: &MailboxData,
    ) -> Result<ImportedMailbox, StoreError> {
        mailbox.check(address)?;
        let name = mailbox.name.clone();
        let (address, mailbox) = (address.clone(), mailbox.clone());
        self.run(|inner| async move {
            let mut client = get(&inner.pool).await?;
            let tx = client.transaction().await.map_err(db("import mailbox"))?;
            let uid_next = i64::from(mailbox.uid_next.0);
            let row = query_opt(
                &tx,
                "INSERT INTO mailboxes (account, name, uid_validity, uid_next, highest_modseq, \
                     first_recent, subscribed) \
                 VALUES ($1, $2, $3, $4, $5, $4, $6) RETURNING id",
                &[
                    &address.as_str(),
                    &name,
                    &i64::from(mailbox.uid_validity.0),
                    &uid_next,
                    &to_i64(mailbox.highest_modseq.0.max(1)),
                    &mailbox.subscribed,
                ],
                "import mailbox",
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("mailbox insert returned no row".into()))?;
            let id = column(&row, 0)?;
            // New mailboxes get values past every imported one (the sequence is
            // never moved back).
            query(
                &tx,
                "SELECT setval('uid_validity_seq', \
                     GREATEST($1, (SELECT last_value FROM uid_validity_seq)))",
                &[&i64::from(mailbox.uid_validity.0)],
                "import mailbox",
            )
            .await?;
            tx.commit().await.map_err(db("import mailbox"))?;
            Ok(ImportedMailbox { id })
        })
        .await
    }

    /// Writes one message with exactly `meta`'s UID, modseq, internal date, flags and
    /// keywords, its size being `body`'s length, and counts it in the mailbox's size;
    /// committed when this returns. The UID must be below the mailbox's UIDNEXT (as a
    /// [`MailboxData`] from a source has it).
    pub async fn import_message(
        &self,
        mailbox: &ImportedMailbox,
        meta: &MessageMeta,
        body: Bytes,
    ) -> Result<(), StoreError> {
        let (id, meta) = (mailbox.id, meta.clone());
        self.run(|inner| async move {
            let client = get(&inner.pool).await?;
            let (bits, keywords) = encode(&meta.flags);
            let size = to_i64(body.len() as u64);
            // Inserted only while the mailbox's counters cover the message, so that the
            // mailbox never hands out its UID or modseq again.
            let updated = execute(
                &client,
                "WITH m AS ( \
                     SELECT id FROM mailboxes \
                     WHERE id = $1 AND uid_next > $2 AND highest_modseq >= $3), \
                 stored AS ( \
                     INSERT INTO messages \
                         (mailbox_id, uid, modseq, internal_date, size, flags, keywords, body) \
                     SELECT id, $2, $3, $4, $5, $6, $7, $8 FROM m RETURNING size) \
                 UPDATE mailboxes SET size = mailboxes.size + stored.size \
                 FROM stored WHERE mailboxes.id = $1",
                &[
                    &id,
                    &i64::from(meta.uid.0),
                    &to_i64(meta.modseq.0),
                    &meta.internal_date,
                    &size,
                    &bits,
                    &keywords,
                    &body.as_ref(),
                ],
                "import message",
            )
            .await?;
            if updated == 0 {
                return Err(StoreError::Corrupt(format!(
                    "message UID {} (modseq {}) is not below the mailbox's UIDNEXT and \
                     HIGHESTMODSEQ",
                    meta.uid.0, meta.modseq.0
                )));
            }
            Ok(())
        })
        .await
    }
}
