//! `store::migrate`: a maildir relay moved into PostgreSQL and back keeps everything a
//! client or a login sees (UIDVALIDITY, UIDs, UIDNEXT, modseqs, flags, keywords, internal
//! dates, bytes, password hashes, last logins, markers, device tokens); a destination
//! that holds accounts is refused; and the migrated stores go on handing out UIDs and
//! UIDVALIDITYs that never collide with the migrated ones. Against a throwaway
//! PostgreSQL cluster (see `support/postgres.rs`).
#![cfg(feature = "postgres")]

#[path = "support/postgres.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use chatmail_core::account::{
    AccountStore, DeviceTokenStore, MaildirAccountStore, MaildirDeviceTokens, PasswordHash,
    TOKEN_LIFETIME_SECS,
};
use chatmail_core::store::migrate::{migrate, Endpoint, MigrateError, MigrationSummary};
use chatmail_core::store::{MailStore, MaildirStore, PostgresOptions, PostgresStore};
use chatmail_core::{Address, Flag, FlagOp, Flags, InlineExecutor, MessageMeta, Uid, INBOX};

/// The time of the source's last changes; the migration runs a little later.
const NOW: u64 = 1_700_000_000;
const PASSWORD: &str = "secret-pw-1";

fn address(local: &str) -> Address {
    Address::parse(&format!("{local}@chat.example.org")).unwrap()
}

fn keyword(k: &str) -> Flag {
    Flag::Keyword(k.to_string())
}

/// What clients and logins see of one address, in a form to compare across stores.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    password: Option<String>,
    last_login: Option<u64>,
    accepts_cleartext: bool,
    disabled: bool,
    tokens: Vec<String>,
    mailboxes: Vec<SeenMailbox>,
}

#[derive(Debug, PartialEq, Eq)]
struct SeenMailbox {
    name: String,
    subscribed: bool,
    uid_validity: u32,
    uid_next: u32,
    highest_modseq: u64,
    size: u64,
    messages: Vec<(MessageMeta, Bytes)>,
}

async fn seen(
    mail: &dyn MailStore,
    accounts: &dyn AccountStore,
    tokens: &dyn DeviceTokenStore,
    address: &Address,
) -> Seen {
    let mut mailboxes = Vec::new();
    for info in mail.list_mailboxes(address).await.unwrap() {
        let status = mail.status(address, &info.name).await.unwrap();
        let mut messages = Vec::new();
        for meta in mail.list_messages(address, &info.name, None).await.unwrap() {
            let body = mail
                .read_message(address, &info.name, meta.uid)
                .await
                .unwrap();
            messages.push((meta, body));
        }
        assert_eq!(status.exists as usize, messages.len());
        mailboxes.push(SeenMailbox {
            name: info.name,
            subscribed: info.subscribed,
            uid_validity: status.uid_validity.0,
            uid_next: status.uid_next.0,
            highest_modseq: status.highest_modseq.0,
            size: status.size,
            messages,
        });
    }
    Seen {
        password: accounts
            .lookup(address)
            .await
            .unwrap()
            .map(|r| r.password.as_str().to_string()),
        last_login: accounts.last_login(address).await.unwrap(),
        accepts_cleartext: accounts.accepts_cleartext(address).await.unwrap(),
        disabled: accounts.is_disabled(address).await.unwrap(),
        tokens: tokens.tokens(address, NOW + 10).await.unwrap(),
        mailboxes,
    }
}

struct Maildir {
    mail: MaildirStore,
    accounts: MaildirAccountStore,
    tokens: MaildirDeviceTokens,
}

fn maildir(root: &Path) -> Maildir {
    Maildir {
        mail: MaildirStore::open(root).unwrap(),
        accounts: MaildirAccountStore::new(root, Arc::new(InlineExecutor)),
        tokens: MaildirDeviceTokens::new(root, Arc::new(InlineExecutor)),
    }
}

async fn seen_maildir(root: &Path, addresses: &[Address]) -> Vec<Seen> {
    let m = maildir(root);
    let mut all = Vec::new();
    for a in addresses {
        all.push(seen(&m.mail, &m.accounts, &m.tokens, a).await);
    }
    all
}

async fn seen_postgres(store: &PostgresStore, addresses: &[Address]) -> Vec<Seen> {
    let mut all = Vec::new();
    for a in addresses {
        all.push(seen(store, store, store, a).await);
    }
    all
}

