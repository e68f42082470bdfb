//! The postgres store against a throwaway PostgreSQL cluster (see `support/postgres.rs`):
//! UIDs under concurrent appends from several store instances, migrations under
//! concurrent opens, `\Recent` claimed once across instances, and the change feed across
//! instances: a change on one wakes a subscriber on another, also after a missed
//! notification.
#![cfg(feature = "postgres")]

#[path = "support/postgres.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use chatmail_core::account::{AccountError, AccountStore, PasswordHash};
use chatmail_core::store::postgres::SCHEMA_VERSION;
use chatmail_core::store::{
    AppendOutcome, ChangeSubscription, MailStore, PostgresOptions, PostgresStore,
};
use chatmail_core::{Address, Change, Flag, FlagOp, Flags, Uid, INBOX};
use support::Cluster;

fn alice() -> Address {
    Address::parse("alice@chat.example.org").unwrap()
}

fn message(n: usize) -> Bytes {
    Bytes::from(format!("Subject: {n}\r\n\r\nbody {n}\r\n"))
}

async fn open(cluster: &Cluster, node: &str, options: PostgresOptions) -> PostgresStore {
    PostgresStore::open(&cluster.url(node), options)
        .await
        .expect("open the postgres store")
}

/// Delivers message `n` to alice's INBOX.
async fn deliver(store: &PostgresStore, n: usize) -> AppendOutcome {
    store
        .append(&alice(), INBOX, message(n), &Flags::new(), 1)
        .await
        .unwrap()
}

/// Alice's feed on `store`, after the session's view (a SELECT's STATUS) was read:
/// from then on nothing may be missed.
async fn watch(store: &PostgresStore) -> ChangeSubscription {
    let feed = store.subscribe(&alice());
    store.status(&alice(), INBOX).await.unwrap();
    feed
}

/// Waits for the next change and checks it is the append of `uid`.
async fn expect_appended(feed: &mut ChangeSubscription, uid: Uid) {
    match next_change(feed).await {
        Change::Appended { meta, .. } => assert_eq!(meta.uid, uid),
        other => panic!("{other:?}"),
    }
}

/// The next change, failing a hang after 20 s (a deadline, not a measurement).
async fn next_change(feed: &mut ChangeSubscription) -> Change {
    tokio::time::timeout(Duration::from_secs(20), feed.next())
        .await
        .expect("a change within 20 s")
        .expect("no lag")
}

#[test]
fn concurrent_appends_from_several_instances_get_distinct_uids() {
    support::with_cluster(async |cluster| {
        let mut stores = Vec::new();
        for node in ["a", "b", "c"] {
            stores.push(open(cluster, node, PostgresOptions::default()).await);
        }
        let mut tasks = Vec::new();
        for store in &stores {
            for _ in 0..4 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let mut uids = Vec::new();
                    for n in 0..10 {
                        let outcome = store
                            .append(&alice(), INBOX, message(n), &Flags::new(), 1_700_000_000)
                            .await
                            .unwrap();
                        uids.push(outcome.uid.0);
                    }
                    uids
                }));
            }
        }
        let mut all = BTreeSet::new();
        for task in tasks {
            let uids = task.await.unwrap();
            // Each writer's own appends come back in increasing order.
            assert!(uids.windows(2).all(|w| w[0] < w[1]), "{uids:?}");
            for uid in uids {
                assert!(all.insert(uid), "UID {uid} handed out twice");
            }
        }
        assert_eq!(all, (1..=120).collect::<BTreeSet<u32>>());
        let status = stores[1].status(&alice(), INBOX).await.unwrap();
        assert_eq!((status.exists, status.uid_next), (120, Uid(121)));
        assert_eq!(status.highest_modseq.0, 121);
        let listed = stores[2]
            .list_messages(&alice(), INBOX, None)
            .await
            .unwrap();
        assert_eq!(listed.len(), 120);
        let usage: u64 = listed.iter().map(|m| m.size).sum();
        assert_eq!(stores[0].quota_usage(&alice()).await.unwrap(), usage);
    });
}

