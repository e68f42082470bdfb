//! Quota usage, the daily expiry and quota trimming, on one node at a time.

use deadpool_postgres::GenericClient;

use super::feed;
use super::inner::Inner;
use super::mailboxes::{find, remove_account};
use super::messages::{expunge_in, publish_expunges};
use super::rows::{MailboxRow, MAILBOX_COLUMNS};
use super::sql::{column, db, get, query, query_opt, to_i64, to_u32, to_u64};
use crate::expiry::{
    plan_trim, ExpiryPolicy, ExpiryReport, Removal, RemovalKind, TrimCandidate, LARGE_MESSAGE_BYTES,
};
use crate::store::error::StoreError;
use crate::types::{Address, Uid, INBOX};

/// The advisory lock one expiry run holds, so that nodes do not expire at the same time.
const EXPIRY_LOCK: i64 = 0x6368_6174_6578_7069;

/// Tombstones older than this (seconds, by the database's clock) are pruned by expiry:
/// a node whose listener was away longer resets the mailbox for its sessions.
const TOMBSTONE_SECS: i64 = 86_400;

/// Bytes used by the account's messages: the sum the mailbox rows keep.
pub(super) async fn quota_usage(inner: &Inner, account: &Address) -> Result<u64, StoreError> {
    let client = get(&inner.pool).await?;
    let rows = query(
        &client,
        "SELECT COALESCE(sum(size), 0)::bigint FROM mailboxes WHERE account = $1",
        &[&account.as_str()],
        "quota usage",
    )
    .await?;
    match rows.first() {
        Some(row) => to_u64(column(row, 0)?, "quota usage"),
        None => Ok(0),
    }
}

/// How the postgres store names a message in an expiry report: `account/mailbox/UID`,
/// as the memory store does.
fn removal(kind: RemovalKind, account: &Address, mailbox: &str, uid: Uid) -> Removal {
    Removal {
        kind,
        path: format!("{}/{mailbox}/{}", account.as_str(), uid.0).into(),
    }
}

/// The INBOX messages oldest-first trimming removes (see [`plan_trim`]), by internal
/// date and size as delivered.
async fn trim_plan<C: GenericClient>(
    client: &C,
    inbox: &MailboxRow,
    target_bytes: u64,
    now: u64,
) -> Result<Vec<Uid>, StoreError> {
    let rows = query(
        client,
        "SELECT uid, GREATEST(internal_date, 0), size FROM messages WHERE mailbox_id = $1",
        &[&inbox.id],
        "trim",
    )
    .await?;
    let mut candidates = Vec::with_capacity(rows.len());
    for row in &rows {
        candidates.push(TrimCandidate {
            key: Uid(to_u32(column(row, 0)?, "UID")?),
            time: to_u64(column(row, 1)?, "internal date")?,
            size: to_u64(column(row, 2)?, "message size")?,
        });
    }
    Ok(plan_trim(candidates, target_bytes, now))
}

/// Trims the account's INBOX to `target_bytes` (spec 6.2).
pub(super) async fn trim(
    inner: &Inner,
    account: &Address,
    target_bytes: u64,
    now: u64,
) -> Result<Vec<Uid>, StoreError> {
    let mut client = get(&inner.pool).await?;
    let tx = client.transaction().await.map_err(db("trim"))?;
    let inbox = find(&tx, account, INBOX, true).await?;
    let planned = trim_plan(&tx, &inbox, target_bytes, now).await?;
    let (expunged, after) = expunge_in(&tx, &inbox, &planned).await?;
    if !expunged.is_empty() {
        feed::notify(&tx, inner, account).await?;
    }
    tx.commit().await.map_err(db("trim"))?;
    drop(client);
    publish_expunges(inner, account, &inbox, INBOX, &expunged, after).await;
    Ok(expunged.into_iter().map(|(uid, _)| uid).collect())
}

