//! Deliveries this relay made lately, so that a sender's second copy of one message is
//! not a second message in the mailbox.
//!
//! SMTP is at-least-once: a sender that lost the `250` (it crashed, or the connection
//! broke after the receiver's commit) sends again, and RFC 5321 section 6.1 accepts the
//! duplicate that results. The relay's own delivery queue is such a sender
//! (BENCHMARKS.md, "Crash loop with the delivery queue": 2.7 second copies per kill of
//! the sender). The receiver is where they can be caught: a local delivery whose
//! recipient already got the same bytes within [`WINDOW`] is answered as delivered and
//! not stored again.
//!
//! What counts as the same: one recipient (case-insensitively), the message as stored
//! (after the delivery clean-up of spec 4.3, which drops the hop fields a second
//! attempt changes), and a `Message-ID` present (messages without one are never taken
//! for duplicates). Byte equality rather than the `Message-ID` alone, so that nobody can
//! keep a message out of a mailbox by sending first another one with its
//! `Message-ID`: a copy suppressed is one the mailbox holds already, byte for byte.
//!
//! Bounds: [`CAPACITY`] remembered deliveries, about 70 bytes each; when more arrive
//! within the window, the oldest are forgotten first (the window then shortens, to
//! about a minute at 3,000 deliveries per second). Keys are 128-bit SipHash digests
//! under random keys, so a peer can neither aim collisions at the table nor, in
//! practice, meet one (a false match among 200,000 entries has odds of about 10⁻²⁸).
//! The memory lives in one process: a relay restarted, or a second node of a cluster
//! (README, "Several nodes"), does not know what this one delivered.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a delivery is remembered: the delivery queue's first retries, and a
/// sender restarted within the hour, fall inside it.
pub(super) const WINDOW: Duration = Duration::from_secs(3600);

/// The most deliveries remembered at once.
pub(super) const CAPACITY: usize = 200_000;

/// A delivery's identity: a 128-bit digest of recipient and stored bytes.
type Key = [u64; 2];

/// The 128-bit digest of one stored copy, or `None` when it has no `Message-ID`:
/// computed by the first recipient's delivery and shared by the others, so a message
/// to many recipients is hashed once, not once per recipient (a 30 MB message to 50
/// local recipients would otherwise be 1.5 GB of hashing).
#[derive(Clone, Default)]
pub(super) struct SharedDigest(Arc<OnceLock<Option<[u64; 2]>>>);

/// The deliveries made within [`WINDOW`], and those under way.
pub(super) struct RecentDeliveries {
    digests: [RandomState; 2],
    window: Duration,
    capacity: usize,
    started: Instant,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// Key → the claim's number (claims are numbered in the order they are made).
    claimed: HashMap<Key, u64>,
    /// The claims in the order they were made, with their time in milliseconds since
    /// `started` (some since released: see `expire`).
    order: VecDeque<Claimed>,
    /// The next claim's number.
    next: u64,
}

/// One claim in the line of [`Table::order`].
struct Claimed {
    at: u64,
    number: u64,
    key: Key,
}

/// What [`RecentDeliveries::claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Claim {
    /// The first delivery of these bytes to this recipient: store it, then `release`
    /// the claim if storing failed.
    First(Key),
    /// Delivered already, or being delivered now: answer as delivered, store nothing.
    /// (If the delivery under way fails, its own sender is told to retry.)
    Duplicate,
    /// No `Message-ID`: not checked.
    Unchecked,
}

impl RecentDeliveries {
    /// An empty memory with the relay's bounds.
    pub(super) fn new() -> Self {
        Self::with_bounds(WINDOW, CAPACITY)
    }

    /// An empty memory of at most `capacity` deliveries for `window` (tests).
    pub(super) fn with_bounds(window: Duration, capacity: usize) -> Self {
        RecentDeliveries {
            digests: [RandomState::new(), RandomState::new()],
            window,
            capacity: capacity.max(1),
            started: Instant::now(),
            table: Mutex::new(Table::default()),
        }
    }

    /// Claims the delivery of `stored` (the bytes as the mailbox will hold them) to
    /// `recipient`, unless it was delivered or claimed within the window. `digest` is
    /// `stored`'s, computed here by the first of its recipients.
    pub(super) fn claim(&self, recipient: &str, digest: &SharedDigest, stored: &[u8]) -> Claim {
        let Some(digest) = *digest.0.get_or_init(|| self.digest(stored)) else {
            return Claim::Unchecked;
        };
        let key = self.key(recipient, digest);
        let now = self.started.elapsed().as_millis() as u64;
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.expire(now, self.window.as_millis() as u64, self.capacity);
        let number = table.next;
        match table.claimed.entry(key) {
            Entry::Occupied(_) => Claim::Duplicate,
            Entry::Vacant(v) => {
                v.insert(number);
                table.next += 1;
                table.order.push_back(Claimed {
                    at: now,
                    number,
                    key,
                });
                Claim::First(key)
            }
        }
    }

    /// Forgets a claim whose delivery failed, so that the sender's retry is stored.
    pub(super) fn release(&self, key: Key) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.claimed.remove(&key);
    }

    /// How many deliveries are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().map(|t| t.claimed.len()).unwrap_or(0)
    }

    /// The digest of a stored copy; `None` without one top-level `Message-ID`.
    fn digest(&self, stored: &[u8]) -> Option<[u64; 2]> {
        chatmail_policy::message_id(stored)?;
        Some(self.digests.each_ref().map(|state| {
            let mut h = state.build_hasher();
            h.write(stored);
            h.finish()
        }))
    }

    fn key(&self, recipient: &str, digest: [u64; 2]) -> Key {
        self.digests.each_ref().map(|state| {
            let mut h = state.build_hasher();
            // Length-prefixed, so no two (recipient, message) pairs write the same bytes.
            h.write_usize(recipient.len());
            for b in recipient.bytes() {
                h.write_u8(b.to_ascii_lowercase());
            }
            h.write_u64(digest[0]);
            h.write_u64(digest[1]);
            h.finish()
        })
    }
}

