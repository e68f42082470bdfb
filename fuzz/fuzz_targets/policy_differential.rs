//! Differential oracle: every message the policy accepts must be read the same way by
//! `mailparse`, the MIME parser of Delta Chat core, both as submitted and as delivered
//! (after the submission rewrite and the local-delivery clean-up).
//!
//! - Encrypted: `mailparse` sees `multipart/encrypted` with exactly two leaf parts,
//!   `application/pgp-encrypted` holding `Version: 1` and `application/octet-stream`
//!   holding an armored message that the policy's own armor check accepts; nothing else.
//! - Secure-Join: exactly one leaf part, `text/plain`, holding the handshake line.
//! - Outgoing: the first address of the first `From` is the envelope sender.
//!
//! The first input byte picks the direction and envelope (as in `policy_common.rs`).
#![no_main]

use chatmail_policy::{Direction, Envelope, MessageClass, Policy, PolicyConfig, Verdict};
use libfuzzer_sys::fuzz_target;
use mailparse::{MailHeaderMap, ParsedMail};
use std::sync::LazyLock;

static POLICY: LazyLock<Policy> = LazyLock::new(|| {
    Policy::new(PolicyConfig {
        mail_domain: "example.org".into(),
        max_message_size: 1 << 20,
        max_user_send_per_minute: 0,
        max_user_send_burst_size: 10,
    })
});

const SENDER: &str = "alice@example.org";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    let direction = if selector & 1 == 0 {
        Direction::Outgoing
    } else {
        Direction::Incoming
    };
    let recipients = vec!["bob@example.org".to_string()];
    let envelope = Envelope {
        auth_user: (direction == Direction::Outgoing).then_some(SENDER),
        mail_from: SENDER,
        recipients: &recipients,
    };
    let Verdict::Accept(accepted) = POLICY.check_message(direction, &envelope, message, &|_| false)
    else {
        return;
    };
    let mut rewritten = Vec::new();
    accepted.write_rewritten(message, &mut rewritten);
    let mut delivered = Vec::new();
    chatmail_policy::write_for_local_delivery(&rewritten, &mut delivered);
    for (stage, bytes) in [("submitted", message), ("delivered", &delivered[..])] {
        let parsed = match mailparse::parse_mail(bytes) {
            Ok(parsed) => parsed,
            Err(e) => panic!("{stage}: accepted, mailparse fails: {e}"),
        };
        match accepted.class() {
            MessageClass::Encrypted => check_encrypted(stage, &parsed, direction),
            MessageClass::SecureJoin => check_securejoin(stage, &parsed),
            _ => {}
        }
        if direction == Direction::Outgoing {
            check_from(stage, &parsed);
        }
    }
});

fn leaf(stage: &str, part: &ParsedMail<'_>, media: &str) -> Vec<u8> {
    assert_eq!(part.ctype.mimetype, media, "{stage}: part type");
    assert!(
        part.subparts.is_empty(),
        "{stage}: a {media} part with subparts"
    );
    match part.get_body_raw() {
        Ok(body) => body,
        Err(e) => panic!("{stage}: accepted, the {media} part does not decode: {e}"),
    }
}

fn check_encrypted(stage: &str, parsed: &ParsedMail<'_>, direction: Direction) {
    assert_eq!(parsed.ctype.mimetype, "multipart/encrypted", "{stage}");
    assert_eq!(parsed.subparts.len(), 2, "{stage}: parts mailparse sees");
    let version = leaf(stage, &parsed.subparts[0], "application/pgp-encrypted");
    assert_eq!(version.trim_ascii(), b"Version: 1", "{stage}: version part");
    let armor = leaf(stage, &parsed.subparts[1], "application/octet-stream");
    // mailparse leaves the part's last line ending to the delimiter; the armor check
    // wants the END line's own.
    let mut armor = armor.trim_ascii_end().to_vec();
    armor.extend_from_slice(b"\r\n");
    assert!(
        chatmail_policy::is_encrypted_armor(&armor, direction),
        "{stage}: mailparse's payload is not the armor the policy accepted: {:?}",
        String::from_utf8_lossy(&armor)
    );
}

fn check_securejoin(stage: &str, parsed: &ParsedMail<'_>) {
    assert!(parsed.ctype.mimetype.starts_with("multipart/"), "{stage}");
    assert_eq!(parsed.subparts.len(), 1, "{stage}: parts mailparse sees");
    let text = leaf(stage, &parsed.subparts[0], "text/plain");
    let text = text.trim_ascii().to_ascii_lowercase();
    assert!(
        text == b"secure-join: vc-request" || text == b"secure-join: vg-request",
        "{stage}: secure-join part reads {:?}",
        String::from_utf8_lossy(&text)
    );
}

fn check_from(stage: &str, parsed: &ParsedMail<'_>) {
    let from = parsed
        .headers
        .get_all_headers("From")
        .into_iter()
        .next()
        .map(mailparse::addrparse_header);
    let first = match from {
        Some(Ok(list)) => list.iter().find_map(|addr| match addr {
            mailparse::MailAddr::Single(info) => Some(info.addr.clone()),
            mailparse::MailAddr::Group(group) => group.addrs.first().map(|i| i.addr.clone()),
        }),
        _ => None,
    };
    if let Some(first) = first {
        assert!(
            first.eq_ignore_ascii_case(SENDER),
            "{stage}: mailparse reads From as {first:?}, the policy as {SENDER:?}"
        );
    }
}
