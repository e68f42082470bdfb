//! Taking over mailboxes Dovecot served: the `maildir` store keeps Dovecot's
//! UIDVALIDITY, UIDs and keywords from `dovecot-uidlist` and `dovecot-keywords`, never
//! writes them, and falls back to a fresh UIDVALIDITY when the list is not valid.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chatmail_core::store::{MailStore, MaildirStore};
use chatmail_core::{Address, Flag, FlagOp, Flags, MessageMeta, Uid, INBOX};
use futures::executor::block_on;

// The store's own files, by the names its docs give (a layout on disk is a promise to
// the operator's backups and scripts, so the names are spelled out here).
/// A mailbox's index.
const INDEX_FILE: &str = "chatmail-uidlist";
/// The record that a mailbox's Dovecot UIDs were taken over.
const ADOPTED_FILE: &str = "chatmail-dovecot-adopted";
/// The UIDVALIDITY reservation in `mailboxes_dir`.
const UID_VALIDITY_FILE: &str = "chatmail-uidvalidity";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../testdata/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    fs::read(path).unwrap()
}

/// A fixture as Dovecot stores it: LF line ends.
fn stored(name: &str) -> Vec<u8> {
    String::from_utf8(fixture(name))
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes()
}

/// A fixture as Dovecot serves what it stored: CRLF line ends (size `,W=`).
fn served(name: &str) -> Vec<u8> {
    String::from_utf8(stored(name))
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes()
}

fn alice() -> Address {
    Address::parse("alice@chat.example.org").unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn keyword(name: &str) -> Flag {
    Flag::Keyword(name.to_string())
}

/// Writes a message file with its mtime (Dovecot's INTERNALDATE) at `time`.
fn write_message(path: &Path, data: &[u8], time: u64) {
    fs::write(path, data).unwrap();
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(UNIX_EPOCH + Duration::from_secs(time))
        .unwrap();
}

/// The messages of a mailbox Dovecot served, as the relay leaves them: base names and
/// contents of two seen messages in `cur/` (one with keyword letters), one unseen in
/// `new/` that Dovecot listed, and one in `new/` delivered after Dovecot's last sync.
struct Served {
    dir: PathBuf,
    seen: Vec<u8>,
    plain: Vec<u8>,
}

const DOVECOT_VALIDITY: u32 = 1_690_000_000;

const NEW_MESSAGE: &[u8] = b"Subject: new\r\n\r\nnew\r\n";

fn served_inbox(root: &Path, uidlist: &[u8]) -> Served {
    let dir = root.join("alice@chat.example.org");
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let (seen, plain) = (stored("encrypted.eml"), stored("plain.eml"));
    let (s, p) = (seen.len(), plain.len());
    let (sw, pw) = (served("encrypted.eml").len(), served("plain.eml").len());
    write_message(
        &dir.join(format!("cur/1690000100.M1P10.relay,S={s},W={sw}:2,S")),
        &seen,
        1_690_000_100,
    );
    write_message(
        &dir.join(format!("cur/1690000200.M2P20.relay,S={p},W={pw}:2,RSab")),
        &plain,
        1_690_000_200,
    );
    // Without `,W=`: the served size is measured.
    write_message(
        &dir.join(format!("new/1690000300.M3P30.relay,S={p}")),
        &plain,
        1_690_000_300,
    );
    write_message(
        &dir.join(format!("new/1690000400.M4P40.relay,S={s}")),
        &seen,
        1_690_000_400,
    );
    fs::write(dir.join("dovecot-uidlist"), uidlist).unwrap();
    fs::write(dir.join("dovecot-keywords"), b"0 $Forwarded\n1 $MDNSent\n").unwrap();
    Served {
        dir,
        seen: served("encrypted.eml"),
        plain: served("plain.eml"),
    }
}

/// Dovecot's list for [`served_inbox`]: UIDs 3, 5 and 8 for the files it saw, 9 for one
/// expunged since, UIDNEXT 10; the extension fields Dovecot 2.3 writes.
fn realistic_uidlist(seen: usize, plain: usize) -> Vec<u8> {
    format!(
        "3 V{DOVECOT_VALIDITY} N10 G3085f01b7f11094c501100008c4a11c1\n\
         3 G1a2b3c4d5e6f708192a3b4c5d6e7f809 W{sw} S{seen} :1690000100.M1P10.relay,S={seen},W={sw}\n\
         5 G2a2b3c4d5e6f708192a3b4c5d6e7f809 W{pw} :1690000200.M2P20.relay,S={plain},W={pw}\n\
         8 :1690000300.M3P30.relay,S={plain}\n\
         9 W100 :1690000350.M9P90.relay,S=90\n",
        sw = served("encrypted.eml").len(),
        pw = served("plain.eml").len(),
    )
    .into_bytes()
}

fn summary(listed: &[MessageMeta]) -> Vec<(u32, u64, i64, Flags)> {
    listed
        .iter()
        .map(|m| (m.uid.0, m.size, m.internal_date, m.flags.clone()))
        .collect()
}

fn dovecot_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    ["dovecot-uidlist", "dovecot-keywords"]
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let mtime = fs::metadata(&path).unwrap().modified().unwrap();
            (path.clone(), fs::read(&path).unwrap(), mtime)
        })
        .collect()
}

