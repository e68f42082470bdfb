//! One bound on the message bytes all connections together hold in memory (SMTP
//! DATA/BDAT buffers, IMAP APPEND literals): `max_message_memory`.
//!
//! Each connection takes bytes from the shared [`MemoryBudget`] as they *arrive*, never
//! when a size is announced (an IMAP `{N}` or a `BDAT N` costs nothing until its octets
//! come), and gives them back when the message is delivered or dropped. A connection that
//! would pass the bound is refused with a temporary failure instead of buffering more.
//! The counter is a plain atomic: no I/O, so the sans-IO engines can hold it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The shared bound; keep it in an `Arc` and hand the same one to every session.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// The bound in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes taken now by all reservations together.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes if that keeps the total within the limit.
    fn take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: u64) {
        // Never below zero, even if a caller's arithmetic went wrong.
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(n))
            });
    }
}

/// Bytes one connection holds from a [`MemoryBudget`]; dropping it gives them back.
/// Without a budget (`Reservation::default()`) every [`Reservation::grow`] succeeds.
#[derive(Debug, Default)]
pub struct Reservation {
    budget: Option<Arc<MemoryBudget>>,
    bytes: u64,
}

impl Reservation {
    /// An empty reservation against `budget` (none: unbounded).
    pub fn new(budget: Option<Arc<MemoryBudget>>) -> Reservation {
        Reservation { budget, bytes: 0 }
    }

    /// Takes `n` more bytes for data that has arrived. `false` (and nothing taken) if the
    /// budget would be passed: the caller must not keep the data.
    pub fn grow(&mut self, n: u64) -> bool {
        if let Some(budget) = &self.budget {
            if !budget.take(n) {
                return false;
            }
        }
        self.bytes += n;
        true
    }

    /// Gives every byte back (the message was delivered or dropped); the reservation
    /// stays usable for the next message.
    pub fn release(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give_back(self.bytes);
        }
        self.bytes = 0;
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The same budget with nothing taken yet, for the next message.
    pub fn fresh(&self) -> Reservation {
        Reservation::new(self.budget.clone())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_within_the_limit_and_gives_back_on_drop() {
        let budget = MemoryBudget::new(100);
        let mut a = Reservation::new(Some(budget.clone()));
        let mut b = Reservation::new(Some(budget.clone()));
        assert!(a.grow(60));
        assert!(!b.grow(41), "would pass the limit");
        assert_eq!(budget.used(), 60, "a refused grow takes nothing");
        assert!(b.grow(40));
        assert!(!a.grow(1));
        drop(a);
        assert_eq!(budget.used(), 40);
        b.release();
        assert_eq!((budget.used(), b.bytes()), (0, 0));
        assert!(b.grow(100));
        let fresh = b.fresh();
        assert_eq!(fresh.bytes(), 0);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn without_a_budget_everything_fits() {
        let mut r = Reservation::default();
        assert!(r.grow(u64::MAX / 2));
        assert_eq!(r.bytes(), u64::MAX / 2);
    }

    #[test]
    fn concurrent_reservations_never_pass_the_limit() {
        let budget = MemoryBudget::new(1000);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || {
                    let mut r = Reservation::new(Some(budget.clone()));
                    let mut peak = 0;
                    for _ in 0..10_000 {
                        if r.grow(7) {
                            peak = peak.max(budget.used());
                        } else {
                            r.release();
                        }
                    }
                    peak
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap() <= 1000);
        }
        assert_eq!(budget.used(), 0);
    }
}
