//! The decision: [`Policy`] and the values it takes and gives.

use crate::address::first_address;
use crate::direction::Direction;
use crate::headers::{trim, ContentType, Fields};
use crate::mime::{is_pgp_mime, is_securejoin_body, Encoding};
use crate::rate_limit::RateLimiter;
use crate::reply::{quote, Reply};
use std::borrow::Cow;
use std::time::Instant;

/// The part of the relay configuration the policy uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// The domain of this relay's addresses: `mail_domain`, or `[a.b.c.d]` for an IPv4
    /// relay (spec 1.3).
    pub mail_domain: String,
    /// Largest accepted message in bytes (`max_message_size`).
    pub max_message_size: u64,
    /// Sustained messages per minute per sender (`max_user_send_per_minute`); 0 turns
    /// the rate limit off.
    pub max_user_send_per_minute: u32,
    /// Messages a sender may send at once (`max_user_send_burst_size`).
    pub max_user_send_burst_size: u32,
}

impl From<&chatmail_core::config::Config> for PolicyConfig {
    /// The policy of one node: with `nodes = N` sharing one storage, each node allows a
    /// sender 1/N of the rate and of the burst (rounded up), so that a sender whose
    /// connections go to every node still gets no more than the configured limits.
    /// A shared counter would cost every submission a database round trip; the shares
    /// cost nothing, at the price that a sender always on one node gets its share only.
    fn from(config: &chatmail_core::config::Config) -> Self {
        let nodes = config.nodes.max(1);
        PolicyConfig {
            mail_domain: config.address_domain(),
            max_message_size: config.max_message_size,
            max_user_send_per_minute: config.max_user_send_per_minute.div_ceil(nodes),
            max_user_send_burst_size: config.max_user_send_burst_size.div_ceil(nodes),
        }
    }
}

/// The SMTP envelope of a message.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The SASL login of the submitting client (outgoing), `None` for incoming mail.
    pub auth_user: Option<&'a str>,
    /// The `MAIL FROM` address without angle brackets; `""` for `MAIL FROM:<>`.
    pub mail_from: &'a str,
    /// The `RCPT TO` addresses, in order.
    pub recipients: &'a [String],
}

/// The outcome of [`Policy::check_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The message may pass; deliver what [`Accepted::write_rewritten`] writes.
    Accept(Accepted),
    /// The message is refused with this SMTP reply.
    Reject(Reply),
}

/// What kind of message was accepted (for logs and metrics; spec 3.3 counts bounces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageClass {
    /// A strict PGP/MIME encrypted message.
    Encrypted,
    /// A Secure-Join `vc-request`/`vg-request` handshake message.
    SecureJoin,
    /// An Autocrypt Setup Message sent to oneself.
    AutocryptSetupMessage,
    /// A delivery status notification from a mailer daemon (incoming).
    Bounce,
    /// Cleartext to recipients who accept it (incoming).
    Cleartext,
}

/// An accepted message: how it must be passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    direction: Direction,
    class: MessageClass,
    reset_envelope_sender: bool,
    from_domain: String,
}

impl Accepted {
    /// Incoming only: the From header differs from MAIL FROM, so the message must be
    /// delivered with an empty envelope sender (`<>`) and no bounce can reach a possibly
    /// forged sender (spec 3.3 step 4).
    pub fn reset_envelope_sender(&self) -> bool {
        self.reset_envelope_sender
    }

    /// The domain of the From header's address, lower-cased, as this policy read it:
    /// what a DKIM signature must be aligned with (spec 3.3 step 6). An address literal
    /// keeps its brackets (`[192.0.2.1]`).
    pub fn from_domain(&self) -> &str {
        &self.from_domain
    }

    /// Which exception or rule let the message through.
    pub fn class(&self) -> MessageClass {
        self.class
    }

