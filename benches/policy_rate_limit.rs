//! The submission check at MAIL FROM (chatmail-policy `Policy::check_sender`: shape,
//! ownership, GCRA rate limit) with 1, 10,000 and 100,000 active senders.
//!
//! `cargo bench --bench policy_rate_limit -- --warm-up-time 1 --measurement-time 3`

use chatmail_policy::{Policy, PolicyConfig};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::{Duration, Instant};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_rate_limit");
    for senders in [1usize, 10_000, 100_000] {
        let policy = Policy::new(PolicyConfig {
            mail_domain: "example.org".into(),
            max_message_size: 31_457_280,
            max_user_send_per_minute: 60,
            max_user_send_burst_size: 10,
        });
        let addresses: Vec<String> = (0..senders)
            .map(|i| format!("u{i:06}@example.org"))
            .collect();
        let start = Instant::now();
        for a in &addresses {
            policy
                .check_sender(a, a, start)
                .expect("first message passes");
        }
        assert_eq!(policy.tracked_senders(), senders);
        // Virtual time: every sender sends once per virtual second, within its allowance,
        // so all of them stay active for the whole run.
        let step = Duration::from_secs(1) / senders as u32;
        let mut now = start;
        let mut i = 0;
        group.bench_with_input(BenchmarkId::from_parameter(senders), &senders, |b, _| {
            b.iter(|| {
                let a = &addresses[i];
                i = (i + 1) % senders;
                now += step;
                black_box(policy.check_sender(a, a, now)).is_ok()
            })
        });
        assert!(policy.tracked_senders() <= senders + 64);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
