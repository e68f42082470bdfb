//! Flags and keywords: system flags as bits of a `smallint`, keywords as one
//! space-separated `text` (keywords are atoms, never holding a space), and STORE.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{column, db, feed, get, mailboxes, query, to_i64, to_u32, to_u64, Inner};
use crate::store::error::StoreError;
use crate::store::index::{apply_flag_op, check_keywords, flag_changes, sorted_uids};
use crate::store::mail_store::StoreFlagsOutcome;
use crate::types::{Address, Flag, FlagOp, Flags, MessageMeta, ModSeq, Uid};

/// The bit of each system flag (STATUS counts unseen messages by `flags & 1`).
const BITS: [(Flag, i16); 5] = [
    (Flag::Seen, 1),
    (Flag::Answered, 2),
    (Flag::Flagged, 4),
    (Flag::Deleted, 8),
    (Flag::Draft, 16),
];

/// Flags as they are stored: (system flag bits, keywords separated by spaces).
pub(super) fn encode(flags: &Flags) -> (i16, String) {
    let mut bits = 0;
    let mut keywords = Vec::new();
    for flag in flags {
        match flag {
            Flag::Keyword(keyword) => keywords.push(keyword.as_str()),
            system => {
                bits |= BITS
                    .iter()
                    .find(|(f, _)| f == system)
                    .map_or(0, |(_, bit)| *bit);
            }
        }
    }
    (bits, keywords.join(" "))
}

/// Flags from their stored form; unknown bits or a keyword that is not an atom are
/// [`StoreError::Corrupt`].
pub(super) fn decode(bits: i16, keywords: &str) -> Result<Flags, StoreError> {
    let known = BITS.iter().fold(0, |all, (_, bit)| all | bit);
    if bits & !known != 0 {
        return Err(StoreError::Corrupt(format!("flag bits {bits:#x}")));
    }
    let mut flags: Flags = BITS
        .iter()
        .filter(|(_, bit)| bits & bit != 0)
        .map(|(flag, _)| flag.clone())
        .collect();
    for keyword in keywords.split(' ').filter(|k| !k.is_empty()) {
        match Flag::from_imap(keyword) {
            Some(flag @ Flag::Keyword(_)) => {
                flags.insert(flag);
            }
            _ => return Err(StoreError::Corrupt(format!("keyword {keyword:?}"))),
        }
    }
    Ok(flags)
}

/// A message's metadata from the start of a row holding the columns
/// `uid, size, internal_date, flags, keywords, modseq`.
pub(super) fn meta_from_row(row: &Row) -> Result<MessageMeta, StoreError> {
    Ok(MessageMeta {
        uid: Uid(to_u32(column(row, 0)?, "UID")?),
        size: to_u64(column(row, 1)?, "message size")?,
        internal_date: column(row, 2)?,
        flags: decode(column(row, 3)?, column(row, 4)?)?,
        modseq: ModSeq(to_u64(column(row, 5)?, "modseq")?),
    })
}

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
    let progress = feed::Progress::on(&row, &name, modseq, row.uid_next);
    feed::publish(
        inner,
        account,
        progress,
        flag_changes(&name, &outcome.modified),
    )
    .await;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_and_malformed_ones_are_refused() {
        let flags: Flags = [
            Flag::Seen,
            Flag::Draft,
            Flag::Keyword("$MDNSent".into()),
            Flag::Keyword("$Forwarded".into()),
        ]
        .into();
        let (bits, keywords) = encode(&flags);
        assert_eq!(bits & 1, 1);
        assert_eq!(decode(bits, &keywords).unwrap(), flags);
        assert_eq!(decode(0, "").unwrap(), Flags::new());
        assert!(matches!(decode(64, ""), Err(StoreError::Corrupt(_))));
        assert!(matches!(decode(0, "\\Seen"), Err(StoreError::Corrupt(_))));
        assert!(matches!(decode(0, "a(b"), Err(StoreError::Corrupt(_))));
    }
}