    /// Appends the message as it must be delivered or relayed after the submission
    /// rewrite (spec 4.4: every `Subject` becomes `Subject: [...]`; `Received`,
    /// `X-Originating-IP`, `X-Mailer` and `User-Agent` are removed). Incoming messages
    /// are copied unchanged. Body bytes are never touched.
    pub fn write_rewritten(&self, message: &[u8], out: &mut Vec<u8>) {
        match self.header_edit(message) {
            Some(edit) => edit.write(message, out),
            None => out.extend_from_slice(message),
        }
    }

    /// The same rewrite as [`Accepted::write_rewritten`] as a [`HeaderEdit`](crate::HeaderEdit) of the
    /// header fields, `None` when the message passes unchanged (always for incoming
    /// mail): the caller applies it without copying the body.
    pub fn header_edit(&self, message: &[u8]) -> Option<crate::rewrite::HeaderEdit> {
        match self.direction {
            Direction::Outgoing => crate::rewrite::submission_edit(message),
            Direction::Incoming => None,
        }
    }
}

/// The message-acceptance engine, shared by all SMTP sessions (it is `Send + Sync`; put
/// it behind an `Arc`). It holds the configuration and the rate-limit state; it does no
/// I/O and reads no clock: the time is an argument.
pub struct Policy {
    config: PolicyConfig,
    rate_limit: RateLimiter,
}

/// The top-level header fields the decision looks at.
#[derive(Default)]
struct TopHeaders<'a> {
    fields: usize,
    from: Option<&'a [u8]>,
    from_count: usize,
    subject: Option<&'a [u8]>,
    content_type: Option<ContentType<'a>>,
    secure_join: Option<&'a [u8]>,
    secure_join_count: usize,
    auto_submitted: Option<&'a [u8]>,
    body_start: usize,
}

/// `500 Failed to parse message: <why>` (spec 3.2 step 4, 3.3 step 3).
fn parse_failure(why: &str) -> Reply {
    Reply::new(500, format!("Failed to parse message: {why}"))
}

/// Refuses bytes that readers see differently or not at all: NUL (C strings end there,
/// mail readers drop it) and a CR not followed by LF (a line break for some parsers,
/// none for others). One pass, in blocks without an early exit inside so that the
/// compiler vectorises it.
fn check_bytes(message: &[u8]) -> Result<(), Reply> {
    /// Bytes per step: a fixed-size inner loop that the compiler vectorises.
    const LANES: usize = 64;
    let flags =
        |b: u8, next: u8| u8::from(b == 0) | (u8::from(b == b'\r') & u8::from(next != b'\n')) << 1;
    let mut found = 0u8;
    let mut i = 0;
    while i + LANES < message.len() && found == 0 {
        let (Some(block), Some(next)) = (
            message
                .get(i..i + LANES)
                .and_then(|s| <&[u8; LANES]>::try_from(s).ok()),
            message
                .get(i + 1..i + 1 + LANES)
                .and_then(|s| <&[u8; LANES]>::try_from(s).ok()),
        ) else {
            break;
        };
        for k in 0..LANES {
            found |= flags(block[k], next[k]);
        }
        i += LANES;
    }
    if found == 0 {
        for (k, &b) in message.iter().enumerate().skip(i) {
            // A CR at the very end has no LF after it: `next` is then not `\n`.
            found |= flags(b, message.get(k + 1).copied().unwrap_or(0));
        }
    }
    if found & 1 != 0 {
        return Err(parse_failure("a NUL byte"));
    }
    if found != 0 {
        return Err(parse_failure("a CR not followed by LF"));
    }
    Ok(())
}

