//! Sans-IO IMAP server engine of a chatmail relay: what Delta Chat needs, done
//! exactly (instant IDLE, METADATA push tokens, CONDSTORE), and what standard clients
//! need, done correctly.
//!
//! A [`Session`] owns no socket, file, clock or thread. It keeps the one contract of
//! every engine of the relay, [`Engine`] (`chatmail_core::engine`): the driver feeds it
//! the client's bytes and drains [`Output`]s; every storage or account operation leaves
//! as a typed [`Request`] that the embedder answers with an [`Answer`]; time comes in
//! with every input and through [`Engine::handle_timeout`]; after login the session
//! asks for its account's change feed ([`chatmail_core::engine::Output::Subscribe`]),
//! and mailbox changes from anywhere (SMTP delivery, other sessions, expiry) come in
//! through [`Engine::handle_change`] and reach an idling client as untagged responses
//! in the same round. On [`Engine::shutdown`] the session itself says
//! `* BYE Server shutting down`.
//!
//! # Method kinds
//!
//! * inputs: [`Engine::feed`], [`Engine::answer`], [`Engine::handle_change`],
//!   [`Engine::tls_started`], [`Engine::handle_timeout`], [`Engine::shutdown`];
//! * outputs: [`Engine::poll`] (bytes, requests, STARTTLS, COMPRESS, subscribe, close),
//!   [`Engine::poll_timeout`];
//! * getters: [`Engine::wants_input`], [`Engine::is_closed`], [`Engine::send_deadline`],
//!   and of the session itself [`Session::state`], [`Session::account`],
//!   [`Session::selected_mailbox`], [`Session::is_idle`], [`Session::memory_footprint`].
//!
//! # Drive loop
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use chatmail_core::{config::Config, Address};
//! use chatmail_imap::{Answer, Engine, Output, Refusal, Request, Session, SessionConfig};
//!
//! let mut config = SessionConfig::from_config(&Config::with_domain("example.org"), true);
//! config.max_bad_commands = 5;
//! let mut session = Session::new(Arc::new(config), Instant::now());
//! let mut to_client = Vec::new();
//! let mut subscribed = None;
//! session.feed(b"a LOGIN alice@example.org secret-password\r\n", Instant::now());
//! while let Some(out) = session.poll() {
//!     match out {
//!         Output::Send(bytes) => to_client.extend_from_slice(&bytes),
//!         Output::Request(id, Request::Authenticate { login, .. }) => {
//!             // The embedder checks the password (spec 2.2) and answers.
//!             let account = Address::parse(&login).unwrap();
//!             session.answer(id, Answer::Authenticated(account), Instant::now()).unwrap();
//!         }
//!         Output::Request(id, _) => {
//!             let refused = Answer::Refused(Refusal::Unavailable);
//!             session.answer(id, refused, Instant::now()).unwrap();
//!         }
//!         Output::StartTls => { /* upgrade, then session.tls_started(now) */ }
//!         Output::StartDeflate => { /* (de)compress the transport from now on */ }
//!         // Pass this account's changes to session.handle_change(change, now) from now on.
//!         Output::Subscribe(account) => subscribed = Some(account),
//!         Output::Event(never) => match never {},
//!         Output::Close => break,
//!     }
//! }
//! let text = String::from_utf8(to_client).unwrap();
//! assert!(text.contains("a OK [CAPABILITY IMAP4rev1"));
//! assert!(text.contains("XCHATMAIL XDELTAPUSH"));
//! assert_eq!(subscribed.unwrap().as_str(), "alice@example.org");
//! ```
//!
//! # COMPRESS
//!
//! With [`SessionConfig::compress`] (`imap_compress`) the session offers
//! `COMPRESS=DEFLATE` (RFC 4978) after login. `COMPRESS DEFLATE` gets its tagged OK,
//! then [`Output::StartDeflate`]: the driver compresses everything it sends from then on
//! and decompresses what it reads before [`Engine::feed`] (raw DEFLATE, RFC 1951). The
//! session itself only ever sees plain IMAP. A second COMPRESS gets
//! `NO [COMPRESSIONACTIVE]`; before login it is refused (BAD), as is any mechanism but
//! DEFLATE. Bytes the client pipelined behind the command are dropped: RFC 4978 forbids
//! sending them before the OK, and they would be compressed already.
//!
//! # Not offered
//!
//! QRESYNC, ESEARCH and BINARY are not advertised.
//!
//! # Request semantics
//!
//! Each [`Request`] variant documents the storage operation it stands for and the
//! answers it expects; [`Refusal`] maps to the response codes (`[NONEXISTENT]`,
//! `[OVERQUOTA]`, `[AUTHENTICATIONFAILED]` ...).
//!
//! # Source layout
//!
//! Each file uses only files listed after it here (no circle; `.ci/import-graph.py`
//! checks):
//!
//! * `engine.rs`: the [`Engine`] methods, and the framing of input into commands;
//! * `command/mod.rs`: dispatch, from a decoded command to its handler;
//! * `command/<name>.rs`: one file per command (`select.rs` for SELECT and EXAMINE,
//!   `copy_move.rs` for COPY and MOVE ...), an `impl Session` block with its handler
//!   and the continuation that takes the embedder's answer;
//! * `session.rs`: the session's state and what every command shares (responses,
//!   requests, the change queue);
//! * `request.rs`, `search_program.rs`, `selected.rs` (the selected mailbox as the
//!   client sees it), `config.rs`, `mime.rs`, `framing.rs`, `uidmap.rs`, `wire.rs`
//!   (the IMAP string forms).
//!
//! Comments cite the reference relay's behaviour as "spec N.N": the section of that name
//! in the repository's `docs/reference-relay.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod command;
mod config;
mod engine;
mod framing;
mod mime;
mod recent;
mod request;
mod search_program;
mod selected;
mod session;
mod uidmap;
mod wire;

/// The shared byte buffer of [`Answer::Message`] and [`Output::Send`].
pub use bytes::Bytes;
pub use chatmail_core::engine::{AnswerError, Engine, RequestId};
pub use config::SessionConfig;
pub use request::{Answer, Refusal, Request};
pub use search_program::ContentSearch;
pub use session::{Output, Session, State};
