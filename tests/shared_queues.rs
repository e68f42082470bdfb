//! The queues that the nodes of a domain share in PostgreSQL (feature `postgres`): the
//! delivery queue and the pending push notifications. What a node queued survives it,
//! a node that stopped has its items taken over by another, two nodes taking over at
//! once never take the same item, and a node taken for dead that comes back learns a
//! message is no longer its own.
//! Against a throwaway cluster (chatmail-core/tests/support/postgres.rs).
#![cfg(feature = "postgres")]

#[path = "../chatmail-core/tests/support/postgres.rs"]
mod support;

use bytes::Bytes;
use chatmail::core::store::{PostgresOptions, PostgresStore};
use chatmail::outbound::{DeliveryQueue, QueueSettings, RecipientOutcome, NODE_STALE_AFTER};
use chatmail::policy::Reply;
use std::collections::BTreeSet;
use std::sync::Arc;

fn settings() -> QueueSettings {
    QueueSettings::from_config(&chatmail::core::config::Config::with_domain("example.org"))
}

async fn store(cluster: &support::Cluster, name: &str) -> Arc<PostgresStore> {
    Arc::new(
        PostgresStore::open(&cluster.url(name), PostgresOptions::default())
            .await
            .expect("open the store"),
    )
}

/// `n` messages for other domains, queued by `queue` at `now`.
async fn enqueue(queue: &DeliveryQueue, n: usize, now: u64) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for k in 0..n {
        let id = queue
            .enqueue(
                "alice@example.org",
                &[format!("bob@remote{k}.example")],
                Bytes::from(format!("Subject: {k}\r\n\r\nbody\r\n")),
                now,
                now,
            )
            .await
            .expect("enqueue");
        ids.insert(id);
    }
    ids
}

/// Every message due at `now` in `queue`, taken.
fn take_all(queue: &DeliveryQueue, now: u64) -> Vec<chatmail::outbound::Attempt> {
    let mut taken = Vec::new();
    loop {
        let batch = queue.take_due(now, 1000);
        if batch.is_empty() {
            return taken;
        }
        taken.extend(batch);
    }
}

#[test]
fn a_stopped_nodes_messages_are_taken_over_once() {
    support::with_cluster(async |cluster| {
        let now = 1_700_000_000_000u64;
        let stale = NODE_STALE_AFTER.as_millis() as u64;
        let a = DeliveryQueue::open_shared(store(cluster, "a").await, "node-a", settings(), now)
            .await
            .unwrap();
        let queued = enqueue(&a, 40, now).await;
        // A restarted node reloads what it holds, exactly.
        let a_again =
            DeliveryQueue::open_shared(store(cluster, "a2").await, "node-a", settings(), now)
                .await
                .unwrap();
        assert_eq!(a_again.len(), 40);
        drop(a_again);

        // B and C start while A is alive: nothing to take.
        let b = DeliveryQueue::open_shared(store(cluster, "b").await, "node-b", settings(), now)
            .await
            .unwrap();
        let c = DeliveryQueue::open_shared(store(cluster, "c").await, "node-c", settings(), now)
            .await
            .unwrap();
        assert_eq!(b.adopt_orphans(now + 1000).await.unwrap(), 0);

        // A stops saying it is alive; B and C both look at once, after the stale time
        // (and keep saying they are alive themselves).
        let later = now + stale + 1000;
        let (from_b, from_c) = tokio::join!(b.adopt_orphans(later), c.adopt_orphans(later));
        let (from_b, from_c) = (from_b.unwrap(), from_c.unwrap());
        assert_eq!(from_b + from_c, 40, "every message taken over once");
        let taken_b = take_all(&b, later);
        let taken_c = take_all(&c, later);
        let taken: Vec<String> = taken_b
            .iter()
            .chain(&taken_c)
            .map(|attempt| attempt.id.clone())
            .collect();
        assert_eq!(taken.len(), 40);
        assert_eq!(taken.iter().cloned().collect::<BTreeSet<_>>(), queued);

        // A comes back and reports an attempt it had taken before it stalled: the
        // message is no longer its own, so it is dropped there, not written over.
        let stale_attempt = take_all(&a, now).into_iter().next().expect("A's attempt");
        let recorded = a
            .record(
                &stale_attempt,
                &[RecipientOutcome::Deferred(Reply::new(451, "4.4.1 later"))],
                later,
            )
            .await
            .unwrap();
        assert!(recorded.failed.is_empty() && !recorded.finished);
        assert_eq!(a.len(), 39);

        // The adopter's record goes through: delivered, the message leaves the queue.
        let (holder, attempt) = match taken_b.iter().find(|t| t.id == stale_attempt.id) {
            Some(attempt) => (&b, attempt),
            None => (
                &c,
                taken_c
                    .iter()
                    .find(|t| t.id == stale_attempt.id)
                    .expect("adopted by B or C"),
            ),
        };
        let before = holder.len();
        let done = holder
            .record(
                attempt,
                &[RecipientOutcome::Delivered(Reply::new(250, "2.0.0 ok"))],
                later,
            )
            .await
            .unwrap();
        assert!(done.finished);
        assert_eq!(holder.len(), before - 1);
        let check = store(cluster, "check").await;
        assert_eq!(check.queue_message(&attempt.id).await.unwrap(), None);

        // A node that starts while B and C are alive takes nothing.
        let d = DeliveryQueue::open_shared(check, "node-d", settings(), later)
            .await
            .unwrap();
        assert_eq!(d.len(), 0);
    });
}

