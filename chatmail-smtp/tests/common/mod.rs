//! Test harness: drives a server session with a byte script in a given chunking and a
//! deterministic in-memory embedder, and records everything that comes out.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatmail_smtp::policy::{Policy, PolicyConfig};
use chatmail_smtp::server::{
    Answer, AuthAnswer, Delivery, DeliveryAnswer, DeliveryFailure, Engine, Output, RecipientAnswer,
    Request, Role, ServerConfig, ServerSession, Transport,
};
use rand::{Rng, SeedableRng};

pub const DOMAIN: &str = "example.org";
pub const HOST: &str = "mail.example.org";
/// The password the test embedder accepts (for any login in the domain).
pub const PASSWORD: &str = "correct-horse";

/// `AUTH PLAIN` initial response for `alice@example.org` / [`PASSWORD`].
pub fn plain_alice() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0alice@{DOMAIN}\0{PASSWORD}"))
}

pub fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A policy for `example.org` with the given size bound and a rate limit that the
/// scripts do not reach.
pub fn policy(max_message_size: u64) -> Arc<Policy> {
    Arc::new(Policy::new(PolicyConfig {
        mail_domain: DOMAIN.into(),
        max_message_size,
        max_user_send_per_minute: 6000,
        max_user_send_burst_size: 1000,
    }))
}

/// The `encrypted.eml` fixture (a real PGP/MIME message, CRLF) for this envelope.
pub fn encrypted_message(from: &str, to: &str) -> Vec<u8> {
    fixture("encrypted.eml", from, to)
}

/// A fixture with its placeholders filled, CRLF line endings.
pub fn fixture(name: &str, from: &str, to: &str) -> Vec<u8> {
    let path = format!("{}/../testdata/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).expect("fixture");
    text.replace("{from_addr}", from)
        .replace("{to_addr}", to)
        .replace("{subject}", "...")
        .replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

/// The EHLO line the scripts start with.
pub const EHLO: &str = "EHLO client.example\r\n";

/// `EHLO`, `MAIL`, one `RCPT`, `DATA` and the stuffed message.
pub fn data_script(from: &str, to: &str, message: &[u8]) -> Vec<u8> {
    let mut script = format!("{EHLO}MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n").into_bytes();
    script.extend_from_slice(&stuffed(message));
    script
}

/// Dot-stuffs a CRLF message and appends the terminator.
pub fn stuffed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// What came out of a session, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// Everything written to the peer.
    pub wire: Vec<u8>,
    /// Requests and driver actions, in order (`auth alice@...`, `rcpt ...`,
    /// `deliver ...`, `starttls`, `close`).
    pub events: Vec<String>,
    pub deliveries: Vec<Delivery>,
    /// Whether the session emitted `Close`.
    pub closed: bool,
}

impl Transcript {
    /// The reply lines as text.
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.wire)
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The code of every final reply line (`NNN ` not `NNN-`).
    pub fn codes(&self) -> Vec<u16> {
        self.lines()
            .iter()
            .filter(|l| l.as_bytes().get(3) != Some(&b'-'))
            .filter_map(|l| l.get(..3)?.parse().ok())
            .collect()
    }

    /// Asserts the session answered a message with the durable `250`.
    pub fn assert_accepted(&self) {
        assert!(
            self.has_line("250 2.0.0 Ok: message accepted for delivery"),
            "{:?}",
            self.lines()
        );
    }

    pub fn has_line(&self, prefix: &str) -> bool {
        self.lines().iter().any(|l| l.starts_with(prefix))
    }
}

/// How the script is cut into `feed` calls.
#[derive(Debug, Clone, Copy)]
pub enum Chunking {
    Whole,
    ByteByByte,
    Random(u64),
}

/// The embedder the tests talk to.
#[derive(Debug, Clone)]
pub struct Embedder {
    /// Answer for deliveries.
    pub delivery: DeliveryAnswer,
}

impl Default for Embedder {
    fn default() -> Self {
        Embedder {
            delivery: DeliveryAnswer::Durable,
        }
    }
}

pub struct Driver {
    pub session: ServerSession,
    pub now: Instant,
    pub transcript: Transcript,
    pub embedder: Embedder,
    /// Complete the TLS handshake as soon as the session asks for it.
    pub auto_tls: bool,
}

impl Driver {
    pub fn new(config: ServerConfig, policy: Arc<Policy>, transport: Transport) -> Driver {
        let now = Instant::now();
        let session = ServerSession::new(Arc::new(config), policy, transport, now);
        let mut driver = Driver {
            session,
            now,
            transcript: Transcript {
                wire: Vec::new(),
                events: Vec::new(),
                deliveries: Vec::new(),
                closed: false,
            },
            embedder: Embedder::default(),
            auto_tls: true,
        };
        driver.drain();
        driver
    }

