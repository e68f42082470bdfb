//! The `maildir` backend on disk: a directory laid out as the reference relay (Dovecot)
//! leaves it, durability of appends (structurally), UIDs across a reopen, files removed
//! by the expiry, concurrent sessions, bounds and hostile input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chatmail_core::store::{MailStore, MaildirStore, StoreError, StoreLimits};
use chatmail_core::ThreadExecutor;
use chatmail_core::{Address, Change, Flag, FlagOp, Flags, Uid, INBOX};
use futures::executor::block_on;

// The store's own files, by the names its docs give (a layout on disk is a promise to
// the operator's backups and scripts, so the names are spelled out here).
/// A mailbox's index.
const INDEX_FILE: &str = "chatmail-uidlist";
/// The UIDVALIDITY reservation in `mailboxes_dir`.
const UID_VALIDITY_FILE: &str = "chatmail-uidvalidity";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../testdata/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(path).unwrap()
}

/// A fixture as Dovecot stores it (LF line ends) and as Dovecot serves that (CRLF).
fn dovecot_forms(name: &str) -> (Vec<u8>, Vec<u8>) {
    let stored: Vec<u8> = String::from_utf8(fixture(name))
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes();
    let served = String::from_utf8(stored.clone())
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes();
    (stored, served)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn alice() -> Address {
    Address::parse("alice@chat.example.org").unwrap()
}

fn seen() -> Flags {
    Flags::from([Flag::Seen])
}

/// An account directory exactly as the reference relay leaves it: password, marker,
/// metadata, Dovecot's own files, gzip and plain messages in `cur/` and `new/`, and a
/// Maildir++ folder. Returns the account directory and the two messages as served.
fn reference_account(root: &Path) -> (PathBuf, Vec<u8>, Vec<u8>) {
    let account = root.join("alice@chat.example.org");
    for dir in [
        "cur",
        "new",
        "tmp",
        ".DeltaChat/cur",
        ".DeltaChat/new",
        ".DeltaChat/tmp",
    ] {
        std::fs::create_dir_all(account.join(dir)).unwrap();
    }
    let write = |path: &str, data: &[u8]| std::fs::write(account.join(path), data).unwrap();
    write("password", b"{SHA512-CRYPT}$6$abcdefghijklmnop$xyz");
    write("enforceE2EEincoming", b"");
    write("metadata.json", br#"{"devicetoken": {"tok": 1700000000}}"#);
    write("maildirsize", b"524288000S\n");
    write(".DeltaChat/maildirfolder", b"");
    let (encrypted, encrypted_served) = dovecot_forms("encrypted.eml");
    let (plain, plain_served) = dovecot_forms("plain.eml");
    let (size, vsize) = (encrypted.len(), encrypted_served.len());
    // Dovecot numbered the two oldest messages; the newest came after its last sync.
    write(
        "dovecot-uidlist",
        format!(
            "3 V1700000000 N3 G3085f01b7f11094c501100008c4a11c1\n\
             1 G0123456789abcdef0123456789abcdef W{vsize} :1700000000.M111P222.relay,S={size},W={vsize}\n\
             2 :1700000100.M555P666.relay\n",
        )
        .as_bytes(),
    );
    // Seen, compressed, in cur/ (the oldest).
    write(
        &format!("cur/1700000000.M111P222.relay,S={size},W={vsize}:2,S"),
        &gzip(&encrypted),
    );
    // Unseen, plain, in new/.
    write(
        &format!("new/1700000200.M333P444.relay,S={}", plain.len()),
        &plain,
    );
    // Compressed without S= (size must come from decompressing), in new/.
    write("new/1700000100.M555P666.relay", &gzip(&plain));
    // A folder message.
    write(".DeltaChat/cur/1700000300.M777P888.relay:2,SF", &plain);
    (account, encrypted_served, plain_served)
}

#[test]
fn serves_a_dovecot_maildir_as_dovecot_did_without_converting_files() {
    let root = tempfile::tempdir().unwrap();
    let (account, encrypted, plain) = reference_account(root.path());
    let store = MaildirStore::open(root.path()).unwrap();
    block_on(async {
        let mailboxes = store.list_mailboxes(&alice()).await.unwrap();
        let names: Vec<_> = mailboxes.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, [INBOX, "DeltaChat"]);

        let listed = store.list_messages(&alice(), INBOX, None).await.unwrap();
        // UIDs in delivery order (the names' timestamps).
        let summary: Vec<_> = listed
            .iter()
            .map(|m| (m.uid.0, m.size, m.internal_date > 0, m.flags.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (1, encrypted.len() as u64, true, seen()),
                (2, plain.len() as u64, true, Flags::new()),
                (3, plain.len() as u64, true, Flags::new()),
            ]
        );
        assert_eq!(
            store.read_message(&alice(), INBOX, Uid(1)).await.unwrap(),
            encrypted
        );
        assert_eq!(
            store.read_message(&alice(), INBOX, Uid(2)).await.unwrap(),
            plain
        );
        assert_eq!(
            store.read_message(&alice(), INBOX, Uid(3)).await.unwrap(),
            plain
        );
        let status = store.status(&alice(), INBOX).await.unwrap();
        assert_eq!(
            (status.exists, status.unseen, status.uid_next),
            (3, 2, Uid(4))
        );
        // Dovecot's UIDVALIDITY is kept, so clients keep their caches.
        assert_eq!(status.uid_validity.0, 1_700_000_000);

        let folder = store
            .list_messages(&alice(), "DeltaChat", None)
            .await
            .unwrap();
        assert_eq!(folder.len(), 1);
        assert_eq!(folder[0].flags, Flags::from([Flag::Seen, Flag::Flagged]));
        let total = encrypted.len() + 3 * plain.len();
        assert_eq!(store.quota_usage(&alice()).await.unwrap(), total as u64);
    });
    // The relay's own files are untouched; ours sit next to them.
    assert_eq!(
        std::fs::read(account.join("password")).unwrap(),
        b"{SHA512-CRYPT}$6$abcdefghijklmnop$xyz"
    );
    assert!(account.join("enforceE2EEincoming").exists());
    assert!(account.join("metadata.json").exists());
    assert!(account.join(INDEX_FILE).exists());
    assert!(account.join(".DeltaChat").join(INDEX_FILE).exists());

    // A reopened store gives the same UIDs.
    drop(store);
    let store = MaildirStore::open(root.path()).unwrap();
    let again = block_on(store.list_messages(&alice(), INBOX, None)).unwrap();
    assert_eq!(again.iter().map(|m| m.uid.0).collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn append_is_in_new_or_cur_with_tmp_empty() {
    let root = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(root.path()).unwrap();
    let message = Bytes::from(fixture("encrypted.eml"));
    let date = 1_700_000_123;
    block_on(async {
        let unseen = store
            .append(&alice(), INBOX, message.clone(), &Flags::new(), date)
            .await
            .unwrap();
        let read = store
            .append(&alice(), INBOX, message.clone(), &seen(), date)
            .await
            .unwrap();
        assert_eq!((unseen.uid, read.uid), (Uid(1), Uid(2)));
        assert_eq!(unseen.uid_validity, read.uid_validity);
    });
    let account = root.path().join("alice@chat.example.org");
    assert!(files_in(&account.join("tmp")).is_empty());
    let new = files_in(&account.join("new"));
    let cur = files_in(&account.join("cur"));
    assert_eq!((new.len(), cur.len()), (1, 1));
    assert!(
        new[0].ends_with(&format!(",S={}", message.len())),
        "{new:?}"
    );
    assert!(cur[0].ends_with(":2,S"), "{cur:?}");
    let on_disk = std::fs::read(account.join("new").join(&new[0])).unwrap();
    assert_eq!(on_disk, message);
    // The mtime is the internal date, as Dovecot keeps it and as the expiry reads it.
    let mtime = std::fs::metadata(account.join("new").join(&new[0]))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        mtime,
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(date as u64)
    );
    let index = std::fs::read_to_string(account.join(INDEX_FILE)).unwrap();
    assert_eq!(index.lines().filter(|l| l.starts_with("+ ")).count(), 2);
    assert!(root.path().join(UID_VALIDITY_FILE).exists());
}

#[test]
fn uids_never_repeat_across_reopen_and_recreation() {
    let root = tempfile::tempdir().unwrap();
    let body = || Bytes::from_static(b"Subject: x\r\n\r\nx\r\n");
    let (validity, folder_validity) = {
        let store = MaildirStore::open(root.path()).unwrap();
        block_on(async {
            for _ in 0..3 {
                store
                    .append(&alice(), INBOX, body(), &Flags::new(), 1)
                    .await
                    .unwrap();
            }
            // Expunging the highest UID must not give it out again.
            store.expunge(&alice(), INBOX, &[Uid(3)]).await.unwrap();
            store.create_mailbox(&alice(), "Folder").await.unwrap();
            let f = store.status(&alice(), "Folder").await.unwrap().uid_validity;
            (store.status(&alice(), INBOX).await.unwrap().uid_validity, f)
        })
    };
    let store = MaildirStore::open(root.path()).unwrap();
    block_on(async {
        let next = store
            .append(&alice(), INBOX, body(), &Flags::new(), 1)
            .await
            .unwrap();
        assert_eq!((next.uid_validity, next.uid), (validity, Uid(4)));
        // Deleted and created again, in the same second and after a restart: a new
        // UIDVALIDITY, never an old one.
        store.delete_mailbox(&alice(), "Folder").await.unwrap();
        store.create_mailbox(&alice(), "Folder").await.unwrap();
        let recreated = store.status(&alice(), "Folder").await.unwrap().uid_validity;
        assert!(recreated > folder_validity && recreated != validity);
    });
}

#[test]
fn files_removed_by_expiry_disappear_and_are_announced() {
    let root = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(root.path()).unwrap();
    let mut feed = store.subscribe(&alice());
    let body = Bytes::from_static(b"Subject: x\r\n\r\nx\r\n");
    let account = root.path().join("alice@chat.example.org");
    block_on(async {
        store
            .append(&alice(), INBOX, body.clone(), &Flags::new(), 1)
            .await
            .unwrap();
        let first = files_in(&account.join("new")).pop().unwrap();
        store
            .append(&alice(), INBOX, body.clone(), &Flags::new(), 1)
            .await
            .unwrap();
        while feed.try_next().is_some() {}
        std::fs::remove_file(account.join("new").join(first)).unwrap();
        let listed = store.list_messages(&alice(), INBOX, None).await.unwrap();
        assert_eq!(listed.iter().map(|m| m.uid.0).collect::<Vec<_>>(), [2]);
        assert!(matches!(
            feed.try_next(),
            Some(Ok(Change::Expunged { uid: Uid(1), .. }))
        ));
        assert!(matches!(
            store.read_message(&alice(), INBOX, Uid(1)).await,
            Err(StoreError::NoSuchMessage(1))
        ));

        // The whole account removed (inactive): INBOX starts over, announced as a reset.
        let before = store.status(&alice(), INBOX).await.unwrap();
        std::fs::remove_dir_all(&account).unwrap();
        let after = store.status(&alice(), INBOX).await.unwrap();
        assert_eq!(after.exists, 0);
        assert_ne!(after.uid_validity, before.uid_validity);
        assert!(matches!(
            feed.try_next(),
            Some(Ok(Change::MailboxReset { .. }))
        ));
        // Not recreated by reading; a delivery recreates it.
        assert!(!account.exists());
        let appended = store
            .append(&alice(), INBOX, body.clone(), &Flags::new(), 1)
            .await
            .unwrap();
        assert_eq!(
            (appended.uid, appended.uid_validity),
            (Uid(1), after.uid_validity)
        );
        assert!(account.join("new").is_dir());
    });
}

#[test]
fn concurrent_sessions_lose_no_update() {
    let root = tempfile::tempdir().unwrap();
    let store = Arc::new(MaildirStore::open(root.path()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut uids = Vec::new();
                for i in 0..12 {
                    let body = Bytes::from(format!("Subject: {t}/{i}\r\n\r\nx\r\n"));
                    let appended =
                        block_on(store.append(&alice(), INBOX, body, &Flags::new(), 1)).unwrap();
                    uids.push(appended.uid);
                    // Flag changes and listings interleave with the other appenders.
                    block_on(store.store_flags(
                        &alice(),
                        INBOX,
                        &[appended.uid],
                        FlagOp::Add,
                        &seen(),
                        None,
                    ))
                    .unwrap();
                    block_on(store.list_messages(&alice(), INBOX, None)).unwrap();
                }
                uids
            })
        })
        .collect();
    let mut all: Vec<Uid> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 96);
    let check = |store: &MaildirStore| {
        let listed = block_on(store.list_messages(&alice(), INBOX, None)).unwrap();
        assert_eq!(listed.len(), 96);
        assert!(listed.iter().all(|m| m.flags == seen()));
        assert_eq!(listed.iter().map(|m| m.uid).collect::<Vec<_>>(), all);
    };
    check(&store);
    drop(store);
    check(&MaildirStore::open(root.path()).unwrap());
}

