//! Expiry and quota trimming are store operations on both backends: every message they
//! remove is expunged as an IMAP EXPUNGE is (gone from the listing, a new modseq, the
//! quota usage follows) and published as `Change::Expunged`, which is what an IDLE
//! session turns into `* N EXPUNGE`. Files left in `tmp/` go at open.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chatmail_core::config::Config;
use chatmail_core::expiry::ExpiryPolicy;
use chatmail_core::store::{ChangeSubscription, MailStore, MaildirStore, MemoryStore};
use chatmail_core::{Address, Change, Flag, Flags, ModSeq, Uid, INBOX};
use futures::executor::block_on;

#[cfg(feature = "postgres")]
#[path = "support/postgres.rs"]
mod support;

const DAY: u64 = 86_400;

fn alice() -> Address {
    Address::parse("alice@chat.example.org").unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn policy() -> ExpiryPolicy {
    ExpiryPolicy::from_config(&Config::with_domain("chat.example.org"))
}

fn message(text: &str) -> Bytes {
    Bytes::from(format!("Subject: {text}\r\n\r\n{text}\r\n"))
}

/// The changes published so far.
fn published(feed: &mut ChangeSubscription) -> Vec<Change> {
    std::iter::from_fn(|| feed.try_next())
        .map(|change| change.expect("no lag"))
        .collect()
}

/// The (UID, modseq) of every `Expunged` in `changes`, and checks each modseq is new.
fn expunged(changes: &[Change], above: ModSeq) -> Vec<Uid> {
    changes
        .iter()
        .filter_map(|change| match change {
            Change::Expunged {
                mailbox,
                uid,
                modseq,
            } => {
                assert_eq!(mailbox, INBOX);
                assert!(*modseq > above, "{modseq:?} not above {above:?}");
                Some(*uid)
            }
            _ => None,
        })
        .collect()
}

/// Appends old, old-and-large-seen, and fresh messages; runs the daily expiry; checks
/// that exactly the old ones went, through the index and the feed.
fn expiry_expunges(store: &dyn MailStore, now: u64) {
    let who = alice();
    block_on(async {
        let seen = Flags::from([Flag::Seen]);
        let large = Bytes::from(format!("Subject: l\r\n\r\n{}\r\n", "x".repeat(250_000)));
        let old = (now - 21 * DAY) as i64;
        let week = (now - 8 * DAY) as i64;
        let fresh = now as i64;
        let mut appended = Vec::new();
        for (body, flags, date) in [
            (message("old"), Flags::new(), old),
            (large.clone(), seen.clone(), week),
            (large.clone(), Flags::new(), week),
            (message("fresh"), Flags::new(), fresh),
        ] {
            let outcome = store.append(&who, INBOX, body, &flags, date).await.unwrap();
            appended.push(outcome.uid);
        }
        let before = store.status(&who, INBOX).await.unwrap();
        let mut feed = store.subscribe(&who);

        let report = store.expire(&policy(), now).await.unwrap();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(report.messages_removed, 2);
        assert_eq!(report.messages_total, 4);

        // The old one, and the large one a client has seen; the large unseen one stays.
        let changes = published(&mut feed);
        assert_eq!(
            expunged(&changes, before.highest_modseq),
            [appended[0], appended[1]]
        );
        let listed: Vec<Uid> = store
            .list_messages(&who, INBOX, None)
            .await
            .unwrap()
            .iter()
            .map(|meta| meta.uid)
            .collect();
        assert_eq!(listed, [appended[2], appended[3]]);
        let after = store.status(&who, INBOX).await.unwrap();
        assert!(after.highest_modseq > before.highest_modseq);
        assert_eq!(
            store.quota_usage(&who).await.unwrap(),
            large.len() as u64 + message("fresh").len() as u64
        );
        // A second run finds nothing more.
        let again = store.expire(&policy(), now).await.unwrap();
        assert_eq!(again.messages_removed, 0);
        assert!(published(&mut feed).is_empty());
    });
}

#[test]
fn memory_expiry_goes_by_internal_date_through_the_feed() {
    expiry_expunges(&MemoryStore::new(), now());
}

/// The postgres store on a throwaway cluster (`support/postgres.rs`): expiry and
/// trimming by internal date, as the memory store, each on a cluster of its own (expiry
/// looks at every account of the database).
#[cfg(feature = "postgres")]
fn on_postgres(test: impl FnOnce(&dyn MailStore)) {
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let rt = support::runtime();
    let store = cluster.open_store(&rt, "expiry");
    test(&store);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_expiry_goes_by_internal_date_through_the_feed() {
    on_postgres(|store| expiry_expunges(store, now()));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_trimming_is_oldest_first_by_internal_date() {
    on_postgres(trimming_by_internal_date);
}

#[test]
fn maildir_expiry_goes_through_the_index_and_the_feed() {
    let tmp = tempfile::tempdir().unwrap();
    // The maildir expiry only touches accounts with a password file (the last login).
    let account = tmp.path().join(alice().as_str());
    fs::create_dir_all(&account).unwrap();
    fs::write(account.join("password"), b"{SHA512-CRYPT}$6$x$y").unwrap();
    let store = MaildirStore::open(tmp.path()).unwrap();
    expiry_expunges(&store, now());
    // The figure the store keeps equals a fresh store's.
    let fresh = MaildirStore::open(tmp.path()).unwrap();
    assert_eq!(
        block_on(fresh.quota_usage(&alice())).unwrap(),
        block_on(store.quota_usage(&alice())).unwrap()
    );
}

/// Trims the INBOX holding `old` (three messages of `size` bytes, delivered 3, 2 and 1
/// days ago, UIDs ascending) and one fresh message: to just under three messages'
/// worth, the oldest goes; to zero, every old one but never the fresh one.
fn trimming_expunges(store: &dyn MailStore, old: [Uid; 3], fresh: Uid, size: u64, now: u64) {
    let who = alice();
    block_on(async {
        let before = store.status(&who, INBOX).await.unwrap();
        let mut feed = store.subscribe(&who);
        let usage = store.quota_usage(&who).await.unwrap();

        let removed = store.trim_to_quota(&who, 3 * size, now).await.unwrap();
        assert_eq!(removed, [old[0]]);
        assert_eq!(
            expunged(&published(&mut feed), before.highest_modseq),
            [old[0]]
        );
        assert_eq!(store.quota_usage(&who).await.unwrap(), usage - size);

        let removed = store.trim_to_quota(&who, 0, now).await.unwrap();
        assert_eq!(removed, [old[1], old[2]]);
        assert_eq!(
            expunged(&published(&mut feed), before.highest_modseq),
            [old[1], old[2]]
        );
        let listed = store.list_messages(&who, INBOX, None).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].uid, fresh);
    });
}

#[test]
fn memory_trimming_is_oldest_first_by_internal_date() {
    trimming_by_internal_date(&MemoryStore::new());
}

/// Messages appended out of date order are trimmed by date, not by UID.
fn trimming_by_internal_date(store: &dyn MailStore) {
    let now = now();
    let body = message("sized");
    let mut uids = Vec::new();
    // Appended out of date order: trimming goes by date, not by UID.
    for age in [2 * DAY, 3 * DAY, DAY + 60, 60] {
        let date = (now - age) as i64;
        let outcome = block_on(store.append(&alice(), INBOX, body.clone(), &Flags::new(), date));
        uids.push(outcome.unwrap().uid);
    }
    trimming_expunges(
        store,
        [uids[1], uids[0], uids[2]],
        uids[3],
        body.len() as u64,
        now,
    );
}

/// Writes a message file as Dovecot names it, delivered at `time`.
fn dovecot_file(dir: &Path, time: u64, seq: u32, body: &[u8]) {
    let name = format!("{time}.M{seq}P1.relay,S={}", body.len());
    fs::write(dir.join("new").join(name), body).unwrap();
}

#[test]
fn maildir_trimming_is_oldest_first_by_the_delivery_time_in_file_names() {
    let tmp = tempfile::tempdir().unwrap();
    let now = now();
    let body = message("sized");
    let inbox = tmp.path().join(alice().as_str());
    fs::create_dir_all(inbox.join("new")).unwrap();
    // Files left by Dovecot: the delivery time is in the name.
    dovecot_file(&inbox, now - 3 * DAY, 1, &body);
    dovecot_file(&inbox, now - 2 * DAY, 2, &body);
    dovecot_file(&inbox, now - DAY - 60, 3, &body);
    dovecot_file(&inbox, now - 60, 4, &body);
    fs::write(inbox.join("maildirsize"), b"1048576S\n").unwrap();
    let store = MaildirStore::open(tmp.path()).unwrap();
    trimming_expunges(
        &store,
        [Uid(1), Uid(2), Uid(3)],
        Uid(4),
        body.len() as u64,
        now,
    );
    // Dovecot's quota cache is stale after a trim.
    assert!(!inbox.join("maildirsize").exists());
    let fresh = MaildirStore::open(tmp.path()).unwrap();
    assert_eq!(
        block_on(fresh.quota_usage(&alice())).unwrap(),
        block_on(store.quota_usage(&alice())).unwrap()
    );
}

/// Sets a file's mtime to `age` before now.
fn age(path: &Path, age: Duration) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

#[test]
fn files_left_in_tmp_for_over_36_hours_go_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let account = tmp.path().join(alice().as_str());
    let hours = |h: u64| Duration::from_secs(h * 3600);
    let mut files = Vec::new();
    for (path, hours_ago) in [
        ("tmp/killed-mid-delivery", 37),
        ("tmp/recent", 35),
        (".DeltaChat/tmp/killed", 48),
        (".DeltaChat/tmp/recent", 1),
        // Only tmp/ is swept: old mail in cur/ and new/ is the expiry's business.
        ("cur/1600000000.M1P1.relay,S=3:2,S", 1000),
        ("new/1600000000.M2P1.relay,S=3", 1000),
    ] {
        let file = account.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, b"abc").unwrap();
        age(&file, hours(hours_ago));
        let in_tmp = Path::new(path).parent().unwrap().ends_with("tmp");
        files.push((file, in_tmp && hours_ago > 36));
    }
    // Not an account directory (no `@`): not swept.
    let other = tmp.path().join("not-an-account/tmp/old");
    fs::create_dir_all(other.parent().unwrap()).unwrap();
    fs::write(&other, b"abc").unwrap();
    age(&other, hours(100));

    let _store = MaildirStore::open(tmp.path()).unwrap();
    for (file, swept) in files {
        assert_eq!(!file.exists(), swept, "{}", file.display());
    }
    assert!(other.exists());
}

