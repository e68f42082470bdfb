//! The armor-check cases of spec 3.7 and the peers' known false rejects (peers.md), on
//! the armored payload of the real `encrypted.eml` fixture.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chatmail_policy::{is_encrypted_armor, Direction, Envelope, Policy, PolicyConfig, Verdict};

const OUT: Direction = Direction::Outgoing;
const IN: Direction = Direction::Incoming;

fn fixture() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/fixtures/encrypted.eml"
    );
    std::fs::read_to_string(path).expect("fixture")
}

/// The fixture's armored payload, BEGIN through END line (CRLF endings).
fn armor() -> String {
    let text = fixture();
    let start = text.find("-----BEGIN PGP MESSAGE-----").expect("begin");
    let end = text.find("-----END PGP MESSAGE-----\r\n").expect("end") + 27;
    text[start..end].to_string()
}

/// The binary behind the fixture's armor.
fn binary() -> Vec<u8> {
    let b64: String = armor()
        .lines()
        .filter(|l| !l.starts_with('-') && !l.starts_with('=') && !l.trim().is_empty())
        .collect();
    STANDARD.decode(b64).expect("fixture base64")
}

/// Armor around `binary` with 64-character lines, no checksum.
fn wrap(binary: &[u8]) -> String {
    let text = STANDARD.encode(binary);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN PGP MESSAGE-----\r\n\r\n{}\r\n-----END PGP MESSAGE-----\r\n",
        lines.join("\r\n")
    )
}

fn both(armor: &str) -> (bool, bool) {
    (
        is_encrypted_armor(armor.as_bytes(), OUT),
        is_encrypted_armor(armor.as_bytes(), IN),
    )
}

#[test]
fn the_reference_armor_cases() {
    let valid = armor();
    assert_eq!(both(&valid), (true, true), "valid payload");
    let version = valid.replacen("-----\r\n\r\n", "-----\r\nVersion: ProtonMail\r\n\r\n", 1);
    assert_eq!(both(&version), (false, true), "Version: header");
    for n in 0..=3 {
        assert_eq!(
            both(&format!("{valid}{}", "\r\n".repeat(n))),
            (true, true),
            "{n} CRLFs"
        );
    }
    let wrapped = |body: &str| {
        format!("-----BEGIN PGP MESSAGE-----\r\n\r\n{body}\r\n-----END PGP MESSAGE-----\r\n")
    };
    assert_eq!(both(&wrapped("HELLOWORLD")), (false, false));
    assert_eq!(both(&wrapped("=njUN")), (false, false), "only a checksum");
    let stray = valid.replacen("wU4DhW3g", "wU4D=W3g", 1);
    assert_eq!(both(&stray), (false, false), "stray '='");
    assert_eq!(
        both(&wrapped(
            &STANDARD.encode(b"This is not an OpenPGP message at all.")
        )),
        (false, false)
    );
    assert_eq!(
        both(&wrapped("Hello, this is a cleartext sentence.")),
        (false, false)
    );
    assert_eq!(
        both(&valid.replacen("-----BEGIN PGP MESSAGE-----\r\n", "", 1)),
        (false, false)
    );
    assert_eq!(
        both(&valid.replacen("-----END PGP MESSAGE-----\r\n", "", 1)),
        (false, false)
    );
    assert_eq!(both(""), (false, false));
}

#[test]
fn incoming_tolerates_comment_headers_outgoing_does_not() {
    let valid = armor();
    let headed = valid.replacen(
        "-----\r\n\r\n",
        "-----\r\nVersion: GnuPG v2\r\nComment: https://gnupg.org\r\n\r\n",
        1,
    );
    assert_eq!(both(&headed), (false, true));
    let unknown = valid.replacen("-----\r\n\r\n", "-----\r\nHash: SHA256\r\n\r\n", 1);
    assert_eq!(both(&unknown), (false, false));
}

/// The fixture's first PKESK and its SEIPD: 988 bytes, so its base64 ends in `==`.
fn padded_binary() -> Vec<u8> {
    let binary = binary();
    [&binary[..80], &binary[160..]].concat()
}

