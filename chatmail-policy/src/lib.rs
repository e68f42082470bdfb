//! Message acceptance for a chatmail relay: the encryption check, its exceptions, sender
//! identity, rate limit, size, and the header rewrites (spec sections 3, 4.3, 4.4).
//!
//! Sans-IO: no sockets, files or clock; the time is an argument. One [`Policy`] is shared
//! by every SMTP session.
//!
//! # Entry point
//!
//! [`Policy`], built from a [`PolicyConfig`] (`From<&chatmail_core::config::Config>`),
//! makes two decisions an SMTP server asks for: [`Policy::check_sender`] at MAIL FROM
//! (sender identity and rate limit), and [`Policy::check_message`] after DATA, whose
//! [`Verdict`] is either a [`Reply`] to refuse with or an [`Accepted`] message. An
//! accepted outgoing message is rewritten on its way out ([`Accepted::write_rewritten`],
//! or [`Accepted::header_edit`] to edit the header in place); a message delivered to a
//! local mailbox gets [`local_delivery_edit`] first.
//!
//! There are no traits to implement: the one fact the policy cannot know, whether a
//! recipient accepts cleartext mail from outside, is a closure passed to
//! [`Policy::check_message`] (the relay answers it from the account store).
//!
//! The encryption check is one forward pass over the raw message: it finds the MIME
//! boundaries and part headers without building a tree, validates the armored payload's
//! base64 in 64-byte blocks whatever its line length, and decodes only the OpenPGP
//! packet headers it walks
//! (`(PKESK | SKESK)* SEIPD`). Nothing proportional to the message is allocated unless a
//! part uses a base64 or quoted-printable transfer encoding (which clients do not do for
//! the armored payload).
//!
//! # Example: a submission, as an SMTP engine drives it
//!
//! ```
//! use chatmail_policy::{Direction, Envelope, Policy, PolicyConfig, Verdict};
//! use std::time::Instant;
//!
//! let policy = Policy::new(PolicyConfig {
//!     mail_domain: "example.org".into(),
//!     max_message_size: 31_457_280,
//!     max_user_send_per_minute: 60,
//!     max_user_send_burst_size: 10,
//! });
//! // At MAIL FROM (reported to the client at RCPT):
//! policy.check_sender("alice@example.org", "alice@example.org", Instant::now())?;
//! // After DATA:
//! let recipients = vec!["bob@example.net".to_string()];
//! let envelope = Envelope {
//!     auth_user: Some("alice@example.org"),
//!     mail_from: "alice@example.org",
//!     recipients: &recipients,
//! };
//! let message = b"From: alice@example.org\r\nSubject: hi\r\n\r\nHello in cleartext\r\n";
//! match policy.check_message(Direction::Outgoing, &envelope, message, &|_| false) {
//!     Verdict::Accept(accepted) => {
//!         let mut out = Vec::new();
//!         accepted.write_rewritten(message, &mut out); // then queue `out`
//!     }
//!     Verdict::Reject(reply) => {
//!         assert_eq!(reply.to_string(), "523 Encryption Needed: Invalid Unencrypted Mail");
//!     }
//! }
//! # Ok::<(), chatmail_policy::Reply>(())
//! ```
//!
//! Comments cite the reference relay's behaviour as "spec N.N": the section of that name
//! in the repository's `docs/reference-relay.md`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod address;
mod armor;
mod direction;
mod headers;
mod message_id;
mod mime;
mod policy;
mod rate_limit;
mod reply;
mod rewrite;

pub use direction::Direction;
pub use message_id::message_id;
pub use policy::{Accepted, Envelope, MessageClass, Policy, PolicyConfig, Verdict};
pub use reply::Reply;
pub use rewrite::{local_delivery_edit, write_for_local_delivery, HeaderEdit};

/// Whether `armor` (a decoded `application/octet-stream` part body, starting at its
/// `-----BEGIN PGP MESSAGE-----` line) passes the armor check and packet walk of spec 3.1
/// for `direction`; only empty lines may follow the END line.
pub fn is_encrypted_armor(armor: &[u8], direction: Direction) -> bool {
    match armor::check_armor(armor, direction) {
        Ok(end) => armor[end..].iter().all(|&b| b == b'\r' || b == b'\n'),
        Err(_) => false,
    }
}
