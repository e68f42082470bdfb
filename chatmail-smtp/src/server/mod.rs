//! The SMTP server session: one value per connection, for submission, MX or LMTP.
//!
//! # Method kinds
//!
//! [`ServerSession`] keeps the one contract of every engine,
//! [`chatmail_core::engine::Engine`]: inputs `feed`, `answer` (one [`Answer`] per
//! [`Request`]), `tls_started`, `handle_timeout`, `shutdown` (the session says its own
//! `421`); outputs `poll` and `poll_timeout`. Every input takes `now`: the session never
//! reads a clock. Getters of its own: [`ServerSession::auth_user`],
//! [`ServerSession::is_tls`], [`ServerSession::buffered_len`].
//!
//! # Source layout
//!
//! Each file uses only files listed after it here (no circle; `.ci/import-graph.py`
//! checks):
//!
//! * `engine.rs`: the [`Engine`] methods, and the reading of input into command lines,
//!   SASL responses and message text;
//! * `command/mod.rs`: dispatch, from a command line to its handler;
//! * `command/<name>.rs`: one file per command (`ehlo.rs` for EHLO, HELO and LHLO,
//!   `auth.rs`, `mail.rs`, `rcpt.rs`, `data.rs`, `bdat.rs`, ...), an `impl ServerSession`
//!   block with its handler and the continuation that takes the embedder's answer;
//!   `deliver.rs` is the end of a message: size, line endings, the policy verdict and
//!   the `Deliver` request;
//! * `session.rs`: the session's state and what every command shares (replies, requests,
//!   the transaction and its reset, deadlines);
//! * `message.rs` (the message text as it arrives, bounded), `request.rs` ([`Request`],
//!   [`Answer`] and the typed delivery failures), `config.rs` ([`ServerConfig`],
//!   [`Role`], [`Transport`]).

mod command;
mod config;
mod engine;
mod message;
mod request;
mod session;

pub use chatmail_core::engine::{AnswerError, Engine, RequestId};
pub use config::{Role, ServerConfig, Transport};
pub use request::{
    Answer, AuthAnswer, Delivery, DeliveryAnswer, DeliveryFailure, Output, RecipientAnswer,
    Request, ServerEvent, VerdictOutcome,
};
pub use session::ServerSession;
