//! Mailboxes: one row each, holding the IMAP counters every change to the mailbox
//! locks and advances.

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::feed;
use super::inner::Inner;
use super::rows::MailboxRow;
use super::sql::{column, db, execute, get, query, query_opt, to_u32};
use crate::store::error::StoreError;
use crate::store::name::{
    renamed_names, validate_deletable, validate_mailbox_name, validate_rename,
};
use crate::types::{Address, Change, MailboxInfo, MailboxStatus, SpecialUse, Uid, INBOX};

/// Creates the account's INBOX if it has none: every account has one from its first use.
/// The sequence is only advanced when the row is missing.
pub(super) async fn ensure_inbox<C: GenericClient>(
    client: &C,
    account: &Address,
) -> Result<(), StoreError> {
    execute(
        client,
        "INSERT INTO mailboxes (account, name, uid_validity) \
         SELECT $1::text, 'INBOX', nextval('uid_validity_seq') \
         WHERE NOT EXISTS (SELECT 1 FROM mailboxes WHERE account = $1 AND name = 'INBOX') \
         ON CONFLICT (account, name) DO NOTHING",
        &[&account.as_str()],
        "create INBOX",
    )
    .await?;
    Ok(())
}

/// Runs a query about one mailbox (`$1` the account, `$2` the mailbox name) that gives a
/// row when the mailbox exists; a missing INBOX is created first.
pub(super) async fn mailbox_query<C: GenericClient>(
    client: &C,
    account: &Address,
    name: &str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    context: &'static str,
) -> Result<Row, StoreError> {
    if let Some(row) = query_opt(client, sql, params, context).await? {
        return Ok(row);
    }
    if name == INBOX {
        ensure_inbox(client, account).await?;
        if let Some(row) = query_opt(client, sql, params, context).await? {
            return Ok(row);
        }
    }
    Err(StoreError::NoSuchMailbox(name.to_string()))
}

/// The mailbox's row; with `lock`, locked until the transaction ends (every change to
/// a mailbox takes this lock first, which orders its UIDs and modseqs).
pub(super) async fn find<C: GenericClient>(
    client: &C,
    account: &Address,
    name: &str,
    lock: bool,
) -> Result<MailboxRow, StoreError> {
    let sql = if lock {
        "SELECT id, uid_validity, uid_next, highest_modseq, size \
         FROM mailboxes WHERE account = $1 AND name = $2 FOR UPDATE"
    } else {
        "SELECT id, uid_validity, uid_next, highest_modseq, size \
         FROM mailboxes WHERE account = $1 AND name = $2"
    };
    let row = mailbox_query(
        client,
        account,
        name,
        sql,
        &[&account.as_str(), &name],
        "mailbox",
    )
    .await?;
    MailboxRow::from_row(&row)
}

/// Serialises the changes to an account's set of mailboxes (create, delete, rename)
/// until the transaction ends, without touching any mailbox row.
async fn lock_account<C: GenericClient>(client: &C, account: &Address) -> Result<(), StoreError> {
    query(
        client,
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
        &[&account.as_str()],
        "account lock",
    )
    .await?;
    Ok(())
}

/// The names of the account's mailboxes, by name (bytewise, as the memory store sorts).
async fn names<C: GenericClient>(client: &C, account: &Address) -> Result<Vec<String>, StoreError> {
    query(
        client,
        "SELECT name FROM mailboxes WHERE account = $1 ORDER BY name",
        &[&account.as_str()],
        "mailbox names",
    )
    .await?
    .iter()
    .map(|row| column(row, 0))
    .collect()
}

/// IMAP CREATE.
pub(super) async fn create(
    inner: &Inner,
    account: &Address,
    mailbox: &str,
) -> Result<(), StoreError> {
    let name = validate_mailbox_name(mailbox)?;
    let mut client = get(&inner.pool).await?;
    let tx = client.transaction().await.map_err(db("create"))?;
    lock_account(&tx, account).await?;
    let inbox = find(&tx, account, INBOX, false).await?;
    if name == INBOX {
        // See `MailStore::create_mailbox`: INBOX "exists" once it held mail.
        tx.commit().await.map_err(db("create"))?;
        return if inbox.uid_next > Uid(1) {
            Err(StoreError::MailboxExists(name))
        } else {
            Ok(())
        };
    }
    let existing = names(&tx, account).await?;
    if existing.contains(&name) {
        return Err(StoreError::MailboxExists(name));
    }
    // INBOX does not count.
    if existing.len() > inner.limits.max_mailboxes {
        return Err(StoreError::TooManyMailboxes(inner.limits.max_mailboxes));
    }
    execute(
        &tx,
        "INSERT INTO mailboxes (account, name, uid_validity) \
         VALUES ($1, $2, nextval('uid_validity_seq'))",
        &[&account.as_str(), &name],
        "create",
    )
    .await?;
    tx.commit().await.map_err(db("create"))
}

