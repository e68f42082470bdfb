//! The starting point for embedders (`cargo run --example embed_memory`): a relay with
//! the `memory` backend whose SMTP and IMAP engines are driven by hand, without sockets
//! or a runtime. Bob idles over IMAP; Alice submits the encrypted fixture to him; the
//! delivery reaches Bob's session through the change feed as `* 1 EXISTS`; Bob reads it.
//! Swap the strings for your transport and `block_on` for your runtime: that is a server.

use chatmail::core::config::Config;
use chatmail::core::engine::{Engine, Output};
use chatmail::core::store::ChangeSubscription;
use chatmail::imap::Session;
use chatmail::smtp::server::{Role, ServerSession, Transport};
use chatmail::{Relay, RequestHandler};
use futures::executor::block_on;
use std::sync::Arc;
use std::time::Instant;

const ALICE: &str = "alice1234@chat.example.org";
const BOB: &str = "bob123456@chat.example.org";

/// One connection without a socket: any engine (SMTP, IMAP), the change feed it asked
/// for, and what it wrote for its client.
struct Connection<E> {
    engine: E,
    feed: Option<ChangeSubscription>,
}

impl<E: Engine> Connection<E>
where
    Relay: RequestHandler<E>,
{
    fn new(engine: E) -> Self {
        Connection { engine, feed: None }
    }

    /// The client sends `input`: the engine reads it, and everything it asks for is done.
    fn send(&mut self, relay: &Relay, input: &str) -> String {
        self.engine.feed(input.as_bytes(), Instant::now());
        self.drain(relay)
    }

    /// Hands the engine what its change feed holds (an async driver awaits
    /// `ChangeSubscription::next` instead), then drains it.
    fn changes(&mut self, relay: &Relay) -> String {
        while let Some(change) = self.feed.as_mut().and_then(ChangeSubscription::try_next) {
            self.engine.handle_change(change, Instant::now());
        }
        self.drain(relay)
    }

    /// The drive loop of `chatmail::core::engine`, minus the socket and the timer.
    fn drain(&mut self, relay: &Relay) -> String {
        let mut wire = String::new();
        while let Some(output) = self.engine.poll() {
            match output {
                Output::Send(bytes) => wire.push_str(&String::from_utf8_lossy(&bytes)),
                Output::Request(id, request) => {
                    let answer = block_on(relay.handle(request, None));
                    self.engine
                        .answer(id, answer, Instant::now())
                        .expect("answers match requests");
                }
                Output::Subscribe(account) => self.feed = Some(relay.subscribe(&account)),
                // The strings stand for TLS connections (993, 465); nothing to close.
                Output::StartTls | Output::StartDeflate | Output::Close | Output::Event(_) => {}
            }
        }
        wire
    }
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
    let mut bob = Connection::new(Session::new(
        Arc::new(relay.imap_config(true)),
        Instant::now(),
    ));
    let login = format!("a LOGIN {BOB} bob-password\r\nb SELECT INBOX\r\nc IDLE\r\n");
    print!("{}", bob.send(&relay, &login));

    // Alice submits over SMTP (the transport counts as TLS, as on port 465).
    let mut alice = Connection::new(ServerSession::new(
        Arc::new(relay.smtp_config(Role::Submission)),
        relay.policy().clone(),
        Transport::Tls,
        Instant::now(),
    ));
    use base64::Engine as _;
    let plain =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{ALICE}\0alice-pw-123"));
    for line in [
        "EHLO client\r\n".to_string(),
        format!("AUTH PLAIN {plain}\r\n"),
        format!("MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n"),
        format!("{}\r\n.\r\nQUIT\r\n", message.trim_end()),
    ] {
        print!("{}", alice.send(&relay, &line));
    }

    // The delivery reaches Bob's idling session through the change feed; the session
    // is the first told of it, so the message is `\Recent` to it (claimed at once).
    let news = bob.changes(&relay);
    print!("{news}");
    assert_eq!(news, "* 1 EXISTS\r\n* 1 RECENT\r\n");

    // Bob reads it.
    let fetch = "DONE\r\nd UID FETCH 1:* (FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])\r\ne LOGOUT\r\n";
    print!("{}", bob.send(&relay, fetch));
}

#[cfg(test)]
mod tests {
    /// The walk-through is the test: its assertions fail the run.
    #[test]
    fn a_submission_reaches_an_idling_session_without_sockets() {
        super::main();
    }
}
