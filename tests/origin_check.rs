//! The origin check of mail from other servers (spec 3.3 step 6) through the relay, on
//! port 25 and on `/mxdeliv`: a signature of the From domain that verifies against the
//! key in DNS lets mail in; no signature, a broken one, one of another domain, or a
//! relay without a resolver does not. What the relay sends away carries its signature.

use chatmail::core::account::FixedSystemLimits;
use chatmail::core::config::Config;
use chatmail::core::dns::StaticZone;
use chatmail::core::{Address, InlineExecutor, INBOX};
use chatmail::dkim::DkimSigner;
use chatmail::smtp::server::{Engine as _, Output, Role, ServerConfig, ServerSession, Transport};
use chatmail::Relay;
use futures::executor::block_on;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const DOMAIN: &str = "_beta.localhost";
const PEER: &str = "_alpha.localhost";
const PASSWORD: &str = "password123";

/// The zone line publishing `signer`'s key, its TXT cut into quoted strings.
fn key_record(signer: &DkimSigner) -> String {
    let value = signer.dns_txt_value();
    let strings: Vec<String> = value
        .as_bytes()
        .chunks(200)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!("{} 3600 IN TXT {}\n", signer.dns_name(), strings.join(" "))
}

/// A relay for [`DOMAIN`] with the account `bob000001`, resolving through `zone`
/// (`None`: no resolver at all).
fn relay(dir: &Path, zone: Option<&str>) -> Relay {
    let mut config = Config::with_domain(DOMAIN);
    config.mailboxes_dir = dir.join("mail");
    let mut builder = Relay::builder(config)
        .maildir(Arc::new(InlineExecutor))
        .system_limits(Arc::new(FixedSystemLimits::plenty()))
        .nocreate_path("/nonexistent/chatmail-nocreate");
    if let Some(zone) = zone {
        builder = builder.resolver(Arc::new(StaticZone::parse(zone).unwrap()));
    }
    let relay = builder.build().unwrap();
    block_on(relay.login(&format!("bob000001@{DOMAIN}"), PASSWORD, true))
        .unwrap()
        .unwrap();
    relay
}

/// The encrypted fixture from `from` to bob, CRLF, with a `Message-ID` of its own.
fn message(from: &str) -> Vec<u8> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The fixture's one Message-ID, made this message's own (the tests' support module
    // does the same, but needs the tokio driver, which these tests run without).
    include_str!("../testdata/fixtures/encrypted.eml")
        .replace("UVyJWZmkCKM.hGzNc6glBE_", &format!("origin{n}"))
        .replace("{from_addr}", from)
        .replace("{to_addr}", &format!("bob000001@{DOMAIN}"))
        .replace("{subject}", "[...]")
        .replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

fn signed(signer: &DkimSigner, message: &[u8]) -> Vec<u8> {
    let mut out = signer.sign(message).unwrap();
    out.extend_from_slice(message);
    out
}

/// One port-25 session handing `message` from `from` to bob; the reply to DATA.
fn mx(relay: &Relay, from: &str, message: &[u8]) -> String {
    let now = Instant::now();
    let mut session = ServerSession::new(
        Arc::new(ServerConfig::new(Role::Mx, DOMAIN)),
        relay.policy().clone(),
        Transport::Tls,
        now,
    );
    let mut input =
        format!("EHLO peer\r\nMAIL FROM:<{from}>\r\nRCPT TO:<bob000001@{DOMAIN}>\r\nDATA\r\n")
            .into_bytes();
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            input.push(b'.');
        }
        input.extend_from_slice(line);
    }
    input.extend_from_slice(b".\r\n");
    session.feed(&input, now);
    let mut replies = String::new();
    while let Some(out) = session.poll() {
        match out {
            Output::Send(bytes) => replies.push_str(&String::from_utf8_lossy(&bytes)),
            Output::Request(id, request) => {
                let answer = block_on(relay.answer_smtp(request, None));
                session.answer(id, answer, Instant::now()).unwrap();
            }
            _ => {}
        }
    }
    replies.lines().last().unwrap_or("").to_string()
}

fn mxdeliv(relay: &Relay, from: &str, message: &[u8]) -> (u16, String) {
    let answer = block_on(relay.answer_mxdeliv(
        from,
        &[format!("<bob000001@{DOMAIN}>")],
        message.to_vec().into(),
    ));
    (answer.status, answer.reply.to_string())
}

fn inbox_len(relay: &Relay) -> usize {
    let bob = Address::parse(&format!("bob000001@{DOMAIN}")).unwrap();
    block_on(relay.store().list_messages(&bob, INBOX, None))
        .unwrap()
        .len()
}