/// IMAP DELETE: the mailbox's messages and tombstones go with its row.
pub(super) async fn delete(
    inner: &Inner,
    account: &Address,
    mailbox: &str,
) -> Result<(), StoreError> {
    let name = validate_deletable(mailbox)?;
    let mut client = get(&inner.pool).await?;
    let tx = client.transaction().await.map_err(db("delete"))?;
    lock_account(&tx, account).await?;
    let deleted = query_opt(
        &tx,
        "DELETE FROM mailboxes WHERE account = $1 AND name = $2 RETURNING id",
        &[&account.as_str(), &name],
        "delete",
    )
    .await?
    .ok_or_else(|| StoreError::NoSuchMailbox(name.clone()))?;
    let id: i64 = column(&deleted, 0)?;
    feed::notify(&tx, inner, account).await?;
    tx.commit().await.map_err(db("delete"))?;
    drop(client);
    feed::publish_moves(
        inner,
        account,
        vec![(id, None)],
        vec![Change::MailboxReset { mailbox: name }],
    )
    .await;
    Ok(())
}

/// IMAP RENAME: the mailbox and its inferiors keep their rows, so their UIDs and
/// UIDVALIDITY.
pub(super) async fn rename(
    inner: &Inner,
    account: &Address,
    from: &str,
    to: &str,
) -> Result<(), StoreError> {
    let (from, to) = validate_rename(from, to)?;
    let mut client = get(&inner.pool).await?;
    let tx = client.transaction().await.map_err(db("rename"))?;
    lock_account(&tx, account).await?;
    ensure_inbox(&tx, account).await?;
    let existing = names(&tx, account).await?;
    if !existing.contains(&from) {
        return Err(StoreError::NoSuchMailbox(from));
    }
    let renames = renamed_names(existing.iter(), &from, &to)?;
    if let Some((_, taken)) = renames.iter().find(|(_, new)| existing.contains(new)) {
        return Err(StoreError::MailboxExists(taken.clone()));
    }
    let mut moves = Vec::with_capacity(renames.len());
    for (old, new) in &renames {
        // No new name exists (checked above), so no rename collides with another.
        let row = query_opt(
            &tx,
            "UPDATE mailboxes SET name = $3 WHERE account = $1 AND name = $2 RETURNING id",
            &[&account.as_str(), old, new],
            "rename",
        )
        .await?;
        if let Some(row) = row {
            moves.push((column::<i64>(&row, 0)?, Some(new.clone())));
        }
    }
    feed::notify(&tx, inner, account).await?;
    tx.commit().await.map_err(db("rename"))?;
    drop(client);
    let changes = renames
        .into_iter()
        .map(|(old, _)| Change::MailboxReset { mailbox: old })
        .collect();
    feed::publish_moves(inner, account, moves, changes).await;
    Ok(())
}

/// IMAP SUBSCRIBE and UNSUBSCRIBE.
pub(super) async fn set_subscribed(
    inner: &Inner,
    account: &Address,
    mailbox: &str,
    subscribed: bool,
) -> Result<(), StoreError> {
    let name = validate_mailbox_name(mailbox)?;
    let client = get(&inner.pool).await?;
    if name == INBOX {
        ensure_inbox(&client, account).await?;
    }
    let updated = execute(
        &client,
        "UPDATE mailboxes SET subscribed = $3 WHERE account = $1 AND name = $2",
        &[&account.as_str(), &name, &subscribed],
        "subscribe",
    )
    .await?;
    if updated == 0 && subscribed {
        return Err(StoreError::NoSuchMailbox(name));
    }
    Ok(())
}

