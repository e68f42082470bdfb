//! An address the operator disabled (a `DISABLED` file in its account directory, as the
//! reference filter reads it) gets nothing and sends nothing, silently: mail to it and
//! from it is answered `250` and dropped, on submission, on port 25 and on `/mxdeliv`;
//! the other recipients of the same message still get it.

use chatmail::core::account::FixedSystemLimits;
use chatmail::core::config::Config;
use chatmail::core::{Address, InlineExecutor, INBOX};
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

/// A maildir relay with `alice0001`, `bob000001` and `carol0001`; bob is disabled.
fn relay(dir: &Path) -> Relay {
    let mut config = Config::with_domain(DOMAIN);
    config.mailboxes_dir = dir.to_path_buf();
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
            .unwrap();
    }
    std::fs::write(dir.join(addr("bob000001")).join("DISABLED"), b"").unwrap();
    relay
}

fn inbox_len(relay: &Relay, local: &str) -> usize {
    let account = Address::parse(&addr(local)).unwrap();
    block_on(relay.store().list_messages(&account, INBOX, None))
        .unwrap()
        .len()
}

/// One session of `role` (submission logs in as `from`) sending the encrypted fixture
/// from `from` to `to`; the last reply line.
fn send(relay: &Relay, role: Role, from: &str, to: &[String]) -> String {
    use base64::Engine as _;
    let now = Instant::now();
    let mut session = ServerSession::new(
        Arc::new(ServerConfig::new(role, DOMAIN)),
        relay.policy().clone(),
        Transport::Tls,
        now,
    );
    let mut input = String::from("EHLO client\r\n");
    if role == Role::Submission {
        let plain =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{from}\0{PASSWORD}"));
        input.push_str(&format!("AUTH PLAIN {plain}\r\n"));
    }
    input.push_str(&format!("MAIL FROM:<{from}>\r\n"));
    for rcpt in to {
        input.push_str(&format!("RCPT TO:<{rcpt}>\r\n"));
    }
    input.push_str("DATA\r\n");
    input.push_str(&message(from, &to[0]));
    input.push_str(".\r\n");
    session.feed(input.as_bytes(), now);
    let mut replies = String::new();
    while let Some(out) = session.poll() {
        match out {
            Output::Send(bytes) => replies.push_str(&String::from_utf8_lossy(&bytes)),
            Output::Request(id, request) => {
                let answer = block_on(relay.answer_smtp(request, None));
                session.answer(id, answer, Instant::now()).unwrap();
            }
            _ => {}
        }
    }
    replies.lines().last().unwrap_or("").to_string()
}

fn message(from: &str, to: &str) -> String {
    include_str!("../testdata/fixtures/encrypted.eml")
        .replace("{from_addr}", from)
        .replace("{to_addr}", to)
        .replace("{subject}", "[...]")
        .replace("\r\n", "\n")
        .replace('\n', "\r\n")
}

#[test]
fn a_disabled_address_gets_and_sends_nothing_silently() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path());
    let (alice, bob, carol) = (addr("alice0001"), addr("bob000001"), addr("carol0001"));

    // To bob and carol: 250, carol gets it, bob does not.
    let reply = send(
        &relay,
        Role::Submission,
        &alice,
        &[bob.clone(), carol.clone()],
    );
    assert!(reply.starts_with("250 "), "{reply}");
    assert_eq!(
        (
            inbox_len(&relay, "bob000001"),
            inbox_len(&relay, "carol0001")
        ),
        (0, 1)
    );

    // Only to bob, on port 25: 250, nothing stored.
    let reply = send(
        &relay,
        Role::Mx,
        "someone@example.net",
        std::slice::from_ref(&bob),
    );
    assert!(reply.starts_with("250 "), "{reply}");
    assert_eq!(inbox_len(&relay, "bob000001"), 0);

    // /mxdeliv: 200, nothing stored for bob.
    let answer = block_on(relay.answer_mxdeliv(
        "someone@example.net",
        std::slice::from_ref(&bob),
        message("someone@example.net", &bob).into_bytes().into(),
    ));
    assert_eq!(answer.status, 200);
    assert_eq!(inbox_len(&relay, "bob000001"), 0);

    // From bob: 250, carol gets nothing.
    let reply = send(&relay, Role::Submission, &bob, std::slice::from_ref(&carol));
    assert!(reply.starts_with("250 "), "{reply}");
    assert_eq!(inbox_len(&relay, "carol0001"), 1);

    // Enabled again: mail flows.
    std::fs::remove_file(dir.path().join(&bob).join("DISABLED")).unwrap();
    let reply = send(&relay, Role::Submission, &alice, std::slice::from_ref(&bob));
    assert!(reply.starts_with("250 "), "{reply}");
    assert_eq!(inbox_len(&relay, "bob000001"), 1);
}
