//! `chatmail`: embed a chatmail relay in your own program.
//!
//! Re-exports the engine crates; the runtime-agnostic `Relay` and the tokio driver come
//! with a later issue.
#![forbid(unsafe_code)]

pub use chatmail_core as core;
pub use chatmail_imap as imap;
pub use chatmail_policy as policy;
pub use chatmail_smtp as smtp;

pub mod credentials;
pub mod web;