/// IMAP LIST: INBOX first, then by name.
pub(super) async fn list(inner: &Inner, account: &Address) -> Result<Vec<MailboxInfo>, StoreError> {
    let client = get(&inner.pool).await?;
    let sql = "SELECT name, subscribed FROM mailboxes WHERE account = $1 \
               ORDER BY name <> 'INBOX', name";
    let mut rows = query(&client, sql, &[&account.as_str()], "list").await?;
    let has_inbox = match rows.first() {
        Some(row) => column::<&str>(row, 0)? == INBOX,
        None => false,
    };
    if !has_inbox {
        ensure_inbox(&client, account).await?;
        rows = query(&client, sql, &[&account.as_str()], "list").await?;
    }
    rows.iter()
        .map(|row| {
            let name: String = column(row, 0)?;
            Ok(MailboxInfo {
                special_use: SpecialUse::for_name(&name),
                subscribed: column(row, 1)?,
                name,
            })
        })
        .collect()
}

/// SELECT and STATUS counters, read in one statement (one snapshot).
pub(super) async fn status(
    inner: &Inner,
    account: &Address,
    mailbox: &str,
) -> Result<MailboxStatus, StoreError> {
    let name = validate_mailbox_name(mailbox)?;
    feed::ready(inner, account).await?;
    let client = get(&inner.pool).await?;
    let row = mailbox_query(
        &client,
        account,
        &name,
        "SELECT m.id, m.uid_validity, m.uid_next, m.highest_modseq, m.size, \
            count(g.uid), \
            count(g.uid) FILTER (WHERE g.flags & 1 = 0), \
            count(g.uid) FILTER (WHERE g.uid >= m.first_recent) \
         FROM mailboxes m LEFT JOIN messages g ON g.mailbox_id = m.id \
         WHERE m.account = $1 AND m.name = $2 GROUP BY m.id",
        &[&account.as_str(), &name],
        "status",
    )
    .await?;
    let mailbox = MailboxRow::from_row(&row)?;
    let count = |index: usize| -> Result<u32, StoreError> {
        let n: i64 = column(&row, index)?;
        to_u32(n, "message count")
    };
    Ok(MailboxStatus {
        uid_validity: mailbox.uid_validity,
        uid_next: mailbox.uid_next,
        highest_modseq: mailbox.highest_modseq,
        exists: count(5)?,
        unseen: count(6)?,
        recent: count(7)?,
        size: mailbox.size,
    })
}

/// Claims the `\Recent` messages (from the first unclaimed UID to UIDNEXT) for one
/// session on any node.
pub(super) async fn claim_recent(
    inner: &Inner,
    account: &Address,
    mailbox: &str,
) -> Result<std::ops::Range<Uid>, StoreError> {
    let name = validate_mailbox_name(mailbox)?;
    feed::ready(inner, account).await?;
    let client = get(&inner.pool).await?;
    let row = mailbox_query(
        &client,
        account,
        &name,
        "WITH old AS (SELECT id, first_recent, uid_next FROM mailboxes \
                      WHERE account = $1 AND name = $2 FOR UPDATE) \
         UPDATE mailboxes m SET first_recent = GREATEST(m.first_recent, m.uid_next) \
         FROM old WHERE m.id = old.id RETURNING old.first_recent, old.uid_next",
        &[&account.as_str(), &name],
        "claim recent",
    )
    .await?;
    let first = Uid(to_u32(column(&row, 0)?, "first recent UID")?);
    let next = Uid(to_u32(column(&row, 1)?, "UIDNEXT")?);
    Ok(first..next)
}

/// Removes an account: its row, its tokens (cascade) and its mailboxes, whose
/// subscribers are told as for a DELETE. Whether it had a row.
pub(super) async fn remove_account(inner: &Inner, address: &Address) -> Result<bool, StoreError> {
    let mut client = get(&inner.pool).await?;
    let tx = client.transaction().await.map_err(db("delete account"))?;
    let existed = execute(
        &tx,
        "DELETE FROM accounts WHERE address = $1",
        &[&address.as_str()],
        "delete account",
    )
    .await?
        > 0;
    let rows = query(
        &tx,
        "DELETE FROM mailboxes WHERE account = $1 RETURNING id, name",
        &[&address.as_str()],
        "delete account",
    )
    .await?;
    let mut moves = Vec::with_capacity(rows.len());
    let mut changes = Vec::with_capacity(rows.len());
    for row in &rows {
        moves.push((column::<i64>(row, 0)?, None));
        changes.push(Change::MailboxReset {
            mailbox: column(row, 1)?,
        });
    }
    if !changes.is_empty() {
        feed::notify(&tx, inner, address).await?;
    }
    tx.commit().await.map_err(db("delete account"))?;
    drop(client);
    feed::publish_moves(inner, address, moves, changes).await;
    Ok(existed)
}