/// The daily clean-up (spec 6.1) over every account, unless another node is running it:
/// inactive accounts removed whole, old and large-seen messages, INBOX trimming, then
/// expunge tombstones older than a day.
pub(super) async fn expire(
    inner: &Inner,
    policy: &ExpiryPolicy,
    now: u64,
) -> Result<ExpiryReport, StoreError> {
    // A session lock on a connection of its own, held for the whole run; it goes with
    // the connection if the node dies.
    let client = get(&inner.pool).await?;
    let locked = query_opt(
        &client,
        "SELECT pg_try_advisory_lock($1)",
        &[&EXPIRY_LOCK],
        "expiry lock",
    )
    .await?
    .map(|row| column::<bool>(&row, 0))
    .transpose()?
    .unwrap_or(false);
    if !locked {
        tracing::info!("expiry skipped: another node is running it");
        return Ok(ExpiryReport::default());
    }
    let result = expire_all(inner, policy, now).await;
    query(
        &client,
        "SELECT pg_advisory_unlock($1)",
        &[&EXPIRY_LOCK],
        "expiry unlock",
    )
    .await?;
    result
}

async fn expire_all(
    inner: &Inner,
    policy: &ExpiryPolicy,
    now: u64,
) -> Result<ExpiryReport, StoreError> {
    let mut report = ExpiryReport::default();
    let inactive_before = to_i64(now.saturating_sub(policy.delete_inactive_after_secs));
    // Addresses with mail or an account row; whether the account is inactive (an address
    // without a row has no last login and keeps its mail, as in the maildir store).
    let accounts: Vec<(String, bool)> = {
        let client = get(&inner.pool).await?;
        let rows = query(
            &client,
            "SELECT a.address, COALESCE(r.last_login < $1, false) \
             FROM (SELECT account FROM mailboxes UNION SELECT address FROM accounts) \
                  AS a(address) \
             LEFT JOIN accounts r ON r.address = a.address ORDER BY a.address",
            &[&inactive_before],
            "expiry",
        )
        .await?;
        rows.iter()
            .map(|row| Ok((column(row, 0)?, column(row, 1)?)))
            .collect::<Result<_, StoreError>>()?
    };
    for (account, inactive) in accounts {
        let Ok(address) = Address::parse(&account) else {
            report
                .failures
                .push(StoreError::Corrupt(format!("account {account:?}")));
            continue;
        };
        report.accounts_total += 1;
        let done = if inactive {
            remove_inactive(inner, &address, policy, &mut report).await
        } else {
            expire_account(inner, &address, policy, now, &mut report).await
        };
        if let Err(e) = done {
            report.failures.push(e);
        }
    }
    if !policy.dry_run {
        let client = get(&inner.pool).await?;
        query(
            &client,
            "WITH pruned AS (DELETE FROM expunged \
                 WHERE expunged_at < extract(epoch FROM now())::bigint - $1 \
                 RETURNING mailbox_id, modseq) \
             UPDATE mailboxes m SET expunged_floor = GREATEST(m.expunged_floor, p.top) \
             FROM (SELECT mailbox_id, max(modseq) AS top FROM pruned GROUP BY mailbox_id) p \
             WHERE m.id = p.mailbox_id",
            &[&TOMBSTONE_SECS],
            "prune tombstones",
        )
        .await?;
    }
    Ok(report)
}

/// An account unused for `delete_inactive_users_after` days goes whole (spec 6.1).
async fn remove_inactive(
    inner: &Inner,
    address: &Address,
    policy: &ExpiryPolicy,
    report: &mut ExpiryReport,
) -> Result<(), StoreError> {
    report.removals.push(Removal {
        kind: RemovalKind::InactiveAccount,
        path: address.as_str().into(),
    });
    if policy.dry_run || remove_account(inner, address).await? {
        report.accounts_removed += 1;
    }
    Ok(())
}

