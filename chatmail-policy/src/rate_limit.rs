//! Per-sender send rate limit: GCRA (spec 3.2 step 2).
//!
//! Each sender has a theoretical arrival time (TAT). A message at `now` is allowed when
//! `max(TAT, now) - now <= tolerance`, and then moves the TAT one emission interval on.
//! With `n` per minute and burst `b`: interval = 60 s / n, tolerance = (b - 1) · interval,
//! so `b` messages pass at once and then one per interval.
//!
//! Cost per check is O(1) whatever the number of senders: senders are keyed by a keyed
//! 64-bit hash of the lower-cased address into one of [`SHARDS`] independently locked
//! maps, and every check also inspects at most [`PRUNE_PER_CHECK`] entries of its shard
//! at a moving cursor, dropping those whose bucket has refilled (TAT ≤ now, which is
//! exactly the state of a sender never seen), plus the same in one other shard chosen
//! round-robin. Memory therefore stays proportional to the recently active senders,
//! without a full sweep ever.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Number of independently locked shards (a power of two).
const SHARDS: usize = 64;
/// Entries examined for expiry per check.
const PRUNE_PER_CHECK: usize = 2;

/// The GCRA limiter shared by all sessions.
pub(crate) struct RateLimiter {
    /// `None` when `max_user_send_per_minute` is 0 (no limit configured).
    interval: Option<Duration>,
    tolerance: Duration,
    keys: RandomState,
    shards: Box<[Mutex<Shard>]>,
    /// Round-robin position of the extra shard each check prunes, so that shards no
    /// active sender hashes to are cleaned too.
    sweep: AtomicUsize,
}

#[derive(Default)]
struct Shard {
    /// Sender key → index into `entries`.
    index: HashMap<u64, usize, BuildHasherDefault<KeyHasher>>,
    /// (sender key, TAT), in no particular order.
    entries: Vec<(u64, Instant)>,
    /// Next entry the pruning looks at.
    cursor: usize,
}

/// The keys are already uniformly distributed SipHash outputs; hashing them again is waste.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

impl RateLimiter {
    /// A limiter allowing `per_minute` messages per minute with bursts of `burst`
    /// (0 is treated as 1). `per_minute == 0` disables the limit.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let interval = (per_minute > 0).then(|| Duration::from_secs(60) / per_minute);
        let tolerance = interval.unwrap_or_default() * burst.max(1).saturating_sub(1);
        RateLimiter {
            interval,
            tolerance,
            keys: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            sweep: AtomicUsize::new(0),
        }
    }

    /// Counts one message from `sender` at `now`. `Err(wait)` when over the limit: the
    /// sender may send again after `wait`.
    pub fn check(&self, sender: &str, now: Instant) -> Result<(), Duration> {
        let Some(interval) = self.interval else {
            return Ok(());
        };
        let key = self.key(sender);
        let shard = &self.shards[(key >> 58) as usize % SHARDS];
        // A panic elsewhere while holding the lock cannot leave a TAT half-written.
        let mut shard = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = match shard.index.get(&key) {
            Some(&i) => {
                let tat = shard.entries[i].1.max(now);
                let ahead = tat - now;
                if ahead > self.tolerance {
                    Err(ahead - self.tolerance)
                } else {
                    shard.entries[i].1 = tat + interval;
                    Ok(())
                }
            }
            None => {
                let i = shard.entries.len();
                shard.entries.push((key, now + interval));
                shard.index.insert(key, i);
                Ok(())
            }
        };
        shard.prune(now);
        drop(shard);
        // One more shard, skipped rather than waited for when another session holds it.
        let other = self.sweep.fetch_add(1, Ordering::Relaxed) % SHARDS;
        if let Ok(mut other) = self.shards[other].try_lock() {
            other.prune(now);
        }
        result
    }

    /// Number of senders currently tracked (for tests and metrics).
    pub fn tracked_senders(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).entries.len())
            .sum()
    }

    /// The sender's key: a keyed hash of the ASCII-lower-cased address, so that case
    /// variants share one bucket and no allocation is needed.
    fn key(&self, sender: &str) -> u64 {
        let mut h = self.keys.build_hasher();
        let mut buf = [0u8; 64];
        for chunk in sender.as_bytes().chunks(buf.len()) {
            let lower = &mut buf[..chunk.len()];
            lower.copy_from_slice(chunk);
            lower.make_ascii_lowercase();
            h.write(lower);
        }
        h.write_u8(0xFF);
        h.finish()
    }
}

impl Shard {
    /// Drops up to [`PRUNE_PER_CHECK`] refilled buckets at the cursor.
    fn prune(&mut self, now: Instant) {
        for _ in 0..PRUNE_PER_CHECK {
            if self.entries.is_empty() {
                return;
            }
            if self.cursor >= self.entries.len() {
                self.cursor = 0;
            }
            let (key, tat) = self.entries[self.cursor];
            if tat <= now {
                self.index.remove(&key);
                self.entries.swap_remove(self.cursor);
                if let Some(&(moved, _)) = self.entries.get(self.cursor) {
                    self.index.insert(moved, self.cursor);
                }
            } else {
                self.cursor += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_per_interval() {
        let rl = RateLimiter::new(60, 10);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(rl.check("a@x", t0).is_ok());
        }
        let wait = rl.check("a@x", t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        // Case variants are the same sender; others are independent.
        assert!(rl.check("A@X", t0).is_err());
        assert!(rl.check("b@x", t0).is_ok());
        let t1 = t0 + Duration::from_secs(1);
        assert!(rl.check("a@x", t1).is_ok());
        assert!(rl.check("a@x", t1).is_err());
        assert!(rl.check("a@x", t0 + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn refilled_buckets_are_pruned() {
        let rl = RateLimiter::new(60, 10);
        let t0 = Instant::now();
        for i in 0..1000 {
            rl.check(&format!("u{i}@x"), t0).unwrap();
        }
        assert_eq!(rl.tracked_senders(), 1000);
        let later = t0 + Duration::from_secs(2);
        for i in 0..1000 {
            rl.check("active@x", later + Duration::from_millis(i)).ok();
        }
        // All shards except the active one are untouched by these checks; drive every
        // shard by checking more distinct senders later.
        for i in 0..4000 {
            rl.check(&format!("v{i}@x"), later).unwrap();
        }
        assert!(rl.tracked_senders() < 1000 + 4000 + 1, "pruned");
        let much_later = later + Duration::from_secs(60);
        for i in 0..20000 {
            rl.check(&format!("w{}@x", i % 50), much_later).ok();
        }
        assert!(rl.tracked_senders() <= 50 + 64, "{}", rl.tracked_senders());
    }

    #[test]
    fn zero_per_minute_means_no_limit() {
        let rl = RateLimiter::new(0, 10);
        let t0 = Instant::now();
        for _ in 0..100 {
            assert!(rl.check("a@x", t0).is_ok());
        }
    }
}
