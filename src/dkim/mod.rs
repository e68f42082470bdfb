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

mod error;
mod key;
mod records;
mod sign;
mod verify;

pub use error::DkimError;
pub use records::published_records;
pub use sign::DkimSigner;
pub use verify::{DkimVerdict, DkimVerifier, MAX_KEY_RECORDS, MAX_SIGNATURES};
