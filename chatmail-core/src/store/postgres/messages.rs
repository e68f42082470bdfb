//! Messages: append, list, read, expunge (leaving tombstones), copy.

use bytes::Bytes;
use deadpool_postgres::GenericClient;

use super::cursors::Progress;
use super::feed;
use super::flags::metas;
use super::inner::Inner;
use super::mailboxes::find;
use super::rows::{encode, meta_from_row, MailboxRow, MAILBOX_COLUMNS};
use super::sql::{column, db, get, query, query_opt, to_i64, to_u32, to_u64};
use crate::store::error::StoreError;
use crate::store::index::sorted_uids;
use crate::store::mail_store::{AppendOutcome, CopyOutcome};
use crate::store::name::validate_mailbox_name;
use crate::types::{Address, Change, Flags, MessageMeta, ModSeq, Uid, UidValidity};

/// The highest UID a message may get; a mailbox whose UIDNEXT reached it is exhausted.
const LAST_UID: i64 = u32::MAX as i64;

/// APPEND and delivery in one statement, so one round trip and its own transaction:
/// the mailbox row's update takes its lock and the next UID and modseq, the message is
/// inserted with them, and the other nodes are notified; committed when it returns.
const APPEND: &str = "WITH m AS ( \
        UPDATE mailboxes \
        SET uid_next = uid_next + 1, highest_modseq = highest_modseq + 1, size = size + $3 \
        WHERE account = $1 AND name = $2 AND uid_next < $4 \
        RETURNING id, uid_validity, uid_next - 1 AS uid, highest_modseq), \
    stored AS ( \
        INSERT INTO messages \
            (mailbox_id, uid, modseq, internal_date, size, flags, keywords, body) \
        SELECT id, uid, highest_modseq, $5, $3, $6, $7, $8 FROM m) \
    SELECT id, uid_validity, uid, highest_modseq, pg_notify($9, $10)::text FROM m";

/// APPEND and delivery ([`APPEND`]); committed before this returns.
pub(super) async fn append(
    inner: &Inner,
    account: &Address,
    mailbox: &str,
    message: Bytes,
    flags: &Flags,
    internal_date: i64,
) -> Result<AppendOutcome, StoreError> {
    let name = validate_mailbox_name(mailbox)?;
    let size = message.len() as u64;
    inner.limits.check_new_message(size, flags)?;
    let client = get(&inner.pool).await?;
    let size_param = to_i64(size);
    let (bits, keywords) = encode(flags);
    let (channel, payload) = feed::notification(inner, account);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
        &account.as_str(),
        &name,
        &size_param,
        &LAST_UID,
        &internal_date,
        &bits,
        &keywords,
        &message.as_ref(),
        &channel,
        &payload,
    ];
    let mut appended = query_opt(&client, APPEND, &params, "append").await?;
    if appended.is_none() {
        // Missing (an error), a fresh account's INBOX (created now), or out of UIDs.
        find(&client, account, &name, false).await?;
        appended = query_opt(&client, APPEND, &params, "append").await?;
    }
    let row = appended.ok_or(StoreError::UidsExhausted)?;
    let mailbox_id: i64 = column(&row, 0)?;
    let uid_validity = UidValidity(to_u32(column(&row, 1)?, "UIDVALIDITY")?);
    let uid = Uid(to_u32(column(&row, 2)?, "UID")?);
    let modseq = ModSeq(to_u64(column(&row, 3)?, "modseq")?);
    // Back to the pool before waiting on the feed's lock: a read-back may need it.
    drop(client);
    let meta = MessageMeta {
        uid,
        size,
        internal_date,
        flags: flags.clone(),
        modseq,
    };
    feed::publish(
        inner,
        account,
        Progress {
            mailbox_id,
            name: name.clone(),
            before: ModSeq(modseq.0.saturating_sub(1)),
            after: modseq,
            uid_next: Uid(uid.0.saturating_add(1)),
        },
        vec![Change::Appended {
            mailbox: name,
            meta,
        }],
    )
    .await;
    Ok(AppendOutcome {
        uid_validity,
        uid,
        modseq,
    })
}

/// The mailbox's messages by ascending UID, optionally only those changed after
/// `changed_since`.
pub(super) async fn list(
    inner: &Inner,
    account: &Address,
    mailbox: &str,
    changed_since: Option<ModSeq>,
) -> Result<Vec<MessageMeta>, StoreError> {
    let name = validate_mailbox_name(mailbox)?;
    feed::ready(inner, account).await?;
    let client = get(&inner.pool).await?;
    let row = find(&client, account, &name, false).await?;
    let since = changed_since.map_or(-1, |m| to_i64(m.0));
    query(
        &client,
        "SELECT uid, size, internal_date, flags, keywords, modseq FROM messages \
         WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid",
        &[&row.id, &since],
        "list messages",
    )
    .await?
    .iter()
    .map(meta_from_row)
    .collect()
}

