//! Messages for the policy's benchmarks, shared by `benches/policy_check.rs` and
//! `chatmail-policy/examples/decide_loop.rs` (each includes this file with `#[path]`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

pub const FROM: &str = "alice@example.org";
pub const TO: &str = "bob@example.org";

/// `encrypted.eml` or `plain.eml` from `testdata/fixtures`, addressed from [`FROM`] to
/// [`TO`]. Included at build time: the path is relative to this file, so the bench and
/// the policy crate's example read the same bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    let raw: &[u8] = match name {
        "encrypted.eml" => include_bytes!("../../testdata/fixtures/encrypted.eml"),
        "plain.eml" => include_bytes!("../../testdata/fixtures/plain.eml"),
        _ => panic!("no such fixture here: {name}"),
    };
    let text = String::from_utf8_lossy(raw);
    text.replace("{from_addr}", FROM)
        .replace("{to_addr}", TO)
        .replace("{subject}", "[...]")
        .into_bytes()
}

/// A PGP/MIME message of about `size` bytes: the fixture's headers and PKESKs, and a
/// SEIPD v1 of pseudo-random ciphertext sized to fit.
pub fn generated(size: usize) -> Vec<u8> {
    let fixture = String::from_utf8(fixture("encrypted.eml")).expect("utf-8 fixture");
    let begin = fixture.find("-----BEGIN PGP MESSAGE-----").expect("armor");
    let end = fixture.find("-----END PGP MESSAGE-----").expect("armor") + 25;
    let armor_b64: String = fixture[begin..end]
        .lines()
        .filter(|l| !l.starts_with('-') && !l.starts_with('=') && !l.is_empty())
        .collect();
    let binary = STANDARD.decode(armor_b64).expect("fixture base64");
    let pkesks = &binary[..160];
    // Base64 grows 4/3, plus CRLF every 76 characters.
    let seipd_len = (size.saturating_sub(fixture.len()) * 57 / 78).max(64);
    let mut seipd = vec![0xC0 | 18, 255];
    seipd.extend_from_slice(&(seipd_len as u32).to_be_bytes());
    seipd.push(1);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    seipd.extend((1..seipd_len).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    let data = STANDARD.encode([pkesks, &seipd[..]].concat());
    let mut armor = String::from("-----BEGIN PGP MESSAGE-----\r\n\r\n");
    for line in data.as_bytes().chunks(76) {
        armor.push_str(std::str::from_utf8(line).expect("ascii"));
        armor.push_str("\r\n");
    }
    armor.push_str("=agR5\r\n-----END PGP MESSAGE-----");
    format!("{}{armor}{}", &fixture[..begin], &fixture[end..]).into_bytes()
}
