//! Append latency and throughput of the `maildir` store with 4 KB messages, for one
//! appender and for 8 and 32 concurrent appenders (threads), in both durability modes:
//! `group` (the default on Linux: concurrent appends share `syncfs` barriers) and
//! `each_file` (file fsync, directory fsync, index record fsync). Next to them, the
//! floors measured in the same run:
//!
//! - `floor_write_fsync_rename`: a plain write + fsync + rename + directory fsync of a
//!   4 KB file, with the same thread counts (what one-file-at-a-time durability costs);
//! - `floor_group_syncfs/32_per_sync` (Linux): one thread writes 32 files, `syncfs`,
//!   renames the 32, `syncfs` again (what group-committed durability costs: the disk's
//!   group-commit floor, issue 14).
//!
//! Concurrent appenders deliver either to distinct accounts (the usual case: mail for
//! many users) or all to one INBOX (worst case: they queue for its index). Each
//! criterion iteration is one append; with N threads an iteration's time is the wall
//! time of the batch divided by its size, so `thrpt` is appends per second overall.
//!
//! Run: `cargo bench --bench maildir_append -- --warm-up-time 1 --measurement-time 3`

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chatmail_core::store::{MailStore, MaildirStore};
use chatmail_core::{Address, Flags, INBOX};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::executor::block_on;

#[path = "support/maildir.rs"]
mod support;
use support::{message, parallel};

/// The floor: what any durable maildir delivery costs on this disk.
fn plain_write_fsync_rename(dir: &Path, n: u64, data: &[u8]) {
    let tmp = dir.join("tmp").join(n.to_string());
    let new = dir.join("new").join(n.to_string());
    let mut file = File::create(&tmp).unwrap();
    file.write_all(data).unwrap();
    file.sync_all().unwrap();
    drop(file);
    std::fs::rename(&tmp, &new).unwrap();
    File::open(dir.join("new")).unwrap().sync_all().unwrap();
}

/// The group-commit floor: `batch` files written, made durable by one `syncfs`, renamed,
/// and the names made durable by a second one; no index, no locks.
#[cfg(target_os = "linux")]
fn group_write_syncfs_rename(dir: &Path, first: u64, batch: u64, data: &[u8]) {
    let names: Vec<String> = (first..first + batch).map(|n| n.to_string()).collect();
    for name in &names {
        let mut file = File::create(dir.join("tmp").join(name)).unwrap();
        file.write_all(data).unwrap();
    }
    let fs = File::open(dir).unwrap();
    rustix::fs::syncfs(&fs).unwrap();
    for name in &names {
        std::fs::rename(dir.join("tmp").join(name), dir.join("new").join(name)).unwrap();
    }
    rustix::fs::syncfs(&fs).unwrap();
}

fn bench(c: &mut Criterion) {
    let root = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
    let data = message();
    let mut group = c.benchmark_group("maildir_append_4k");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);

    for threads in [1u64, 8, 32] {
        let dir: PathBuf = root.path().join(format!("floor-{threads}"));
        for sub in ["tmp", "new"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let counter = Arc::new(AtomicU64::new(0));
        let data = data.clone();
        group.bench_function(format!("floor_write_fsync_rename/{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let (dir, counter, data) = (dir.clone(), counter.clone(), data.clone());
                parallel(
                    threads,
                    iters,
                    Arc::new(move |_, _| {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        plain_write_fsync_rename(&dir, n, &data);
                    }),
                )
            })
        });
    }

    #[cfg(target_os = "linux")]
    {
        const BATCH: u64 = 32;
        let dir: PathBuf = root.path().join("floor-group");
        for sub in ["tmp", "new"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let mut next = 0u64;
        group.bench_function(format!("floor_group_syncfs/{BATCH}_per_sync"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                let batches = iters.div_ceil(BATCH);
                for _ in 0..batches {
                    group_write_syncfs_rename(&dir, next, BATCH, &data);
                    next += BATCH;
                }
                start
                    .elapsed()
                    .mul_f64(iters as f64 / (batches * BATCH) as f64)
            })
        });
    }

    let accounts: Arc<Vec<Address>> = Arc::new(
        (0..32)
            .map(|i| Address::parse(&format!("user{i}@chat.example.org")).unwrap())
            .collect(),
    );
    let cases = [(1u64, true), (8, false), (8, true), (32, false), (32, true)];
    for (mode, grouped) in [("group", true), ("each_file", false)] {
        let mailboxes = root.path().join(format!("mailboxes-{mode}"));
        let store = MaildirStore::open(mailboxes).unwrap();
        let store = Arc::new(store.with_group_commit(grouped).unwrap());
        for (threads, same_inbox) in cases {
            bench_store(
                &mut group, &store, &accounts, &data, mode, threads, same_inbox,
            );
        }
    }
    group.finish();
}

/// One store case: `threads` appenders, to distinct accounts or all to one INBOX.
fn bench_store(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    store: &Arc<MaildirStore>,
    accounts: &Arc<Vec<Address>>,
    data: &Bytes,
    mode: &str,
    threads: u64,
    same_inbox: bool,
) {
    {
        let target = if same_inbox {
            "one_inbox"
        } else {
            "distinct_accounts"
        };
        let name = if threads == 1 {
            format!("store_append_{mode}/1_thread")
        } else {
            format!("store_append_{mode}/{threads}_threads_{target}")
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (store, accounts, data) = (store.clone(), accounts.clone(), data.clone());
                parallel(
                    threads,
                    iters,
                    Arc::new(move |t, _| {
                        let who = &accounts[if same_inbox { 0 } else { t as usize }];
                        let data = data.clone();
                        block_on(store.append(who, INBOX, data, &Flags::new(), 1_700_000_000))
                            .unwrap();
                    }),
                )
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
