//! What delivery remembers between attempts, in memory and bounded: the hosts sent SMTP
//! only, and one idle SMTP connection per host and port.

use super::smtp::SmtpConnection;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// Locks `mutex`, also after a panic elsewhere (the maps stay consistent: every
/// change is one insert or remove).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hosts that took mail over SMTP after HTTPS failed: HTTPS is skipped for them until
/// their entry expires (spec 3.4).
pub(super) struct SmtpOnlyMemo {
    until: Mutex<HashMap<String, Instant>>,
    max: usize,
    ttl: Duration,
}

impl SmtpOnlyMemo {
    pub(super) fn new(max: usize, ttl: Duration) -> SmtpOnlyMemo {
        SmtpOnlyMemo {
            until: Mutex::new(HashMap::new()),
            max,
            ttl,
        }
    }

    /// Whether `host` is to be sent SMTP only at `now`.
    pub(super) fn contains(&self, host: &str, now: Instant) -> bool {
        let mut until = lock(&self.until);
        match until.get(&host.to_ascii_lowercase()) {
            Some(&t) if t > now => true,
            Some(_) => {
                until.remove(&host.to_ascii_lowercase());
                false
            }
            None => false,
        }
    }

    /// Remembers `host` as SMTP-only from `now` on. When full, expired entries go
    /// first, then the one closest to expiry.
    pub(super) fn insert(&self, host: &str, now: Instant) {
        let mut until = lock(&self.until);
        let host = host.to_ascii_lowercase();
        if until.len() >= self.max && !until.contains_key(&host) {
            until.retain(|_, t| *t > now);
            if until.len() >= self.max {
                let oldest = until
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(h, _)| h.clone());
                if let Some(oldest) = oldest {
                    until.remove(&oldest);
                }
            }
        }
        until.insert(host, now + self.ttl);
    }
}

/// Which idle connection: host, port, and whether it was opened accepting any
/// certificate (never reused for a delivery that must verify).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct IdleKey {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) any_certificate: bool,
}

type IdleMap = Mutex<HashMap<IdleKey, (u64, SmtpConnection)>>;

/// Idle SMTP connections, one per [`IdleKey`], each closed with `QUIT` after its idle
/// time unless taken before.
pub(super) struct IdlePool {
    idle: Arc<IdleMap>,
    generation: AtomicU64,
    max: usize,
    keep_for: Duration,
}

impl IdlePool {
    pub(super) fn new(max: usize, keep_for: Duration) -> IdlePool {
        IdlePool {
            idle: Arc::new(Mutex::new(HashMap::new())),
            generation: AtomicU64::new(0),
            max,
            keep_for,
        }
    }

    /// The idle connection for `key`, if any (it is no longer in the pool).
    pub(super) fn take(&self, key: &IdleKey) -> Option<SmtpConnection> {
        lock(&self.idle)
            .remove(key)
            .map(|(_, connection)| connection)
    }

    /// Keeps `connection` for the next message to `key`; it says `QUIT` instead when it
    /// cannot take another message or the pool is full. A connection it replaces says
    /// `QUIT` too.
    pub(super) fn put(&self, key: IdleKey, connection: SmtpConnection) {
        if !connection.is_ready() {
            tokio::spawn(connection.quit());
            return;
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let refused = {
            let mut idle = lock(&self.idle);
            if idle.len() >= self.max && !idle.contains_key(&key) {
                Some(connection)
            } else {
                idle.insert(key.clone(), (generation, connection))
                    .map(|(_, replaced)| replaced)
            }
        };
        if let Some(surplus) = refused {
            tokio::spawn(surplus.quit());
        }
        let idle: Weak<IdleMap> = Arc::downgrade(&self.idle);
        let keep_for = self.keep_for;
        tokio::spawn(async move {
            tokio::time::sleep(keep_for).await;
            let Some(idle) = idle.upgrade() else { return };
            let expired = {
                let mut idle = lock(&idle);
                match idle.get(&key) {
                    Some((g, _)) if *g == generation => idle.remove(&key),
                    _ => None,
                }
            };
            if let Some((_, connection)) = expired {
                connection.quit().await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memo_expires_and_stays_bounded() {
        let memo = SmtpOnlyMemo::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        memo.insert("A.example", t0);
        assert!(memo.contains("a.example", t0 + Duration::from_secs(59)));
        assert!(!memo.contains("a.example", t0 + Duration::from_secs(61)));
        memo.insert("a.example", t0);
        memo.insert("b.example", t0 + Duration::from_secs(1));
        memo.insert("c.example", t0 + Duration::from_secs(2));
        assert_eq!(lock(&memo.until).len(), 2);
        let now = t0 + Duration::from_secs(3);
        assert!(!memo.contains("a.example", now));
        assert!(memo.contains("b.example", now) && memo.contains("c.example", now));
    }
}
