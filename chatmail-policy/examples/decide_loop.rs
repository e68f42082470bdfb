//! The outgoing decision in a plain loop, for instruction counts with callgrind (which
//! do not depend on the machine's load) and quick timings:
//!
//! ```sh
//! cargo build --release -p chatmail-policy --example decide_loop
//! valgrind --tool=callgrind target/release/examples/decide_loop 0 200   # 3 KB fixture
//! valgrind --tool=callgrind target/release/examples/decide_loop 1000000 20   # 1 MB
//! ```
//!
//! Arguments: message size (0: the `encrypted.eml` fixture, else a generated PGP/MIME
//! message of about that size, as in `benches/policy_check.rs`) and iterations.

use base64::{engine::general_purpose::STANDARD, Engine};
use chatmail_policy::{Direction, Envelope, Policy, PolicyConfig, Verdict};
const FROM: &str = "alice@example.org";
const TO: &str = "bob@example.org";
fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../testdata/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size: usize = args[1].parse().unwrap();
    let iterations: usize = args[2].parse().unwrap();
    let message = if size == 0 {
        fixture("encrypted.eml")
    } else {
        generated(size)
    };
    let policy = Policy::new(PolicyConfig {
        mail_domain: "example.org".into(),
        max_message_size: 64 << 20,
        max_user_send_per_minute: 0,
        max_user_send_burst_size: 10,
    });
    let recipients = [TO.to_string()];
    let env = Envelope {
        auth_user: Some(FROM),
        mail_from: FROM,
        recipients: &recipients,
    };
    let mut accepted = 0;
    let start = std::time::Instant::now();
    for _ in 0..iterations {
        if let Verdict::Accept(_) = policy.check_message(
            Direction::Outgoing,
            &env,
            std::hint::black_box(&message),
            &|_| false,
        ) {
            accepted += 1;
        }
    }
    println!(
        "{} bytes, {accepted}/{iterations} accepted, {:?} per decision",
        message.len(),
        start.elapsed() / iterations as u32
    );
}