/// A maildir relay with four addresses: alice (mail in three mailboxes, expunges,
/// flags and keywords, tokens, accepts cleartext), bob (disabled, enforces E2EE), carol
/// (mail only, no account) and dave (a message as Dovecot left it, never served by this
/// store: its UIDVALIDITY and UID are Dovecot's, its body served with CRLF line ends).
async fn populate(root: &Path) -> Vec<Address> {
    let (alice, bob, carol) = (address("alice"), address("bob"), address("carol"));
    let dave = address("dave");
    let dave_dir = root.join(dave.as_str());
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dave_dir.join(sub)).unwrap();
    }
    let dovecot_name = "1600000000.M1P2.oldhost,S=20,W=23";
    std::fs::write(
        dave_dir.join("cur").join(format!("{dovecot_name}:2,S")),
        b"Subject: d\n\ndovecot\n",
    )
    .unwrap();
    std::fs::write(
        dave_dir.join("dovecot-uidlist"),
        format!("3 V1234567 N9 Gx\n4 :{dovecot_name}\n"),
    )
    .unwrap();
    let m = maildir(root);
    for (who, day) in [(&alice, NOW - 3 * 86_400), (&bob, NOW - 86_400)] {
        let hash = PasswordHash::sha512_crypt(PASSWORD).unwrap();
        m.accounts.create_if_absent(who, hash, day).await.unwrap();
    }
    m.accounts.set_enforce_e2ee(&alice, false).await.unwrap();
    std::fs::write(root.join(bob.as_str()).join("DISABLED"), b"").unwrap();
    m.tokens
        .add_token(&alice, "tokA", NOW - 1000)
        .await
        .unwrap();
    m.tokens.add_token(&alice, "tokB", NOW - 500).await.unwrap();
    m.tokens.add_token(&alice, "tokA", NOW).await.unwrap();

    let bodies: Vec<Bytes> = vec![
        Bytes::from_static(b"Subject: 1\r\n\r\nplain\r\n"),
        // Bare LF, a lone CR, bytes that are not UTF-8, no final line end: kept as is.
        Bytes::from_static(b"Subject: 2\n\nbare lf\rcr \xff\xfe\x00 end"),
        Bytes::from(vec![b'x'; 100_000]),
        Bytes::from_static(b"Subject: 4\r\n\r\nfour\r\n"),
        Bytes::from_static(b"Subject: 5\r\n\r\nfive\r\n"),
    ];
    let flags = [
        Flags::new(),
        Flags::from([Flag::Seen, keyword("$MDNSent")]),
        Flags::from([Flag::Flagged, Flag::Answered, Flag::Draft]),
        Flags::from([keyword("$Forwarded"), keyword("custom")]),
        Flags::new(),
    ];
    for (i, (body, flags)) in bodies.iter().zip(&flags).enumerate() {
        let date = 1_600_000_000 + i as i64 * 1000;
        m.mail
            .append(&alice, INBOX, body.clone(), flags, date)
            .await
            .unwrap();
    }
    // UIDNEXT 6 above the highest UID left (4): an expunged UID is never handed out again.
    m.mail
        .expunge(&alice, INBOX, &[Uid(2), Uid(5)])
        .await
        .unwrap();
    m.mail
        .store_flags(
            &alice,
            INBOX,
            &[Uid(1)],
            FlagOp::Add,
            &Flags::from([Flag::Seen, Flag::Deleted]),
            None,
        )
        .await
        .unwrap();
    m.mail.create_mailbox(&alice, "Archive").await.unwrap();
    m.mail
        .set_subscribed(&alice, "Archive", true)
        .await
        .unwrap();
    m.mail.set_subscribed(&alice, INBOX, true).await.unwrap();
    m.mail.create_mailbox(&alice, "Archive.2023").await.unwrap();
    m.mail
        .append(
            &alice,
            "Archive",
            bodies[1].clone(),
            &Flags::from([Flag::Seen]),
            -5,
        )
        .await
        .unwrap();
    m.mail
        .append(&bob, INBOX, bodies[0].clone(), &Flags::new(), 7)
        .await
        .unwrap();
    m.mail
        .append(&carol, INBOX, bodies[3].clone(), &Flags::new(), 8)
        .await
        .unwrap();
    vec![alice, bob, carol, dave]
}

#[test]
fn endpoints_parse_and_hide_passwords() {
    let maildir: Endpoint = "maildir:/var/vmail/chat.example.org".parse().unwrap();
    assert_eq!(
        maildir,
        Endpoint::Maildir("/var/vmail/chat.example.org".into())
    );
    let url = "postgres://relay:hunter2@db.example.org:5432/chatmail";
    let postgres: Endpoint = url.parse().unwrap();
    assert_eq!(postgres, Endpoint::Postgres(url.into()));
    assert!(!postgres.to_string().contains("hunter2"));
    for bad in ["maildir:", "/var/vmail", "mysql://x", ""] {
        assert!(matches!(
            bad.parse::<Endpoint>(),
            Err(MigrateError::BadEndpoint(_))
        ));
    }
}