    /// Feeds bytes, then drains and lets held-back replies (AUTH delays) go out.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.session.feed(bytes, self.now);
        self.drain();
    }

    /// Handles every output; answers requests the way the test embedder does.
    pub fn drain(&mut self) {
        loop {
            while let Some(output) = self.session.poll() {
                self.handle(output);
            }
            // A delayed reply: the session waits for the clock, not for the peer. (With
            // `auto_tls` off it may be waiting for the handshake: the test drives it.)
            if self.auto_tls && !self.session.wants_input() && !self.session.is_closed() {
                if let Some(deadline) = self.session.poll_timeout() {
                    self.now = self.now.max(deadline);
                    self.session.handle_timeout(self.now);
                    continue;
                }
            }
            break;
        }
    }

    fn handle(&mut self, output: Output) {
        let now = self.now;
        match output {
            Output::Send(bytes) => self.transcript.wire.extend_from_slice(&bytes),
            Output::StartTls => {
                self.transcript.events.push("starttls".into());
                if self.auto_tls {
                    self.session.tls_started(now);
                }
            }
            Output::Close => {
                self.transcript.events.push("close".into());
                self.transcript.closed = true;
            }
            Output::Event(_) => {}
            Output::Subscribe(_) | Output::StartDeflate => {
                unreachable!("not an SMTP server output")
            }
            Output::Request(id, Request::Authenticate { login, password }) => {
                self.transcript.events.push(format!("auth {login}"));
                let answer = if password == PASSWORD && login.ends_with(&format!("@{DOMAIN}")) {
                    AuthAnswer::Success {
                        user: login.to_lowercase(),
                    }
                } else if login.starts_with("tempfail") {
                    AuthAnswer::TemporaryFailure
                } else {
                    AuthAnswer::Invalid
                };
                self.session
                    .answer(id, Answer::Auth(answer), now)
                    .expect("auth answer");
            }
            Output::Request(id, Request::Recipient { address }) => {
                self.transcript.events.push(format!("rcpt {address}"));
                let answer = if address.starts_with("unknown@") {
                    RecipientAnswer::Refuse(DeliveryFailure::UnknownRecipient)
                } else {
                    RecipientAnswer::Accept {
                        accepts_cleartext: address.starts_with("cleartext"),
                    }
                };
                self.session
                    .answer(id, Answer::Recipient(answer), now)
                    .expect("rcpt answer");
            }
            Output::Request(id, Request::Deliver(delivery)) => {
                self.transcript.events.push(format!(
                    "deliver {} -> {}",
                    delivery.mail_from,
                    delivery.recipients.join(",")
                ));
                self.transcript.deliveries.push(delivery);
                let answer = self.embedder.delivery.clone();
                self.session
                    .answer(id, Answer::Delivery(answer), now)
                    .expect("delivery answer");
            }
        }
    }

    /// Advances the virtual clock and lets timers fire.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.session.handle_timeout(self.now);
        self.drain();
    }
}

/// Runs `script` through a fresh session cut as `chunking`.
pub fn run_chunked(
    config: &ServerConfig,
    transport: Transport,
    policy: &Arc<Policy>,
    embedder: &Embedder,
    script: &[u8],
    chunking: Chunking,
) -> Transcript {
    let mut driver = Driver::new(config.clone(), policy.clone(), transport);
    driver.embedder = embedder.clone();
    match chunking {
        Chunking::Whole => driver.feed(script),
        Chunking::ByteByByte => {
            for byte in script {
                driver.feed(std::slice::from_ref(byte));
            }
        }
        Chunking::Random(seed) => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut rest = script;
            while !rest.is_empty() {
                let n = rng.gen_range(1..=rest.len().min(64));
                driver.feed(&rest[..n]);
                rest = &rest[n..];
            }
        }
    }
    driver.transcript
}

/// Runs `script` whole, byte by byte and in several random chunkings; asserts the
/// outputs are identical and returns them.
pub fn run_all(config: &ServerConfig, transport: Transport, script: &[u8]) -> Transcript {
    run_all_with(
        config,
        transport,
        &policy(1 << 20),
        &Embedder::default(),
        script,
    )
}

pub fn run_all_with(
    config: &ServerConfig,
    transport: Transport,
    policy: &Arc<Policy>,
    embedder: &Embedder,
    script: &[u8],
) -> Transcript {
    let whole = run_chunked(config, transport, policy, embedder, script, Chunking::Whole);
    let single = run_chunked(
        config,
        transport,
        policy,
        embedder,
        script,
        Chunking::ByteByByte,
    );
    assert_eq!(
        String::from_utf8_lossy(&whole.wire),
        String::from_utf8_lossy(&single.wire),
        "whole vs byte by byte"
    );
    assert_eq!(whole, single, "whole vs byte by byte");
    for seed in 0..4 {
        let random = run_chunked(
            config,
            transport,
            policy,
            embedder,
            script,
            Chunking::Random(seed),
        );
        assert_eq!(whole, random, "whole vs random chunks (seed {seed})");
    }
    whole
}

pub fn submission() -> ServerConfig {
    ServerConfig::new(Role::Submission, HOST)
}

pub fn mx() -> ServerConfig {
    ServerConfig::new(Role::Mx, HOST)
}

pub fn lmtp() -> ServerConfig {
    ServerConfig::new(Role::Lmtp, HOST)
}