#[test]
fn concurrent_opens_migrate_once() {
    support::with_cluster(async |cluster| {
        let opens: Vec<_> = (0..6)
            .map(|n| {
                let url = cluster.url(&format!("node{n}"));
                tokio::spawn(
                    async move { PostgresStore::open(&url, PostgresOptions::default()).await },
                )
            })
            .collect();
        let mut stores = Vec::new();
        for open in opens {
            stores.push(open.await.unwrap().expect("every node opens"));
        }
        let client = cluster.connect("check").await;
        let versions: Vec<i32> = client
            .query("SELECT version FROM schema_version ORDER BY version", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let each_once: Vec<i32> = (1..=SCHEMA_VERSION).collect();
        assert_eq!(versions, each_once);
        // And the schema works from any of them.
        let appended = stores[3]
            .append(&alice(), INBOX, message(1), &Flags::new(), 1)
            .await
            .unwrap();
        assert_eq!(
            stores[5]
                .read_message(&alice(), INBOX, appended.uid)
                .await
                .unwrap(),
            message(1)
        );
    });
}

#[test]
fn recent_is_claimed_once_across_instances() {
    support::with_cluster(async |cluster| {
        let a = open(cluster, "a", PostgresOptions::default()).await;
        let b = open(cluster, "b", PostgresOptions::default()).await;
        for n in 0..2 {
            deliver(&a, n).await;
        }
        assert_eq!(b.status(&alice(), INBOX).await.unwrap().recent, 2);
        assert_eq!(
            b.claim_recent(&alice(), INBOX).await.unwrap(),
            Uid(1)..Uid(3)
        );
        assert!(a.claim_recent(&alice(), INBOX).await.unwrap().is_empty());
        assert_eq!(a.status(&alice(), INBOX).await.unwrap().recent, 0);
        deliver(&a, 3).await;
        assert_eq!(
            a.claim_recent(&alice(), INBOX).await.unwrap(),
            Uid(3)..Uid(4)
        );
        assert!(b.claim_recent(&alice(), INBOX).await.unwrap().is_empty());
    });
}

#[test]
fn a_change_on_one_instance_wakes_a_subscriber_on_another() {
    support::with_cluster(async |cluster| {
        let a = open(cluster, "a", PostgresOptions::default()).await;
        let b = open(cluster, "b", PostgresOptions::default()).await;
        a.create_mailbox(&alice(), "DeltaChat").await.unwrap();
        let mut feed = b.subscribe(&alice());
        // The session's SELECT: its view, after which nothing may be missed.
        let before = b.status(&alice(), INBOX).await.unwrap();

        let appended = deliver(&a, 1).await;
        match next_change(&mut feed).await {
            Change::Appended { mailbox, meta } => {
                assert_eq!((mailbox.as_str(), meta.uid), (INBOX, appended.uid));
                assert_eq!(meta.modseq, appended.modseq);
                assert!(meta.modseq > before.highest_modseq);
            }
            other => panic!("{other:?}"),
        }
        let seen = Flags::from([Flag::Seen]);
        a.store_flags(&alice(), INBOX, &[appended.uid], FlagOp::Add, &seen, None)
            .await
            .unwrap();
        match next_change(&mut feed).await {
            Change::FlagsChanged { uid, flags, .. } => {
                assert_eq!((uid, flags), (appended.uid, seen))
            }
            other => panic!("{other:?}"),
        }
        a.expunge(&alice(), INBOX, &[appended.uid]).await.unwrap();
        match next_change(&mut feed).await {
            Change::Expunged { uid, .. } => assert_eq!(uid, appended.uid),
            other => panic!("{other:?}"),
        }
        a.rename_mailbox(&alice(), "DeltaChat", "Chats")
            .await
            .unwrap();
        assert_eq!(
            next_change(&mut feed).await,
            Change::MailboxReset {
                mailbox: "DeltaChat".into()
            }
        );
        // B's own changes reach B's subscriber once, at once.
        let own = b
            .append(&alice(), "Chats", message(2), &Flags::new(), 1)
            .await
            .unwrap();
        match feed.try_next() {
            Some(Ok(Change::Appended { mailbox, meta })) => {
                assert_eq!((mailbox.as_str(), meta.uid), ("Chats", own.uid));
            }
            other => panic!("{other:?}"),
        }
        a.delete_mailbox(&alice(), "Chats").await.unwrap();
        assert_eq!(
            next_change(&mut feed).await,
            Change::MailboxReset {
                mailbox: "Chats".into()
            }
        );
    });
}

#[test]
fn a_missed_notification_loses_nothing() {
    support::with_cluster(async |cluster| {
        let a = open(cluster, "a", PostgresOptions::default()).await;
        // B hears no notification at all: what it publishes, it read back itself.
        let deaf = PostgresOptions {
            listen: false,
            ..PostgresOptions::default()
        };
        let b = open(cluster, "b", deaf).await;
        let first = deliver(&a, 1).await;
        let mut feed = watch(&b).await;

        let second = deliver(&a, 2).await;
        let seen = Flags::from([Flag::Seen]);
        a.store_flags(&alice(), INBOX, &[first.uid], FlagOp::Add, &seen, None)
            .await
            .unwrap();
        a.expunge(&alice(), INBOX, &[first.uid]).await.unwrap();
        assert!(
            feed.try_next().is_none(),
            "nothing published without a read"
        );

        b.catch_up().await.unwrap();
        let changes: Vec<Change> = std::iter::from_fn(|| feed.try_next())
            .map(|c| c.expect("no lag"))
            .collect();
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(
            matches!(&changes[0], Change::Appended { meta, .. } if meta.uid == second.uid),
            "{changes:?}"
        );
        // The flag change of the first message is superseded by its expunge.
        assert!(
            matches!(&changes[1], Change::Expunged { uid, .. } if *uid == first.uid),
            "{changes:?}"
        );
        // Read back once: a second round finds nothing new.
        b.catch_up().await.unwrap();
        assert!(feed.try_next().is_none());
    });
}

#[test]
fn a_listener_reconnect_catches_up() {
    support::with_cluster(async |cluster| {
        let a = open(cluster, "a", PostgresOptions::default()).await;
        let b = open(cluster, "b", PostgresOptions::default()).await;
        let mut feed = watch(&b).await;

        let client = cluster.connect("admin").await;
        // Wait for B's listener to be connected, then cut it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let cut = client
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE application_name = 'b-listener'",
                    &[],
                )
                .await
                .unwrap();
            if !cut.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "B's listener never connected"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Most likely made while B has no listener: its notification is lost to B.
        let appended = deliver(&a, 1).await;
        expect_appended(&mut feed, appended.uid).await;
    });
}