#[test]
fn bounds_and_hostile_names() {
    let root = tempfile::tempdir().unwrap();
    let limits = StoreLimits {
        max_mailboxes: 2,
        max_keywords: 2,
        max_message_bytes: 1000,
    };
    let store = MaildirStore::open(root.path().join("mail"))
        .unwrap()
        .with_limits(limits);
    block_on(async {
        for bad in ["../escape", "a/b", "..", "x\0y", ".hidden", "a..b", "*"] {
            assert!(
                matches!(
                    store.create_mailbox(&alice(), bad).await,
                    Err(StoreError::InvalidMailboxName { .. })
                ),
                "{bad:?}"
            );
        }
        store.create_mailbox(&alice(), "One").await.unwrap();
        store.create_mailbox(&alice(), "Two").await.unwrap();
        assert!(matches!(
            store.create_mailbox(&alice(), "Three").await,
            Err(StoreError::TooManyMailboxes(2))
        ));
        // CREATE INBOX succeeds while INBOX never held mail (as Dovecot's), not after.
        store.create_mailbox(&alice(), "inbox").await.unwrap();
        let held = store
            .append(
                &alice(),
                "INBOX",
                Bytes::from_static(b"a\r\n"),
                &Flags::new(),
                0,
            )
            .await
            .unwrap();
        store.expunge(&alice(), "INBOX", &[held.uid]).await.unwrap();
        assert!(matches!(
            store.create_mailbox(&alice(), "inbox").await,
            Err(StoreError::MailboxExists(_))
        ));
        assert!(matches!(
            store.delete_mailbox(&alice(), "INBOX").await,
            Err(StoreError::InboxImmutable)
        ));
        let big = Bytes::from(vec![b'x'; 1001]);
        assert!(matches!(
            store.append(&alice(), INBOX, big, &Flags::new(), 1).await,
            Err(StoreError::MessageTooLarge { .. })
        ));
        let keywords: Flags = ["$a", "$b", "$c"]
            .iter()
            .map(|k| Flag::Keyword(k.to_string()))
            .collect();
        assert!(matches!(
            store
                .append(&alice(), INBOX, Bytes::from_static(b"x"), &keywords, 1)
                .await,
            Err(StoreError::TooManyKeywords(2))
        ));
    });
    // Nothing was created outside the mailboxes directory.
    assert_eq!(files_in(root.path()), ["mail"]);

    // A broken gzip file and a decompression bomb get errors, not panics.
    let account = root.path().join("mail/alice@chat.example.org");
    std::fs::write(
        account.join("new/1700000000.M1P1.relay,S=10"),
        b"\x1f\x8b\x08garbage",
    )
    .unwrap();
    std::fs::write(
        account.join("new/1700000001.M1P1.relay,S=10"),
        gzip(&[0u8; 100_000]),
    )
    .unwrap();
    block_on(async {
        let listed = store.list_messages(&alice(), INBOX, None).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert!(matches!(
            store.read_message(&alice(), INBOX, listed[0].uid).await,
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            store.read_message(&alice(), INBOX, listed[1].uid).await,
            Err(StoreError::MessageTooLarge { .. })
        ));
    });
}