#[test]
fn a_mailbox_dovecot_served_keeps_its_uids() {
    let root = tempfile::tempdir().unwrap();
    let (s, p) = (stored("encrypted.eml").len(), stored("plain.eml").len());
    let served = served_inbox(root.path(), &realistic_uidlist(s, p));
    let before = dovecot_files(&served.dir);
    // Sizes as Dovecot served them: with CRLF line ends.
    let (s, p) = (served.seen.len(), served.plain.len());
    let expected = vec![
        (3, s as u64, 1_690_000_100, Flags::from([Flag::Seen])),
        (
            5,
            p as u64,
            1_690_000_200,
            Flags::from([
                Flag::Answered,
                Flag::Seen,
                keyword("$Forwarded"),
                keyword("$MDNSent"),
            ]),
        ),
        (8, p as u64, 1_690_000_300, Flags::new()),
        // Not in Dovecot's list: numbered from its UIDNEXT on.
        (10, s as u64, 1_690_000_400, Flags::new()),
    ];
    let store = MaildirStore::open(root.path()).unwrap();
    let appended = block_on(async {
        let status = store.status(&alice(), INBOX).await.unwrap();
        assert_eq!(status.uid_validity.0, DOVECOT_VALIDITY);
        assert_eq!(
            (status.exists, status.unseen, status.uid_next),
            (4, 2, Uid(11))
        );
        let listed = store.list_messages(&alice(), INBOX, None).await.unwrap();
        assert_eq!(summary(&listed), expected);
        for (uid, body) in [
            (3, &served.seen),
            (5, &served.plain),
            (8, &served.plain),
            (10, &served.seen),
        ] {
            let read = store.read_message(&alice(), INBOX, Uid(uid)).await.unwrap();
            assert_eq!(&read[..], &body[..], "UID {uid}");
        }
        // A client's HIGHESTMODSEQ from Dovecot is far below ours; every message is
        // newer than any modseq Dovecot gave.
        assert!(status.highest_modseq.0 > 1 << 32, "{status:?}");
        let changed = store
            .list_messages(&alice(), INBOX, Some(chatmail_core::ModSeq(1 << 32)))
            .await
            .unwrap();
        assert_eq!(changed.len(), 4);

        let appended = store
            .append(
                &alice(),
                INBOX,
                Bytes::from_static(NEW_MESSAGE),
                &Flags::new(),
                1_700_000_000,
            )
            .await
            .unwrap();
        assert_eq!(
            (appended.uid_validity.0, appended.uid),
            (DOVECOT_VALIDITY, Uid(11))
        );
        // Flag changes work on adopted messages (the file moves to cur/).
        store
            .store_flags(
                &alice(),
                INBOX,
                &[Uid(8)],
                FlagOp::Add,
                &Flags::from([Flag::Seen]),
                None,
            )
            .await
            .unwrap();
        appended
    });
    assert_eq!(
        dovecot_files(&served.dir),
        before,
        "Dovecot's files untouched"
    );
    assert!(served.dir.join(INDEX_FILE).exists());

    // Reopened: the same UIDs, flags and counters, from this store's own index.
    drop(store);
    let store = MaildirStore::open(root.path()).unwrap();
    block_on(async {
        let status = store.status(&alice(), INBOX).await.unwrap();
        assert_eq!(status.uid_validity.0, DOVECOT_VALIDITY);
        assert_eq!((status.exists, status.uid_next), (5, Uid(12)));
        let listed = store.list_messages(&alice(), INBOX, None).await.unwrap();
        let mut now_expected = expected.clone();
        now_expected[2].3 = Flags::from([Flag::Seen]);
        let size = NEW_MESSAGE.len() as u64;
        now_expected.push((appended.uid.0, size, 1_700_000_000, Flags::new()));
        assert_eq!(summary(&listed), now_expected);
    });
    assert_eq!(
        dovecot_files(&served.dir),
        before,
        "Dovecot's files untouched"
    );
}