#[test]
fn the_poll_wakes_a_subscriber_without_notifications() {
    support::with_cluster(async |cluster| {
        let a = open(cluster, "a", PostgresOptions::default()).await;
        let polling = PostgresOptions {
            listen: false,
            poll_interval: Some(Duration::from_millis(50)),
            ..PostgresOptions::default()
        };
        let b = open(cluster, "b", polling).await;
        let mut feed = watch(&b).await;
        let appended = deliver(&a, 1).await;
        expect_appended(&mut feed, appended.uid).await;
    });
}

#[test]
fn removing_an_account_takes_its_mail_and_tells_other_nodes() {
    support::with_cluster(async |cluster| {
        let a = open(cluster, "a", PostgresOptions::default()).await;
        let b = open(cluster, "b", PostgresOptions::default()).await;
        let hash = PasswordHash::from_stored("{SHA512-CRYPT}$6$salt$hash");
        a.create_if_absent(&alice(), hash, 1).await.unwrap();
        a.create_mailbox(&alice(), "DeltaChat").await.unwrap();
        deliver(&a, 1).await;
        let mut feed = watch(&b).await;

        assert!(!b.is_disabled(&alice()).await.unwrap());
        b.set_disabled(&alice(), true).await.unwrap();
        assert!(a.is_disabled(&alice()).await.unwrap());

        assert!(a.delete(&alice()).await.unwrap());
        let mut reset = BTreeSet::new();
        for _ in 0..2 {
            match next_change(&mut feed).await {
                Change::MailboxReset { mailbox } => reset.insert(mailbox),
                other => panic!("{other:?}"),
            };
        }
        assert_eq!(reset, BTreeSet::from(["DeltaChat".into(), INBOX.into()]));
        assert_eq!(b.quota_usage(&alice()).await.unwrap(), 0);
        assert!(b.lookup(&alice()).await.unwrap().is_none());
        assert!(matches!(
            b.set_disabled(&alice(), false).await,
            Err(AccountError::NoAccount(_))
        ));
    });
}

#[test]
fn expiry_runs_on_one_node_at_a_time() {
    support::with_cluster(async |cluster| {
        let a = open(cluster, "a", PostgresOptions::default()).await;
        let b = open(cluster, "b", PostgresOptions::default()).await;
        for n in 0..20 {
            // Delivered in 2001: older than any expiry policy keeps.
            a.append(&alice(), INBOX, message(n), &Flags::new(), 1_000_000_000)
                .await
                .unwrap();
        }
        let policy = chatmail_core::expiry::ExpiryPolicy::from_config(
            &chatmail_core::config::Config::with_domain("chat.example.org"),
        );
        let now = 1_700_000_000;
        let (on_a, on_b) = tokio::join!(a.expire(&policy, now), b.expire(&policy, now));
        let (on_a, on_b) = (on_a.unwrap(), on_b.unwrap());
        assert!(on_a.failures.is_empty() && on_b.failures.is_empty());
        // Each message removed once, whichever node ran (or both, one after the other).
        assert_eq!(on_a.messages_removed + on_b.messages_removed, 20);
        assert!(a
            .list_messages(&alice(), INBOX, None)
            .await
            .unwrap()
            .is_empty());
        let status = b.status(&alice(), INBOX).await.unwrap();
        assert_eq!(status.highest_modseq.0, 1 + 20 + 20);
    });
}

