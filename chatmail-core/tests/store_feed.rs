//! The change feed wakes a subscriber that is waiting (as an IDLE session does) when
//! another handle appends, changes flags or expunges, on every backend (postgres with
//! its feature), at once and without polling.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chatmail_core::store::{MailStore, MaildirStore, MemoryStore};
use chatmail_core::{Address, Change, Flag, FlagOp, Flags, Uid, INBOX};
use futures::executor::block_on;

#[cfg(feature = "postgres")]
#[path = "support/postgres.rs"]
mod support;

fn wakes_waiting_subscriber(store: Arc<dyn MailStore>) {
    let alice = Address::parse("alice@chat.example.org").unwrap();
    let bob = Address::parse("bob@chat.example.org").unwrap();
    let mut feed = store.subscribe(&alice);
    let (sender, received) = mpsc::channel();
    // The waiting session: parked in `next()` until the feed wakes it.
    let idle = std::thread::spawn(move || {
        for _ in 0..3 {
            let change = block_on(feed.next());
            if sender.send(change).is_err() {
                return;
            }
        }
    });
    let wait = || {
        received
            .recv_timeout(Duration::from_secs(5))
            .expect("woken")
    };
    std::thread::sleep(Duration::from_millis(20));
    block_on(async {
        // Another account's mail does not wake alice's session.
        store
            .append(
                &bob,
                INBOX,
                Bytes::from_static(b"a: b\r\n\r\n"),
                &Flags::new(),
                1,
            )
            .await
            .unwrap();
        let appended = store
            .append(
                &alice,
                INBOX,
                Bytes::from_static(b"a: b\r\n\r\n"),
                &Flags::new(),
                1,
            )
            .await
            .unwrap();
        match wait() {
            Ok(Change::Appended { mailbox, meta }) => {
                assert_eq!((mailbox.as_str(), meta.uid), (INBOX, appended.uid));
            }
            other => panic!("{other:?}"),
        }
        let seen = Flags::from([Flag::Seen]);
        store
            .store_flags(&alice, INBOX, &[Uid(1)], FlagOp::Add, &seen, None)
            .await
            .unwrap();
        match wait() {
            Ok(Change::FlagsChanged { uid, flags, .. }) => assert_eq!((uid, flags), (Uid(1), seen)),
            other => panic!("{other:?}"),
        }
        store.expunge(&alice, INBOX, &[Uid(1)]).await.unwrap();
        match wait() {
            Ok(Change::Expunged { uid, .. }) => assert_eq!(uid, Uid(1)),
            other => panic!("{other:?}"),
        }
    });
    idle.join().unwrap();
}

#[test]
fn memory_feed_wakes_idle_session() {
    wakes_waiting_subscriber(Arc::new(MemoryStore::new()));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_feed_wakes_idle_session() {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let rt = support::runtime();
    let store = cluster.open_store(&rt, "feed");
    wakes_waiting_subscriber(Arc::new(store));
}

#[test]
fn maildir_feed_wakes_idle_session() {
    let root = tempfile::tempdir().unwrap();
    wakes_waiting_subscriber(Arc::new(MaildirStore::open(root.path()).unwrap()));
}
