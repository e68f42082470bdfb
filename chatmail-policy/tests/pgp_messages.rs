//! Property tests on real OpenPGP messages produced with rPGP: every well-formed message
//! passes, every single structural corruption fails, and no input panics.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chatmail_policy::{is_encrypted_armor, Direction, Envelope, Policy, PolicyConfig, Verdict};
use pgp::composed::{
    EncryptionCaps, KeyType, MessageBuilder, SecretKeyParamsBuilder, SignedPublicKey,
    SubkeyParamsBuilder,
};
use pgp::crypto::aead::{AeadAlgorithm, ChunkSize};
use pgp::crypto::ecc_curve::ECCCurve;
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::{KeyVersion, Password, StringToKey};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::LazyLock;

const ALICE: &str = "alice@example.org";
const BOUNDARY: &str = "YFrteb74qSXmggbOxZL9dRnhymywAi";

/// Five recipients' encryption subkeys per key version, generated once (key generation
/// is the slow part of rPGP in a debug build).
static KEYS: LazyLock<[Vec<SignedPublicKey>; 2]> = LazyLock::new(|| {
    let gen = |version, seed| keygen(version, seed);
    [
        (0..5).map(|i| gen(KeyVersion::V4, i)).collect(),
        (0..5).map(|i| gen(KeyVersion::V6, 100 + i)).collect(),
    ]
});

fn keygen(version: KeyVersion, seed: u64) -> SignedPublicKey {
    let mut rng = StdRng::seed_from_u64(seed);
    let (primary, encryption) = match version {
        KeyVersion::V6 => (KeyType::Ed25519, KeyType::X25519),
        _ => (
            KeyType::Ed25519Legacy,
            KeyType::ECDH(ECCCurve::Curve25519Legacy),
        ),
    };
    let mut sub = SubkeyParamsBuilder::default();
    sub.key_type(encryption)
        .version(version)
        .can_sign(false)
        .can_encrypt(EncryptionCaps::All)
        .can_authenticate(false);
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(primary)
        .version(version)
        .can_certify(true)
        .can_sign(true)
        .can_encrypt(EncryptionCaps::None)
        .primary_user_id(format!("<user{seed}@example.org>"))
        .subkeys(vec![sub.build().expect("subkey params")]);
    let secret = params
        .build()
        .expect("key params")
        .generate(&mut rng)
        .expect("keygen");
    SignedPublicKey::from(secret)
}

/// How one test message is made.
#[derive(Debug, Clone)]
struct Recipe {
    v6: bool,
    recipients: usize,
    password: bool,
    payload: Vec<u8>,
    streamed: bool,
    seed: u64,
}

fn recipe() -> impl Strategy<Value = Recipe> {
    (
        any::<bool>(),
        1usize..=5,
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..3000),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(v6, recipients, password, payload, streamed, seed)| Recipe {
                v6,
                recipients,
                password,
                payload,
                streamed,
                seed,
            },
        )
}

/// The binary OpenPGP message: `PKESK{n} [SKESK] SEIPD` (v1 for v4 keys, v2 for v6).
/// A streamed source makes rPGP write partial body lengths.
fn encrypt(r: &Recipe) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(r.seed);
    let keys = &KEYS[usize::from(r.v6)][..r.recipients];
    let builder = if r.streamed {
        let mut b = MessageBuilder::from_reader("", std::io::Cursor::new(r.payload.clone()));
        b.partial_chunk_size(512).expect("chunk size");
        b
    } else {
        MessageBuilder::from_bytes("", r.payload.clone())
    };
    let password = Password::from("correct horse");
    let s2k = |rng: &mut StdRng| StringToKey::new_iterated(rng, HashAlgorithm::Sha256, 1);
    if r.v6 {
        let mut b = builder.seipd_v2(
            &mut rng,
            SymmetricKeyAlgorithm::AES128,
            AeadAlgorithm::Ocb,
            ChunkSize::C512B,
        );
        for key in keys {
            b.encrypt_to_key(&mut rng, &key.public_subkeys[0])
                .expect("pkesk v6");
        }
        if r.password {
            let s2k = s2k(&mut rng);
            b.encrypt_with_password(&mut rng, s2k, &password)
                .expect("skesk v6");
        }
        b.to_vec(&mut rng).expect("message")
    } else {
        let mut b = builder.seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES128);
        for key in keys {
            b.encrypt_to_key(&mut rng, &key.public_subkeys[0])
                .expect("pkesk v3");
        }
        if r.password {
            b.encrypt_with_password(s2k(&mut rng), &password)
                .expect("skesk v4");
        }
        b.to_vec(&mut rng).expect("message")
    }
}

