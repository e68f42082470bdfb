//! The relay runs the reference's expiry on its maildir: old messages go, recent stay;
//! and an IMAP session in IDLE learns of every message the expiry or quota trimming
//! removes (`* N EXPUNGE`), driven here without sockets.

use bytes::Bytes;
use chatmail::core::account::FixedSystemLimits;
use chatmail::core::config::Config;
use chatmail::core::store::ChangeSubscription;
use chatmail::core::{Address, InlineExecutor};
use chatmail::imap::{Engine, Output, Session};
use chatmail::Relay;
use futures::executor::block_on;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DAY: u64 = 86_400;

/// A maildir relay in `dir` with a quota of `quota_mb`.
fn maildir_relay(dir: &Path, quota_mb: u64) -> Relay {
    let mut config = Config::with_domain("chat.example.org");
    config.mailboxes_dir = dir.to_path_buf();
    config.max_mailbox_size_mb = quota_mb;
    Relay::builder(config)
        .maildir(Arc::new(InlineExecutor))
        .system_limits(Arc::new(FixedSystemLimits::plenty()))
        .nocreate_path("/nonexistent/chatmail-nocreate")
        .build()
        .unwrap()
}

fn deliver(relay: &Relay, account: &Address, message: Bytes) {
    let outcome = block_on(relay.deliver("a@b.org", &[account.to_string()], &[], message));
    assert!(outcome.iter().all(|o| o.is_ok()), "{outcome:?}");
}

/// Delivers two messages and ages the first past delete_mails_after (20 days) by its
/// file's mtime (its internal date); returns the two files.
fn deliver_two_and_age_one(relay: &Relay, dir: &Path, account: &Address) -> Vec<PathBuf> {
    let message = Bytes::from_static(b"From: a@b.org\r\nSubject: [...]\r\n\r\nbody\r\n");
    for _ in 0..2 {
        deliver(relay, account, message.clone());
    }
    let new = dir.join(account.as_str()).join("new");
    let mut files: Vec<_> = std::fs::read_dir(&new)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2);
    let old = SystemTime::now() - Duration::from_secs(21 * DAY);
    std::fs::File::options()
        .write(true)
        .open(&files[0])
        .unwrap()
        .set_modified(old)
        .unwrap();
    files
}

#[test]
fn daily_expiry_removes_messages_older_than_delete_mails_after() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = maildir_relay(tmp.path(), 500);
    let account = block_on(relay.login("abcdefghi@chat.example.org", "password123", true))
        .unwrap()
        .expect("first login creates the account");
    let files = deliver_two_and_age_one(&relay, tmp.path(), &account);

    let report = block_on(relay.run_expiry()).expect("maildir relays expire");
    assert_eq!(report.messages_removed, 1);
    assert!(!files[0].exists() && files[1].exists());
}

/// Drives an IMAP session without sockets: feeds `input`, answers its requests through
/// the relay, returns what it sent.
fn imap(relay: &Relay, session: &mut Session, input: &str) -> String {
    session.feed(input.as_bytes(), Instant::now());
    drain(relay, session)
}

/// Answers the session's requests and collects its output until it waits.
fn drain(relay: &Relay, session: &mut Session) -> String {
    let mut sent = String::new();
    while let Some(out) = session.poll() {
        match out {
            Output::Send(bytes) => sent.push_str(&String::from_utf8_lossy(&bytes)),
            Output::Request(id, request) => {
                let answer = block_on(relay.answer_imap(request, None));
                session
                    .answer(id, answer, Instant::now())
                    .expect("answers match requests");
            }
            Output::StartTls | Output::StartDeflate | Output::Close | Output::Subscribe(_) => {}
            Output::Event(never) => match never {},
        }
    }
    sent
}

/// Hands the session every change published on `feed` (what a driver does while the
/// session idles); returns what it sent, but for RECENT counts (a new message's claim
/// as `\Recent` reports one after its EXISTS).
fn changes(relay: &Relay, session: &mut Session, feed: &mut ChangeSubscription) -> String {
    while let Some(change) = feed.try_next() {
        assert!(change.is_ok(), "the feed did not lag");
        session.handle_change(change, Instant::now());
    }
    drain(relay, session)
        .split_inclusive("\r\n")
        .filter(|line| !line.ends_with(" RECENT\r\n"))
        .collect()
}

/// An IMAP session logged in as a new account.
fn logged_in(relay: &Relay) -> (Session, Address) {
    let mut session = Session::new(Arc::new(relay.imap_config(true)), Instant::now());
    let user = "idler0001@chat.example.org";
    let reply = imap(
        relay,
        &mut session,
        &format!("a LOGIN {user} password123\r\n"),
    );
    assert!(reply.contains("a OK"), "{reply}");
    (session, Address::parse(user).unwrap())
}

/// Selects INBOX (holding two messages) and starts IDLE; returns the account's feed.
fn idle_on_two(relay: &Relay, session: &mut Session, account: &Address) -> ChangeSubscription {
    let reply = imap(relay, session, "b SELECT INBOX\r\n");
    assert!(
        reply.contains("* 2 EXISTS") && reply.contains("b OK"),
        "{reply}"
    );
    let reply = imap(relay, session, "c IDLE\r\n");
    assert!(reply.starts_with("+ "), "{reply}");
    relay.subscribe(account)
}

#[test]
fn an_idle_session_sees_the_expiry_remove_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = maildir_relay(tmp.path(), 500);
    let (mut session, account) = logged_in(&relay);
    deliver_two_and_age_one(&relay, tmp.path(), &account);
    let mut feed = idle_on_two(&relay, &mut session, &account);

    let report = block_on(relay.run_expiry()).unwrap();
    assert_eq!(report.messages_removed, 1);

    let idle = changes(&relay, &mut session, &mut feed);
    assert_eq!(idle, "* 1 EXPUNGE\r\n");
    let reply = imap(&relay, &mut session, "DONE\r\nd UID SEARCH ALL\r\n");
    assert!(reply.contains("* SEARCH 2\r\n"), "{reply}");
}

#[test]
fn an_idle_session_sees_quota_trimming_remove_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    // 1 MiB: trimming starts past 786,432 bytes and goes down to 734,003.
    let relay = maildir_relay(tmp.path(), 1);
    let (mut session, account) = logged_in(&relay);
    // Two messages Dovecot delivered days ago, 300,000 bytes each by their names (`S=`
    // for trimming, `W=` the size served and counted for the quota).
    let new = tmp.path().join(account.as_str()).join("new");
    std::fs::create_dir_all(&new).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (days, seq) in [(3, 1), (2, 2)] {
        let name = format!("{}.M{seq}P1.relay,S=300000,W=300000", now - days * DAY);
        std::fs::write(new.join(name), b"Subject: old\r\n\r\nold\r\n").unwrap();
    }
    let mut feed = idle_on_two(&relay, &mut session, &account);

    // 600,000 + 200,000 passes 75 %: the oldest goes (UID 1), down to 500,000.
    let mut large = b"From: a@b.org\r\nSubject: [...]\r\n\r\n".to_vec();
    large.resize(200_000, b'x');
    deliver(&relay, &account, large.into());

    let idle = changes(&relay, &mut session, &mut feed);
    assert!(idle.contains("* 3 EXISTS\r\n"), "{idle}");
    assert!(idle.ends_with("* 1 EXPUNGE\r\n"), "{idle}");
    let reply = imap(&relay, &mut session, "DONE\r\nd UID SEARCH ALL\r\n");
    assert!(reply.contains("* SEARCH 2 3\r\n"), "{reply}");
}
