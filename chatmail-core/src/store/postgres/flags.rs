//! IMAP STORE: flags and keywords changed with consecutive modseqs.

use deadpool_postgres::GenericClient;

use super::cursors::Progress;
use super::inner::Inner;
use super::rows::{encode, meta_from_row};
use super::sql::{db, get, query, to_i64};
use super::{feed, mailboxes};
use crate::store::error::StoreError;
use crate::store::index::{apply_flag_op, check_keywords, flag_changes, sorted_uids};
use crate::store::mail_store::StoreFlagsOutcome;
use crate::types::{Address, FlagOp, Flags, MessageMeta, ModSeq, Uid};

/// The metadata of the messages `uids` that exist in the mailbox, by ascending UID.
pub(super) async fn metas<C: GenericClient>(
    client: &C,
    mailbox_id: i64,
    uids: &[Uid],
) -> Result<Vec<MessageMeta>, StoreError> {
    let uids: Vec<i64> = uids.iter().map(|uid| i64::from(uid.0)).collect();
    query(
        client,
        "SELECT uid, size, internal_date, flags, keywords, modseq FROM messages \
         WHERE mailbox_id = $1 AND uid = ANY($2) ORDER BY uid",
        &[&mailbox_id, &uids],
        "messages",
    )
    .await?
    .iter()
    .map(meta_from_row)
    .collect()
}

/// IMAP STORE: plans as the memory store does (same rules, same outcome), then writes
/// the changed messages with consecutive modseqs in one transaction.
pub(super) async fn store(
    inner: &Inner,
    account: &Address,
    mailbox: &str,
    uids: &[Uid],
    op: FlagOp,
    flags: &Flags,
    unchanged_since: Option<ModSeq>,
) -> Result<StoreFlagsOutcome, StoreError> {
    let name = crate::store::name::validate_mailbox_name(mailbox)?;
    let max_keywords = inner.limits.max_keywords;
    check_keywords(flags, max_keywords)?;
    let mut client = get(&inner.pool).await?;
    let tx = client.transaction().await.map_err(db("store"))?;
    let row = mailboxes::find(&tx, account, &name, true).await?;
    let current = metas(&tx, row.id, &sorted_uids(uids)).await?;
    let mut outcome = StoreFlagsOutcome::default();
    let mut modseq = row.highest_modseq;
    for meta in current {
        if unchanged_since.is_some_and(|since| meta.modseq > since) {
            outcome.failed.push(meta.uid);
            continue;
        }
        let new_flags = apply_flag_op(&meta.flags, op, flags);
        if new_flags == meta.flags {
            outcome.unchanged.push(meta);
        } else {
            check_keywords(&new_flags, max_keywords)?;
            modseq.0 += 1;
            outcome.modified.push(MessageMeta {
                flags: new_flags,
                modseq,
                ..meta
            });
        }
    }
    if outcome.modified.is_empty() {
        return Ok(outcome);
    }
    let mut uids = Vec::with_capacity(outcome.modified.len());
    let mut bits = Vec::with_capacity(outcome.modified.len());
    let mut keywords = Vec::with_capacity(outcome.modified.len());
    let mut modseqs = Vec::with_capacity(outcome.modified.len());
    for meta in &outcome.modified {
        let (b, k) = encode(&meta.flags);
        uids.push(i64::from(meta.uid.0));
        bits.push(b);
        keywords.push(k);
        modseqs.push(to_i64(meta.modseq.0));
    }
    query(
        &tx,
        "UPDATE messages g SET flags = c.flags, keywords = c.keywords, modseq = c.modseq \
         FROM unnest($2::bigint[], $3::smallint[], $4::text[], $5::bigint[]) \
              AS c(uid, flags, keywords, modseq) \
         WHERE g.mailbox_id = $1 AND g.uid = c.uid",
        &[&row.id, &uids, &bits, &keywords, &modseqs],
        "store",
    )
    .await?;
    query(
        &tx,
        "UPDATE mailboxes SET highest_modseq = $2 WHERE id = $1",
        &[&row.id, &to_i64(modseq.0)],
        "store",
    )
    .await?;
    feed::notify(&tx, inner, account).await?;
    tx.commit().await.map_err(db("store"))?;
    drop(client);
    let progress = Progress::on(&row, &name, modseq, row.uid_next);
    feed::publish(
        inner,
        account,
        progress,
        flag_changes(&name, &outcome.modified),
    )
    .await;
    Ok(outcome)
}
