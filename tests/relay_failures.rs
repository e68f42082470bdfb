//! Failed deliveries through the relay: mail from other servers is refused in the SMTP
//! dialogue and never bounced; delivery status notifications go only to authenticated
//! senders that have an account, quote a bounded header and use a random boundary; a
//! mailbox named twice gets one copy.

use chatmail::core::account::FixedSystemLimits;
use chatmail::core::config::Config;
use chatmail::core::InlineExecutor;
use chatmail::core::{Address, Flags, INBOX};
use chatmail::smtp::server::{Engine as _, Output, Role, ServerConfig, ServerSession, Transport};
use chatmail::Relay;
use futures::executor::block_on;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const DOMAIN: &str = "chat.example.org";
const PASSWORD: &str = "password123";

fn addr(local: &str) -> String {
    format!("{local}@{DOMAIN}")
}

/// A maildir relay in `dir` with a 1 MB quota, and the accounts `alice0001`,
/// `bob000001` (over quota) and `carol0001`.
fn relay(dir: &Path) -> Relay {
    let mut config = Config::with_domain(DOMAIN);
    config.mailboxes_dir = dir.to_path_buf();
    config.max_mailbox_size_mb = 1;
    let relay = Relay::builder(config)
        .maildir(Arc::new(InlineExecutor))
        .system_limits(Arc::new(FixedSystemLimits::plenty()))
        .nocreate_path("/nonexistent/chatmail-nocreate")
        // Unsigned test mail on port 25; DKIM has tests of its own.
        .skip_dkim_verification()
        .build()
        .unwrap();
    for user in ["alice0001", "bob000001", "carol0001"] {
        block_on(relay.login(&addr(user), PASSWORD, true))
            .unwrap()
            .expect("first login creates the account");
    }
    // Bob's mailbox is full: stored directly, past the relay's quota check.
    let big = vec![b'x'; 1_100_000];
    block_on(
        relay
            .store()
            .append(&account("bob000001"), INBOX, big.into(), &Flags::new(), 0),
    )
    .unwrap();
    relay
}

fn account(local: &str) -> Address {
    Address::parse(&addr(local)).unwrap()
}

