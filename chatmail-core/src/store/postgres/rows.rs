//! Decoding rows: a mailbox's counters, a message's metadata, flags and keywords
//! (system flags as bits of a `smallint`, keywords as one space-separated `text`:
//! keywords are atoms, never holding a space).

use tokio_postgres::Row;

use super::sql::{column, to_u32, to_u64};
use crate::store::error::StoreError;
use crate::types::{Flag, Flags, MessageMeta, ModSeq, Uid, UidValidity};

/// The columns [`MailboxRow::from_row`] reads, in its order.
pub(super) const MAILBOX_COLUMNS: &str = "id, uid_validity, uid_next, highest_modseq, size";

/// A mailbox's row: its id and IMAP counters.
#[derive(Debug, Clone)]
pub(super) struct MailboxRow {
    pub id: i64,
    pub uid_validity: UidValidity,
    pub uid_next: Uid,
    pub highest_modseq: ModSeq,
    pub size: u64,
}

impl MailboxRow {
    /// Reads [`MAILBOX_COLUMNS`] from the start of a row.
    pub(super) fn from_row(row: &Row) -> Result<Self, StoreError> {
        Ok(MailboxRow {
            id: column(row, 0)?,
            uid_validity: UidValidity(to_u32(column(row, 1)?, "UIDVALIDITY")?),
            uid_next: Uid(to_u32(column(row, 2)?, "UIDNEXT")?),
            highest_modseq: ModSeq(to_u64(column(row, 3)?, "HIGHESTMODSEQ")?),
            size: to_u64(column(row, 4)?, "mailbox size")?,
        })
    }
}

/// The bit of each system flag (STATUS counts unseen messages by `flags & 1`).
const BITS: [(Flag, i16); 5] = [
    (Flag::Seen, 1),
    (Flag::Answered, 2),
    (Flag::Flagged, 4),
    (Flag::Deleted, 8),
    (Flag::Draft, 16),
];

/// Flags as they are stored: (system flag bits, keywords separated by spaces).
pub(super) fn encode(flags: &Flags) -> (i16, String) {
    let mut bits = 0;
    let mut keywords = Vec::new();
    for flag in flags {
        match flag {
            Flag::Keyword(keyword) => keywords.push(keyword.as_str()),
            system => {
                bits |= BITS
                    .iter()
                    .find(|(f, _)| f == system)
                    .map_or(0, |(_, bit)| *bit);
            }
        }
    }
    (bits, keywords.join(" "))
}

/// Flags from their stored form; unknown bits or a keyword that is not an atom are
/// [`StoreError::Corrupt`].
pub(super) fn decode(bits: i16, keywords: &str) -> Result<Flags, StoreError> {
    let known = BITS.iter().fold(0, |all, (_, bit)| all | bit);
    if bits & !known != 0 {
        return Err(StoreError::Corrupt(format!("flag bits {bits:#x}")));
    }
    let mut flags: Flags = BITS
        .iter()
        .filter(|(_, bit)| bits & bit != 0)
        .map(|(flag, _)| flag.clone())
        .collect();
    for keyword in keywords.split(' ').filter(|k| !k.is_empty()) {
        match Flag::from_imap(keyword) {
            Some(flag @ Flag::Keyword(_)) => {
                flags.insert(flag);
            }
            _ => return Err(StoreError::Corrupt(format!("keyword {keyword:?}"))),
        }
    }
    Ok(flags)
}

/// A message's metadata from the start of a row holding the columns
/// `uid, size, internal_date, flags, keywords, modseq`.
pub(super) fn meta_from_row(row: &Row) -> Result<MessageMeta, StoreError> {
    Ok(MessageMeta {
        uid: Uid(to_u32(column(row, 0)?, "UID")?),
        size: to_u64(column(row, 1)?, "message size")?,
        internal_date: column(row, 2)?,
        flags: decode(column(row, 3)?, column(row, 4)?)?,
        modseq: ModSeq(to_u64(column(row, 5)?, "modseq")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_and_malformed_ones_are_refused() {
        let flags: Flags = [
            Flag::Seen,
            Flag::Draft,
            Flag::Keyword("$MDNSent".into()),
            Flag::Keyword("$Forwarded".into()),
        ]
        .into();
        let (bits, keywords) = encode(&flags);
        assert_eq!(bits & 1, 1);
        assert_eq!(decode(bits, &keywords).unwrap(), flags);
        assert_eq!(decode(0, "").unwrap(), Flags::new());
        assert!(matches!(decode(64, ""), Err(StoreError::Corrupt(_))));
        assert!(matches!(decode(0, "\\Seen"), Err(StoreError::Corrupt(_))));
        assert!(matches!(decode(0, "a(b"), Err(StoreError::Corrupt(_))));
    }
}