#[test]
fn this_stores_index_wins_over_dovecots_list() {
    let root = tempfile::tempdir().unwrap();
    let (s, p) = (stored("encrypted.eml").len(), stored("plain.eml").len());
    let served = served_inbox(root.path(), &realistic_uidlist(s, p));
    let store = MaildirStore::open(root.path()).unwrap();
    block_on(store.status(&alice(), INBOX)).unwrap();
    drop(store);
    // Dovecot's list changes later (a stray Dovecot): the store's own index decides.
    fs::write(
        served.dir.join("dovecot-uidlist"),
        "3 V1234 N100\n50 :1690000400.M4P40.relay,S=1\n",
    )
    .unwrap();
    let store = MaildirStore::open(root.path()).unwrap();
    let listed = block_on(store.list_messages(&alice(), INBOX, None)).unwrap();
    assert_eq!(
        listed.iter().map(|m| m.uid.0).collect::<Vec<_>>(),
        [3, 5, 8, 10]
    );
    assert_eq!(
        block_on(store.status(&alice(), INBOX))
            .unwrap()
            .uid_validity
            .0,
        DOVECOT_VALIDITY
    );
    drop(store);
    // An index of ours that became unreadable is rebuilt under a new UIDVALIDITY, not
    // Dovecot's: UIDs given since the takeover are not in Dovecot's list.
    fs::write(served.dir.join("dovecot-uidlist"), realistic_uidlist(s, p)).unwrap();
    fs::write(served.dir.join(INDEX_FILE), "not an index\n").unwrap();
    let store = MaildirStore::open(root.path()).unwrap();
    let status = block_on(store.status(&alice(), INBOX)).unwrap();
    assert!(status.uid_validity.0 > DOVECOT_VALIDITY);
    assert_eq!(status.uid_next, Uid(5));
    drop(store);
    // An index of ours that went missing (an interrupted delete) is not a first
    // takeover either: the takeover marker outlives it.
    fs::remove_file(served.dir.join(INDEX_FILE)).unwrap();
    assert!(served.dir.join(ADOPTED_FILE).exists());
    let store = MaildirStore::open(root.path()).unwrap();
    let status = block_on(store.status(&alice(), INBOX)).unwrap();
    assert!(status.uid_validity.0 > DOVECOT_VALIDITY);
}

#[test]
fn an_adopted_uidvalidity_is_never_handed_out_again() {
    let root = tempfile::tempdir().unwrap();
    // Dovecot's value may be a little ahead of the clock (one more than its last).
    let ahead = u32::try_from(now()).unwrap() + 5000;
    let uidlist = format!("3 V{ahead} N2 Gx\n1 :1690000100.M1P10.relay,S=1\n");
    served_inbox(root.path(), uidlist.as_bytes());
    let store = MaildirStore::open(root.path()).unwrap();
    let folder = block_on(async {
        assert_eq!(
            store.status(&alice(), INBOX).await.unwrap().uid_validity.0,
            ahead
        );
        store.create_mailbox(&alice(), "Folder").await.unwrap();
        store
            .status(&alice(), "Folder")
            .await
            .unwrap()
            .uid_validity
            .0
    });
    assert!(folder > ahead, "{folder} after adopting {ahead}");
    let reserved: u32 = fs::read_to_string(root.path().join(UID_VALIDITY_FILE))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(reserved > ahead);
    // After a restart too.
    drop(store);
    let store = MaildirStore::open(root.path()).unwrap();
    block_on(async {
        store.create_mailbox(&alice(), "Other").await.unwrap();
        let other = store
            .status(&alice(), "Other")
            .await
            .unwrap()
            .uid_validity
            .0;
        assert!(other > folder, "{other} after {folder}");
    });
    // A value far in the future is not taken on (the values after it could run out).
    let far = u32::try_from(now()).unwrap() + 365 * 24 * 3600;
    let root = tempfile::tempdir().unwrap();
    served_inbox(
        root.path(),
        format!("3 V{far} N2\n1 :1690000100.M1P10.relay,S=1\n").as_bytes(),
    );
    let store = MaildirStore::open(root.path()).unwrap();
    let status = block_on(store.status(&alice(), INBOX)).unwrap();
    assert_ne!(status.uid_validity.0, far);
    assert_eq!(status.uid_next, Uid(5));
}

