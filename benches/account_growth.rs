//! Whether a delivery's cost stays flat as the accounts grow (issue 14; for mailbox
//! growth see `benches/mailbox_growth.rs`): the `maildir` store's quota reading plus
//! append of a 4 KB message (what the relay does per local recipient), with 8 concurrent
//! deliverers, into INBOXes of N accounts (10, 1,000, 100,000), each delivery to a random
//! one of them. Every account got a first message in the setup; the store keeps the
//! states of at most 4,096 accounts loaded, so at 100,000 most deliveries load their
//! mailbox's index first. The setup's resident memory growth per account is printed too
//! (`VmRSS`, Linux). Group commit on (the default), as the relay runs.
//!
//! Run: `cargo bench --bench account_growth -- --warm-up-time 1 --measurement-time 3`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use chatmail_core::store::{MailStore, MaildirStore};
use chatmail_core::{Address, Flags, INBOX};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::executor::block_on;

#[path = "support/maildir.rs"]
mod support;
use support::{message, parallel};

const DELIVERERS: u64 = 8;

fn address(prefix: &str, i: u64) -> Address {
    Address::parse(&format!("{prefix}{i:06}@chat.example.org")).unwrap()
}

/// What the relay does per local recipient: read the quota usage, append.
fn deliver(store: &MaildirStore, who: &Address, data: &Bytes) {
    block_on(store.quota_usage(who)).unwrap();
    block_on(store.append(who, INBOX, data.clone(), &Flags::new(), 1_700_000_000)).unwrap();
}

/// Resident memory of this process in KiB (0 where unknown).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    // `cargo test --all-targets` runs this once as a test (without `--bench`): small
    // sizes then, so that the test suite does not fill 80,000 messages.
    let full = std::env::args().any(|a| a == "--bench");
    let account_counts: &[u64] = if full {
        &[10, 1_000, 100_000]
    } else {
        &[10, 20]
    };
    let root = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let data = message();
    let mut group = c.benchmark_group("maildir_delivery_4k");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);

    // Account count: every account gets one message first (loaded), then deliveries go
    // to random accounts.
    let store = Arc::new(MaildirStore::open(root.path().join("by-accounts")).unwrap());
    let mut created = 0u64;
    for &accounts in account_counts {
        let before = rss_kib();
        let first = created;
        let create = {
            let (store, data) = (store.clone(), data.clone());
            Arc::new(move |t: u64, k: u64| {
                let i = first + k * DELIVERERS + t;
                if i < accounts {
                    deliver(&store, &address("acct", i), &data);
                }
            })
        };
        parallel(DELIVERERS, accounts - created, create);
        let grown = rss_kib().saturating_sub(before);
        eprintln!(
            "accounts {created} -> {accounts}: resident memory +{grown} KiB \
             ({:.2} KiB per account added)",
            grown as f64 / (accounts - created) as f64
        );
        created = accounts;
        let seed = Arc::new(AtomicU64::new(0x9e37_79b9_7f4a_7c15));
        group.bench_function(format!("accounts/{accounts}"), |b| {
            b.iter_custom(|iters| {
                let (store, data, seed) = (store.clone(), data.clone(), seed.clone());
                parallel(
                    DELIVERERS,
                    iters,
                    Arc::new(move |_, _| {
                        // A cheap shared pseudo-random walk (xorshift) over the accounts.
                        let mut x = seed.fetch_add(0x9e37_79b9, Ordering::Relaxed);
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        deliver(&store, &address("acct", x % accounts), &data)
                    }),
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
