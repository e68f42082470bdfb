//! The change feed across nodes: local publishing with per-mailbox cursors, `NOTIFY` in
//! every changing transaction, and the listener that reads other nodes' changes back
//! from the database (see the [module docs](super) for the protocol).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use deadpool_postgres::GenericClient;
use futures::StreamExt;
use tokio_postgres::{AsyncMessage, IsolationLevel, NoTls};

use super::cursors::{Cursor, Progress, WatchState};
use super::inner::Inner;
use super::rows::meta_from_row;
use super::sql::{column, db, get, query, to_i64, to_u32, to_u64};
use super::tls::Tls;
use crate::store::error::StoreError;
use crate::store::lock::lock;
use crate::types::{Address, Change, ModSeq, Uid};

/// The channel every node notifies and listens on; the payload is `<node> <account>`.
const CHANNEL: &str = "chatmail_changes";

/// Notifications waiting to be handled; past this the listener reads every watched
/// account instead of the ones named.
const PENDING_NOTIFICATIONS: usize = 1024;

/// Pause before a failed read-back is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// First wait before reconnecting a lost listener, doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The `NOTIFY` channel and payload telling the other nodes that the account changed.
pub(super) fn notification(inner: &Inner, account: &Address) -> (&'static str, String) {
    (CHANNEL, format!("{} {}", inner.feed.node, account.as_str()))
}

/// Inside a changing transaction: tells the other nodes (at commit, and only then) that
/// the account changed.
pub(super) async fn notify<C: GenericClient>(
    client: &C,
    inner: &Inner,
    account: &Address,
) -> Result<(), StoreError> {
    let (channel, payload) = notification(inner, account);
    query(
        client,
        "SELECT pg_notify($1, $2)",
        &[&channel, &payload],
        "notify",
    )
    .await?;
    Ok(())
}

/// The account got a local subscriber: watch it, and read its cursors now rather than
/// at its first read.
pub(super) fn watch(inner: &Arc<Inner>, account: &Address) {
    lock(&inner.feed.watched)
        .entry(account.clone())
        .or_default();
    let weak = Arc::downgrade(inner);
    let account = account.clone();
    inner.runtime.spawn(async move {
        if let Some(inner) = weak.upgrade() {
            if let Err(e) = ready(&inner, &account).await {
                tracing::warn!(error = %e, "postgres feed: reading cursors failed");
            }
        }
    });
}

/// Reads a watched account's cursors if not done yet. Reads that a session bases its
/// view on call this first, so no change falls between its view and the cursors.
pub(super) async fn ready(inner: &Inner, account: &Address) -> Result<(), StoreError> {
    let Some(watch) = inner.feed.get(account) else {
        return Ok(());
    };
    let mut state = watch.state.lock().await;
    if state.ready {
        return Ok(());
    }
    let client = get(&inner.pool).await?;
    let rows = query(
        &client,
        "SELECT id, name, highest_modseq, uid_next FROM mailboxes WHERE account = $1",
        &[&account.as_str()],
        "feed cursors",
    )
    .await?;
    let mut cursors = HashMap::with_capacity(rows.len());
    for row in &rows {
        cursors.insert(
            column::<i64>(row, 0)?,
            Cursor {
                name: column(row, 1)?,
                modseq: ModSeq(to_u64(column(row, 2)?, "HIGHESTMODSEQ")?),
                uid_next: Uid(to_u32(column(row, 3)?, "UIDNEXT")?),
            },
        );
    }
    state.cursors = cursors;
    state.ready = true;
    Ok(())
}

/// Publishes a committed local change. The cursor only moves if nothing came between
/// (no change of another node is still unread), so a later read-back misses nothing.
/// The caller holds no pooled connection: a read-back holding the account's lock may be
/// waiting for one.
pub(super) async fn publish(
    inner: &Inner,
    account: &Address,
    progress: Progress,
    changes: Vec<Change>,
) {
    let Some(watch) = inner.feed.get(account) else {
        inner.hub.publish(account, changes);
        return;
    };
    let mut state = watch.state.lock().await;
    if state.ready {
        let cursor = state
            .cursors
            .entry(progress.mailbox_id)
            .or_insert_with(|| Cursor::new_mailbox(progress.name));
        if cursor.modseq >= progress.after {
            // A read-back published it already, in order.
            return;
        }
        if cursor.modseq != progress.before {
            // An earlier change to this mailbox is not published yet: another node's,
            // or this node's own, committed first but still on its way here (two
            // appends race from their commits to this lock). Publishing this one first
            // would show a session UID n+1 before UID n, and a session cannot take a
            // message below one it announced (sequence numbers would move), so it would
            // never see n. Read back everything since the cursor, in modseq order.
            match catch_up_locked(inner, account, &mut state).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "postgres feed: read-back for an out-of-order change failed")
                }
            }
        } else {
            cursor.modseq = progress.after;
            cursor.uid_next = progress.uid_next;
        }
    }
    inner.hub.publish(account, changes);
}