impl<'a> TopHeaders<'a> {
    /// Reads the header section; refuses one that another reader could take
    /// differently (a line that is not a field — such as a binary first line —, a
    /// control character, a `Content-Type` or `Content-Transfer-Encoding` given twice
    /// or not in the form every reader parses alike, a transfer encoding on a multipart).
    fn scan(message: &'a [u8]) -> Result<Self, Reply> {
        let mut h = TopHeaders::default();
        let mut fields = Fields::new(message);
        let mut encoding = None;
        for f in fields.by_ref() {
            if let Some(why) = f.ambiguity() {
                return Err(parse_failure(why));
            }
            h.fields += 1;
            let first = |slot: &mut Option<&'a [u8]>| {
                if slot.is_none() {
                    *slot = Some(f.value);
                }
            };
            match f.name.first().map(u8::to_ascii_lowercase) {
                Some(b'f') if f.is("From") => {
                    h.from_count += 1;
                    first(&mut h.from);
                }
                Some(b's') if f.is("Subject") => first(&mut h.subject),
                Some(b's') if f.is("Secure-Join") => {
                    h.secure_join_count += 1;
                    first(&mut h.secure_join);
                }
                Some(b'a') if f.is("Auto-Submitted") => first(&mut h.auto_submitted),
                Some(b'c') if f.is("Content-Type") => {
                    if h.content_type.is_some() {
                        return Err(parse_failure("Content-Type given twice"));
                    }
                    h.content_type = Some(ContentType::parse(f.value).map_err(parse_failure)?);
                }
                Some(b'c') if f.is("Content-Transfer-Encoding") => {
                    if encoding.is_some() {
                        return Err(parse_failure("Content-Transfer-Encoding given twice"));
                    }
                    encoding =
                        Some(Encoding::parse(f.value).ok_or_else(|| {
                            parse_failure("a malformed Content-Transfer-Encoding")
                        })?);
                }
                _ => {}
            }
        }
        h.body_start = fields.body_start();
        // RFC 2045 6.4: a multipart is never transfer-encoded; a reader that decodes it
        // anyway would find other parts than one that does not.
        if h.content_type().is_multipart() && !matches!(encoding, None | Some(Encoding::Identity)) {
            return Err(parse_failure("a transfer encoding on a multipart"));
        }
        Ok(h)
    }

    fn content_type(&self) -> ContentType<'a> {
        self.content_type
            .unwrap_or_else(ContentType::default_text_plain)
    }
}

/// `523 Encryption Needed: Invalid Unencrypted Mail`.
fn encryption_needed() -> Reply {
    Reply::new(523, "Encryption Needed: Invalid Unencrypted Mail")
}

impl Policy {
    /// A policy with fresh (empty) rate-limit state.
    pub fn new(config: PolicyConfig) -> Policy {
        let rate_limit = RateLimiter::new(
            config.max_user_send_per_minute,
            config.max_user_send_burst_size,
        );
        Policy { config, rate_limit }
    }

    /// The configuration this policy applies.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Submission checks at MAIL FROM (the SMTP engine reports a failure at RCPT, as the
    /// reference does): the MAIL FROM shape (`500 Invalid from address <addr>`), the
    /// identity against the login
    /// (`553 5.7.1 <addr>: Sender address rejected: not owned by user <login>`), then the
    /// GCRA rate limit (`450 4.7.1: Too much mail from <addr>, ...`), which consumes one
    /// message of the sender's allowance when everything passes.
    pub fn check_sender(
        &self,
        auth_user: &str,
        mail_from: &str,
        now: Instant,
    ) -> Result<(), Reply> {
        check_identity(auth_user, mail_from)?;
        self.rate_limit.check(mail_from, now).map_err(|wait| {
            Reply::new(
                450,
                format!(
                    "4.7.1: Too much mail from {}, rate limited until {:.3} s from now",
                    quote(mail_from.as_bytes()),
                    wait.as_secs_f64()
                ),
            )
        })
    }

    /// The decision after DATA, for either direction (spec 3.2 steps 3–9, spec 3.3 steps
    /// 2–5; the DKIM origin check of incoming mail is not part of it).
    ///
    /// `recipient_accepts_cleartext(rcpt)` answers, for incoming mail, whether that
    /// recipient lacks `enforceE2EEincoming` (spec 3.3 step 5); it is not called for
    /// outgoing mail.
    pub fn check_message(
        &self,
        direction: Direction,
        envelope: &Envelope<'_>,
        message: &[u8],
        recipient_accepts_cleartext: &dyn Fn(&str) -> bool,
    ) -> Verdict {
        match self.decide(direction, envelope, message, recipient_accepts_cleartext) {
            Ok(accepted) => Verdict::Accept(accepted),
            Err(reply) => Verdict::Reject(reply),
        }
    }