#[test]
fn runs_on_a_blocking_executor() {
    let root = tempfile::tempdir().unwrap();
    let store = MaildirStore::open(root.path())
        .unwrap()
        .with_executor(Arc::new(ThreadExecutor));
    block_on(async {
        store.create_mailbox(&alice(), "DeltaChat").await.unwrap();
        let appended = store
            .append(
                &alice(),
                "DeltaChat",
                Bytes::from_static(b"a: b\r\n\r\n"),
                &seen(),
                5,
            )
            .await
            .unwrap();
        let moved = store
            .move_messages(&alice(), "DeltaChat", &[appended.uid], INBOX)
            .await
            .unwrap();
        assert_eq!(moved.mapping, [(Uid(1), Uid(1))]);
        let inbox = store.list_messages(&alice(), INBOX, None).await.unwrap();
        assert_eq!(
            (inbox[0].flags.clone(), inbox[0].internal_date),
            (seen(), 5)
        );
        assert!(store
            .list_messages(&alice(), "DeltaChat", None)
            .await
            .unwrap()
            .is_empty());
    });
}

/// Issue 9, hole 1: a gzip member whose FCOMMENT field holds a valid PGP/MIME message
/// (so a reader of the raw bytes sees an encrypted message) and whose deflate data holds
/// cleartext. The store must serve what it stored, never the decompressed cleartext.
fn gzip_smuggling_cleartext() -> (Vec<u8>, Vec<u8>) {
    let mut comment = b"\r\n".to_vec();
    comment.extend_from_slice(&fixture("encrypted.eml"));
    let hidden = b"From: CEO <ceo@bank.example>\r\nSubject: urgent\r\n\r\nWire the money now.\r\n";
    let mut encoder = flate2::GzBuilder::new()
        .comment(comment)
        .write(Vec::new(), flate2::Compression::default());
    encoder.write_all(hidden).unwrap();
    (encoder.finish().unwrap(), hidden.to_vec())
}