/// How the binary is armored.
#[derive(Debug, Clone, Copy)]
struct ArmorStyle {
    line_len: usize,
    crc: bool,
    crlf: bool,
}

fn armor_style() -> impl Strategy<Value = ArmorStyle> {
    (1usize..=200, any::<bool>(), any::<bool>()).prop_map(|(line_len, crc, crlf)| ArmorStyle {
        line_len,
        crc,
        crlf,
    })
}

/// CRC-24 of RFC 9580 §6.1.
fn crc24(data: &[u8]) -> u32 {
    let mut crc = 0xB704CEu32;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x100_0000 != 0 {
                crc ^= 0x186_4CFB;
            }
        }
    }
    crc & 0xFF_FFFF
}

fn armor(binary: &[u8], style: ArmorStyle, headers: &[&str]) -> String {
    let eol = if style.crlf { "\r\n" } else { "\n" };
    let mut out = format!("-----BEGIN PGP MESSAGE-----{eol}");
    for h in headers {
        out.push_str(h);
        out.push_str(eol);
    }
    out.push_str(eol);
    let text = STANDARD.encode(binary);
    for line in text.as_bytes().chunks(style.line_len) {
        out.push_str(std::str::from_utf8(line).expect("ascii"));
        out.push_str(eol);
    }
    if style.crc {
        let crc = crc24(binary).to_be_bytes();
        out.push('=');
        out.push_str(&STANDARD.encode(&crc[1..]));
        out.push_str(eol);
    }
    out.push_str("-----END PGP MESSAGE-----");
    out.push_str(eol);
    out
}

/// A PGP/MIME message as Delta Chat writes it (the placement of `eol` follows the style).
fn pgp_mime(armored: &str, style: ArmorStyle) -> String {
    let eol = if style.crlf { "\r\n" } else { "\n" };
    [
        &format!("From: {ALICE}"),
        "To: bob@example.org",
        "Subject: [...]",
        "MIME-Version: 1.0",
        "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";",
        &format!("\tboundary=\"{BOUNDARY}\""),
        "",
        "",
        &format!("--{BOUNDARY}"),
        "Content-Description: PGP/MIME version identification",
        "Content-Type: application/pgp-encrypted",
        "",
        "Version: 1",
        "",
        "",
        &format!("--{BOUNDARY}"),
        "Content-Description: OpenPGP encrypted message",
        "Content-Disposition: inline; filename=\"encrypted.asc\";",
        "Content-Type: application/octet-stream; name=\"encrypted.asc\"",
        "",
        &format!("{armored}{eol}"),
        &format!("--{BOUNDARY}--"),
        "",
    ]
    .join(eol)
}

fn verdict(message: &[u8], direction: Direction) -> Verdict {
    static POLICY: LazyLock<Policy> = LazyLock::new(|| {
        Policy::new(PolicyConfig::from(
            &chatmail_core::config::Config::with_domain("example.org"),
        ))
    });
    let recipients = vec!["bob@example.org".to_string()];
    let auth_user = (direction == Direction::Outgoing).then_some(ALICE);
    let envelope = Envelope {
        auth_user,
        mail_from: ALICE,
        recipients: &recipients,
    };
    POLICY.check_message(direction, &envelope, message, &|_| false)
}

fn is_accepted(message: &[u8], direction: Direction) -> bool {
    matches!(verdict(message, direction), Verdict::Accept(_))
}