/// Publishes a committed local delete (`None`) or rename of mailbox rows (holding no
/// pooled connection, as for [`publish`]).
pub(super) async fn publish_moves(
    inner: &Inner,
    account: &Address,
    moves: Vec<(i64, Option<String>)>,
    changes: Vec<Change>,
) {
    let Some(watch) = inner.feed.get(account) else {
        inner.hub.publish(account, changes);
        return;
    };
    let mut state = watch.state.lock().await;
    for (id, new_name) in moves {
        match new_name {
            None => {
                state.cursors.remove(&id);
            }
            Some(name) => {
                if let Some(cursor) = state.cursors.get_mut(&id) {
                    cursor.name = name;
                }
            }
        }
    }
    inner.hub.publish(account, changes);
}

/// Reads what changed in the account's mailboxes since this instance's cursors, from
/// one snapshot, and publishes it: mailboxes gone or renamed as `MailboxReset`, new
/// messages as `Appended` (ascending UIDs), flag changes, tombstones as `Expunged`.
pub(super) async fn catch_up(inner: &Inner, account: &Address) -> Result<(), StoreError> {
    let Some(watch) = inner.feed.get_subscribed(account, &inner.hub) else {
        return Ok(());
    };
    let mut state = watch.state.lock().await;
    if !state.ready {
        drop(state);
        return ready(inner, account).await;
    }
    catch_up_locked(inner, account, &mut state).await
}

/// [`catch_up`] with the account's publishing lock held (and its cursors read).
async fn catch_up_locked(
    inner: &Inner,
    account: &Address,
    state: &mut WatchState,
) -> Result<(), StoreError> {
    let mut client = get(&inner.pool).await?;
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db("feed"))?;
    let rows = query(
        &tx,
        "SELECT id, name, highest_modseq, uid_next, expunged_floor FROM mailboxes \
         WHERE account = $1 ORDER BY id",
        &[&account.as_str()],
        "feed",
    )
    .await?;
    let mut mailboxes = Vec::with_capacity(rows.len());
    for row in &rows {
        mailboxes.push((
            column::<i64>(row, 0)?,
            column::<String>(row, 1)?,
            ModSeq(to_u64(column(row, 2)?, "HIGHESTMODSEQ")?),
            Uid(to_u32(column(row, 3)?, "UIDNEXT")?),
            ModSeq(to_u64(column(row, 4)?, "tombstone floor")?),
        ));
    }
    let mut changes = Vec::new();
    // Gone first: a mailbox deleted and made again under its name is a new row.
    let present: HashSet<i64> = mailboxes.iter().map(|m| m.0).collect();
    let mut gone: Vec<i64> = state
        .cursors
        .keys()
        .filter(|id| !present.contains(id))
        .copied()
        .collect();
    gone.sort_unstable();
    for id in gone {
        if let Some(cursor) = state.cursors.remove(&id) {
            changes.push(Change::MailboxReset {
                mailbox: cursor.name,
            });
        }
    }
    for (id, name, highest, uid_next, floor) in mailboxes {
        let cursor = state
            .cursors
            .entry(id)
            .or_insert_with(|| Cursor::new_mailbox(name.clone()));
        if cursor.name != name {
            let old = std::mem::replace(&mut cursor.name, name.clone());
            changes.push(Change::MailboxReset { mailbox: old });
        }
        if highest <= cursor.modseq {
            continue;
        }
        if cursor.modseq < floor {
            // Tombstones this instance has not read were pruned: resynchronise.
            changes.push(Change::MailboxReset { mailbox: name });
        } else {
            read_changes(&tx, id, &name, cursor, &mut changes).await?;
        }
        cursor.modseq = highest;
        cursor.uid_next = uid_next;
    }
    tx.commit().await.map_err(db("feed"))?;
    inner.hub.publish(account, changes);
    Ok(())
}