fn inbox(relay: &Relay, local: &str) -> Vec<String> {
    let account = account(local);
    let metas = block_on(relay.store().list_messages(&account, INBOX, None)).unwrap();
    metas
        .iter()
        .map(|m| {
            let bytes = block_on(relay.store().read_message(&account, INBOX, m.uid)).unwrap();
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .collect()
}

fn session(relay: &Relay, role: Role, transport: Transport) -> ServerSession {
    ServerSession::new(
        Arc::new(ServerConfig::new(role, DOMAIN)),
        relay.policy().clone(),
        transport,
        Instant::now(),
    )
}

/// Feeds `input` and answers the session's requests with the relay; returns the replies.
fn talk(relay: &Relay, session: &mut ServerSession, input: &[u8]) -> String {
    session.feed(input, Instant::now());
    let mut replies = String::new();
    while let Some(out) = session.poll() {
        match out {
            Output::Send(bytes) => replies.push_str(&String::from_utf8_lossy(&bytes)),
            Output::Request(id, request) => {
                let answer = block_on(relay.answer_smtp(request, None));
                session
                    .answer(id, answer, Instant::now())
                    .expect("answered once");
            }
            _ => {}
        }
    }
    replies
}

/// The encrypted fixture from `from` to `to`, CRLF, dot-stuffed and terminated.
fn message(from: &str, to: &str, extra_headers: &str) -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/fixtures/encrypted.eml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let text = format!("{extra_headers}{text}")
        .replace("{from_addr}", from)
        .replace("{to_addr}", to)
        .replace("{subject}", "[...]")
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    let mut out = Vec::new();
    for line in text.trim_end().split("\r\n") {
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// `MAIL`, a `RCPT` per recipient, `DATA` and the encrypted fixture to the first one.
fn transaction(from: &str, to: &[&str], extra_headers: &str) -> Vec<u8> {
    let mut input = format!("MAIL FROM:<{from}>\r\n").into_bytes();
    for rcpt in to {
        input.extend_from_slice(format!("RCPT TO:<{rcpt}>\r\n").as_bytes());
    }
    input.extend_from_slice(b"DATA\r\n");
    input.extend_from_slice(&message(from, to[0], extra_headers));
    input
}

fn login_line(user: &str) -> String {
    use base64::Engine as _;
    let plain =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{}\0{PASSWORD}", addr(user)));
    format!("EHLO client\r\nAUTH PLAIN {plain}\r\n")
}

#[test]
fn port_25_refuses_unknown_recipients_at_rcpt_without_creating_them() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(tmp.path());
    let mut mx = session(&relay, Role::Mx, Transport::Tls);
    let nobody = addr("nobody001");
    let replies = talk(
        &relay,
        &mut mx,
        format!("EHLO other.net\r\nMAIL FROM:<x@other.net>\r\nRCPT TO:<{nobody}>\r\n").as_bytes(),
    );
    assert!(
        replies.contains(&format!(
            "550 5.1.1 <{nobody}>: Recipient address rejected: User unknown\r\n"
        )),
        "{replies}"
    );
    assert!(!tmp.path().join(&nobody).exists());
}

#[test]
fn port_25_partial_failure_is_refused_and_never_bounced() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(tmp.path());
    // The peer names a local sender (existing or not) and one full mailbox.
    for sender in ["alice0001", "ghost0001"] {
        let from = addr(sender);
        let mut mx = session(&relay, Role::Mx, Transport::Tls);
        let mut input = b"EHLO other.net\r\n".to_vec();
        input.extend(transaction(
            &from,
            &[&addr("bob000001"), &addr("carol0001")],
            "",
        ));
        let replies = talk(&relay, &mut mx, &input);
        assert!(
            replies.ends_with("552 5.2.2 <bob000001@chat.example.org>: Quota exceeded (mailbox for user is full)\r\n"),
            "{replies}"
        );
    }
    // Carol has her copies; nobody got a report, and no account appeared.
    assert_eq!(inbox(&relay, "carol0001").len(), 2);
    assert!(inbox(&relay, "alice0001").is_empty());
    assert!(!tmp.path().join(addr("ghost0001")).exists());
}

#[test]
fn submission_reports_to_the_authenticated_sender_with_a_bounded_random_dsn() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(tmp.path());
    let alice = addr("alice0001");
    let mut filler = String::new();
    for i in 0..1000 {
        filler.push_str(&format!(
            "X-Filler-{i}: a header line to make the section long\r\n"
        ));
    }
    for _ in 0..2 {
        let mut submission = session(&relay, Role::Submission, Transport::Tls);
        let mut input = login_line("alice0001").into_bytes();
        input.extend(transaction(
            &alice,
            &[&addr("carol0001"), &addr("bob000001")],
            &filler,
        ));
        let replies = talk(&relay, &mut submission, &input);
        assert!(
            replies.contains("250 2.0.0 Ok: message accepted"),
            "{replies}"
        );
    }
    let reports = inbox(&relay, "alice0001");
    assert_eq!(reports.len(), 2);
    let boundary = |report: &str| {
        let start = report.find("boundary=\"").unwrap() + "boundary=\"".len();
        report[start..start + report[start..].find('"').unwrap()].to_string()
    };
    let (b1, b2) = (boundary(&reports[0]), boundary(&reports[1]));
    assert_ne!(b1, b2, "boundaries must not be predictable");
    assert!(b1.len() >= 32, "{b1}");
    let report = &reports[0];
    assert!(report.contains("Final-Recipient: rfc822; bob000001@chat.example.org"));
    let quoted_start = report
        .find("Content-Type: text/rfc822-headers\r\n\r\n")
        .unwrap();
    let quoted = &report[quoted_start..report.rfind(&format!("--{b1}--")).unwrap()];
    assert!(quoted.len() <= 8 * 1024 + 64, "{}", quoted.len());
    assert!(quoted.contains("X-Filler-0: ") && !quoted.contains("X-Filler-999: "));
    assert!(quoted.ends_with("\r\n\r\n"), "cut at a line end");
}

#[test]
fn a_report_never_creates_an_account() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(tmp.path());
    let alice = addr("alice0001");
    let mut submission = session(&relay, Role::Submission, Transport::Tls);
    let replies = talk(&relay, &mut submission, login_line("alice0001").as_bytes());
    assert!(replies.contains("235 "), "{replies}");
    // The account goes while the session is open.
    assert!(block_on(relay.accounts().store().delete(&account("alice0001"))).unwrap());
    let input = transaction(&alice, &[&addr("carol0001"), &addr("bob000001")], "");
    let replies = talk(&relay, &mut submission, &input);
    assert!(
        replies.contains("250 2.0.0 Ok: message accepted"),
        "{replies}"
    );
    assert!(!tmp.path().join(&alice).exists());
}

#[test]
fn a_mailbox_named_twice_gets_one_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(tmp.path());
    let carol = addr("carol0001");
    let alice = addr("alice0001");
    let mut submission = session(&relay, Role::Submission, Transport::Tls);
    let mut input = login_line("alice0001").into_bytes();
    input.extend(transaction(
        &alice,
        &[&carol, "CAROL0001@Chat.Example.Org", &carol],
        "",
    ));
    let replies = talk(&relay, &mut submission, &input);
    assert_eq!(replies.matches("250 2.1.5 Ok").count(), 3, "{replies}");
    assert!(
        replies.contains("250 2.0.0 Ok: message accepted"),
        "{replies}"
    );
    assert_eq!(inbox(&relay, "carol0001").len(), 1);

    // LMTP keeps both RCPTs (one reply each); the relay still stores one copy.
    let mut lmtp = session(&relay, Role::Lmtp, Transport::Cleartext);
    let from = "sender@other.net";
    let mut input = b"LHLO mta\r\n".to_vec();
    input.extend(transaction(from, &[&carol, &addr("Carol0001")], ""));
    let replies = talk(&relay, &mut lmtp, &input);
    assert_eq!(replies.matches("250 2.0.0 <").count(), 2, "{replies}");
    assert_eq!(inbox(&relay, "carol0001").len(), 2);
}
