//! The foundation of a chatmail relay: domain types, configuration, accounts, storage
//! traits with two backends (`memory` and `maildir`), and expiry planning.
//!
//! Nothing in the protocol engines (`chatmail-smtp`, `chatmail-imap`) touches a file or
//! a clock; everything here that does is behind a trait the embedder can replace.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod account;
pub mod budget;
pub mod config;
pub mod engine;
pub mod executor;
pub mod expiry;
pub mod store;
pub mod types;

pub use executor::{run_blocking, BlockingExecutor, ExecutorGone, InlineExecutor, ThreadExecutor};
pub use types::*;

/// Internals the fuzz targets reach (`fuzz/`; cargo-fuzz builds with `--cfg fuzzing`):
/// parsers of untrusted input that are not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::store::maildir::expiry::parse_dovecot_name;
}

#[cfg(test)]
mod tests;
