//! The inbound `/mxdeliv` path as the relay decides it (`Relay::answer_mxdeliv`):
//! envelope checks, the incoming policy, the strict DKIM origin check and delivery to a
//! memory store, with a static zone holding one real key (`keys/dkim-a.example.pem`).
//! Input: byte 0 (bit 0: sign the message with that key first); then the `X-MAIL-FROM`
//! value up to the first LF, the `X-MAIL-TO` values up to the second LF (separated by
//! `,`), and the message. Asserts: no panic; the status is 200, 400 or 413, 200 only with
//! `250 OK`; a refusal's reply is 4xx or 5xx; the store grows exactly when the answer
//! is 200, unless the message as stored was accepted before (a second copy of a recent
//! delivery is answered as delivered and not stored: `src/relay/duplicates.rs`); and
//! the **oracle**: nothing passes without a valid DKIM signature of its From
//! domain (only our key's domain has one), so a message we did not sign is never 200
//! (unless its From is an address literal, which has no key to check: spec 1.3).
#![no_main]
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use chatmail::core::account::FixedSystemLimits;
use chatmail::core::config::Config;
use chatmail::core::dns::StaticZone;
use chatmail::core::{Address, INBOX};
use chatmail::dkim::DkimSigner;
use chatmail::Relay;
use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;

const KEY: &str = include_str!("../keys/dkim-a.example.pem");
const PEER: &str = "a.example";
const DOMAIN: &str = "b.example";
const ACCOUNTS: [&str; 2] = ["bob000001@b.example", "carol0001@b.example"];

fn setup() -> &'static (DkimSigner, Relay) {
    static SETUP: OnceLock<(DkimSigner, Relay)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir =
            std::env::temp_dir().join(format!("chatmail-fuzz-mxdeliv-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("dkim")).expect("temp dir");
        std::fs::write(dir.join("dkim").join("opendkim.private"), KEY).expect("key file");
        let signer = DkimSigner::load_or_create(&dir, "opendkim", PEER).expect("key");
        let _ = std::fs::remove_dir_all(&dir);
        let zone = StaticZone::parse(&format!(
            "opendkim._domainkey.{PEER}. TXT \"{}\"\n",
            signer.dns_txt_value()
        ))
        .expect("zone");
        let mut config = Config::with_domain(DOMAIN);
        // Small enough that the fuzzer reaches the size bound.
        config.max_message_size = 64 * 1024;
        let relay = Relay::builder(config)
            .memory()
            .system_limits(Arc::new(FixedSystemLimits::plenty()))
            .resolver(Arc::new(zone))
            .build()
            .expect("relay");
        for account in ACCOUNTS {
            block_on(relay.login(account, "password123", true))
                .expect("store")
                .expect("account");
        }
        (signer, relay)
    })
}

/// Whether `message`, as a local mailbox stores it, was answered 200 before (and
/// remembers it from now on).
fn accepted_before(message: &[u8]) -> bool {
    static ACCEPTED: OnceLock<Mutex<HashSet<Vec<u8>>>> = OnceLock::new();
    let mut stored = Vec::new();
    chatmail_policy::write_for_local_delivery(message, &mut stored);
    let mut accepted = ACCEPTED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    !accepted.insert(stored)
}

fn stored(relay: &Relay) -> usize {
    ACCOUNTS
        .iter()
        .map(|a| {
            let a = Address::parse(a).expect("address");
            block_on(relay.store().list_messages(&a, INBOX, None)).map_or(0, |m| m.len())
        })
        .sum()
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == b'\n');
    let (Some(from), Some(to), Some(message)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let mail_from = String::from_utf8_lossy(from).into_owned();
    let recipients: Vec<String> = String::from_utf8_lossy(to)
        .split(',')
        .map(str::to_string)
        .collect();
    let (signer, relay) = setup();
    let signed = mode & 1 != 0;
    let mut body = Vec::new();
    if signed {
        match signer.sign(message) {
            Ok(header) => body.extend_from_slice(&header),
            Err(_) => return,
        }
    }
    body.extend_from_slice(message);
    let before = stored(relay);
    let answer = block_on(relay.answer_mxdeliv(&mail_from, &recipients, body.into()));
    let after = stored(relay);
    match answer.status {
        200 => {
            assert_eq!(answer.reply.to_string(), "250 OK");
            let repeat = accepted_before(message);
            assert!(after > before || repeat, "200 without a stored copy");
            // An address-literal From has no key to check (spec 1.3): that one may pass.
            let literal = message.windows(2).any(|w| w == b"@[");
            assert!(
                signed || literal,
                "a message without our signature passed: {answer:?}"
            );
        }
        400 | 413 => {
            assert!((400..600).contains(&answer.reply.code), "{answer:?}");
            assert_eq!(after, before, "a refused message was stored");
        }
        other => panic!("status {other}"),
    }
});