/// The packets of a binary message: (header offset, tag, header length, body length)
/// for messages without partial lengths; `None` when a partial length is present.
fn packets(binary: &[u8]) -> Option<Vec<(usize, u8, usize, usize)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < binary.len() {
        let h = binary[pos];
        assert!(h & 0xC0 == 0xC0, "rPGP writes new-format headers");
        let o1 = usize::from(binary[pos + 1]);
        let (hlen, len) = match o1 {
            0..=191 => (2, o1),
            192..=223 => (3, ((o1 - 192) << 8) + usize::from(binary[pos + 2]) + 192),
            255 => {
                let b = &binary[pos + 2..pos + 6];
                (6, u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            }
            _ => return None,
        };
        out.push((pos, h & 0x3F, hlen, len));
        pos += hlen + len;
    }
    Some(out)
}

/// A single structural corruption of a valid message.
#[derive(Debug, Clone)]
enum Corruption {
    /// The first packet's tag becomes another, non-session-key tag.
    Tag(u8),
    /// The binary is cut short by this many bytes (at least one).
    Truncate(usize),
    /// Bytes appended after the SEIPD.
    Trailing(Vec<u8>),
    /// The last packet's length grows or shrinks by one.
    Length(bool),
    /// The SEIPD is replaced by a literal data packet carrying the payload.
    Literal,
    /// A third MIME part before the close delimiter.
    ExtraPart,
    /// A media type is changed.
    MediaType(usize),
    /// The armored text is cut at this fraction (per mille) of its length.
    ArmorCut(u16),
    /// The `Version: 1` part says something else.
    VersionPart,
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        prop::sample::select(vec![0u8, 2, 4, 8, 9, 11, 13, 14, 17, 18, 19, 20, 60, 63])
            .prop_map(Corruption::Tag),
        (1usize..200).prop_map(Corruption::Truncate),
        prop::collection::vec(any::<u8>(), 1..20).prop_map(Corruption::Trailing),
        any::<bool>().prop_map(Corruption::Length),
        Just(Corruption::Literal),
        Just(Corruption::ExtraPart),
        (0usize..4).prop_map(Corruption::MediaType),
        (0u16..1000).prop_map(Corruption::ArmorCut),
        Just(Corruption::VersionPart),
    ]
}

/// Applies `c`; `None` when it does not apply to this message (e.g. the length
/// corruption of a partial-length SEIPD).
fn corrupt(r: &Recipe, binary: &[u8], style: ArmorStyle, c: &Corruption) -> Option<String> {
    let mut binary = binary.to_vec();
    match c {
        Corruption::Tag(tag) => binary[0] = 0xC0 | tag,
        Corruption::Truncate(n) => binary.truncate(binary.len().saturating_sub(*n).max(1)),
        Corruption::Trailing(extra) => binary.extend_from_slice(extra),
        Corruption::Length(grow) => {
            let &(pos, _, hlen, len) = packets(&binary)?.last()?;
            let new_len = if *grow { len + 1 } else { len.checked_sub(1)? };
            let mut header = vec![binary[pos], 255];
            header.extend_from_slice(&(new_len as u32).to_be_bytes());
            binary.splice(pos..pos + hlen, header);
        }
        Corruption::Literal => {
            let pkts = packets(&binary)?;
            let &(pos, _, _, _) = pkts.last()?;
            binary.truncate(pos);
            let mut body = vec![b'b', 0, 0, 0, 0, 0];
            body.extend_from_slice(&r.payload);
            binary.push(0xC0 | 11);
            binary.push(255);
            binary.extend_from_slice(&(body.len() as u32).to_be_bytes());
            binary.extend_from_slice(&body);
        }
        _ => {}
    }
    let armored = armor(&binary, style, &[]);
    let message = pgp_mime(&armored, style);
    let eol = if style.crlf { "\r\n" } else { "\n" };
    Some(match c {
        Corruption::ExtraPart => message.replace(
            &format!("--{BOUNDARY}--"),
            &format!("--{BOUNDARY}{eol}Content-Type: text/plain{eol}{eol}hi{eol}--{BOUNDARY}--"),
        ),
        Corruption::MediaType(which) => {
            let (from, to) = [
                ("multipart/encrypted", "multipart/mixed"),
                ("Type: application/pgp-encrypted", "Type: text/plain"),
                ("application/octet-stream", "application/pgp-keys"),
                ("application/octet-stream", "multipart/mixed"),
            ][*which];
            message.replacen(from, to, 1)
        }
        Corruption::ArmorCut(per_mille) => {
            let cut = armored.len() * usize::from(*per_mille) / 1000;
            // Keep the cut away from the very end, where only line breaks would go.
            let cut = cut.min(armored.len() - eol.len() - 1);
            message.replace(&armored, &armored[..cut])
        }
        Corruption::VersionPart => message.replacen("\nVersion: 1", "\nVersion: 2", 1),
        _ => message,
    })
}