    /// How many senders the rate limiter currently tracks (a metric; it stays near the
    /// number of senders active within the last burst window).
    pub fn tracked_senders(&self) -> usize {
        self.rate_limit.tracked_senders()
    }

    /// `552 Message exceeds maximum size`, for the SMTP engine to give when the size
    /// bound is hit while the message is still being read.
    pub fn size_exceeded_reply(&self) -> Reply {
        Reply::new(552, "Message exceeds maximum size")
    }

    fn decide(
        &self,
        direction: Direction,
        envelope: &Envelope<'_>,
        message: &[u8],
        recipient_accepts_cleartext: &dyn Fn(&str) -> bool,
    ) -> Result<Accepted, Reply> {
        if message.len() as u64 > self.config.max_message_size {
            return Err(self.size_exceeded_reply());
        }
        if direction == Direction::Outgoing {
            if let Some(login) = envelope.auth_user {
                // Repeated here so that a caller that skipped check_sender cannot bypass it.
                check_identity(login, envelope.mail_from)?;
            }
        }
        check_bytes(message)?;
        let headers = TopHeaders::scan(message)?;
        if headers.fields == 0 {
            return Err(Reply::new(500, "Failed to parse message: no header fields"));
        }
        let from = from_address(&headers)?;
        let mail_from = envelope.mail_from;
        let from_matches = from.eq_ignore_ascii_case(mail_from.as_bytes());
        let from_domain = from
            .iter()
            .rposition(|&b| b == b'@')
            .map(|at| String::from_utf8_lossy(&from[at + 1..]).to_ascii_lowercase())
            .unwrap_or_default();
        let accepted = |class, reset_envelope_sender| Accepted {
            direction,
            class,
            reset_envelope_sender,
            from_domain: from_domain.clone(),
        };
        match direction {
            Direction::Outgoing => {
                if !from_matches {
                    return Err(Reply::new(
                        500,
                        format!(
                            "Invalid FROM {} for {}",
                            quote(&from),
                            quote(mail_from.as_bytes())
                        ),
                    ));
                }
                if let Some(class) = encrypted_or_securejoin(&headers, message, direction) {
                    return Ok(accepted(class, false));
                }
                if is_self_sent_setup_message(&headers, &from, envelope.recipients) {
                    return Ok(accepted(MessageClass::AutocryptSetupMessage, false));
                }
                Err(encryption_needed())
            }
            Direction::Incoming => {
                let reset = !from_matches;
                if let Some(class) = encrypted_or_securejoin(&headers, message, direction) {
                    return Ok(accepted(class, reset));
                }
                if is_bounce(&headers, &from) {
                    return Ok(accepted(MessageClass::Bounce, reset));
                }
                let all_accept = !envelope.recipients.is_empty()
                    && envelope.recipients.iter().all(|rcpt| {
                        !rcpt.is_empty()
                            && rcpt.contains('@')
                            && !rcpt.contains('/')
                            && recipient_accepts_cleartext(rcpt)
                    });
                if all_accept {
                    Ok(accepted(MessageClass::Cleartext, reset))
                } else {
                    Err(encryption_needed())
                }
            }
        }
    }
}

/// MAIL FROM shape and ownership (spec 3.2 step 1, spec 2.3).
fn check_identity(login: &str, mail_from: &str) -> Result<(), Reply> {
    if !mail_from.is_empty() {
        let mut parts = mail_from.split('@');
        let shape_ok = matches!(
            (parts.next(), parts.next(), parts.next()),
            (Some(l), Some(d), None) if !l.is_empty() && !d.is_empty()
        );
        if !shape_ok {
            return Err(Reply::new(
                500,
                format!("Invalid from address {}", quote(mail_from.as_bytes())),
            ));
        }
    }
    // `MAIL FROM:<>` is never owned by a login: an authenticated client cannot send
    // bounces (they would escape the From check and the rate limit).
    if mail_from.is_empty() || !mail_from.eq_ignore_ascii_case(login) {
        return Err(Reply::new(
            553,
            format!(
                "5.7.1 <{}>: Sender address rejected: not owned by user {}",
                quote(mail_from.as_bytes()),
                quote(login.as_bytes())
            ),
        ));
    }
    Ok(())
}

