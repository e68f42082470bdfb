//! The sequence-number view of a selected mailbox, kept as runs of consecutive UIDs.
//!
//! A chat inbox is mostly one or a few runs (UIDs are handed out in order and old mail
//! is expunged from the front), so an idling session pays a few bytes for its view
//! instead of four bytes per message.

use chatmail_core::Uid;

/// Ascending UIDs of the messages a client knows about, as inclusive runs `(first, last)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UidMap {
    runs: Vec<(u32, u32)>,
    len: u32,
}

impl UidMap {
    /// Builds the map from ascending UIDs (out-of-order or duplicate ones are skipped).
    pub(crate) fn from_sorted(uids: impl IntoIterator<Item = Uid>) -> UidMap {
        let mut map = UidMap::default();
        for uid in uids {
            map.push(uid);
        }
        map.runs.shrink_to_fit();
        map
    }

    /// Number of messages whose UID is below `uid`: a walk over the runs.
    pub(crate) fn count_below(&self, uid: Uid) -> u32 {
        let mut count = 0;
        for &(a, b) in &self.runs {
            if uid.0 <= a {
                break;
            }
            count += uid.0.min(b.saturating_add(1)) - a;
        }
        count
    }

    /// Number of messages (the EXISTS count).
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    /// The highest UID, if any.
    pub(crate) fn last(&self) -> Option<Uid> {
        self.runs.last().map(|&(_, b)| Uid(b))
    }

    /// Appends a UID above every UID in the map; returns false (and ignores it) otherwise.
    pub(crate) fn push(&mut self, uid: Uid) -> bool {
        match self.runs.last_mut() {
            Some((_, b)) if uid.0 <= *b => return false,
            Some((_, b)) if *b + 1 == uid.0 => *b = uid.0,
            _ => self.runs.push((uid.0, uid.0)),
        }
        self.len += 1;
        true
    }

    /// The UID at 1-based sequence number `seq`.
    #[cfg(test)]
    pub(crate) fn uid_at(&self, seq: u32) -> Option<Uid> {
        let mut before = 0u32;
        for &(a, b) in &self.runs {
            let n = b - a + 1;
            if seq > before && seq <= before + n {
                return Some(Uid(a + (seq - before - 1)));
            }
            before += n;
        }
        None
    }

    /// The 1-based sequence number of `uid`.
    pub(crate) fn seq_of(&self, uid: Uid) -> Option<u32> {
        let mut before = 0u32;
        for &(a, b) in &self.runs {
            if uid.0 < a {
                return None;
            }
            if uid.0 <= b {
                return Some(before + (uid.0 - a) + 1);
            }
            before += b - a + 1;
        }
        None
    }

    /// Removes `uid`; returns the sequence number it had.
    pub(crate) fn remove(&mut self, uid: Uid) -> Option<u32> {
        let seq = self.seq_of(uid)?;
        let idx = self
            .runs
            .iter()
            .position(|&(a, b)| a <= uid.0 && uid.0 <= b)?;
        let (a, b) = self.runs[idx];
        match (uid.0 == a, uid.0 == b) {
            (true, true) => {
                self.runs.remove(idx);
            }
            (true, false) => self.runs[idx].0 = a + 1,
            (false, true) => self.runs[idx].1 = b - 1,
            (false, false) => {
                self.runs[idx].1 = uid.0 - 1;
                self.runs.insert(idx + 1, (uid.0 + 1, b));
            }
        }
        self.len -= 1;
        Some(seq)
    }

    /// Iterates `(seq, uid)` in ascending order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, Uid)> + '_ {
        self.runs
            .iter()
            .flat_map(|&(a, b)| (a..=b).map(Uid))
            .enumerate()
            .map(|(i, uid)| (i as u32 + 1, uid))
    }

    /// Bytes of heap this map holds.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.runs.capacity() * std::mem::size_of::<(u32, u32)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_track_sequence_numbers() {
        let mut m = UidMap::from_sorted([1, 2, 3, 7, 8, 20].map(Uid));
        assert_eq!(m.len(), 6);
        assert_eq!(m.uid_at(4), Some(Uid(7)));
        assert_eq!(m.seq_of(Uid(20)), Some(6));
        assert_eq!(m.seq_of(Uid(5)), None);
        assert_eq!(m.remove(Uid(2)), Some(2));
        assert_eq!(m.uid_at(2), Some(Uid(3)));
        assert_eq!(m.seq_of(Uid(20)), Some(5));
        assert!(!m.push(Uid(20)));
        assert!(m.push(Uid(21)));
        let all: Vec<_> = m.iter().map(|(s, u)| (s, u.0)).collect();
        assert_eq!(all, [(1, 1), (2, 3), (3, 7), (4, 8), (5, 20), (6, 21)]);
        assert_eq!(m.last(), Some(Uid(21)));
        // 1 3 7 8 20 21
        let below: Vec<u32> = [1, 2, 4, 8, 9, 20, 21, 22, 100]
            .map(|u| m.count_below(Uid(u)))
            .to_vec();
        assert_eq!(below, [0, 1, 2, 3, 4, 4, 5, 6, 6]);
    }
}