#[test]
fn own_files_are_served_as_stored_and_never_decompressed() {
    let root = tempfile::tempdir().unwrap();
    let (account, encrypted, _plain) = reference_account(root.path());
    let store = MaildirStore::open(root.path()).unwrap();
    let (attack, hidden) = gzip_smuggling_cleartext();
    assert!(attack.starts_with(&[0x1f, 0x8b]));
    block_on(async {
        let appended = store
            .append(
                &alice(),
                INBOX,
                Bytes::from(attack.clone()),
                &Flags::new(),
                1,
            )
            .await
            .unwrap();
        let served = store
            .read_message(&alice(), INBOX, appended.uid)
            .await
            .unwrap();
        assert_eq!(
            served, attack,
            "bytes stored by the relay are served as stored"
        );
        assert_ne!(served, hidden);
        let listed = store.list_messages(&alice(), INBOX, None).await.unwrap();
        let meta = listed.iter().find(|m| m.uid == appended.uid).unwrap();
        assert_eq!(meta.size, attack.len() as u64);

        // Copies of the store's own file keep its bytes; a copy of Dovecot's compressed
        // file becomes a plain file of the store's own and is still served decompressed.
        store.create_mailbox(&alice(), "Copies").await.unwrap();
        let copied = store
            .copy(&alice(), INBOX, &[Uid(1), appended.uid], "Copies")
            .await
            .unwrap();
        let uid_of = |source: Uid| copied.mapping.iter().find(|m| m.0 == source).unwrap().1;
        assert_eq!(
            store
                .read_message(&alice(), "Copies", uid_of(appended.uid))
                .await
                .unwrap(),
            attack
        );
        assert_eq!(
            store
                .read_message(&alice(), "Copies", uid_of(Uid(1)))
                .await
                .unwrap(),
            encrypted
        );
    });
    // After a reopen (index read back, files rescanned) nothing changes.
    drop(store);
    let store = MaildirStore::open(root.path()).unwrap();
    block_on(async {
        let listed = store.list_messages(&alice(), INBOX, None).await.unwrap();
        let mut served = Vec::new();
        for meta in &listed {
            served.push(store.read_message(&alice(), INBOX, meta.uid).await.unwrap());
        }
        assert!(served.contains(&Bytes::from(attack.clone())));
        assert!(!served.contains(&Bytes::from(hidden.clone())));
    });
    // The file on disk under the store's own name holds the gzip bytes.
    let own: Vec<String> = files_in(&account.join("new"))
        .into_iter()
        .filter(|n| n.contains('Q'))
        .collect();
    assert_eq!(own.len(), 1);
}

