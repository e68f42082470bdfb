//! The quota usage the `maildir` store keeps per account stays exact: after every kind
//! of change (append, copy, expunge, move, rename, delete, trimming, expiry, the takeover
//! from Dovecot, a restart) it equals what a store opened afresh on the same directory
//! computes from scratch, and the sum of the listed message sizes.

use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chatmail_core::config::Config;
use chatmail_core::expiry::ExpiryPolicy;
use chatmail_core::store::{MailStore, MaildirStore};
use chatmail_core::{Address, Flag, Flags, Uid, INBOX};
use futures::executor::block_on;

fn alice() -> Address {
    Address::parse("alice@chat.example.org").unwrap()
}

fn message(n: usize) -> Bytes {
    Bytes::from(format!(
        "Subject: {n}\r\n\r\n{}\r\n",
        "x".repeat(100 * (n % 7 + 1))
    ))
}

/// The sum of the sizes of every listed message of the account.
async fn listed(store: &MaildirStore, who: &Address) -> u64 {
    let mut total = 0;
    for mailbox in store.list_mailboxes(who).await.unwrap() {
        for meta in store.list_messages(who, &mailbox.name, None).await.unwrap() {
            total += meta.size;
        }
    }
    total
}

/// Checks the kept figure against a fresh store's and against the listing; returns it.
async fn assert_exact(store: &MaildirStore, root: &Path, step: &str) -> u64 {
    let kept = store.quota_usage(&alice()).await.unwrap();
    let fresh = MaildirStore::open(root)
        .unwrap()
        .quota_usage(&alice())
        .await
        .unwrap();
    assert_eq!(kept, fresh, "after {step}: kept figure vs. a fresh scan");
    assert_eq!(
        kept,
        listed(store, &alice()).await,
        "after {step}: vs. listing"
    );
    kept
}

/// An INBOX and a folder as Dovecot leaves them: a `dovecot-uidlist` listing two of the
/// INBOX's three messages, and a folder without a list.
fn dovecot_account(root: &Path) {
    let dir = root.join(alice().as_str());
    for sub in [
        "cur",
        "new",
        "tmp",
        ".DeltaChat/cur",
        ".DeltaChat/new",
        ".DeltaChat/tmp",
    ] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let one = b"Subject: one\r\n\r\none\r\n";
    let two = b"Subject: two\r\n\r\ntwo two\r\n";
    let three = b"Subject: three\r\n\r\nthree three three\r\n";
    let name = |time: u32, seq: u32, len: usize| format!("{time}.M{seq}P1.relay,S={len}");
    let (n1, n2, n3) = (
        name(1_690_000_100, 1, one.len()),
        name(1_690_000_200, 2, two.len()),
        name(1_690_000_300, 3, three.len()),
    );
    fs::write(dir.join("cur").join(format!("{n1}:2,S")), one).unwrap();
    fs::write(dir.join("new").join(&n2), two).unwrap();
    // Delivered after Dovecot's last sync: not in its list.
    fs::write(dir.join("new").join(&n3), three).unwrap();
    fs::write(
        dir.join("dovecot-uidlist"),
        format!("3 V1690000000 N3 G0123456789abcdef\n1 :{n1}\n2 :{n2}\n"),
    )
    .unwrap();
    fs::write(
        dir.join(".DeltaChat/cur")
            .join(format!("{}:2,S", name(1_690_000_400, 4, one.len()))),
        one,
    )
    .unwrap();
}

#[test]
fn usage_stays_exact_through_every_operation_and_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    dovecot_account(root);
    let who = alice();
    block_on(async {
        let store = MaildirStore::open(root).unwrap();
        // First use: Dovecot's listed and unlisted messages, in INBOX and the folder.
        let adopted = assert_exact(&store, root, "the takeover").await;
        assert!(adopted > 0);

        for n in 0..5 {
            let flags = if n % 2 == 0 {
                Flags::new()
            } else {
                Flags::from([Flag::Seen])
            };
            store
                .append(&who, INBOX, message(n), &flags, 1_700_000_000)
                .await
                .unwrap();
        }
        let appended = assert_exact(&store, root, "append").await;
        assert!(appended > adopted);

        store.create_mailbox(&who, "Archive").await.unwrap();
        store
            .copy(&who, INBOX, &[Uid(1), Uid(4), Uid(5)], "Archive")
            .await
            .unwrap();
        let copied = assert_exact(&store, root, "copy").await;
        assert!(copied > appended);

        store
            .expunge(&who, INBOX, &[Uid(2), Uid(99)])
            .await
            .unwrap();
        let expunged = assert_exact(&store, root, "expunge").await;
        assert!(expunged < copied);

        store
            .move_messages(&who, INBOX, &[Uid(4), Uid(5)], "DeltaChat")
            .await
            .unwrap();
        assert_eq!(assert_exact(&store, root, "move").await, expunged);

        store.rename_mailbox(&who, "Archive", "Old").await.unwrap();
        assert_eq!(assert_exact(&store, root, "rename").await, expunged);

        store.delete_mailbox(&who, "Old").await.unwrap();
        let deleted = assert_exact(&store, root, "delete").await;
        assert!(deleted < expunged);

        store
            .append(&who, "DeltaChat", message(9), &Flags::new(), 1_700_000_000)
            .await
            .unwrap();
        let before_restart = assert_exact(&store, root, "append to a folder").await;
        drop(store);

        // After a restart the figure is computed again from the indexes.
        let store = MaildirStore::open(root).unwrap();
        assert_eq!(
            assert_exact(&store, root, "a restart").await,
            before_restart
        );

        // Trimming removes the INBOX messages Dovecot delivered long ago.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let trimmed = store.trim_to_quota(&who, 0, now).await.unwrap();
        assert!(!trimmed.is_empty());
        let after_trim = assert_exact(&store, root, "trimming").await;
        assert!(after_trim < before_restart);

        // The expiry removes what was appended with an internal date in 2023.
        fs::write(root.join(who.as_str()).join("password"), b"{SHA512-CRYPT}x").unwrap();
        let policy = ExpiryPolicy::from_config(&Config::with_domain("chat.example.org"));
        let report = store.expire(&policy, now).await.unwrap();
        assert!(report.messages_removed > 0, "{report:?}");
        let after_expiry = assert_exact(&store, root, "the expiry").await;
        assert!(after_expiry < after_trim);
    });
}

#[test]
fn a_delivery_does_not_read_the_mailbox() {
    // Files another program drops into `new/` after the figure was computed are not
    // seen by the quota check (it reads no directory), only by the next listing.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let who = alice();
    block_on(async {
        let store = MaildirStore::open(root).unwrap();
        store
            .append(&who, INBOX, message(1), &Flags::new(), 1_700_000_000)
            .await
            .unwrap();
        let before = store.quota_usage(&who).await.unwrap();
        assert_eq!(before, message(1).len() as u64);
        let dropped = root
            .join(who.as_str())
            .join("new/1700000001.M1P1.other,S=5");
        fs::write(&dropped, b"hello").unwrap();
        assert_eq!(store.quota_usage(&who).await.unwrap(), before);
        // The listing rescans and takes the file in; the figure follows.
        assert_eq!(
            store.list_messages(&who, INBOX, None).await.unwrap().len(),
            2
        );
        assert_eq!(store.quota_usage(&who).await.unwrap(), before + 5);
    });
}