/// The changes to one mailbox above its cursor.
async fn read_changes<C: GenericClient>(
    client: &C,
    id: i64,
    name: &str,
    cursor: &Cursor,
    changes: &mut Vec<Change>,
) -> Result<(), StoreError> {
    let since = to_i64(cursor.modseq.0);
    let rows = query(
        client,
        "SELECT uid, size, internal_date, flags, keywords, modseq FROM messages \
         WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid",
        &[&id, &since],
        "feed",
    )
    .await?;
    let mut flag_changes = Vec::new();
    for row in &rows {
        let meta = meta_from_row(row)?;
        if meta.uid >= cursor.uid_next {
            changes.push(Change::Appended {
                mailbox: name.to_string(),
                meta,
            });
        } else {
            flag_changes.push(Change::FlagsChanged {
                mailbox: name.to_string(),
                uid: meta.uid,
                flags: meta.flags,
                modseq: meta.modseq,
            });
        }
    }
    changes.extend(flag_changes);
    let tombs = query(
        client,
        "SELECT uid, modseq FROM expunged WHERE mailbox_id = $1 AND modseq > $2 ORDER BY modseq",
        &[&id, &since],
        "feed",
    )
    .await?;
    for row in &tombs {
        changes.push(Change::Expunged {
            mailbox: name.to_string(),
            uid: Uid(to_u32(column(row, 0)?, "UID")?),
            modseq: ModSeq(to_u64(column(row, 1)?, "modseq")?),
        });
    }
    Ok(())
}