/// The first address of the one From header (spec 3.2 step 5). A second From field is
/// refused: recipients' programs may show the other one.
fn from_address<'a>(headers: &TopHeaders<'a>) -> Result<Cow<'a, [u8]>, Reply> {
    let invalid =
        |raw: &[u8]| Reply::new(500, format!("Invalid FROM header: {}", quote(trim(raw))));
    let Some(raw) = headers.from else {
        return Err(Reply::new(500, "Invalid FROM header: (missing)"));
    };
    if headers.from_count > 1 {
        return Err(Reply::new(
            500,
            "Invalid FROM header: (more than one From field)",
        ));
    }
    first_address(raw).ok_or_else(|| invalid(raw))
}

/// Spec 3.1: the encryption check, then the Secure-Join exception.
fn encrypted_or_securejoin(
    headers: &TopHeaders<'_>,
    message: &[u8],
    direction: Direction,
) -> Option<MessageClass> {
    let ct = headers.content_type();
    if !ct.is_multipart() {
        return None;
    }
    let boundary = ct.boundary()?;
    let body = &message[headers.body_start..];
    if ct.is("multipart/encrypted") && is_pgp_mime(body, boundary, direction) {
        return Some(MessageClass::Encrypted);
    }
    let secure_join = trim(headers.secure_join?);
    if headers.secure_join_count == 1
        && (secure_join == b"vc-request" || secure_join == b"vg-request")
        && is_securejoin_body(body, boundary)
    {
        return Some(MessageClass::SecureJoin);
    }
    None
}

/// Spec 3.2 step 8: an Autocrypt Setup Message to exactly oneself.
fn is_self_sent_setup_message(
    headers: &TopHeaders<'_>,
    from: &[u8],
    recipients: &[String],
) -> bool {
    matches!(recipients, [only] if only.as_bytes() == from)
        && headers.subject.map(trim) == Some(&b"Autocrypt Setup Message"[..])
        && headers.content_type().is("multipart/mixed")
}

/// Spec 3.3 step 5: a delivery report from a mailer daemon. All three conditions are
/// required; an envelope sender alone proves nothing.
fn is_bounce(headers: &TopHeaders<'_>, from: &[u8]) -> bool {
    const DAEMON: &[u8] = b"mailer-daemon@";
    headers.auto_submitted.is_some_and(|v| !trim(v).is_empty())
        && from.len() > DAEMON.len()
        && from[..DAEMON.len()].eq_ignore_ascii_case(DAEMON)
        && headers.content_type().is("multipart/report")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_enforces_its_share_of_the_sender_limits() {
        let mut config = chatmail_core::config::Config::with_domain("example.org");
        assert_eq!(PolicyConfig::from(&config).max_user_send_per_minute, 60);
        config.nodes = 2;
        let two = PolicyConfig::from(&config);
        assert_eq!(
            (two.max_user_send_per_minute, two.max_user_send_burst_size),
            (30, 5)
        );
        config.nodes = 3;
        let three = PolicyConfig::from(&config);
        assert_eq!(
            (
                three.max_user_send_per_minute,
                three.max_user_send_burst_size
            ),
            (20, 4)
        );
        // Burst 4 on each of three nodes: a sender at every node gets 12, not 30.
        let policy = Policy::new(three);
        let now = Instant::now();
        let passed = (0..10)
            .filter(|_| {
                policy
                    .check_sender("a@example.org", "a@example.org", now)
                    .is_ok()
            })
            .count();
        assert_eq!(passed, 4);
    }
}
