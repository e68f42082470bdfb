//! Every fixture verdict of spec 3.7, both directions.

use chatmail_policy::{Direction, Envelope, MessageClass, Policy, PolicyConfig, Verdict};
use std::time::Instant;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";

fn fixture(name: &str, from: &str, to: &str) -> Vec<u8> {
    let path = format!("{}/../testdata/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.replace("{from_addr}", from)
        .replace("{to_addr}", to)
        .replace("{subject}", "[...]")
        .into_bytes()
}

fn policy() -> Policy {
    Policy::new(PolicyConfig::from(
        &chatmail_core::config::Config::with_domain("example.org"),
    ))
}

fn outgoing(message: &[u8], mail_from: &str, rcpts: &[&str]) -> Verdict {
    let recipients: Vec<String> = rcpts.iter().map(|r| r.to_string()).collect();
    let env = Envelope {
        auth_user: Some(mail_from),
        mail_from,
        recipients: &recipients,
    };
    policy().check_message(Direction::Outgoing, &env, message, &|_| {
        panic!("not asked outgoing")
    })
}

fn incoming(message: &[u8], mail_from: &str, rcpts: &[&str], cleartext_ok: bool) -> Verdict {
    let recipients: Vec<String> = rcpts.iter().map(|r| r.to_string()).collect();
    let env = Envelope {
        auth_user: None,
        mail_from,
        recipients: &recipients,
    };
    policy().check_message(Direction::Incoming, &env, message, &|_| cleartext_ok)
}

fn accepted(v: Verdict) -> chatmail_policy::Accepted {
    match v {
        Verdict::Accept(a) => a,
        Verdict::Reject(r) => panic!("rejected: {r}"),
    }
}

fn rejected(v: Verdict) -> String {
    match v {
        Verdict::Accept(a) => panic!("accepted: {a:?}"),
        Verdict::Reject(r) => r.to_string(),
    }
}

const E2EE: &str = "523 Encryption Needed: Invalid Unencrypted Mail";

#[test]
fn encrypted_is_accepted_both_ways() {
    let m = fixture("encrypted.eml", ALICE, BOB);
    let a = accepted(outgoing(&m, ALICE, &[BOB]));
    assert_eq!(a.class(), MessageClass::Encrypted);
    let a = accepted(incoming(&m, ALICE, &[BOB], false));
    assert_eq!(a.class(), MessageClass::Encrypted);
    assert!(!a.reset_envelope_sender());
}

#[test]
fn encrypted_with_forged_from_is_500_outgoing_and_resets_sender_incoming() {
    let m = fixture("encrypted.eml", "someone@example.net", BOB);
    assert_eq!(
        rejected(outgoing(&m, ALICE, &[BOB])),
        "500 Invalid FROM someone@example.net for alice@example.org"
    );
    let a = accepted(incoming(&m, ALICE, &[BOB], false));
    assert!(a.reset_envelope_sender());
    // DKIM alignment is checked against the From header, not MAIL FROM.
    assert_eq!(a.from_domain(), "example.net");
    let m = fixture("encrypted.eml", "Someone@Example.NET", BOB);
    assert_eq!(
        accepted(incoming(&m, ALICE, &[BOB], false)).from_domain(),
        "example.net"
    );
}

#[test]
fn cleartext_fixtures_are_523_both_ways() {
    for name in [
        "fake-encrypted.eml",
        "literal.eml",
        "plain.eml",
        "mdn.eml",
        "securejoin-vc-fake.eml",
    ] {
        let m = fixture(name, ALICE, BOB);
        assert_eq!(
            rejected(outgoing(&m, ALICE, &[BOB])),
            E2EE,
            "{name} outgoing"
        );
        assert_eq!(
            rejected(incoming(&m, ALICE, &[BOB], false)),
            E2EE,
            "{name} incoming"
        );
    }
}

#[test]
fn plain_incoming_passes_only_when_every_recipient_accepts_cleartext() {
    let m = fixture("plain.eml", ALICE, BOB);
    assert_eq!(
        accepted(incoming(&m, ALICE, &[BOB], true)).class(),
        MessageClass::Cleartext
    );
    let recipients = vec![BOB.to_string(), "carol@example.org".to_string()];
    let env = Envelope {
        auth_user: None,
        mail_from: ALICE,
        recipients: &recipients,
    };
    let v = policy().check_message(Direction::Incoming, &env, &m, &|r| r == BOB);
    assert_eq!(rejected(v), E2EE);
    // Recipients that cannot be a mailbox never accept cleartext.
    for bad in ["", "no-at-sign", "a/b@example.org"] {
        assert_eq!(rejected(incoming(&m, ALICE, &[bad], true)), E2EE, "{bad:?}");
    }
}

#[test]
fn mailer_daemon_bounce_is_accepted_incoming_only_with_all_three_signs() {
    let m = fixture("mailer-daemon.eml", ALICE, BOB);
    let a = accepted(incoming(&m, "", &[BOB], false));
    assert_eq!(a.class(), MessageClass::Bounce);
    assert!(a.reset_envelope_sender());
    let daemon = "MAILER-DAEMON@example.org";
    assert_eq!(rejected(outgoing(&m, daemon, &[BOB])), E2EE);

    let text = String::from_utf8(m).unwrap();
    let no_auto = text.replace("Auto-Submitted: auto-replied \n", "");
    let empty_auto = text.replace("Auto-Submitted: auto-replied ", "Auto-Submitted: ");
    let not_daemon = text.replace("<MAILER-DAEMON@example.org>", "<postmaster@example.org>");
    let not_report = text.replace("multipart/report;", "multipart/mixed;");
    for (what, variant) in [
        ("no Auto-Submitted", no_auto),
        ("empty Auto-Submitted", empty_auto),
        ("From not mailer-daemon", not_daemon),
        ("not multipart/report", not_report),
    ] {
        assert_ne!(variant, text, "{what}: variant not applied");
        assert_eq!(
            rejected(incoming(variant.as_bytes(), daemon, &[BOB], false)),
            E2EE,
            "{what}"
        );
    }
}

#[test]
fn mdn_from_a_user_is_not_a_bounce() {
    let m = fixture("mdn.eml", ALICE, BOB);
    assert_eq!(rejected(incoming(&m, "", &[BOB], false)), E2EE);
}

#[test]
fn autocrypt_setup_message_only_to_oneself_outgoing() {
    let m = fixture("asm.eml", ALICE, ALICE);
    let a = accepted(outgoing(&m, ALICE, &[ALICE]));
    assert_eq!(a.class(), MessageClass::AutocryptSetupMessage);
    assert_eq!(rejected(outgoing(&m, ALICE, &[BOB])), E2EE);
    assert_eq!(rejected(outgoing(&m, ALICE, &[ALICE, ALICE])), E2EE);
    assert_eq!(rejected(incoming(&m, ALICE, &[ALICE], false)), E2EE);
    let other_subject = String::from_utf8(m)
        .unwrap()
        .replace("Subject: Autocrypt Setup Message", "Subject: x");
    assert_eq!(
        rejected(outgoing(other_subject.as_bytes(), ALICE, &[ALICE])),
        E2EE
    );
}

#[test]
fn securejoin_request_is_accepted_both_ways() {
    let m = fixture("securejoin-vc.eml", ALICE, BOB);
    assert_eq!(
        accepted(outgoing(&m, ALICE, &[BOB])).class(),
        MessageClass::SecureJoin
    );
    assert_eq!(
        accepted(incoming(&m, ALICE, &[BOB], false)).class(),
        MessageClass::SecureJoin
    );
    let vg = String::from_utf8(m)
        .unwrap()
        .replace("vc-request", "vg-request");
    assert_eq!(
        accepted(outgoing(vg.as_bytes(), ALICE, &[BOB])).class(),
        MessageClass::SecureJoin
    );
    let header_only = vg.replace("Secure-Join: vg-request\r\n\r\n", "Hello\r\n\r\n");
    assert_eq!(
        rejected(outgoing(header_only.as_bytes(), ALICE, &[BOB])),
        E2EE
    );
}

#[test]
fn submission_rewrite_of_the_encrypted_fixture() {
    let m = fixture("encrypted.eml", ALICE, BOB);
    let text = String::from_utf8(m.clone()).unwrap();
    let with_client_headers = text.replace(
        "Subject: [...]\r\n",
        "Subject: secret\r\nReceived: from [10.0.0.1]\r\n\tby relay\r\nX-Mailer: DC\r\nUser-Agent: DC\r\nX-Originating-IP: 10.0.0.1\r\n",
    );
    let a = accepted(outgoing(with_client_headers.as_bytes(), ALICE, &[BOB]));
    let mut out = Vec::new();
    a.write_rewritten(with_client_headers.as_bytes(), &mut out);
    assert_eq!(out, m);
}

#[test]
fn size_limit_and_identity() {
    let m = fixture("encrypted.eml", ALICE, BOB);
    let mut cfg = PolicyConfig::from(&chatmail_core::config::Config::with_domain("example.org"));
    cfg.max_message_size = m.len() as u64 - 1;
    let p = Policy::new(cfg);
    let rcpts = vec![BOB.to_string()];
    let env = Envelope {
        auth_user: Some(ALICE),
        mail_from: ALICE,
        recipients: &rcpts,
    };
    let v = p.check_message(Direction::Outgoing, &env, &m, &|_| true);
    assert_eq!(rejected(v), "552 Message exceeds maximum size");

    let p = policy();
    let now = Instant::now();
    let r = p.check_sender(ALICE, BOB, now).unwrap_err();
    assert_eq!(
        r.to_string(),
        "553 5.7.1 <bob@example.org>: Sender address rejected: not owned by user alice@example.org"
    );
    assert_eq!(r.enhanced_status(), Some((5, 7, 1)));
    assert_eq!(
        p.check_sender(ALICE, "a@b@c", now).unwrap_err().to_string(),
        "500 Invalid from address a@b@c"
    );
    assert_eq!(p.check_sender(ALICE, "", now).unwrap_err().code, 553);
    // The same check guards check_message for callers that skipped check_sender.
    let env = Envelope {
        auth_user: Some(ALICE),
        mail_from: BOB,
        recipients: &rcpts,
    };
    let forged = fixture("encrypted.eml", BOB, ALICE);
    assert_eq!(
        rejected(p.check_message(Direction::Outgoing, &env, &forged, &|_| true))
            .split(' ')
            .next(),
        Some("553")
    );
}

#[test]
fn rate_limit_reply() {
    let p = policy();
    let now = Instant::now();
    for _ in 0..10 {
        p.check_sender(ALICE, ALICE, now).unwrap();
    }
    let r = p.check_sender(ALICE, "Alice@Example.org", now).unwrap_err();
    assert_eq!(r.code, 450);
    assert!(
        r.text
            .starts_with("4.7.1: Too much mail from Alice@Example.org, rate limited until"),
        "{r}"
    );
    assert_eq!(r.enhanced_status(), Some((4, 7, 1)));
    p.check_sender(BOB, BOB, now).unwrap();
}

#[test]
fn from_header_problems() {
    let m = fixture("encrypted.eml", ALICE, BOB);
    let text = String::from_utf8(m).unwrap();
    let none = text.replace(&format!("From: {ALICE}\r\n"), "");
    assert_eq!(
        rejected(outgoing(none.as_bytes(), ALICE, &[BOB])),
        "500 Invalid FROM header: (missing)"
    );
    let empty = text.replace(&format!("From: {ALICE}\r\n"), "From: undisclosed:;\r\n");
    assert_eq!(
        rejected(outgoing(empty.as_bytes(), ALICE, &[BOB])),
        "500 Invalid FROM header: undisclosed:;"
    );
    let two = text.replace(
        &format!("From: {ALICE}\r\n"),
        &format!("From: {ALICE}\r\nFrom: {BOB}\r\n"),
    );
    assert!(
        rejected(outgoing(two.as_bytes(), ALICE, &[BOB])).starts_with("500 Invalid FROM header")
    );
    let named = text.replace(
        &format!("From: {ALICE}\r\n"),
        "From: \"Alice\" <ALICE@example.org>\r\n",
    );
    accepted(outgoing(named.as_bytes(), ALICE, &[BOB]));
}

#[test]
fn local_delivery_cleanup() {
    let m = b"Received: by x\r\nDKIM-Signature: v=1;\r\n\tb=abc\r\nFrom: a@b\r\nAuthentication-Results: x\r\n\r\nReceived: body\r\n";
    let mut out = Vec::new();
    chatmail_policy::write_for_local_delivery(m, &mut out);
    assert_eq!(out, b"From: a@b\r\n\r\nReceived: body\r\n".to_vec());
}