#[test]
fn an_account_subscribed_again_gets_what_follows() {
    support::with_cluster(async |cluster| {
        let a = open(cluster, "a", PostgresOptions::default()).await;
        let b = open(cluster, "b", PostgresOptions::default()).await;
        let mut feed = watch(&b).await;
        let first = deliver(&a, 1).await;
        expect_appended(&mut feed, first.uid).await;
        // The last session leaves: B stops watching alice (at the next notification).
        drop(feed);
        deliver(&a, 2).await;
        deliver(&a, 3).await;
        let mut feed = watch(&b).await;
        let fourth = deliver(&a, 4).await;
        // The feed may repeat what the session's view already holds (B may still have
        // been watching when 2 and 3 came, and its read-back replays them; a change is
        // never missed, it may come twice: src/store/postgres/mod.rs), then 4 comes.
        loop {
            match next_change(&mut feed).await {
                Change::Appended { meta, .. } if meta.uid == fourth.uid => break,
                Change::Appended { meta, .. } if meta.uid < fourth.uid => continue,
                other => panic!("{other:?}"),
            }
        }
    });
}

/// Local appends and read-backs of another node's appends share a pool of two: nothing
/// waits for a connection held by a task that waits for the feed (a deadline of 20 s,
/// where a stall would last the pool's 30 s timeout), and the subscriber sees all 40.
#[test]
fn a_small_pool_does_not_stall_publishing() {
    support::with_cluster(async |cluster| {
        let small = PostgresOptions {
            pool_size: 2,
            ..PostgresOptions::default()
        };
        let a = open(cluster, "a", small).await;
        let b = open(cluster, "b", PostgresOptions::default()).await;
        let mut feed = watch(&a).await;
        let mut tasks = Vec::new();
        for n in 0..20 {
            for store in [&a, &b] {
                let store = store.clone();
                tasks.push(tokio::spawn(async move { deliver(&store, n).await.uid }));
            }
        }
        let all = async {
            let mut uids = BTreeSet::new();
            for task in tasks {
                uids.insert(task.await.unwrap());
            }
            uids
        };
        let uids = tokio::time::timeout(Duration::from_secs(20), all)
            .await
            .expect("40 appends within 20 s");
        assert_eq!(uids.len(), 40);
        let mut seen = BTreeSet::new();
        while seen.len() < 40 {
            match next_change(&mut feed).await {
                Change::Appended { meta, .. } => seen.insert(meta.uid),
                other => panic!("{other:?}"),
            };
        }
        assert_eq!(seen, uids);
    });
}

/// With `sslmode=require` in the URL every connection (pool and listener) is TLS, the
/// server's certificate checked: refused without its CA, working with it, the change
/// feed across nodes included.
#[test]
fn tls_when_the_url_requires_it() {
    let Some(cluster) = Cluster::start_with_tls() else {
        return;
    };
    support::runtime().block_on(async {
        let url = |node: &str| format!("{}&sslmode=require", cluster.url(node));
        let untrusted = PostgresStore::open(&url("tls-x"), PostgresOptions::default()).await;
        assert!(untrusted.is_err(), "a certificate of an unknown CA");
        let trusting = PostgresOptions {
            tls_roots: Some(cluster.ca()),
            ..PostgresOptions::default()
        };
        let a = PostgresStore::open(&url("tls-a"), trusting.clone())
            .await
            .unwrap();
        let b = PostgresStore::open(&url("tls-b"), trusting).await.unwrap();
        let mut feed = watch(&b).await;
        let appended = deliver(&a, 1).await;
        expect_appended(&mut feed, appended.uid).await;

        let admin = cluster.connect("admin").await;
        let rows = admin
            .query(
                "SELECT a.application_name, s.ssl FROM pg_stat_activity a \
                 JOIN pg_stat_ssl s USING (pid) WHERE a.application_name LIKE 'tls-%'",
                &[],
            )
            .await
            .unwrap();
        let connections: Vec<(String, bool)> =
            rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        assert!(
            connections.iter().any(|(name, _)| name == "tls-b-listener"),
            "{connections:?}"
        );
        assert!(connections.iter().all(|(_, ssl)| *ssl), "{connections:?}");
    });
}

