//! The starting point for embedders (`cargo run --example embed_memory`): a relay with
//! the `memory` backend whose SMTP and IMAP engines are driven by hand, without sockets
//! or a runtime. Bob idles over IMAP; Alice submits the encrypted fixture to him; the
//! delivery reaches Bob's session through the change feed as `* 1 EXISTS`; Bob reads it.
//! Swap the strings for your transport and `block_on` for your runtime: that is a server.

use chatmail::core::config::Config;
use chatmail::core::store::ChangeSubscription;
use chatmail::imap::{Engine, Output as ImapOut, Session, SessionConfig};
use chatmail::smtp::server::{Output, Role, ServerConfig, ServerSession, Transport};
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

/// Feeds `input` to an IMAP session, answers its requests with the relay and keeps the
/// change feed it asks for at login.
fn imap(
    relay: &Relay,
    session: &mut Session,
    feed: &mut Option<ChangeSubscription>,
    input: &str,
) -> String {
    session.feed(input.as_bytes(), Instant::now());
    drain(relay, session, feed)
}

/// Passes the changes waiting on the feed to the session (an async driver awaits
/// `ChangeSubscription::next` instead), then drains it.
fn changes(relay: &Relay, session: &mut Session, feed: &mut Option<ChangeSubscription>) -> String {
    while let Some(change) = feed.as_mut().and_then(ChangeSubscription::try_next) {
        session.handle_change(change, Instant::now());
    }
    drain(relay, session, feed)
}

/// Drains an IMAP session's outputs: bytes for the client, requests to the relay.
fn drain(relay: &Relay, session: &mut Session, feed: &mut Option<ChangeSubscription>) -> String {
    let mut responses = String::new();
    while let Some(out) = session.poll() {
        match out {
            ImapOut::Send(bytes) => responses.push_str(&String::from_utf8_lossy(&bytes)),
            ImapOut::Request(id, request) => {
                let answer = block_on(relay.answer_imap(request, None));
                session
                    .answer(id, answer, Instant::now())
                    .expect("answers match requests");
            }
            ImapOut::Subscribe(account) => *feed = Some(relay.subscribe(&account)),
            ImapOut::StartTls | ImapOut::Close => {}
            ImapOut::Event(never) => match never {},
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

    // Bob logs in over IMAP (as on port 993), which creates his account, and idles.
    let mut bob = Session::new(
        Arc::new(SessionConfig::from_config(&config, true)),
        Instant::now(),
    );
    let mut bob_feed = None;
    let login = format!("a LOGIN {BOB} bob-password\r\nb SELECT INBOX\r\nc IDLE\r\n");
    print!("{}", imap(&relay, &mut bob, &mut bob_feed, &login));

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

    // The delivery reaches Bob's idling session through the change feed.
    let news = changes(&relay, &mut bob, &mut bob_feed);
    print!("{news}");
    assert_eq!(news, "* 1 EXISTS\r\n");

    // Bob reads it.
    print!("{}", imap(&relay, &mut bob, &mut bob_feed, "DONE\r\nd UID FETCH 1:* (FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])\r\ne LOGOUT\r\n"));
}

#[cfg(test)]
mod tests {
    /// The walk-through is the test: its assertions fail the run.
    #[test]
    fn a_submission_reaches_an_idling_session_without_sockets() {
        super::main();
    }
}