#[test]
fn checksum_is_optional_even_with_padding() {
    // A reference that cuts at the last '=' corrupts padded base64 without a checksum.
    let binary = padded_binary();
    assert_eq!(binary.len() % 3, 1, "two padding characters");
    let armor = wrap(&binary);
    assert!(armor.contains("==\r\n-----END"));
    assert_eq!(both(&armor), (true, true));
    // With a checksum line too.
    let with_crc = armor.replace("==\r\n-----END", "==\r\n=agR5\r\n-----END");
    assert_eq!(both(&with_crc), (true, true));
    // The fixture itself has a checksum; without it, it passes as well.
    let no_crc: String = self::armor()
        .lines()
        .filter(|l| !l.starts_with('='))
        .map(|l| format!("{l}\r\n"))
        .collect();
    assert_eq!(both(&no_crc), (true, true));
    // A checksum line must be exactly '=' and four base64 characters.
    assert_eq!(
        both(&self::armor().replace("=agR5", "=agR")),
        (false, false)
    );
    // Padding split from its quantum by a line break, and missing padding.
    let split = armor.replace("==\r\n-----END", "=\r\n=\r\n-----END");
    assert_eq!(both(&split), (true, true));
    let alone = armor.replace("==\r\n-----END", "\r\n==\r\n-----END");
    assert_eq!(both(&alone), (true, true));
    // One '=' for the SEIPD alone (908 bytes).
    let single = wrap(&binary[80..]);
    assert!(single.contains("=\r\n-----END") && !single.contains("==\r\n-----END"));
    assert_eq!(both(&single), (true, true));
    let missing = armor.replace("==\r\n-----END", "\r\n-----END");
    assert_eq!(both(&missing), (false, false));
    let extra = armor.replace("==\r\n-----END", "===\r\n-----END");
    assert_eq!(both(&extra), (false, false));
}

#[test]
fn non_canonical_trailing_bits_are_rejected() {
    let armor = wrap(&padded_binary());
    // The character before "==" carries four trailing bits that must be zero.
    let at = armor.find("==\r\n-----END").expect("padding") - 1;
    let mut bytes = armor.into_bytes();
    let original = bytes[at];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let value = alphabet
        .iter()
        .position(|&c| c == original)
        .expect("base64");
    assert_eq!(value & 0x0F, 0);
    bytes[at] = alphabet[value | 1];
    assert_eq!(
        both(&String::from_utf8(bytes).expect("ascii")),
        (false, false)
    );
}

/// (header offset, tag, header len, body len) of the fixture's packets (all fixed length).
fn fixture_packets(binary: &[u8]) -> Vec<(usize, u8, usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < binary.len() {
        let o1 = usize::from(binary[pos + 1]);
        let (hlen, len) = if o1 < 192 {
            (2, o1)
        } else {
            (3, ((o1 - 192) << 8) + usize::from(binary[pos + 2]) + 192)
        };
        out.push((pos, binary[pos] & 0x3F, hlen, len));
        pos += hlen + len;
    }
    out
}

#[test]
fn fixture_packet_shape() {
    let p = fixture_packets(&binary());
    let shape: Vec<(u8, usize)> = p
        .iter()
        .map(|&(_, t, _, l)| (t, l + if l < 192 { 2 } else { 3 }))
        .collect();
    assert_eq!(shape, [(1, 80), (1, 80), (18, 908)]);
}

#[test]
fn old_format_headers_as_gnupg_writes_them() {
    let binary = binary();
    let packets = fixture_packets(&binary);
    let mut legacy = Vec::new();
    for &(pos, tag, hlen, len) in &packets[..2] {
        // Old format: 10 tttt ll, ll = 0 (one-octet length).
        legacy.push(0x80 | tag << 2);
        legacy.push(len as u8);
        legacy.extend_from_slice(&binary[pos + hlen..pos + hlen + len]);
    }
    let (pos, ..) = packets[2];
    assert_eq!(pos, 160);
    legacy.extend_from_slice(&binary[pos..]);
    assert_eq!(both(&wrap(&legacy)), (true, true));
    // Two- and four-octet old-format lengths.
    let mut wide = Vec::new();
    for (i, &(pos, tag, hlen, len)) in packets[..2].iter().enumerate() {
        if i == 0 {
            wide.push(0x80 | tag << 2 | 1);
            wide.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            wide.push(0x80 | tag << 2 | 2);
            wide.extend_from_slice(&(len as u32).to_be_bytes());
        }
        wide.extend_from_slice(&binary[pos + hlen..pos + hlen + len]);
    }
    wide.extend_from_slice(&binary[pos..]);
    assert_eq!(both(&wrap(&wide)), (true, true));
    // Indeterminate length (ll = 3) is never accepted.
    let mut indeterminate = vec![0x80 | 1 << 2 | 3];
    indeterminate.extend_from_slice(&binary[packets[0].2..]);
    assert_eq!(both(&wrap(&indeterminate)), (false, false));
}

