//! Sans-IO SMTP engines for a chatmail relay.
//!
//! * [`server::ServerSession`]: one connection of submission (587/465), MX (25) or LMTP,
//!   robust against anything a peer sends; it drives chatmail-policy and hands accepted
//!   messages to the embedder.
//! * [`client::ClientSession`]: the SMTP client for delivery to other servers.
//!
//! Neither owns a socket, a clock or a runtime: bytes and time go in, bytes, requests
//! and deadlines come out. That makes them testable byte by byte, fuzzable, and drivable
//! by any runtime. Both keep the one contract of every engine of the workspace,
//! [`chatmail_core::engine::Engine`] (re-exported as [`server::Engine`]): its module
//! docs have the drive loop every driver runs.
//!
//! # Driving a server session
//!
//! The loop below is the whole contract, here with an in-memory "peer" (a submission
//! client sending an encrypted message) and an embedder that accepts every login and
//! stores nothing. A real driver writes `Send` bytes to a socket, performs the TLS
//! handshake on `StartTls`, sleeps until `poll_timeout()`, and calls `shutdown(now)`
//! when the process stops (the session says its own `421`).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use chatmail_smtp::policy::{Policy, PolicyConfig};
//! use chatmail_smtp::server::{
//!     Answer, AuthAnswer, DeliveryAnswer, Engine, Output, Request, Role, ServerConfig,
//!     ServerSession, Transport,
//! };
//!
//! let core = chatmail_core::config::Config::with_domain("example.org");
//! let policy = Arc::new(Policy::new(PolicyConfig::from(&core)));
//! let config = Arc::new(ServerConfig::new(Role::Submission, "mail.example.org"));
//! let now = Instant::now();
//! let mut session = ServerSession::new(config, policy, Transport::Tls, now);
//!
//! let encrypted = std::fs::read_to_string(concat!(
//!     env!("CARGO_MANIFEST_DIR"),
//!     "/../testdata/fixtures/encrypted.eml"
//! ))
//! .unwrap()
//! .replace("{from_addr}", "alice@example.org")
//! .replace("{to_addr}", "bob@example.org")
//! .replace("\r\n", "\n")
//! .replace('\n', "\r\n");
//! let client = format!(
//!     "EHLO client\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldHBhc3M=\r\n\
//!      MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n\
//!      {encrypted}.\r\nQUIT\r\n"
//! );
//!
//! let mut wire = Vec::new(); // what the driver would write to the socket
//! let mut delivered = Vec::new();
//! session.feed(client.as_bytes(), now);
//! loop {
//!     let Some(output) = session.poll() else {
//!         // Nothing to do until the peer sends more or the clock reaches
//!         // `session.poll_timeout()`; this peer has sent everything.
//!         break;
//!     };
//!     match output {
//!         Output::Send(bytes) => wire.extend_from_slice(&bytes),
//!         Output::Request(id, Request::Authenticate { login, .. }) => {
//!             let answer = Answer::Auth(AuthAnswer::Success { user: login });
//!             session.answer(id, answer, now).unwrap();
//!         }
//!         Output::Request(_, Request::Recipient { .. }) => unreachable!("MX/LMTP only"),
//!         Output::Request(id, Request::Deliver(delivery)) => {
//!             delivered.push(delivery); // make it durable first, then:
//!             session.answer(id, Answer::Delivery(DeliveryAnswer::Durable), now).unwrap();
//!         }
//!         Output::StartTls => session.tls_started(now), // after the handshake
//!         Output::Close => break,
//!         Output::Event(_) => {} // the policy verdicts, for metrics
//!         Output::Subscribe(_) | Output::StartDeflate => {} // IMAP only
//!     }
//! }
//! let wire = String::from_utf8(wire).unwrap();
//! assert!(wire.starts_with("220 mail.example.org ESMTP"));
//! assert!(wire.contains("235 2.7.0"));
//! assert!(wire.contains("250 2.0.0 Ok: message accepted for delivery"));
//! assert!(wire.ends_with("221 2.0.0 Bye\r\n"));
//! assert_eq!(delivered[0].recipients, ["bob@example.org"]);
//! ```
//!
//! # Source layout
//!
//! No file uses a file that uses it back (`.ci/import-graph.py` checks):
//!
//! * `server/`: the server session; its [module docs](server) list its files: the
//!   engine, the dispatch, one file per command under `server/command/`, the state
//!   every command shares;
//! * `client/`: the client session (`mod.rs`) and its reply reader (`reply.rs`);
//! * `reply.rs`: building a reply and writing reply lines, the one place that keeps
//!   every line on the wire well formed.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
mod reply;
pub mod server;

/// The acceptance policy this crate drives, re-exported so embedders and tests name the
/// same types ([`policy::Policy`], [`policy::Reply`], ...).
pub use chatmail_policy as policy;
