//! Append latency and throughput of the `maildir` store with 4 KB messages (file fsync,
//! rename, directory fsync, index record fsync), for one appender and for 8 and 32
//! concurrent appenders (threads), next to the floor measured in the same run: a plain
//! write + fsync + rename + directory fsync of a 4 KB file, with the same thread counts.
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
use std::time::{Duration, Instant};

use bytes::Bytes;
use chatmail_core::store::{MailStore, MaildirStore};
use chatmail_core::{Address, Flags, INBOX};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures::executor::block_on;

const MESSAGE_SIZE: usize = 4096;

fn message() -> Bytes {
    let mut m =
        b"From: a@chat.example.org\r\nTo: b@chat.example.org\r\nSubject: [...]\r\n\r\n".to_vec();
    m.resize(MESSAGE_SIZE - 2, b'x');
    m.extend_from_slice(b"\r\n");
    Bytes::from(m)
}

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

/// Runs `iters` jobs on `threads` threads at once; returns the wall time.
fn parallel(threads: u64, iters: u64, job: impl Fn(u64, u64) + Send + Sync + 'static) -> Duration {
    let job = Arc::new(job);
    let per_thread = iters.div_ceil(threads);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let job = job.clone();
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    job(t, i);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Normalised to `iters` jobs (the last round may have done a few more).
    start
        .elapsed()
        .mul_f64(iters as f64 / (per_thread * threads) as f64)
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
                parallel(threads, iters, move |_, _| {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    plain_write_fsync_rename(&dir, n, &data);
                })
            })
        });
    }

    let store = Arc::new(MaildirStore::open(root.path().join("mailboxes")).unwrap());
    let accounts: Arc<Vec<Address>> = Arc::new(
        (0..32)
            .map(|i| Address::parse(&format!("user{i}@chat.example.org")).unwrap())
            .collect(),
    );
    for (threads, same_inbox) in [(1u64, true), (8, false), (8, true), (32, false), (32, true)] {
        let target = if same_inbox {
            "one_inbox"
        } else {
            "distinct_accounts"
        };
        let name = if threads == 1 {
            "store_append/1_thread".to_string()
        } else {
            format!("store_append/{threads}_threads_{target}")
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (store, accounts, data) = (store.clone(), accounts.clone(), data.clone());
                parallel(threads, iters, move |t, _| {
                    let who = &accounts[if same_inbox { 0 } else { t as usize }];
                    block_on(store.append(who, INBOX, data.clone(), &Flags::new(), 1_700_000_000))
                        .unwrap();
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
