//! The message decision (chatmail-policy `Policy::check_message`, outgoing): the 3 KB
//! `encrypted.eml` fixture, a 1 KB plain message, and generated PGP/MIME messages of
//! 10 KB to 30 MB (two PKESKs and a SEIPD, armored in 76-character lines).
//!
//! `cargo bench --bench policy_check -- --warm-up-time 1 --measurement-time 3`

use chatmail_policy::{Direction, Envelope, Policy, PolicyConfig, Verdict};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "support/pgp_messages.rs"]
mod pgp_messages;
use pgp_messages::{fixture, generated, FROM, TO};

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
