//! The starting point for embedders (`cargo run --example embed_memory`): a relay with
//! the `memory` backend whose SMTP and IMAP engines are driven by hand, without sockets
//! or a runtime. Alice submits the encrypted fixture to Bob; Bob reads it over IMAP.
//! Swap the strings for your transport and `block_on` for your runtime: that is a server.

use chatmail::core::config::Config;
use chatmail::imap::{Output as ImapOut, Session, SessionConfig};
use chatmail::smtp::server::{Engine as _, Output, Role, ServerConfig, ServerSession, Transport};
use chatmail::Relay;
use futures::executor::block_on;
use std::sync::Arc;
use std::time::Instant;

const ALICE: &str = "alice1234@chat.example.org";
const BOB: &str = "bob123456@chat.example.org";

/// Feeds `input` to an SMTP session and answers its requests with the relay.
fn smtp(relay: &Relay, session: &mut ServerSession, input: &str) -> String {
    session.feed(input.as_bytes(), Instant::now());
    let mut replies = String::new();
    while let Some(out) = session.poll() {
        match out {
            Output::Send(bytes) => replies.push_str(&String::from_utf8_lossy(&bytes)),
            Output::Request(id, request) => {
                let answer = block_on(relay.answer_smtp(request, None));
                session
                    .answer(id, answer, Instant::now())
                    .expect("answers match requests");
            }
            _ => {}
        }
    }
    replies
}

/// Feeds `input` to an IMAP session and answers its requests with the relay.
fn imap(relay: &Relay, session: &mut Session, input: &str) -> String {
    session.feed(input.as_bytes(), Instant::now());
    let mut responses = String::new();
    while let Some(out) = session.poll() {
        match out {
            ImapOut::Send(bytes) => responses.push_str(&String::from_utf8_lossy(&bytes)),
            ImapOut::Request(id, request) => {
                let answer = block_on(relay.answer_imap(request, None));
                session.answer(id, answer).expect("answers match requests");
            }
            ImapOut::StartTls | ImapOut::Close => {}
        }
    }
    responses
}

fn main() {
    let config = Config::with_domain("chat.example.org");
    // Fixed readings: account creation must not depend on this machine's load.
    let limits = Arc::new(chatmail::core::account::FixedSystemLimits::plenty());
    let relay = Relay::builder(config.clone())
        .memory()
        .system_limits(limits)
        .nocreate_path("/nonexistent/chatmail-nocreate")
        .build()
        .expect("the memory backend cannot fail to open");
    let message = include_str!("../testdata/fixtures/encrypted.eml")
        .replace("{from_addr}", ALICE)
        .replace("{to_addr}", BOB)
        .replace("{subject}", "[...]");

    // Bob logs in over IMAP (as on port 993), which creates his account.
    let mut bob = Session::new(
        Arc::new(SessionConfig::from_config(&config, true)),
        Instant::now(),
    );
    print!(
        "{}",
        imap(&relay, &mut bob, &format!("a LOGIN {BOB} bob-password\r\n"))
    );

    // Alice submits over SMTP (the transport counts as TLS, as on port 465).
    let smtp_config = Arc::new(ServerConfig::new(Role::Submission, "chat.example.org"));
    let mut alice = ServerSession::new(
        smtp_config,
        relay.policy().clone(),
        Transport::Tls,
        Instant::now(),
    );
    use base64::Engine as _;
    let plain =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{ALICE}\0alice-pw-123"));
    for line in [
        "EHLO client\r\n".to_string(),
        format!("AUTH PLAIN {plain}\r\n"),
        format!("MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n"),
        format!("{}\r\n.\r\nQUIT\r\n", message.trim_end()),
    ] {
        print!("{}", smtp(&relay, &mut alice, &line));
    }

    // Bob reads it.
    print!("{}", imap(&relay, &mut bob, "b SELECT INBOX\r\nc UID FETCH 1:* (FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])\r\nd LOGOUT\r\n"));
}