/// One account: old and large-seen messages of every mailbox, then the INBOX trimmed,
/// each mailbox in a transaction of its own.
async fn expire_account(
    inner: &Inner,
    account: &Address,
    policy: &ExpiryPolicy,
    now: u64,
    report: &mut ExpiryReport,
) -> Result<(), StoreError> {
    let old_cutoff = to_i64(now.saturating_sub(policy.delete_mails_after_secs));
    let large_cutoff = to_i64(now.saturating_sub(policy.delete_large_after_secs));
    let names: Vec<String> = {
        let client = get(&inner.pool).await?;
        query(
            &client,
            "SELECT name FROM mailboxes WHERE account = $1 ORDER BY name",
            &[&account.as_str()],
            "expiry",
        )
        .await?
        .iter()
        .map(|row| column(row, 0))
        .collect::<Result<_, _>>()?
    };
    for name in names {
        let mut client = get(&inner.pool).await?;
        let tx = client.transaction().await.map_err(db("expiry"))?;
        let locked = query_opt(
            &tx,
            &format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailboxes \
                 WHERE account = $1 AND name = $2 FOR UPDATE"
            ),
            &[&account.as_str(), &name],
            "expiry",
        )
        .await?;
        // Deleted since the names were read.
        let Some(row) = locked else { continue };
        let mailbox = MailboxRow::from_row(&row)?;
        let rows = query(
            &tx,
            "SELECT uid, GREATEST(internal_date, 0) < $2 FROM messages WHERE mailbox_id = $1 \
             AND (GREATEST(internal_date, 0) < $2 \
                  OR (size > $3 AND GREATEST(internal_date, 0) < $4 AND flags & 1 = 1)) \
             ORDER BY uid",
            &[
                &mailbox.id,
                &old_cutoff,
                &to_i64(LARGE_MESSAGE_BYTES),
                &large_cutoff,
            ],
            "expiry",
        )
        .await?;
        let total = query(
            &tx,
            "SELECT count(*) FROM messages WHERE mailbox_id = $1",
            &[&mailbox.id],
            "expiry",
        )
        .await?;
        if let Some(row) = total.first() {
            let n = to_u64(column(row, 0)?, "message count")?;
            report.messages_total += usize::try_from(n).unwrap_or(usize::MAX);
        }
        let mut expired = Vec::with_capacity(rows.len());
        for row in &rows {
            let uid = Uid(to_u32(column(row, 0)?, "UID")?);
            let kind = if column::<bool>(row, 1)? {
                RemovalKind::OldMessage
            } else {
                RemovalKind::LargeOldMessage
            };
            report.removals.push(removal(kind, account, &name, uid));
            expired.push(uid);
        }
        if policy.dry_run || expired.is_empty() {
            report.messages_removed += expired.len();
            continue;
        }
        let (expunged, after) = expunge_in(&tx, &mailbox, &expired).await?;
        feed::notify(&tx, inner, account).await?;
        tx.commit().await.map_err(db("expiry"))?;
        drop(client);
        report.messages_removed += expunged.len();
        publish_expunges(inner, account, &mailbox, &name, &expunged, after).await;
    }
    // INBOX after the others, as the memory store orders its report.
    let mut client = get(&inner.pool).await?;
    let tx = client.transaction().await.map_err(db("expiry"))?;
    let inbox = find(&tx, account, INBOX, true).await?;
    let planned = trim_plan(&tx, &inbox, policy.quota_target_bytes, now).await?;
    for uid in &planned {
        report
            .removals
            .push(removal(RemovalKind::QuotaTrim, account, INBOX, *uid));
    }
    if policy.dry_run || planned.is_empty() {
        report.messages_removed += planned.len();
        return Ok(());
    }
    let (expunged, after) = expunge_in(&tx, &inbox, &planned).await?;
    feed::notify(&tx, inner, account).await?;
    tx.commit().await.map_err(db("expiry"))?;
    drop(client);
    report.messages_removed += expunged.len();
    publish_expunges(inner, account, &inbox, INBOX, &expunged, after).await;
    Ok(())
}
