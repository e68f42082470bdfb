//! `chatmail`: embed a chatmail relay in your own program.
//!
//! A chatmail relay is the minimal e-mail server Delta Chat uses: accounts appear on
//! first login, only end-to-end encrypted mail passes, IDLE hears of a delivery at once,
//! and everything is deleted after a few days. This crate assembles the workspace's
//! engines into one:
//!
//! * [`Relay`] (runtime-agnostic): configuration, policy, accounts, mail store and
//!   outbound queue, shared by every connection. It answers the requests of every
//!   protocol engine through [`RequestHandler`], delivers accepted mail durably, and
//!   runs the expiry.
//! * The engines, re-exported: [`smtp`] (submission, MX, LMTP, and the client),
//!   [`imap`], both keeping the one contract of [`core::engine::Engine`], and [`policy`].
//! * `tokio_driver` (feature `tokio`, on by default): the listeners, rustls, and one
//!   pump that drives any engine over a socket.
//! * [`compress`] (runtime-agnostic): the transport side of IMAP COMPRESS=DEFLATE, for
//!   any driver, after the engine's `Output::StartDeflate`.
//!
//! What a provider plugs in: [`relay::OutboundQueue`] (mail for other servers),
//! [`relay::NewMailNotifier`] (push), [`relay::ServerMetadata`] (extra METADATA
//! entries), a [`core::executor::BlockingExecutor`] for file-system work, or another
//! [`core::store::MailStore`].
//!
//! # The drive loop
//!
//! A driver owns the sockets; the engines and the `Relay` own every decision. Without
//! any socket: Bob idles over IMAP, Alice submits to him over SMTP, and the delivery
//! reaches Bob's session through the change feed his session subscribed to.
//!
//! ```
//! use chatmail::core::engine::{Engine, Output};
//! use chatmail::core::store::ChangeSubscription;
//! use chatmail::smtp::server::{Role, ServerSession, Transport};
//! use chatmail::{Relay, RequestHandler};
//! use futures::executor::block_on;
//! use std::sync::Arc;
//! use std::time::Instant;
//!
//! /// Feeds `input`, then drains the engine: requests answered by the relay, the change
//! /// feed kept, the bytes for the client returned. A real driver writes them to the
//! /// socket, sleeps until `poll_timeout()` and awaits the feed.
//! fn step<E: Engine>(
//!     relay: &Relay,
//!     engine: &mut E,
//!     feed: &mut Option<ChangeSubscription>,
//!     input: &str,
//! ) -> String
//! where
//!     Relay: RequestHandler<E>,
//! {
//!     engine.feed(input.as_bytes(), Instant::now());
//!     while let Some(change) = feed.as_mut().and_then(ChangeSubscription::try_next) {
//!         engine.handle_change(change, Instant::now());
//!     }
//!     let mut wire = String::new();
//!     while let Some(output) = engine.poll() {
//!         match output {
//!             Output::Send(bytes) => wire.push_str(&String::from_utf8_lossy(&bytes)),
//!             Output::Request(id, request) => {
//!                 let answer = block_on(relay.handle(request, None));
//!                 engine.answer(id, answer, Instant::now()).unwrap();
//!             }
//!             Output::Subscribe(account) => *feed = Some(relay.subscribe(&account)),
//!             Output::StartTls | Output::StartDeflate | Output::Event(_) | Output::Close => {}
//!         }
//!     }
//!     wire
//! }
//!
//! let config = chatmail::core::config::Config::with_domain("chat.example.org");
//! let relay = Relay::builder(config)
//!     .memory()
//!     .system_limits(Arc::new(chatmail::core::account::FixedSystemLimits::plenty()))
//!     .build()
//!     .unwrap();
//! let (alice, bob) = ("alice1234@chat.example.org", "bob123456@chat.example.org");
//!
//! // Bob, as on port 993: the first login creates the account.
//! let mut imap = chatmail::imap::Session::new(Arc::new(relay.imap_config(true)), Instant::now());
//! let mut bob_feed = None;
//! let login = format!("a LOGIN {bob} bob-password\r\nb SELECT INBOX\r\nc IDLE\r\n");
//! assert!(step(&relay, &mut imap, &mut bob_feed, &login).ends_with("+ idling\r\n"));
//!
//! // Alice, as on port 465.
//! let smtp_config = Arc::new(relay.smtp_config(Role::Submission));
//! let mut smtp = ServerSession::new(smtp_config, relay.policy().clone(), Transport::Tls, Instant::now());
//! let message = include_str!("../testdata/fixtures/encrypted.eml")
//!     .replace("{from_addr}", alice)
//!     .replace("{to_addr}", bob)
//!     .replace("{subject}", "[...]")
//!     .replace("\r\n", "\n")
//!     .replace('\n', "\r\n");
//! let plain = "AGFsaWNlMTIzNEBjaGF0LmV4YW1wbGUub3JnAGFsaWNlLXB3LTEyMw=="; // \0alice1234@...\0alice-pw-123
//! let script = format!(
//!     "EHLO client\r\nAUTH PLAIN {plain}\r\nMAIL FROM:<{alice}>\r\nRCPT TO:<{bob}>\r\n\
//!      DATA\r\n{message}.\r\nQUIT\r\n"
//! );
//! let replies = step(&relay, &mut smtp, &mut None, &script);
//! assert!(replies.contains("250 2.0.0 Ok: message accepted for delivery"), "{replies}");
//!
//! // Bob's session hears of it through its feed, without asking (and, told first, claims
//! // it as \Recent).
//! assert_eq!(step(&relay, &mut imap, &mut bob_feed, ""), "* 1 EXISTS\r\n* 1 RECENT\r\n");
//! ```
//!
//! Comments cite the reference relay's behaviour as "spec N.N": the section of that name
//! in the repository's `docs/reference-relay.md`.
#![forbid(unsafe_code)]

pub use chatmail_core as core;
pub use chatmail_imap as imap;
pub use chatmail_policy as policy;
pub use chatmail_smtp as smtp;

pub mod compress;
pub mod credentials;
pub mod dkim;
pub mod metrics;
pub mod outbound;
pub mod push;
pub mod relay;
pub mod web;

pub use relay::{LoginVerdict, Relay, RelayBuilder, RequestHandler};

#[cfg(feature = "tokio")]
pub mod tokio_driver;
