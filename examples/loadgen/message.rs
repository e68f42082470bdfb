//! The messages loadgen sends: PGP/MIME-shaped (RFC 3156), the shape of
//! `testdata/fixtures/encrypted.eml`, so that the relay's policy (only end-to-end
//! encrypted mail passes) accepts every one of them.
//!
//! The armored payload is not a real encryption: it is a PKESK v3 packet and a SEIPD v1
//! packet of random bytes, which is all the policy's packet walk reads (tags, lengths,
//! version octets). Its length is chosen so that the whole message is about `--size`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore as _;

/// The MIME boundary of every message (any token that is not in base64 data works).
const BOUNDARY: &str = "LoadgenBoundary-7fQ2vX9kWm";

/// Armor line length, as OpenPGP implementations write it.
const ARMOR_LINE: usize = 64;

/// The smallest SEIPD body: a version octet and a few bytes.
const MIN_SEIPD: usize = 32;

/// The smallest binary: the PKESK and the smallest SEIPD.
const MIN_PACKETS: usize = 96 + 6 + MIN_SEIPD;

/// The part of every message that does not depend on its envelope: the MIME body with
/// the armored payload, built once.
pub struct MessageTemplate {
    /// From the blank line that ends the top header section to the close delimiter.
    body: Vec<u8>,
    /// The size the caller asked for, to size each message's padding.
    target: usize,
}

impl MessageTemplate {
    /// A template whose messages are about `target` bytes long (never smaller than the
    /// skeleton of about 1 KB).
    pub fn new(target: usize) -> MessageTemplate {
        // Measure the skeleton with the smallest payload and typical addresses, then
        // fill the rest: 48 binary bytes per 66-byte armor line (64 characters, CRLF).
        let mut template = MessageTemplate {
            body: pgp_mime_body(0),
            target,
        };
        let address = "abcdefghi@_chat.localhost";
        let skeleton = template.message(address, address, "lg.0000000.0.0@loadgen.localhost");
        let more = target.saturating_sub(skeleton.len());
        template.body = pgp_mime_body(MIN_PACKETS + more / (ARMOR_LINE + 2) * 48);
        template
    }

    /// One message from `from` to `to`; `id` makes its Message-ID unique.
    pub fn message(&self, from: &str, to: &str, id: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.target.max(self.body.len() + 512));
        out.extend_from_slice(
            format!(
                "From: {from}\r\n\
                 To: {to}\r\n\
                 Subject: [...]\r\n\
                 Date: Mon, 07 Dec 2026 16:00:00 +0000\r\n\
                 Message-ID: <{id}>\r\n\
                 Chat-Version: 1.0\r\n\
                 MIME-Version: 1.0\r\n\
                 Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n\
                 \tboundary=\"{BOUNDARY}\"\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(&self.body);
        out
    }
}

/// The body after the top headers: the version part and the armored payload part.
fn pgp_mime_body(binary_len: usize) -> Vec<u8> {
    let binary = packets(binary_len);
    let encoded = STANDARD.encode(&binary);
    let mut body = format!(
        "\r\n\
         \r\n\
         --{BOUNDARY}\r\n\
         Content-Description: PGP/MIME version identification\r\n\
         Content-Type: application/pgp-encrypted\r\n\
         \r\n\
         Version: 1\r\n\
         \r\n\
         \r\n\
         --{BOUNDARY}\r\n\
         Content-Description: OpenPGP encrypted message\r\n\
         Content-Disposition: inline; filename=\"encrypted.asc\";\r\n\
         Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
         \r\n\
         -----BEGIN PGP MESSAGE-----\r\n\
         \r\n"
    )
    .into_bytes();
    for line in encoded.as_bytes().chunks(ARMOR_LINE) {
        body.extend_from_slice(line);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(
        format!(
            "-----END PGP MESSAGE-----\r\n\
             \r\n\
             \r\n\
             --{BOUNDARY}--\r\n"
        )
        .as_bytes(),
    );
    body
}

/// `PKESK v3 | SEIPD v1` of about `len` bytes, new-format packet headers, random bodies.
fn packets(len: usize) -> Vec<u8> {
    let mut rng = rand::rng();
    // PKESK v3 (tag 1): version, 8-byte key ID, algorithm 18 (ECDH), then what would be
    // the ephemeral key and the wrapped session key.
    let pkesk_len = 94usize;
    let len = len.max(MIN_PACKETS);
    let mut out = Vec::with_capacity(len + 16);
    out.push(0xC0 | 1);
    out.push(pkesk_len as u8);
    let mut pkesk = vec![0u8; pkesk_len];
    rng.fill_bytes(&mut pkesk);
    pkesk[0] = 3;
    pkesk[9] = 18;
    out.extend_from_slice(&pkesk);
    // SEIPD v1 (tag 18), five-octet length: version 1 then the "ciphertext".
    let seipd_len = len.saturating_sub(out.len() + 6).max(MIN_SEIPD);
    out.push(0xC0 | 18);
    out.push(0xFF);
    out.extend_from_slice(&(seipd_len as u32).to_be_bytes());
    let mut seipd = vec![0u8; seipd_len];
    rng.fill_bytes(&mut seipd);
    seipd[0] = 1;
    out.extend_from_slice(&seipd);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatmail_core::config::Config;
    use chatmail_policy::{Direction, Envelope, Policy, PolicyConfig, Verdict};

    /// The relay's own policy accepts what loadgen sends, at every size it is asked for,
    /// and the size is close to the one asked for.
    #[test]
    fn policy_accepts_every_size() {
        let policy = Policy::new(PolicyConfig::from(&Config::with_domain("_chat.localhost")));
        let from = "abcdefghi@_chat.localhost";
        let to = vec!["jklmnopqr@_chat.localhost".to_string()];
        for size in [0, 1000, 4096, 10_000, 100_000, 1_000_000] {
            let template = MessageTemplate::new(size);
            let message = template.message(from, &to[0], "lg.1.1@_chat.localhost");
            let envelope = Envelope {
                auth_user: Some(from),
                mail_from: from,
                recipients: &to,
            };
            let verdict =
                policy.check_message(Direction::Outgoing, &envelope, &message, &|_| false);
            assert!(
                matches!(verdict, Verdict::Accept(_)),
                "size {size}: {verdict:?}"
            );
            if size >= 4096 {
                let off = message.len().abs_diff(size);
                assert!(off < 100, "asked {size}, got {}", message.len());
            }
        }
    }
}
