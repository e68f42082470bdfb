//! [`DkimError`]: why the relay's DKIM key could not be made, read or used.

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
