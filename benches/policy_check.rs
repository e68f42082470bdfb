//! The message decision (chatmail-policy `Policy::check_message`, outgoing): the 3 KB
//! `encrypted.eml` fixture, a 1 KB plain message, and generated PGP/MIME messages of
//! 10 KB to 30 MB (two PKESKs and a SEIPD, armored in 76-character lines).
//!
//! `cargo bench --bench policy_check -- --warm-up-time 1 --measurement-time 3`

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chatmail_policy::{Direction, Envelope, Policy, PolicyConfig, Verdict};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const FROM: &str = "alice@example.org";
const TO: &str = "bob@example.org";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.replace("{from_addr}", FROM)
        .replace("{to_addr}", TO)
        .replace("{subject}", "[...]")
        .into_bytes()
}

/// A PGP/MIME message of about `size` bytes: the fixture's headers and PKESKs, and a
/// SEIPD v1 of pseudo-random ciphertext sized to fit.
fn generated(size: usize) -> Vec<u8> {
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

fn policy() -> Policy {
    Policy::new(PolicyConfig {
        mail_domain: "example.org".into(),
        max_message_size: 64 << 20,
        max_user_send_per_minute: 60,
        max_user_send_burst_size: 10,
    })
}

/// The outgoing decision on `message`. The recipient list is built once per process so
/// that the figure is the decision's, not the allocation of the caller's `RCPT` list.
fn decide(policy: &Policy, message: &[u8]) -> bool {
    static RECIPIENTS: std::sync::LazyLock<[String; 1]> =
        std::sync::LazyLock::new(|| [TO.to_string()]);
    let recipients = &*RECIPIENTS;
    let envelope = Envelope {
        auth_user: Some(FROM),
        mail_from: FROM,
        recipients,
    };
    matches!(
        policy.check_message(Direction::Outgoing, &envelope, message, &|_| false),
        Verdict::Accept(_)
    )
}

fn bench(c: &mut Criterion) {
    let policy = policy();
    let encrypted = fixture("encrypted.eml");
    let plain = fixture("plain.eml");
    assert!(decide(&policy, &encrypted), "fixture accepted");
    assert!(!decide(&policy, &plain), "plain rejected");

    let mut group = c.benchmark_group("policy_check");
    group.throughput(Throughput::Bytes(encrypted.len() as u64));
    group.bench_function("encrypted_eml_3k", |b| {
        b.iter(|| decide(&policy, black_box(&encrypted)))
    });
    group.throughput(Throughput::Bytes(plain.len() as u64));
    group.bench_function("plain_1k_rejected", |b| {
        b.iter(|| decide(&policy, black_box(&plain)))
    });
    for (label, size) in [
        ("10k", 10_000),
        ("100k", 100_000),
        ("1m", 1_000_000),
        ("30m", 30_000_000),
    ] {
        let message = generated(size);
        assert!(decide(&policy, &message), "{label} accepted");
        group.throughput(Throughput::Bytes(message.len() as u64));
        if size >= 1_000_000 {
            group.sample_size(20);
        }
        group.bench_with_input(BenchmarkId::new("pgp_mime", label), &message, |b, m| {
            b.iter(|| decide(&policy, black_box(m)))
        });
    }
    group.finish();

    // The submission rewrite of an accepted 3 KB message (one copy of the message).
    let accepted = match policy.check_message(
        Direction::Outgoing,
        &Envelope {
            auth_user: Some(FROM),
            mail_from: FROM,
            recipients: &[TO.to_string()],
        },
        &encrypted,
        &|_| false,
    ) {
        Verdict::Accept(a) => a,
        Verdict::Reject(r) => panic!("{r}"),
    };
    let mut out = Vec::with_capacity(encrypted.len());
    c.bench_function("policy_rewrite/encrypted_eml_3k", |b| {
        b.iter(|| {
            out.clear();
            accepted.write_rewritten(black_box(&encrypted), &mut out);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