/// The message as delivered.
pub(super) async fn read(
    inner: &Inner,
    account: &Address,
    mailbox: &str,
    uid: Uid,
) -> Result<Bytes, StoreError> {
    let name = validate_mailbox_name(mailbox)?;
    let client = get(&inner.pool).await?;
    let row = find(&client, account, &name, false).await?;
    let body = query_opt(
        &client,
        "SELECT body FROM messages WHERE mailbox_id = $1 AND uid = $2",
        &[&row.id, &i64::from(uid.0)],
        "read",
    )
    .await?
    .ok_or(StoreError::NoSuchMessage(uid.0))?;
    Ok(Bytes::from(column::<Vec<u8>>(&body, 0)?))
}

/// Removes the messages `uids` of a mailbox whose row the transaction has locked, each
/// with its own modseq and a tombstone, in ascending UID order. Returns the removed
/// (UID, modseq) pairs and the mailbox's new highest modseq.
pub(super) async fn expunge_in<C: GenericClient>(
    client: &C,
    mailbox: &MailboxRow,
    uids: &[Uid],
) -> Result<(Vec<(Uid, ModSeq)>, ModSeq), StoreError> {
    let wanted: Vec<i64> = sorted_uids(uids).iter().map(|u| i64::from(u.0)).collect();
    if wanted.is_empty() {
        return Ok((Vec::new(), mailbox.highest_modseq));
    }
    let rows = query(
        client,
        "DELETE FROM messages WHERE mailbox_id = $1 AND uid = ANY($2) RETURNING uid, size",
        &[&mailbox.id, &wanted],
        "expunge",
    )
    .await?;
    let mut removed = Vec::with_capacity(rows.len());
    let mut freed: u64 = 0;
    for row in &rows {
        removed.push(Uid(to_u32(column(row, 0)?, "UID")?));
        freed = freed.saturating_add(to_u64(column(row, 1)?, "message size")?);
    }
    removed.sort_unstable();
    let mut modseq = mailbox.highest_modseq;
    let mut expunged = Vec::with_capacity(removed.len());
    for uid in removed {
        modseq.0 += 1;
        expunged.push((uid, modseq));
    }
    if expunged.is_empty() {
        return Ok((expunged, modseq));
    }
    let tomb_uids: Vec<i64> = expunged.iter().map(|(u, _)| i64::from(u.0)).collect();
    let tomb_modseqs: Vec<i64> = expunged.iter().map(|(_, m)| to_i64(m.0)).collect();
    query(
        client,
        "INSERT INTO expunged (mailbox_id, uid, modseq, expunged_at) \
         SELECT $1, t.uid, t.modseq, extract(epoch FROM now())::bigint \
         FROM unnest($2::bigint[], $3::bigint[]) AS t(uid, modseq)",
        &[&mailbox.id, &tomb_uids, &tomb_modseqs],
        "expunge",
    )
    .await?;
    query(
        client,
        "UPDATE mailboxes SET highest_modseq = $2, size = GREATEST(size - $3, 0) WHERE id = $1",
        &[&mailbox.id, &to_i64(modseq.0), &to_i64(freed)],
        "expunge",
    )
    .await?;
    Ok((expunged, modseq))
}

/// Publishes the expunges (by [`expunge_in`]) of a committed transaction on `mailbox`.
pub(super) async fn publish_expunges(
    inner: &Inner,
    account: &Address,
    mailbox: &MailboxRow,
    name: &str,
    expunged: &[(Uid, ModSeq)],
    after: ModSeq,
) {
    if expunged.is_empty() {
        return;
    }
    let changes = expunged
        .iter()
        .map(|(uid, modseq)| Change::Expunged {
            mailbox: name.to_string(),
            uid: *uid,
            modseq: *modseq,
        })
        .collect();
    let progress = Progress::on(mailbox, name, after, mailbox.uid_next);
    feed::publish(inner, account, progress, changes).await;
}