/// Appends from many threads to several accounts, some of which must fail (no such
/// mailbox, too large): in group-commit mode they share the committer's batches, and a
/// failing append must be answered alone, without costing the others theirs. The same
/// holds with per-file syncs.
#[test]
fn failing_appends_in_a_batch_fail_alone() {
    for group in [true, false] {
        let root = tempfile::tempdir().unwrap();
        let limits = StoreLimits {
            max_message_bytes: 1000,
            ..StoreLimits::default()
        };
        let store = MaildirStore::open(root.path())
            .unwrap()
            .with_limits(limits)
            .with_group_commit(group)
            .unwrap();
        let store = Arc::new(store);
        let bob = Address::parse("bob@chat.example.org").unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (store, bob) = (store.clone(), bob.clone());
                std::thread::spawn(move || {
                    for i in 0..10 {
                        let body = Bytes::from(format!("Subject: {t}/{i}\r\n\r\nx\r\n"));
                        let append = |who: &Address, mailbox: &str, body: Bytes| {
                            block_on(store.append(who, mailbox, body, &Flags::new(), 1))
                        };
                        append(&alice(), INBOX, body.clone()).unwrap();
                        append(&bob, INBOX, body.clone()).unwrap();
                        assert!(matches!(
                            append(&alice(), "Nowhere", body),
                            Err(StoreError::NoSuchMailbox(_))
                        ));
                        assert!(matches!(
                            append(&bob, INBOX, Bytes::from(vec![b'x'; 2000])),
                            Err(StoreError::MessageTooLarge { .. })
                        ));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(store);
        // What a restart serves: 80 messages each, UIDs 1..=80, nothing else on disk.
        let reopened = MaildirStore::open(root.path()).unwrap();
        for who in [alice(), bob.clone()] {
            let listed = block_on(reopened.list_messages(&who, INBOX, None)).unwrap();
            let uids: Vec<u32> = listed.iter().map(|m| m.uid.0).collect();
            assert_eq!(uids, (1..=80).collect::<Vec<_>>(), "group commit {group}");
            let dir = root.path().join(who.as_str());
            assert_eq!(files_in(&dir.join("new")).len(), 80, "group commit {group}");
            assert!(
                files_in(&dir.join("tmp")).is_empty(),
                "group commit {group}"
            );
        }
    }
}