#[test]
fn maildir_expiry_removes_an_inactive_account_and_ends_its_sessions() {
    let tmp = tempfile::tempdir().unwrap();
    let account = tmp.path().join(alice().as_str());
    fs::create_dir_all(&account).unwrap();
    let password = account.join("password");
    fs::write(&password, b"{SHA512-CRYPT}$6$x$y").unwrap();
    age(&password, Duration::from_secs(91 * DAY));
    let store = MaildirStore::open(tmp.path()).unwrap();
    let who = alice();
    block_on(async {
        store
            .append(
                &who,
                INBOX,
                message("kept until now"),
                &Flags::new(),
                now() as i64,
            )
            .await
            .unwrap();
        assert!(store.quota_usage(&who).await.unwrap() > 0);
        let mut feed = store.subscribe(&who);

        let report = store.expire(&policy(), now()).await.unwrap();
        assert_eq!(report.accounts_removed, 1, "{report:?}");
        assert!(!account.exists());
        // The mailbox itself is gone: a session that has it selected must end.
        assert!(matches!(
            published(&mut feed).as_slice(),
            [Change::MailboxReset { mailbox }] if mailbox == INBOX
        ));
        assert_eq!(store.quota_usage(&who).await.unwrap(), 0);
    });
}

/// The postgres store knows last logins (its accounts): an account unused for
/// `delete_inactive_users_after` days goes with its mail, its sessions told; an active
/// account and an address without an account row keep theirs.
#[cfg(feature = "postgres")]
#[test]
fn postgres_expiry_removes_an_inactive_account_and_ends_its_sessions() {
    use chatmail_core::account::{AccountStore, PasswordHash};
    let Some(cluster) = support::Cluster::start() else {
        return;
    };
    let rt = support::runtime();
    let store = cluster.open_store(&rt, "expiry");
    let active = Address::parse("active01@chat.example.org").unwrap();
    let rowless = Address::parse("rowless1@chat.example.org").unwrap();
    let now = now();
    block_on(async {
        let hash = || PasswordHash::from_stored("{SHA512-CRYPT}$6$x$y");
        store
            .create_if_absent(&alice(), hash(), now - 91 * DAY)
            .await
            .unwrap();
        store.create_if_absent(&active, hash(), now).await.unwrap();
        for who in [alice(), active.clone(), rowless.clone()] {
            let fresh = message("kept until now");
            store
                .append(&who, INBOX, fresh, &Flags::new(), now as i64)
                .await
                .unwrap();
        }
        let mut feed = store.subscribe(&alice());

        let report = store.expire(&policy(), now).await.unwrap();
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!((report.accounts_removed, report.accounts_total), (1, 3));
        assert!(matches!(
            published(&mut feed).as_slice(),
            [Change::MailboxReset { mailbox }] if mailbox == INBOX
        ));
        assert!(store.lookup(&alice()).await.unwrap().is_none());
        assert_eq!(store.quota_usage(&alice()).await.unwrap(), 0);
        for who in [&active, &rowless] {
            assert!(store.quota_usage(who).await.unwrap() > 0);
        }
    });
}