/// Lists that must not be used: each gives a fresh UIDVALIDITY and UIDs 1 to 4 in
/// delivery order, as if Dovecot had left none.
fn hostile_uidlists(s: usize, p: usize) -> Vec<(&'static str, Vec<u8>)> {
    let valid = realistic_uidlist(s, p);
    let header = format!("3 V{DOVECOT_VALIDITY} N10\n");
    let with = |records: &str| format!("{header}{records}").into_bytes();
    let mut long_line = header.clone().into_bytes();
    long_line.extend(b"3 W");
    long_line.extend(vec![b'7'; 10 << 20]);
    long_line.extend(format!(" :1690000100.M1P10.relay,S={s}\n").as_bytes());
    vec![
        ("garbage", b"\x00\xff garbage \x1b[31m\nmore\n".to_vec()),
        ("empty", Vec::new()),
        ("version 2", b"2 1690000000 10\n".to_vec()),
        (
            "huge UIDNEXT",
            format!("3 V{DOVECOT_VALIDITY} N99999999999999999999999\n").into_bytes(),
        ),
        ("huge UID", with("4294967295 :1690000100.M1P10.relay,S=1\n")),
        (
            "duplicate UIDs",
            with("3 :1690000100.M1P10.relay\n3 :1690000200.M2P20.relay\n"),
        ),
        (
            "UIDs out of order",
            with("5 :1690000100.M1P10.relay\n3 :1690000200.M2P20.relay\n"),
        ),
        ("a 10 MB line", long_line),
        ("a path as file name", with("3 :../../../etc/passwd\n")),
        ("a record without a name", with("3 W12 S10\n")),
        ("valid then garbage", {
            let mut v = valid;
            v.extend(b"!!!\n");
            v
        }),
    ]
}

#[test]
fn an_invalid_dovecot_uidlist_falls_back_to_a_fresh_uidvalidity() {
    let (s, p) = (stored("encrypted.eml").len(), stored("plain.eml").len());
    for (what, uidlist) in hostile_uidlists(s, p) {
        let root = tempfile::tempdir().unwrap();
        let served = served_inbox(root.path(), &uidlist);
        let store = MaildirStore::open(root.path()).unwrap();
        let status = block_on(store.status(&alice(), INBOX)).unwrap();
        assert_ne!(status.uid_validity.0, DOVECOT_VALIDITY, "{what}");
        assert_eq!((status.exists, status.uid_next), (4, Uid(5)), "{what}");
        let listed = block_on(store.list_messages(&alice(), INBOX, None)).unwrap();
        let times: Vec<_> = listed.iter().map(|m| (m.uid.0, m.internal_date)).collect();
        assert_eq!(
            times,
            [
                (1, 1_690_000_100),
                (2, 1_690_000_200),
                (3, 1_690_000_300),
                (4, 1_690_000_400)
            ],
            "{what}"
        );
        // Keywords come from the info letters with or without a valid list.
        assert!(listed[1].flags.contains(&keyword("$MDNSent")), "{what}");
        assert_eq!(
            fs::read(served.dir.join("dovecot-uidlist")).unwrap(),
            uidlist,
            "{what}: never written"
        );
    }
}

#[test]
fn folders_take_their_own_dovecot_uidlist() {
    let root = tempfile::tempdir().unwrap();
    let (s, p) = (stored("encrypted.eml").len(), stored("plain.eml").len());
    let served = served_inbox(root.path(), &realistic_uidlist(s, p));
    let folder = served.dir.join(".DeltaChat");
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(folder.join(sub)).unwrap();
    }
    fs::write(folder.join("maildirfolder"), b"").unwrap();
    write_message(
        &folder.join("cur/1690000500.M5P50.relay,S=3:2,Sa"),
        b"x\r\n",
        1_690_000_500,
    );
    fs::write(
        folder.join("dovecot-uidlist"),
        "3 V1690000555 N42 Gabc\n41 W3 :1690000500.M5P50.relay,S=3\n",
    )
    .unwrap();
    // The folder numbers its own keywords.
    fs::write(folder.join("dovecot-keywords"), "0 $Junk\n").unwrap();
    let store = MaildirStore::open(root.path()).unwrap();
    block_on(async {
        let status = store.status(&alice(), "DeltaChat").await.unwrap();
        assert_eq!(
            (status.uid_validity.0, status.uid_next, status.exists),
            (1_690_000_555, Uid(42), 1)
        );
        let listed = store
            .list_messages(&alice(), "DeltaChat", None)
            .await
            .unwrap();
        assert_eq!(
            summary(&listed),
            [(
                41,
                3,
                1_690_000_500,
                Flags::from([Flag::Seen, keyword("$Junk")])
            )]
        );
        assert_eq!(
            store.status(&alice(), INBOX).await.unwrap().uid_validity.0,
            DOVECOT_VALIDITY
        );
    });
}

