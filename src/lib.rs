//! `chatmail`: embed a chatmail relay in your own program.
//!
//! [`Relay`] assembles the engine crates into one relay and answers their requests; it
//! is runtime-agnostic. The `tokio` feature (on by default) adds [`tokio_driver`], which
//! puts the engines on the network with rustls.
#![forbid(unsafe_code)]

pub use chatmail_core as core;
pub use chatmail_imap as imap;
pub use chatmail_policy as policy;
pub use chatmail_smtp as smtp;

pub mod credentials;
pub mod relay;
pub mod web;

pub use relay::{LoginVerdict, Relay, RelayBuilder, RequestHandler};

#[cfg(feature = "tokio")]
pub mod tokio_driver;