#[test]
fn a_stopped_nodes_pending_push_notifications_are_taken_over_once() {
    use chatmail::push::pending::FileOp;
    use chatmail::push::storage::PendingStorage;
    use chatmail::push::{ItemId, PendingItem};
    support::with_cluster(async |cluster| {
        let now_ms = 1_700_000_000_000u64;
        let stale = NODE_STALE_AFTER.as_millis() as u64;
        let node = |store: Arc<PostgresStore>, name: &str| PendingStorage::Shared {
            store,
            node: name.to_string(),
        };
        let item = |n: u128| PendingItem {
            id: ItemId::parse(&format!("{n:032x}")).unwrap(),
            account: chatmail::core::Address::parse("bob@example.org").unwrap(),
            start_ts: now_ms / 1000,
            token: format!("token-{n}"),
        };
        let a = node(store(cluster, "a").await, "node-a");
        a.adopt(now_ms, now_ms - stale).await.unwrap();
        // Written and answered within one batch: never stored.
        a.apply(vec![
            FileOp::Write(item(1)),
            FileOp::Write(item(2)),
            FileOp::Write(item(3)),
            FileOp::Write(item(4)),
            FileOp::Remove(item(4).id),
        ])
        .await
        .unwrap();
        assert_eq!(a.load().await.unwrap().len(), 3);

        let b = node(store(cluster, "b").await, "node-b");
        let c = node(store(cluster, "c").await, "node-c");
        let later = now_ms + stale + 1000;
        let (from_b, from_c) =
            tokio::join!(b.adopt(later, later - stale), c.adopt(later, later - stale));
        let mut ids: Vec<ItemId> = from_b
            .unwrap()
            .into_iter()
            .chain(from_c.unwrap())
            .map(|item| item.id)
            .collect();
        ids.sort();
        assert_eq!(ids, vec![item(1).id, item(2).id, item(3).id]);
        assert!(a.load().await.unwrap().is_empty());
        // A's late removal of an item it no longer holds changes nothing there; the
        // adopter's removal does.
        a.apply(vec![FileOp::Remove(item(1).id)]).await.unwrap();
        let left = b.load().await.unwrap().len() + c.load().await.unwrap().len();
        assert_eq!(left, 3);
        b.apply(vec![FileOp::Remove(item(1).id)]).await.unwrap();
        c.apply(vec![FileOp::Remove(item(1).id)]).await.unwrap();
        let left = b.load().await.unwrap().len() + c.load().await.unwrap().len();
        assert_eq!(left, 2);
    });
}
