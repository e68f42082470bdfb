//! What the maildir store's benches share (`benches/maildir_append.rs`,
//! `benches/account_growth.rs`, each including this file with `#[path]`): the 4 KB
//! message and the thread fan-out that turns a batch's wall time into a time per job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// The size of the benches' message, about a Delta Chat message with a short text.
pub const MESSAGE_SIZE: usize = 4096;

/// A message of [`MESSAGE_SIZE`] bytes.
pub fn message() -> Bytes {
    let mut m =
        b"From: a@chat.example.org\r\nTo: b@chat.example.org\r\nSubject: [...]\r\n\r\n".to_vec();
    m.resize(MESSAGE_SIZE - 2, b'x');
    m.extend_from_slice(b"\r\n");
    Bytes::from(m)
}

/// Runs `total` jobs on `threads` threads at once, job `k` of thread `t` as `job(t, k)`;
/// returns the wall time, normalised to `total` jobs (the last round may do a few more).
pub fn parallel(threads: u64, total: u64, job: Arc<dyn Fn(u64, u64) + Send + Sync>) -> Duration {
    if total == 0 {
        return Duration::ZERO;
    }
    let per_thread = total.div_ceil(threads);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let job = job.clone();
            std::thread::spawn(move || (0..per_thread).for_each(|k| job(t, k)))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    start
        .elapsed()
        .mul_f64(total as f64 / (per_thread * threads) as f64)
}