#[test]
fn nodes_offering_a_domain_secret_at_once_all_keep_the_first() {
    support::with_cluster(async |cluster| {
        let a = open(cluster, "a", PostgresOptions::default()).await;
        let b = open(cluster, "b", PostgresOptions::default()).await;
        assert_eq!(a.domain_secret("dkim:opendkim").await.unwrap(), None);
        let (from_a, from_b) = tokio::join!(
            a.offer_domain_secret("dkim:opendkim", "key made by a"),
            b.offer_domain_secret("dkim:opendkim", "key made by b"),
        );
        let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
        assert_eq!(from_a, from_b);
        assert!(from_a == "key made by a" || from_a == "key made by b");
        assert_eq!(
            b.domain_secret("dkim:opendkim").await.unwrap(),
            Some(from_a.clone())
        );
        // A later offer changes nothing.
        assert_eq!(
            a.offer_domain_secret("dkim:opendkim", "another")
                .await
                .unwrap(),
            from_a
        );
        assert!(a.domain_secret("").await.is_err());
        let huge = "x".repeat(chatmail_core::store::postgres::MAX_DOMAIN_SECRET_LEN + 1);
        assert!(a.offer_domain_secret("big", &huge).await.is_err());
    });
}

/// Concurrent appends race from their commits to publishing; a session takes only UIDs
/// above the highest it announced (sequence numbers cannot move), so the feed must hand
/// every UID over in ascending order, or the session never sees the one that lost the
/// race (loadgen found 8 of 2,000 missing before the fix).
#[test]
fn concurrent_appends_reach_a_local_subscriber_in_uid_order() {
    support::with_cluster(async |cluster| {
        let store = open(cluster, "a", PostgresOptions::default()).await;
        let mut feed = watch(&store).await;
        let total = 400usize;
        let mut tasks = Vec::new();
        for t in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..total / 16 {
                    deliver(&store, t * 1000 + n).await;
                }
            }));
        }
        // Read while they append (as a session does; the feed's buffer is bounded).
        // What an IMAP session keeps: each UID above the highest so far.
        let mut highest = 0;
        let mut taken = 0;
        while taken < total {
            match next_change(&mut feed).await {
                Change::Appended { meta, .. } if meta.uid.0 > highest => {
                    assert_eq!(meta.uid.0, highest + 1, "UID {} skipped", highest + 1);
                    highest = meta.uid.0;
                    taken += 1;
                }
                _ => {}
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[test]
fn domain_secrets_are_set_listed_removed_and_leased_to_one_node() {
    support::with_cluster(async |cluster| {
        let a = open(cluster, "a", PostgresOptions::default()).await;
        let b = open(cluster, "b", PostgresOptions::default()).await;
        a.set_domain_secret("acme:challenge:x.org", "d1")
            .await
            .unwrap();
        a.set_domain_secret("acme:challenge:x.org", "d2")
            .await
            .unwrap();
        b.set_domain_secret("acme:challenge:mta-sts.x.org", "d3")
            .await
            .unwrap();
        b.set_domain_secret("acme:certificate", "c").await.unwrap();
        assert_eq!(
            a.domain_secrets_with_prefix("acme:challenge:")
                .await
                .unwrap(),
            vec![
                ("acme:challenge:mta-sts.x.org".to_string(), "d3".to_string()),
                ("acme:challenge:x.org".to_string(), "d2".to_string()),
            ]
        );
        // A prefix is a prefix, not a LIKE pattern.
        assert!(a
            .domain_secrets_with_prefix("acme_")
            .await
            .unwrap()
            .is_empty());
        a.remove_domain_secret("acme:challenge:x.org")
            .await
            .unwrap();
        assert_eq!(a.domain_secret("acme:challenge:x.org").await.unwrap(), None);

        // The lease: one holder until it runs out; the holder may extend it.
        assert!(a
            .take_domain_lease("acme:lease", "node-a", 1000, 5000)
            .await
            .unwrap());
        assert!(!b
            .take_domain_lease("acme:lease", "node-b", 2000, 6000)
            .await
            .unwrap());
        assert!(a
            .take_domain_lease("acme:lease", "node-a", 3000, 7000)
            .await
            .unwrap());
        assert!(!b
            .take_domain_lease("acme:lease", "node-b", 6999, 9000)
            .await
            .unwrap());
        assert!(b
            .take_domain_lease("acme:lease", "node-b", 7001, 9000)
            .await
            .unwrap());
        assert!(!a
            .take_domain_lease("acme:lease", "node-a", 8000, 9500)
            .await
            .unwrap());
        assert!(a
            .take_domain_lease("acme:lease", "bad holder", 1, 2)
            .await
            .is_err());
    });
}