impl Table {
    /// Drops claims older than `window` ms, then the oldest until there is room for
    /// one more under `capacity`. A released claim left in `order` is skipped; one
    /// claimed again later is kept (`claimed` holds the newer claim's number).
    fn expire(&mut self, now: u64, window: u64, capacity: usize) {
        while let Some(first) = self.order.front() {
            let too_old = now.saturating_sub(first.at) > window;
            if !too_old && self.order.len() < capacity {
                break;
            }
            let (number, key) = (first.number, first.key);
            self.order.pop_front();
            if self.claimed.get(&key) == Some(&number) {
                self.claimed.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"Message-ID: <1@example.org>\r\nSubject: x\r\n\r\nbody\r\n";

    /// A claim as one delivery of `stored` makes it (its own digest).
    fn claim(recent: &RecentDeliveries, recipient: &str, stored: &[u8]) -> Claim {
        recent.claim(recipient, &SharedDigest::default(), stored)
    }

    #[test]
    fn recipients_of_one_message_share_its_digest() {
        let recent = RecentDeliveries::new();
        let digest = SharedDigest::default();
        assert!(matches!(
            recent.claim("bob@example.org", &digest, MESSAGE),
            Claim::First(_)
        ));
        assert!(digest.0.get().is_some_and(|d| d.is_some()));
        assert!(matches!(
            recent.claim("carol@example.org", &digest, MESSAGE),
            Claim::First(_)
        ));
        assert_eq!(
            claim(&recent, "carol@example.org", MESSAGE),
            Claim::Duplicate
        );
    }

    #[test]
    fn a_second_copy_to_one_recipient_is_a_duplicate() {
        let recent = RecentDeliveries::new();
        assert!(matches!(
            claim(&recent, "bob@example.org", MESSAGE),
            Claim::First(_)
        ));
        assert_eq!(claim(&recent, "BOB@example.org", MESSAGE), Claim::Duplicate);
        // Another recipient, or other bytes, are other deliveries.
        assert!(matches!(
            claim(&recent, "carol@example.org", MESSAGE),
            Claim::First(_)
        ));
        let other = b"Message-ID: <1@example.org>\r\nSubject: y\r\n\r\nbody\r\n";
        assert!(matches!(
            claim(&recent, "bob@example.org", other),
            Claim::First(_)
        ));
    }

    #[test]
    fn a_message_without_one_message_id_is_not_checked() {
        let recent = RecentDeliveries::new();
        let bare = b"Subject: x\r\n\r\nbody\r\n";
        assert_eq!(claim(&recent, "bob@example.org", bare), Claim::Unchecked);
        assert_eq!(claim(&recent, "bob@example.org", bare), Claim::Unchecked);
        assert_eq!(recent.len(), 0);
    }

    #[test]
    fn a_released_claim_lets_the_retry_through() {
        let recent = RecentDeliveries::new();
        let Claim::First(key) = claim(&recent, "bob@example.org", MESSAGE) else {
            panic!("first claim refused");
        };
        recent.release(key);
        assert!(matches!(
            claim(&recent, "bob@example.org", MESSAGE),
            Claim::First(_)
        ));
        assert_eq!(claim(&recent, "bob@example.org", MESSAGE), Claim::Duplicate);
    }

    #[test]
    fn claims_end_with_the_window() {
        let recent = RecentDeliveries::with_bounds(Duration::from_millis(30), 100);
        assert!(matches!(
            claim(&recent, "bob@example.org", MESSAGE),
            Claim::First(_)
        ));
        std::thread::sleep(Duration::from_millis(80));
        assert!(matches!(
            claim(&recent, "bob@example.org", MESSAGE),
            Claim::First(_)
        ));
        assert_eq!(recent.len(), 1);
    }

    #[test]
    fn the_oldest_claims_go_first_at_capacity() {
        let recent = RecentDeliveries::with_bounds(WINDOW, 3);
        for n in 0..5 {
            let m = format!("Message-ID: <{n}@example.org>\r\n\r\nbody\r\n");
            assert!(matches!(
                claim(&recent, "bob@example.org", m.as_bytes()),
                Claim::First(_)
            ));
        }
        assert_eq!(recent.len(), 3);
        let newest = b"Message-ID: <4@example.org>\r\n\r\nbody\r\n";
        let oldest = b"Message-ID: <0@example.org>\r\n\r\nbody\r\n";
        assert_eq!(claim(&recent, "bob@example.org", newest), Claim::Duplicate);
        assert!(matches!(
            claim(&recent, "bob@example.org", oldest),
            Claim::First(_)
        ));
    }

    #[test]
    fn a_claim_released_and_made_again_outlives_its_first_place_in_line() {
        let recent = RecentDeliveries::with_bounds(WINDOW, 3);
        let Claim::First(key) = claim(&recent, "bob@example.org", MESSAGE) else {
            panic!("first claim refused");
        };
        recent.release(key);
        assert!(matches!(
            claim(&recent, "bob@example.org", MESSAGE),
            Claim::First(_)
        ));
        let other = b"Message-ID: <2@example.org>\r\n\r\nbody\r\n";
        assert!(matches!(
            claim(&recent, "bob@example.org", other),
            Claim::First(_)
        ));
        // The line is full now: the released entry leaves it. The second claim of the
        // same key, likely made within the same millisecond, stays.
        assert_eq!(claim(&recent, "bob@example.org", MESSAGE), Claim::Duplicate);
    }
}