/// The file of UID 5 (Dovecot's `:2,RSab`) in `cur/`.
fn uid5_file(dir: &Path) -> String {
    let names: Vec<String> = fs::read_dir(dir.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("1690000200.M2P20.relay"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names[0].clone()
}

#[test]
fn flag_changes_keep_dovecots_keyword_letters() {
    let root = tempfile::tempdir().unwrap();
    let (s, p) = (stored("encrypted.eml").len(), stored("plain.eml").len());
    let served = served_inbox(root.path(), &realistic_uidlist(s, p));
    let base = format!("1690000200.M2P20.relay,S={p},W={}", served.plain.len());
    let store = MaildirStore::open(root.path()).unwrap();
    let flags = |op, flags: &[Flag]| {
        block_on(store.store_flags(
            &alice(),
            INBOX,
            &[Uid(5)],
            op,
            &flags.iter().cloned().collect(),
            None,
        ))
        .unwrap();
        uid5_file(&served.dir)
    };
    // A system flag: the keyword letters stay.
    assert_eq!(
        flags(FlagOp::Add, &[Flag::Flagged]),
        format!("{base}:2,FRSab")
    );
    // A keyword removed loses its letter only.
    assert_eq!(
        flags(FlagOp::Remove, &[keyword("$Forwarded")]),
        format!("{base}:2,FRSb")
    );
    assert_eq!(
        fs::read(served.dir.join("dovecot-keywords")).unwrap(),
        b"0 $Forwarded\n1 $MDNSent\n"
    );
    // A keyword Dovecot did not number gets the next number, and its letter.
    assert_eq!(
        flags(FlagOp::Add, &[keyword("$label1"), keyword("$Forwarded")]),
        format!("{base}:2,FRSabc")
    );
    assert_eq!(
        fs::read(served.dir.join("dovecot-keywords")).unwrap(),
        b"0 $Forwarded\n1 $MDNSent\n2 $label1\n"
    );
    // The flags read back, also after a reopen (from the names and the index).
    drop(store);
    let store = MaildirStore::open(root.path()).unwrap();
    let listed = block_on(store.list_messages(&alice(), INBOX, None)).unwrap();
    let uid5 = listed.iter().find(|m| m.uid == Uid(5)).unwrap();
    assert_eq!(
        uid5.flags,
        Flags::from([
            Flag::Answered,
            Flag::Flagged,
            Flag::Seen,
            keyword("$Forwarded"),
            keyword("$MDNSent"),
            keyword("$label1"),
        ])
    );
}

#[test]
fn an_index_with_dovecots_stored_sizes_gets_the_served_sizes() {
    let root = tempfile::tempdir().unwrap();
    let (s, p) = (stored("encrypted.eml").len(), stored("plain.eml").len());
    let served = served_inbox(root.path(), &realistic_uidlist(s, p));
    let store = MaildirStore::open(root.path()).unwrap();
    let before = block_on(store.list_messages(&alice(), INBOX, None)).unwrap();
    drop(store);
    // As an earlier version recorded them: the `,S=` size of Dovecot's files.
    let index = served.dir.join(INDEX_FILE);
    let text = fs::read_to_string(&index).unwrap();
    let sw = served.seen.len();
    let old = text.replace(&format!(" {sw} cur "), &format!(" {s} cur "));
    assert_ne!(old, text);
    fs::write(&index, &old).unwrap();
    let store = MaildirStore::open(root.path()).unwrap();
    let after = block_on(store.list_messages(&alice(), INBOX, None)).unwrap();
    assert_eq!(summary(&after), summary(&before));
    assert_eq!(after[0].size, sw as u64);
    let usage = block_on(store.quota_usage(&alice())).unwrap();
    assert_eq!(usage, after.iter().map(|m| m.size).sum::<u64>());
    // Written back: the next start reads the served size directly.
    assert!(fs::read_to_string(&index)
        .unwrap()
        .contains(&format!(" {sw} cur ")));
}
