//! DKIM for the relay: [`DkimSigner`] signs what the relay sends to other relays (spec
//! 4.5), [`DkimVerifier`] decides the origin check of incoming mail (spec 3.3 step 6),
//! and [`published_records`] lists the DNS records an operator publishes (spec 4.7),
//! the DKIM key among them.
//!
//! The DKIM grammar, canonicalization and RSA come from `mail-auth`; DNS from the
//! relay's own [`chatmail_core::dns::Resolver`], so a static zone in tests and the system
//! resolver in production answer the same questions.
//!
//! Relays whose mail domain is an IPv4 address neither sign nor check: a DKIM key is
//! published under a domain name (spec 1.3, 4.5).

mod key;
mod records;
mod sign;
mod verify;

pub use records::published_records;
pub use sign::DkimSigner;
pub use verify::{DkimVerdict, DkimVerifier, MAX_KEY_RECORDS, MAX_SIGNATURES};

use std::path::PathBuf;

/// The relay's DKIM key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DkimError {
    /// The key file could not be read, written or its directory created.
    #[error("DKIM key {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The key file holds no RSA private key in PEM (PKCS#1 or PKCS#8).
    #[error("DKIM key {path}: not an RSA private key in PEM: {reason}")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// Generating the key failed (the system's random source).
    #[error("generating the DKIM key: {0}")]
    Generate(String),
    /// The selector or domain cannot name a DNS record.
    #[error("DKIM {what} {value:?} is not a DNS label sequence")]
    BadName {
        /// `selector` or `domain`.
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// Signing failed: the message has no header to sign, or the RSA operation failed.
    #[error("DKIM signing: {0}")]
    Sign(String),
}