/// [`catch_up`] for every watched account (those that lost their last subscriber stop
/// being watched). Returns the first error, after trying every account.
pub(super) async fn catch_up_all(inner: &Inner) -> Result<(), StoreError> {
    let accounts: Vec<Address> = lock(&inner.feed.watched).keys().cloned().collect();
    let mut first_error = None;
    for account in accounts {
        if let Err(e) = catch_up(inner, &account).await {
            tracing::warn!(error = %e, "postgres feed: reading changes failed");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Starts the task that listens for other nodes' changes and/or polls for them.
pub(super) fn start_listener(
    inner: &Arc<Inner>,
    mut config: tokio_postgres::Config,
    tls: Tls,
    listen: bool,
    poll: Option<Duration>,
) {
    if !listen && poll.is_none() {
        return;
    }
    let name = format!(
        "{}-listener",
        config.get_application_name().unwrap_or("chatmail")
    );
    config.application_name(name);
    let task = inner.runtime.spawn(listen_loop(
        Arc::downgrade(inner),
        config,
        tls,
        listen,
        poll,
    ));
    *lock(&inner.feed.listener) = Some(task);
}

/// The account a notification names, unless this instance sent it.
fn other_node(inner: &Inner, payload: &str) -> Option<Address> {
    let (node, account) = payload.split_once(' ')?;
    if node == inner.feed.node {
        return None;
    }
    Address::parse(account).ok()
}

/// Read-backs that failed (the database busy or away), tried again after [`RETRY`]
/// rather than waiting for the next notification.
#[derive(Default)]
struct Retry {
    /// Every watched account (a reconnect's or an overflow's read-back failed).
    all: bool,
    accounts: HashSet<Address>,
}

impl Retry {
    fn pending(&self) -> bool {
        self.all || !self.accounts.is_empty()
    }

    /// Tries again; what still fails.
    async fn run(self, inner: &Inner) -> Retry {
        let mut left = Retry::default();
        if self.all {
            left.all = catch_up_all(inner).await.is_err();
            return left;
        }
        for account in self.accounts {
            if catch_up(inner, &account).await.is_err() {
                left.accounts.insert(account);
            }
        }
        left
    }
}

/// Waits for the next tick, or forever without a poll.
async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Catches up every watched account, unless the store is gone (then false).
async fn catch_up_watched(weak: &Weak<Inner>) -> bool {
    let Some(inner) = weak.upgrade() else {
        return false;
    };
    // Failures are logged; the next notification, poll or reconnect tries again.
    let _ = catch_up_all(&inner).await;
    true
}

/// The listener: holds only a weak reference while it waits, so dropping the store ends
/// it. Reconnects with a growing pause after a lost connection, and catches up after
/// each (re)connect.
async fn listen_loop(
    weak: Weak<Inner>,
    config: tokio_postgres::Config,
    tls: Tls,
    listen: bool,
    poll: Option<Duration>,
) {
    let mut ticker = poll.map(|every| {
        let mut ticker = tokio::time::interval(every.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    if !listen {
        loop {
            tick(&mut ticker).await;
            if !catch_up_watched(&weak).await {
                return;
            }
        }
    }
    let mut backoff = MIN_BACKOFF;
    loop {
        match listen_once(&weak, &config, &tls, &mut ticker, &mut backoff).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "postgres feed: listener connection lost"),
        }
        // Polling goes on while the listener is away.
        let pause = tokio::time::sleep(backoff);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => break,
                _ = tick(&mut ticker) => {
                    if !catch_up_watched(&weak).await {
                        return;
                    }
                }
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Drives the listener's connection, handing its notifications to `sender` (flagging an
/// overflow when too many wait); ends with the connection, dropping the sender.
async fn drive<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    sender: tokio::sync::mpsc::Sender<String>,
    overflowed: Arc<AtomicBool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    while let Some(message) = messages.next().await {
        match message {
            Ok(AsyncMessage::Notification(n)) => {
                if sender.try_send(n.payload().to_string()).is_err() {
                    overflowed.store(true, Ordering::Relaxed);
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "postgres feed: listener connection error");
                break;
            }
        }
    }
}

/// One listener connection: `LISTEN`, catch up, then handle notifications until the
/// connection ends (an error) or the store is gone (`Ok`).
async fn listen_once(
    weak: &Weak<Inner>,
    config: &tokio_postgres::Config,
    tls: &Tls,
    ticker: &mut Option<tokio::time::Interval>,
    backoff: &mut Duration,
) -> Result<(), StoreError> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<String>(PENDING_NOTIFICATIONS);
    let overflow = Arc::new(AtomicBool::new(false));
    let overflowed = overflow.clone();
    let (client, driver) = match tls {
        Tls::Off => {
            let (client, connection) = config.connect(NoTls).await.map_err(db("listener"))?;
            (client, tokio::spawn(drive(connection, sender, overflowed)))
        }
        Tls::On(tls) => {
            let (client, connection) = config.connect(tls.clone()).await.map_err(db("listener"))?;
            (client, tokio::spawn(drive(connection, sender, overflowed)))
        }
    };
    let result = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(db("listen"))?;
        *backoff = MIN_BACKOFF;
        let mut retry = Retry::default();
        let retry_timer = tokio::time::sleep(RETRY);
        tokio::pin!(retry_timer);
        // What was missed while no listener was there.
        let Some(inner) = weak.upgrade() else {
            return Ok(());
        };
        retry.all = catch_up_all(&inner).await.is_err();
        drop(inner);
        retry_timer
            .as_mut()
            .reset(tokio::time::Instant::now() + RETRY);
        loop {
            tokio::select! {
                payload = receiver.recv() => {
                    let Some(payload) = payload else {
                        return Err(StoreError::io(
                            "postgres: listener",
                            std::io::Error::from(std::io::ErrorKind::ConnectionAborted),
                        ));
                    };
                    let mut payloads = HashSet::new();
                    let mut next = Some(payload);
                    while let Some(payload) = next {
                        payloads.insert(payload);
                        next = receiver.try_recv().ok();
                    }
                    let Some(inner) = weak.upgrade() else {
                        return Ok(());
                    };
                    let was_pending = retry.pending();
                    if overflow.swap(false, Ordering::Relaxed) {
                        retry.all |= catch_up_all(&inner).await.is_err();
                    } else {
                        for account in payloads.iter().filter_map(|p| other_node(&inner, p)) {
                            if catch_up(&inner, &account).await.is_err() {
                                retry.accounts.insert(account);
                            }
                        }
                    }
                    if !was_pending && retry.pending() {
                        retry_timer.as_mut().reset(tokio::time::Instant::now() + RETRY);
                    }
                }
                _ = &mut retry_timer, if retry.pending() => {
                    let Some(inner) = weak.upgrade() else {
                        return Ok(());
                    };
                    retry = retry.run(&inner).await;
                    retry_timer.as_mut().reset(tokio::time::Instant::now() + RETRY);
                }
                _ = tick(ticker) => {
                    if !catch_up_watched(weak).await {
                        return Ok(());
                    }
                }
            }
        }
    }
    .await;
    driver.abort();
    drop(client);
    result
}