/// IMAP EXPUNGE of exactly `uids`.
pub(super) async fn expunge(
    inner: &Inner,
    account: &Address,
    mailbox: &str,
    uids: &[Uid],
) -> Result<Vec<Uid>, StoreError> {
    let name = validate_mailbox_name(mailbox)?;
    let mut client = get(&inner.pool).await?;
    let tx = client.transaction().await.map_err(db("expunge"))?;
    let row = find(&tx, account, &name, true).await?;
    let (expunged, after) = expunge_in(&tx, &row, uids).await?;
    if expunged.is_empty() {
        return Ok(Vec::new());
    }
    feed::notify(&tx, inner, account).await?;
    tx.commit().await.map_err(db("expunge"))?;
    drop(client);
    publish_expunges(inner, account, &row, &name, &expunged, after).await;
    Ok(expunged.into_iter().map(|(uid, _)| uid).collect())
}

/// IMAP COPY: the bodies are copied inside the database. Both mailbox rows are locked
/// (in id order, so two copies in opposite directions cannot deadlock).
pub(super) async fn copy(
    inner: &Inner,
    account: &Address,
    from: &str,
    uids: &[Uid],
    to: &str,
) -> Result<CopyOutcome, StoreError> {
    let from = validate_mailbox_name(from)?;
    let to = validate_mailbox_name(to)?;
    let mut client = get(&inner.pool).await?;
    let tx = client.transaction().await.map_err(db("copy"))?;
    let source = find(&tx, account, &from, false).await?;
    let target = find(&tx, account, &to, false).await?;
    let ids = vec![source.id, target.id];
    let locked = query(
        &tx,
        &format!(
            "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE id = ANY($1) ORDER BY id FOR UPDATE"
        ),
        &[&ids],
        "copy",
    )
    .await?;
    let mut target_now = None;
    let mut source_there = false;
    for row in &locked {
        let mailbox = MailboxRow::from_row(row)?;
        source_there |= mailbox.id == source.id;
        if mailbox.id == target.id {
            target_now = Some(mailbox);
        }
    }
    if !source_there {
        return Err(StoreError::NoSuchMailbox(from));
    }
    let target = target_now.ok_or_else(|| StoreError::NoSuchMailbox(to.clone()))?;
    let picked = metas(&tx, source.id, &sorted_uids(uids)).await?;
    let mut outcome = CopyOutcome {
        uid_validity: target.uid_validity,
        mapping: Vec::with_capacity(picked.len()),
    };
    if picked.is_empty() {
        return Ok(outcome);
    }
    let count = u32::try_from(picked.len()).map_err(|_| StoreError::UidsExhausted)?;
    let uid_next = target
        .uid_next
        .0
        .checked_add(count)
        .filter(|next| i64::from(*next) <= LAST_UID)
        .ok_or(StoreError::UidsExhausted)?;
    let mut modseq = target.highest_modseq;
    let mut added = 0u64;
    let mut changes = Vec::with_capacity(picked.len());
    let (mut old_uids, mut new_uids, mut modseqs) = (Vec::new(), Vec::new(), Vec::new());
    for (offset, meta) in (0u32..).zip(picked) {
        let uid = Uid(target.uid_next.0 + offset);
        modseq.0 += 1;
        added = added.saturating_add(meta.size);
        old_uids.push(i64::from(meta.uid.0));
        new_uids.push(i64::from(uid.0));
        modseqs.push(to_i64(modseq.0));
        outcome.mapping.push((meta.uid, uid));
        changes.push(Change::Appended {
            mailbox: to.clone(),
            meta: MessageMeta {
                uid,
                modseq,
                ..meta
            },
        });
    }
    query(
        &tx,
        "INSERT INTO messages (mailbox_id, uid, modseq, internal_date, size, flags, keywords, body) \
         SELECT $1, c.new_uid, c.modseq, g.internal_date, g.size, g.flags, g.keywords, g.body \
         FROM unnest($3::bigint[], $4::bigint[], $5::bigint[]) AS c(old_uid, new_uid, modseq) \
         JOIN messages g ON g.mailbox_id = $2 AND g.uid = c.old_uid",
        &[&target.id, &source.id, &old_uids, &new_uids, &modseqs],
        "copy",
    )
    .await?;
    query(
        &tx,
        "UPDATE mailboxes SET uid_next = $2, highest_modseq = $3, size = size + $4 WHERE id = $1",
        &[
            &target.id,
            &i64::from(uid_next),
            &to_i64(modseq.0),
            &to_i64(added),
        ],
        "copy",
    )
    .await?;
    feed::notify(&tx, inner, account).await?;
    tx.commit().await.map_err(db("copy"))?;
    drop(client);
    let progress = Progress::on(&target, &to, modseq, Uid(uid_next));
    feed::publish(inner, account, progress, changes).await;
    Ok(outcome)
}