#[test]
fn maildir_to_postgres_and_back_keeps_everything() {
    support::with_cluster(async |cluster| {
        let tmp = tempfile::tempdir().unwrap();
        let source_dir = tmp.path().join("source");
        let back_dir = tmp.path().join("back");
        let addresses = populate(&source_dir).await;
        let before = seen_maildir(&source_dir, &addresses).await;
        let alice_inbox = &before[0].mailboxes[0];
        assert_eq!(alice_inbox.name, INBOX);
        assert_eq!(alice_inbox.uid_next, 6);
        assert_eq!(
            alice_inbox
                .messages
                .iter()
                .map(|(m, _)| m.uid.0)
                .collect::<Vec<_>>(),
            [1, 3, 4]
        );
        assert!(before[2].password.is_none(), "carol has mail only");
        let dave_inbox = &before[3].mailboxes[0];
        assert_eq!(
            (dave_inbox.uid_validity, dave_inbox.uid_next),
            (1_234_567, 9)
        );
        assert_eq!(dave_inbox.messages[0].0.uid, Uid(4));
        assert_eq!(
            &dave_inbox.messages[0].1[..],
            b"Subject: d\r\n\r\ndovecot\r\n"
        );

        let source = Endpoint::Maildir(source_dir.clone());
        let database = Endpoint::Postgres(cluster.url("migrate"));
        let back = Endpoint::Maildir(back_dir.clone());

        // Maildir to PostgreSQL.
        let summary = migrate(&source, &database, NOW + 10).await.unwrap();
        let bytes: u64 = before
            .iter()
            .flat_map(|s| &s.mailboxes)
            .map(|m| m.size)
            .sum();
        assert_eq!(
            summary,
            MigrationSummary {
                accounts: 4,
                mailboxes: 6,
                messages: 7,
                bytes,
                skipped: 0
            }
        );
        let store = PostgresStore::open(&cluster.url("check"), PostgresOptions::default())
            .await
            .unwrap();
        assert_eq!(seen_postgres(&store, &addresses).await, before);

        // A destination with accounts is refused, whichever kind.
        for (from, to) in [(&source, &database), (&database, &source)] {
            match migrate(from, to, NOW + 10).await {
                Err(e @ MigrateError::DestinationNotEmpty(_)) => {
                    assert!(e.to_string().contains("not empty"), "{e}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            migrate(&source, &source, NOW).await,
            Err(MigrateError::SameEndpoint)
        ));

        // And back to a maildir, read by a freshly opened store.
        let summary_back = migrate(&database, &back, NOW + 10).await.unwrap();
        assert_eq!(summary_back, summary);
        assert_eq!(seen_maildir(&back_dir, &addresses).await, before);

        // Logins work with the same password; the token times came along (tokB, set
        // 500 s before tokA, expires first).
        let alice = &addresses[0];
        let back_store = maildir(&back_dir);
        for accounts in [&back_store.accounts as &dyn AccountStore, &store] {
            let record = accounts.lookup(alice).await.unwrap().unwrap();
            assert!(record.password.verify(PASSWORD).unwrap());
            assert!(!record.password.verify("wrong-pw-1").unwrap());
        }
        let late = NOW - 500 + TOKEN_LIFETIME_SECS;
        assert_eq!(
            back_store.tokens.tokens(alice, late).await.unwrap(),
            ["tokA"]
        );
        assert_eq!(store.tokens(alice, late).await.unwrap(), ["tokA"]);

        // New mail gets UIDs above the migrated ones, new mailboxes UIDVALIDITYs that
        // none of the migrated ones has.
        let migrated: BTreeSet<u32> = before
            .iter()
            .flat_map(|s| &s.mailboxes)
            .map(|m| m.uid_validity)
            .collect();
        let body = Bytes::from_static(b"Subject: new\r\n\r\nnew\r\n");
        let stores: [&dyn MailStore; 2] = [&store, &back_store.mail];
        for mail in stores {
            let appended = mail
                .append(alice, INBOX, body.clone(), &Flags::new(), 9)
                .await
                .unwrap();
            assert_eq!(appended.uid, Uid(6));
            assert_eq!(appended.uid_validity.0, alice_inbox.uid_validity);
            assert!(appended.modseq.0 > alice_inbox.highest_modseq);
            mail.create_mailbox(alice, "Fresh").await.unwrap();
            let fresh = mail.status(alice, "Fresh").await.unwrap().uid_validity.0;
            assert!(!migrated.contains(&fresh), "{fresh} in {migrated:?}");
            assert!(fresh > *migrated.last().unwrap());
            // A migrated mailbox deleted and created again gets a new one, too.
            mail.delete_mailbox(alice, "Archive.2023").await.unwrap();
            mail.create_mailbox(alice, "Archive.2023").await.unwrap();
            let again = mail.status(alice, "Archive.2023").await.unwrap();
            assert!(!migrated.contains(&again.uid_validity.0));
            let new_bob = mail
                .append(&addresses[1], INBOX, body.clone(), &Flags::new(), 9)
                .await
                .unwrap();
            assert_eq!(new_bob.uid, Uid(2));
        }
    });
}