#[test]
fn recipes_exercise_partial_lengths_and_both_seipd_versions() {
    let r = |v6, streamed| Recipe {
        v6,
        recipients: 2,
        password: true,
        payload: vec![7; 3000],
        streamed,
        seed: 1,
    };
    for v6 in [false, true] {
        let fixed = packets(&encrypt(&r(v6, false))).expect("fixed lengths");
        let tags: Vec<u8> = fixed.iter().map(|p| p.1).collect();
        assert_eq!(tags, [3, 1, 1, 18]);
        let (pos, _, hlen, _) = fixed[3];
        assert_eq!(
            encrypt(&r(v6, false))[pos + hlen],
            if v6 { 2 } else { 1 },
            "SEIPD version"
        );
        assert!(
            packets(&encrypt(&r(v6, true))).is_none(),
            "streamed uses partial lengths"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn real_messages_are_always_accepted(r in recipe(), style in armor_style()) {
        let binary = encrypt(&r);
        let message = pgp_mime(&armor(&binary, style, &[]), style);
        prop_assert!(is_accepted(message.as_bytes(), Direction::Outgoing), "{message}");
        prop_assert!(is_accepted(message.as_bytes(), Direction::Incoming));
        // Other implementations' armor headers pass incoming only.
        let headed = armor(&binary, style, &["Version: GopenPGP 2.7", "Comment: https://x"]);
        let message = pgp_mime(&headed, style);
        prop_assert!(is_accepted(message.as_bytes(), Direction::Incoming));
        prop_assert!(!is_accepted(message.as_bytes(), Direction::Outgoing));
    }

    #[test]
    fn single_structural_corruptions_are_always_rejected(
        r in recipe(),
        style in armor_style(),
        c in corruption(),
    ) {
        let binary = encrypt(&r);
        if let Some(message) = corrupt(&r, &binary, style, &c) {
            prop_assert!(!is_accepted(message.as_bytes(), Direction::Outgoing), "{c:?}");
            prop_assert!(!is_accepted(message.as_bytes(), Direction::Incoming), "{c:?}");
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        r in recipe(),
        style in armor_style(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut message = pgp_mime(&armor(&encrypt(&r), style, &[]), style).into_bytes();
        for (at, byte) in edits {
            let i = at.index(message.len());
            message[i] = byte;
        }
        let _ = verdict(&message, Direction::Outgoing);
        let _ = verdict(&message, Direction::Incoming);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = verdict(&bytes, Direction::Outgoing);
        let _ = verdict(&bytes, Direction::Incoming);
        let _ = is_encrypted_armor(&bytes, Direction::Incoming);
    }

    #[test]
    fn armor_like_bytes_never_panic(
        lines in prop::collection::vec("[A-Za-z0-9+/=]{0,80}|-----END PGP MESSAGE-----|", 0..20),
    ) {
        let text = format!("-----BEGIN PGP MESSAGE-----\r\n\r\n{}", lines.join("\r\n"));
        let _ = is_encrypted_armor(text.as_bytes(), Direction::Outgoing);
    }
}