#[test]
fn only_mail_signed_by_its_from_domain_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let alpha = DkimSigner::load_or_create(&dir.path().join("alpha"), "opendkim", PEER).unwrap();
    let other =
        DkimSigner::load_or_create(&dir.path().join("other"), "sel", "_other.localhost").unwrap();
    let zone = key_record(&alpha) + &key_record(&other);
    let relay = relay(dir.path(), Some(&zone));
    let from = format!("alice0001@{PEER}");
    let plain = message(&from);

    let good = signed(&alpha, &plain);
    assert!(mx(&relay, &from, &good).starts_with("250 "));
    let another = signed(&alpha, &message(&from));
    assert_eq!(mxdeliv(&relay, &from, &another), (200, "250 OK".into()));
    assert_eq!(inbox_len(&relay), 2);

    let no_signature = "554 5.7.1 No DKIM signature found";
    assert_eq!(mx(&relay, &from, &plain), no_signature);
    assert_eq!(mxdeliv(&relay, &from, &plain), (400, no_signature.into()));

    let invalid = "554 5.7.1 No valid DKIM signature found";
    // The body changed after signing (one character of the armored payload, which
    // stays encrypted to the policy).
    let mut tampered = good.clone();
    let armor = tampered
        .windows(27)
        .position(|w| w == b"-----BEGIN PGP MESSAGE-----")
        .unwrap();
    let at = (armor + 40..tampered.len())
        .find(|&i| tampered[i].is_ascii_alphabetic())
        .unwrap();
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    // A valid signature, but of another domain than From's.
    let misaligned = signed(&other, &plain);
    // Signed by the From domain, but with a key not in DNS.
    let unknown_key = DkimSigner::load_or_create(&dir.path().join("rogue"), "rogue", PEER).unwrap();
    let unpublished = signed(&unknown_key, &plain);
    for bad in [&tampered, &misaligned, &unpublished] {
        assert_eq!(mx(&relay, &from, bad), invalid);
        assert_eq!(mxdeliv(&relay, &from, bad), (400, invalid.into()));
    }
    assert_eq!(inbox_len(&relay), 2, "nothing refused was delivered");
}

#[test]
fn a_relay_without_a_resolver_refuses_for_the_moment() {
    let dir = tempfile::tempdir().unwrap();
    let alpha = DkimSigner::load_or_create(dir.path(), "opendkim", PEER).unwrap();
    let relay = relay(dir.path(), None);
    let from = format!("alice0001@{PEER}");
    let good = signed(&alpha, &message(&from));
    assert!(mx(&relay, &from, &good).starts_with("451 4.7.5 "));
    let (status, reply) = mxdeliv(&relay, &from, &good);
    assert_eq!(status, 400);
    assert!(reply.starts_with("451 4.7.5 "), "{reply}");
    assert_eq!(inbox_len(&relay), 0);
}

#[test]
fn mxdeliv_takes_only_local_accounts_and_bounds_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let alpha = DkimSigner::load_or_create(dir.path(), "opendkim", PEER).unwrap();
    let relay = relay(dir.path(), Some(&key_record(&alpha)));
    let from = format!("alice0001@{PEER}");
    let good: bytes::Bytes = signed(&alpha, &message(&from)).into();
    let answer = |rcpts: &[&str], message: bytes::Bytes| {
        let rcpts: Vec<String> = rcpts.iter().map(|s| s.to_string()).collect();
        let a = block_on(relay.answer_mxdeliv(&from, &rcpts, message));
        (a.status, a.reply.to_string())
    };
    let unknown = format!("nobody001@{DOMAIN}");
    assert_eq!(
        answer(&[&unknown], good.clone()),
        (
            400,
            format!("550 5.1.1 <{unknown}>: Recipient address rejected: User unknown")
        )
    );
    assert_eq!(
        answer(&["someone@example.org"], good.clone()),
        (
            400,
            "554 5.7.1 <someone@example.org>: Relay access denied".into()
        )
    );
    assert_eq!(answer(&[], good.clone()).0, 400);
    let huge = bytes::Bytes::from(vec![b'x'; 31 * 1024 * 1024]);
    assert_eq!(
        answer(&[&format!("bob000001@{DOMAIN}")], huge),
        (413, "552 Message exceeds maximum size".into())
    );
    assert_eq!(inbox_len(&relay), 0);
}

/// A sender that lost the `250` sends the same message again, over either transport
/// (the delivery queue after a crash): the second copy is answered as delivered and the
/// mailbox holds the message once. A new message with the same `Message-ID` but other
/// bytes is stored.
#[test]
fn a_second_copy_is_answered_as_delivered_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let alpha = DkimSigner::load_or_create(&dir.path().join("alpha"), "opendkim", PEER).unwrap();
    let relay = relay(dir.path(), Some(&key_record(&alpha)));
    let from = format!("alice0001@{PEER}");
    let plain = message(&from);
    let first = signed(&alpha, &plain);
    assert!(mx(&relay, &from, &first).starts_with("250 "));
    // Signed again: another DKIM-Signature field, which the stored copy does not keep.
    let resent = signed(&alpha, &plain);
    assert!(mx(&relay, &from, &resent).starts_with("250 "));
    assert_eq!(mxdeliv(&relay, &from, &first), (200, "250 OK".into()));
    assert_eq!(inbox_len(&relay), 1);

    let text = String::from_utf8(plain).unwrap();
    let same_id_other_bytes = text.replacen("Subject: [...]", "Subject: [...] ", 1);
    assert_ne!(same_id_other_bytes, text);
    let other = signed(&alpha, same_id_other_bytes.as_bytes());
    assert!(mx(&relay, &from, &other).starts_with("250 "));
    assert_eq!(inbox_len(&relay), 2);
}