#[test]
fn partial_body_lengths_on_the_seipd_only() {
    let binary = binary();
    let packets = fixture_packets(&binary);
    let (pos, _, hlen, len) = packets[2];
    let body = &binary[pos + hlen..pos + hlen + len];
    let mut partial = binary[..pos].to_vec();
    // 512 + 256 + 128 partial chunks, then the final length.
    partial.push(0xC0 | 18);
    let mut rest = body;
    for exp in [9u8, 8, 7] {
        partial.push(224 + exp);
        partial.extend_from_slice(&rest[..1 << exp]);
        rest = &rest[1 << exp..];
    }
    partial.push(rest.len() as u8);
    partial.extend_from_slice(rest);
    assert_eq!(both(&wrap(&partial)), (true, true));
    // A partial length on a session key packet is not allowed (RFC 9580 §4.2.1.4).
    let (_, _, h0, l0) = packets[0];
    let mut pk_partial = vec![0xC1, 224]; // a one-byte partial chunk
    pk_partial.push(binary[h0]);
    pk_partial.push(l0 as u8 - 1);
    pk_partial.extend_from_slice(&binary[h0 + 1..]);
    assert_eq!(both(&wrap(&pk_partial)), (false, false));
}

#[test]
fn not_ciphertext_inside_the_wrapper() {
    let binary = binary();
    let packets = fixture_packets(&binary);
    let (pos, _, hlen, _) = packets[2];
    for tag in [8u8, 9, 11, 20, 2] {
        let mut b = binary.clone();
        b[pos] = 0xC0 | tag;
        assert_eq!(both(&wrap(&b)), (false, false), "tag {tag}");
    }
    // Unknown SEIPD and PKESK versions.
    let mut b = binary.clone();
    b[pos + hlen] = 3;
    assert_eq!(both(&wrap(&b)), (false, false), "SEIPD v3");
    let mut b = binary.clone();
    b[packets[0].2] = 5;
    assert_eq!(both(&wrap(&b)), (false, false), "PKESK v5");
    // Key packets alone, or a SEIPD followed by anything.
    assert_eq!(both(&wrap(&binary[..pos])), (false, false));
    let mut b = binary.clone();
    b.extend_from_slice(&binary[..packets[0].2 + packets[0].3]);
    assert_eq!(both(&wrap(&b)), (false, false));
    // A SEIPD alone is a valid shape, as in the reference.
    assert_eq!(both(&wrap(&binary[pos..])), (true, true));
}

#[test]
fn lf_line_endings_and_any_line_length() {
    let binary = binary();
    let text = STANDARD.encode(&binary);
    for width in [1, 3, 5, 63, 76, 1000, 5000] {
        let lines: Vec<&str> = text
            .as_bytes()
            .chunks(width)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect();
        let lf = format!(
            "-----BEGIN PGP MESSAGE-----\n\n{}\n-----END PGP MESSAGE-----\n",
            lines.join("\n")
        );
        assert_eq!(both(&lf), (true, true), "width {width} LF");
        let crlf = lf.replace('\n', "\r\n");
        assert_eq!(both(&crlf), (true, true), "width {width} CRLF");
        // A space anywhere in the data is not base64.
        let spaced = crlf.replacen("\r\n\r\n", "\r\n\r\n ", 1);
        assert_eq!(both(&spaced), (false, false), "width {width} space");
    }
}

fn outgoing(message: &str) -> Verdict {
    let policy = Policy::new(PolicyConfig::from(
        &chatmail_core::config::Config::with_domain("example.org"),
    ));
    let rcpts = vec!["bob@example.org".to_string()];
    let env = Envelope {
        auth_user: Some("a@example.org"),
        mail_from: "a@example.org",
        recipients: &rcpts,
    };
    policy.check_message(Direction::Outgoing, &env, message.as_bytes(), &|_| false)
}

#[test]
fn media_types_in_any_case_and_transfer_encodings() {
    let m = fixture()
        .replace("{from_addr}", "a@example.org")
        .replace("{to_addr}", "bob@example.org")
        .replace("{subject}", "[...]");
    assert!(matches!(outgoing(&m), Verdict::Accept(_)));
    let upper = m
        .replace("multipart/encrypted", "Multipart/ENCRYPTED")
        .replace(
            "Type: application/pgp-encrypted",
            "Type: Application/PGP-Encrypted",
        )
        .replace("application/octet-stream", "Application/Octet-Stream");
    assert!(matches!(outgoing(&upper), Verdict::Accept(_)));
    // The armor sent base64-encoded once more (a transfer encoding some clients use).
    let armor = armor();
    let encoded = STANDARD.encode(armor.as_bytes());
    let b64 = m.replacen(
        "Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n",
        "Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        1,
    ).replace(&armor, &format!("{encoded}\r\n"));
    assert!(matches!(outgoing(&b64), Verdict::Accept(_)), "base64 CTE");
    let only_version = {
        let cut = m
            .find("--YFrteb74qSXmggbOxZL9dRnhymywAi\r\nContent-Description: OpenPGP")
            .expect("part 2");
        format!("{}--YFrteb74qSXmggbOxZL9dRnhymywAi--\r\n", &m[..cut])
    };
    assert!(
        matches!(outgoing(&only_version), Verdict::Reject(_)),
        "exactly two parts required"
    );
}
