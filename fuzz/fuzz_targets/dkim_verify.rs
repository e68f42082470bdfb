//! The DKIM origin check (`chatmail::dkim::DkimVerifier`) on arbitrary messages, with a
//! static zone holding one real key (`keys/dkim-a.example.pem`, a test key) and an inline
//! executor. Byte 0 picks the From domain (bit 0: `a.example`, the key's domain, or the
//! domain after the first `@` of the input, bounded) and whether the message is first
//! signed with the key (bit 1). Asserts: no panic; a verdict that passes has a reply of
//! `None` and every other one a reply; an address literal passes; and the oracle: a
//! message with a well-formed header section (RFC 5322: `name: value` lines of printable
//! ASCII ending in CRLF, continuations after a field) that our signer signed for the From
//! domain passes, whatever its body. (For malformed header sections mail-auth's signer
//! and verifier read the fields differently; the relay signs only mail that its policy
//! accepted and rewrote.)
#![no_main]
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use chatmail::core::dns::StaticZone;
use chatmail::core::executor::InlineExecutor;
use chatmail::dkim::{DkimSigner, DkimVerdict, DkimVerifier};
use libfuzzer_sys::fuzz_target;

const KEY: &str = include_str!("../keys/dkim-a.example.pem");
const DOMAIN: &str = "a.example";

fn setup() -> &'static (DkimSigner, DkimVerifier) {
    static SETUP: OnceLock<(DkimSigner, DkimVerifier)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("chatmail-fuzz-dkim-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("dkim")).expect("temp dir");
        std::fs::write(dir.join("dkim").join("opendkim.private"), KEY).expect("key file");
        let signer = DkimSigner::load_or_create(&dir, "opendkim", DOMAIN).expect("key");
        let _ = std::fs::remove_dir_all(&dir);
        let zone = StaticZone::parse(&format!(
            "opendkim._domainkey.{DOMAIN}. TXT \"{}\"\n",
            signer.dns_txt_value()
        ))
        .expect("zone");
        let verifier = DkimVerifier::new(Arc::new(zone), Arc::new(InlineExecutor));
        (signer, verifier)
    })
}

/// The domain after the first `@`, as far as it looks like one (at most 64 bytes).
fn domain_in(message: &[u8]) -> String {
    let Some(at) = message.iter().position(|&b| b == b'@') else {
        return String::new();
    };
    message[at + 1..]
        .iter()
        .take(64)
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b'_'))
        .map(|&b| char::from(b))
        .collect()
}

/// Whether the header section is RFC 5322 proper: up to the first empty line, CRLF
/// lines that are `name:value` (name of printable ASCII but `:`) or continuations (WSP
/// first) of a field, values of printable ASCII and WSP; at least one field.
fn well_formed_headers(message: &[u8]) -> bool {
    let mut rest = message;
    let mut fields = 0;
    loop {
        let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let line = &rest[..end];
        rest = &rest[end + 2..];
        if line.is_empty() {
            return fields > 0;
        }
        if !line
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            return false;
        }
        if matches!(line[0], b' ' | b'\t') {
            if fields == 0 {
                return false;
            }
            continue;
        }
        match line.iter().position(|&b| b == b':') {
            Some(colon) if colon > 0 && line[..colon].iter().all(|&b| b > b' ') => fields += 1,
            _ => return false,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, message @ ..] = data else {
        return;
    };
    let (signer, verifier) = setup();
    let from_domain = if mode & 1 == 0 {
        DOMAIN.to_string()
    } else {
        domain_in(message)
    };
    let mut input = Vec::new();
    let signed = mode & 2 != 0 && {
        match signer.sign(message) {
            Ok(header) => {
                input.extend_from_slice(&header);
                true
            }
            Err(_) => false,
        }
    };
    input.extend_from_slice(message);
    let verdict = futures::executor::block_on(verifier.verify(Bytes::from(input), &from_domain));
    assert_eq!(verdict == DkimVerdict::Pass, verdict.reply().is_none());
    if from_domain.starts_with('[') {
        assert_eq!(verdict, DkimVerdict::Pass);
    }
    if signed && from_domain.eq_ignore_ascii_case(DOMAIN) && well_formed_headers(message) {
        assert!(
            matches!(verdict, DkimVerdict::Pass | DkimVerdict::Unparsable),
            "our own signature fails: {verdict:?}"
        );
    }
});
