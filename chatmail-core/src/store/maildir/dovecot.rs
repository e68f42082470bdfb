//! What Dovecot left in a maildir it served, read (never written) so that a mailbox
//! taken over keeps its UIDVALIDITY, UIDs and keywords; and the takeover itself
//! ([`MailboxState::adopt_dovecot`], see the parent module's docs).
//!
//! `dovecot-uidlist` (format version 3, Dovecot 1.1 to 2.3):
//!
//! ```text
//! 3 V<uidvalidity> N<next uid> G<mailbox guid> [<other header fields>]
//! <uid> [<extension field> ...] :<base file name>
//! ```
//!
//! Header fields are a key letter and a value, in any order. Record UIDs ascend
//! strictly; extension fields (`G<guid>`, `W<virtual size>`, `S<size>`, ...) are
//! skipped; the name after `:` is the file name without its `:2,<info>`.
//!
//! `dovecot-keywords` numbers the mailbox's keywords, one `<index> <keyword>` a line;
//! the lowercase info letter `a` of a file name is keyword 0, `b` keyword 1, up to `z`.
//!
//! Both files are read within bounds (size, line length, records). A uidlist that is
//! not exactly of this form (an unknown version, a bad number, UIDs not ascending, a
//! line too long, a name with `/`) is not used at all, as Dovecot itself would discard
//! it; a bad keywords line only loses that keyword.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::files::{self, base_of};
use super::inner::{now_secs, Inner, MailboxState};
use super::uidlist::FileRef;
use crate::store::error::StoreError;
use crate::store::index::MailboxIndex;
use crate::types::{Flag, Flags, MessageMeta, ModSeq, Uid, UidValidity};

/// The file in a mailbox directory that records that this store took over Dovecot's UIDs
/// there (it holds the adopted UIDVALIDITY). It is written before the index and outlives
/// it: if the index is lost, the mailbox is not adopted a second time (which could hand
/// out UIDs already used under that UIDVALIDITY) but gets a new UIDVALIDITY.
pub(crate) const ADOPTED_FILE: &str = "chatmail-dovecot-adopted";

/// Dovecot's UID list in each mailbox directory.
pub(crate) const UIDLIST_FILE: &str = "dovecot-uidlist";

/// Dovecot's keyword numbering in each mailbox directory.
pub(crate) const KEYWORDS_FILE: &str = "dovecot-keywords";

/// A larger uidlist is not read (about 250 000 messages of Dovecot's usual names).
const MAX_UIDLIST_BYTES: u64 = 32 << 20;

/// A longer line makes the uidlist invalid (a file name is at most 255 bytes; the
/// extension fields Dovecot writes are short).
const MAX_LINE_BYTES: usize = 4096;

/// More records make the uidlist invalid.
const MAX_RECORDS: usize = 1 << 20;

/// Adopted UIDs and UIDNEXT stay at or below this, so that at least 2^31 UIDs remain
/// for the messages that follow; a higher one makes the uidlist invalid.
pub(crate) const MAX_ADOPTED_UID: u32 = i32::MAX as u32;

/// A larger keywords file is ignored (Dovecot numbers at most 26 keywords per mailbox).
const MAX_KEYWORDS_BYTES: u64 = 64 << 10;

/// The keyword letters `a` to `z`.
const KEYWORD_LETTERS: usize = 26;

/// What a valid `dovecot-uidlist` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DovecotUidlist {
    pub uid_validity: u32,
    pub next_uid: u32,
    /// UID by base file name (the name before `:2,`).
    pub uids: HashMap<String, Uid>,
}

/// Reads at most `limit` bytes of `dir/name`; `None` if it is missing, unreadable or
/// larger.
fn read_bounded(dir: &Path, name: &str, limit: u64) -> Option<Vec<u8>> {
    let file = std::fs::File::open(dir.join(name)).ok()?;
    if file.metadata().ok()?.len() > limit {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= limit).then_some(bytes)
}

/// The mailbox's `dovecot-uidlist`, if there is a readable and valid one.
pub(crate) fn read_uidlist(dir: &Path) -> Option<DovecotUidlist> {
    parse_uidlist(&read_bounded(dir, UIDLIST_FILE, MAX_UIDLIST_BYTES)?)
}

/// A decimal number of digits only (no sign, no spaces) that fits a `u32`.
fn number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits
        .iter()
        .try_fold(0u64, |n, d| Some(n * 10 + u64::from(d - b'0')))
        .and_then(|n| u32::try_from(n).ok())
}

/// The complete lines of `bytes`: an unterminated tail (a write cut short) is left out.
fn complete_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let (complete, lines) = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(end) => (&bytes[..end], usize::MAX),
        None => (&bytes[..0], 0),
    };
    complete.split(|b| *b == b'\n').take(lines)
}

/// Parses a version 3 `dovecot-uidlist`; `None` if it is not a valid one.
pub(crate) fn parse_uidlist(bytes: &[u8]) -> Option<DovecotUidlist> {
    let mut lines = complete_lines(bytes);
    let header = lines.next()?;
    if header.len() > MAX_LINE_BYTES {
        return None;
    }
    let fields = header.strip_prefix(b"3 ")?;
    let (mut uid_validity, mut next_uid) = (None, None);
    for field in fields.split(|b| *b == b' ').filter(|f| !f.is_empty()) {
        match field.split_first() {
            Some((b'V', value)) => uid_validity = Some(number(value)?),
            Some((b'N', value)) => next_uid = Some(number(value)?),
            // The mailbox GUID and fields of later versions: not needed here.
            _ => {}
        }
    }
    let uid_validity = uid_validity.filter(|v| *v != 0)?;
    let next_uid = next_uid.filter(|n| (1..=MAX_ADOPTED_UID).contains(n))?;
    let mut uids = HashMap::new();
    let mut previous = 0u32;
    for (count, line) in lines.enumerate() {
        if count >= MAX_RECORDS || line.len() > MAX_LINE_BYTES {
            return None;
        }
        let (uid, name) = parse_record(line)?;
        if uid <= previous || uid > MAX_ADOPTED_UID {
            return None;
        }
        previous = uid;
        // A name that is not UTF-8 is not one the store serves: its UID stays unused.
        if let Ok(name) = std::str::from_utf8(name) {
            let base = base_of(name);
            if base.is_empty() {
                return None;
            }
            // A file listed twice keeps its later UID, as in Dovecot.
            uids.insert(base.to_string(), Uid(uid));
        }
    }
    // Dovecot appends records without rewriting the header: its `N` may be below UIDs
    // it listed since (even of messages expunged since, whose records stay until the
    // next rewrite). Those UIDs were handed out and must not be given again.
    let next_uid = next_uid.max(previous.saturating_add(1));
    if next_uid > MAX_ADOPTED_UID {
        return None;
    }
    Some(DovecotUidlist {
        uid_validity,
        next_uid,
        uids,
    })
}

/// One record: the UID and the file name.
fn parse_record(line: &[u8]) -> Option<(u32, &[u8])> {
    let space = line.iter().position(|b| *b == b' ')?;
    let uid = number(&line[..space])?;
    let mut rest = &line[space..];
    // Extension fields up to the one that starts with `:`, the file name.
    loop {
        let start = rest.iter().position(|b| *b != b' ')?;
        rest = &rest[start..];
        if let Some(name) = rest.strip_prefix(b":") {
            if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
                return None;
            }
            return Some((uid, name));
        }
        let end = rest.iter().position(|b| *b == b' ')?;
        rest = &rest[end..];
    }
}

/// The keywords the lowercase info letters of a mailbox's file names stand for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DovecotKeywords {
    by_letter: [Option<String>; KEYWORD_LETTERS],
}

impl DovecotKeywords {
    /// The mailbox's `dovecot-keywords`; empty if missing, unreadable or too large.
    pub(super) fn read(dir: &Path) -> DovecotKeywords {
        read_bounded(dir, KEYWORDS_FILE, MAX_KEYWORDS_BYTES)
            .map(|bytes| DovecotKeywords::parse(&bytes))
            .unwrap_or_default()
    }

    /// Parses `<index> <keyword>` lines; lines that are not of that form, out of range
    /// or not a valid IMAP keyword are skipped.
    pub(super) fn parse(bytes: &[u8]) -> DovecotKeywords {
        let mut keywords = DovecotKeywords::default();
        for line in complete_lines(bytes) {
            let Some((index, name)) = keyword_line(line) else {
                continue;
            };
            let Some(slot) = keywords.by_letter.get_mut(index) else {
                continue;
            };
            let Ok(name) = std::str::from_utf8(name) else {
                continue;
            };
            if let Some(Flag::Keyword(keyword)) = Flag::from_imap(name) {
                *slot = Some(keyword);
            }
        }
        keywords
    }

    /// Adds to `flags` the keywords of `file_name`'s lowercase info letters, without
    /// letting the keywords of the message exceed `max_keywords`.
    pub(super) fn add_to(&self, file_name: &str, flags: &mut Flags, max_keywords: usize) {
        let Some((_, info)) = file_name.split_once(":2,") else {
            return;
        };
        let mut count = flags
            .iter()
            .filter(|f| matches!(f, Flag::Keyword(_)))
            .count();
        for letter in info.bytes().filter(u8::is_ascii_lowercase) {
            if count >= max_keywords {
                break;
            }
            let Some(keyword) = &self.by_letter[usize::from(letter - b'a')] else {
                continue;
            };
            if flags.insert(Flag::Keyword(keyword.clone())) {
                count += 1;
            }
        }
    }
}

impl DovecotKeywords {
    /// The letter that stands for `keyword` (Dovecot compares keywords exactly).
    fn letter_of(&self, keyword: &str) -> Option<u8> {
        let index = self
            .by_letter
            .iter()
            .position(|k| k.as_deref() == Some(keyword))?;
        u8::try_from(index).ok().map(|i| b'a' + i)
    }

    /// The keyword letters a message file renamed from `old_name` carries when its
    /// flags change from `old_flags` to `new_flags`, in ASCII order, so that Dovecot
    /// reads the same keywords from the name. A letter of `old_name` is kept unless its
    /// keyword was among `old_flags` and is not among `new_flags` (a client removed
    /// it): a letter this store does not know (a line of `dovecot-keywords` it skipped)
    /// or whose keyword it did not report (beyond the keyword limit) is never lost. A
    /// keyword of `new_flags` gets its letter if `dovecot-keywords` has one.
    pub(super) fn info_letters(
        &self,
        old_name: &str,
        old_flags: &Flags,
        new_flags: &Flags,
    ) -> String {
        let old_info = old_name.split_once(":2,").map_or("", |(_, info)| info);
        let mut letters: Vec<u8> = old_info
            .bytes()
            .filter(u8::is_ascii_lowercase)
            .filter(|letter| match &self.by_letter[usize::from(letter - b'a')] {
                None => true,
                Some(keyword) => {
                    let flag = Flag::Keyword(keyword.clone());
                    !old_flags.contains(&flag) || new_flags.contains(&flag)
                }
            })
            .collect();
        letters.extend(new_flags.iter().filter_map(|flag| match flag {
            Flag::Keyword(keyword) => self.letter_of(keyword),
            _ => None,
        }));
        letters.sort_unstable();
        letters.dedup();
        letters.into_iter().map(char::from).collect()
    }
}

/// The index and the keyword of a `dovecot-keywords` line.
fn keyword_line(line: &[u8]) -> Option<(usize, &[u8])> {
    let space = line.iter().position(|b| *b == b' ')?;
    let index = usize::try_from(number(&line[..space])?).ok()?;
    Some((index, &line[space + 1..]))
}

impl DovecotKeywords {
    /// Numbers the keywords of `wanted` that have no letter yet, in the lowest indexes no
    /// line of `dovecot-keywords` uses, by appending lines to the file (its lines stay
    /// as they are, so no letter changes meaning), so that file names can carry their
    /// letters. Only in a mailbox Dovecot kept (it has `dovecot-keywords` or
    /// `dovecot-uidlist`), and the file keeps the owner and permissions of Dovecot's, so
    /// that Dovecot reads it should it take over again. A keyword left without a number
    /// (all 26 taken, a file cut short or too large, a failed write) only goes without a
    /// letter in the file names, as before.
    pub(super) fn number_missing<'a>(&mut self, dir: &Path, wanted: impl Iterator<Item = &'a str>) {
        let mut missing: Vec<&str> = wanted.filter(|k| self.letter_of(k).is_none()).collect();
        if missing.is_empty() {
            return;
        }
        missing.sort_unstable();
        missing.dedup();
        let (template, original) = match std::fs::metadata(dir.join(KEYWORDS_FILE)) {
            Ok(metadata) => match read_bounded(dir, KEYWORDS_FILE, MAX_KEYWORDS_BYTES) {
                Some(bytes) => (metadata, bytes),
                None => return,
            },
            Err(_) => match std::fs::metadata(dir.join(UIDLIST_FILE)) {
                Ok(metadata) => (metadata, Vec::new()),
                Err(_) => return,
            },
        };
        // A last line without its line end: the file is not as Dovecot writes it.
        if original.last().is_some_and(|b| *b != b'\n') {
            return;
        }
        let mut taken = [false; KEYWORD_LETTERS];
        for (index, _) in complete_lines(&original).filter_map(keyword_line) {
            if let Some(slot) = taken.get_mut(index) {
                *slot = true;
            }
        }
        let mut updated = self.clone();
        let mut text = original.clone();
        for keyword in missing {
            let Some(free) = taken.iter().position(|t| !t) else {
                break;
            };
            taken[free] = true;
            text.extend_from_slice(format!("{free} {keyword}\n").as_bytes());
            updated.by_letter[free] = Some(keyword.to_string());
        }
        if text.len() > original.len()
            && files::write_replace_like(dir, KEYWORDS_FILE, &text, Some(&template)).is_ok()
        {
            *self = updated;
        }
    }
}

/// Whether a file name's info has keyword letters (so the keywords file is worth reading).
pub(crate) fn has_keyword_letters(file_name: &str) -> bool {
    file_name
        .split_once(":2,")
        .is_some_and(|(_, info)| info.bytes().any(|b| b.is_ascii_lowercase()))
}

impl MailboxState {
    /// Takes on the UIDVALIDITY and UIDs of Dovecot's `dovecot-uidlist` for the files
    /// it lists, and writes the index. `false` (nothing changed) without a valid one.
    /// Files it does not list are left to the next scan, which numbers them from
    /// UIDNEXT on: Dovecot's, or one more than the highest UID taken on.
    pub(super) fn adopt_dovecot(&mut self, inner: &Inner) -> Result<bool, StoreError> {
        // Adopted once already: UIDs given since are not in Dovecot's list.
        if self.dir.join(ADOPTED_FILE).exists() {
            return Ok(false);
        }
        let Some(dovecot) = read_uidlist(&self.dir) else {
            return Ok(false);
        };
        if !inner.adopt_uid_validity(dovecot.uid_validity)? {
            return Ok(false);
        }
        files::write_replace(
            &self.dir,
            ADOPTED_FILE,
            format!("{}\n", dovecot.uid_validity).as_bytes(),
        )
        .map_err(|e| StoreError::io("recording the takeover from Dovecot", e))?;
        let mut index = MailboxIndex::new(UidValidity(dovecot.uid_validity));
        index.uid_next = Uid(dovecot.next_uid);
        // Clients keep the HIGHESTMODSEQ Dovecot told them; ours must not be lower.
        index.highest_modseq = adopted_modseq_floor();
        let mut listed: Vec<(Uid, String, FileRef)> = self
            .list_files()?
            .into_iter()
            .filter_map(|(base, file)| Some((*dovecot.uids.get(&base)?, base, file)))
            .collect();
        listed.sort_unstable_by_key(|(uid, _, _)| *uid);
        let mut keywords = None;
        for (uid, base, file) in listed {
            let Some((size, internal_date, flags)) =
                self.found_meta(inner, &base, &file, &mut keywords)
            else {
                continue;
            };
            let modseq = index.bump_modseq();
            let meta = MessageMeta {
                uid,
                size,
                internal_date,
                flags,
                modseq,
            };
            index.restore(meta, file);
            self.by_base.insert(base, uid);
        }
        self.index = index;
        self.compact()?;
        Ok(true)
    }
}

/// The HIGHESTMODSEQ a mailbox taken over from Dovecot starts from: 1024 per second
/// since the epoch, above any Dovecot reaches (one per change) and above what an
/// earlier takeover of the same mailbox could have reached at a sustained 1024 changes
/// a second.
fn adopted_modseq_floor() -> ModSeq {
    ModSeq(now_secs().max(1).unsigned_abs().saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REALISTIC: &str = "3 V1700000000 N7 G3085f01b7f11094c501100008c4a11c1\n\
        2 G0123456789abcdef0123456789abcdef W1260 S1234 :1700000000.M1P2.relay,S=1234,W=1260\n\
        5 :1700000100.M3P4.relay,S=10\n\
        6 W99 :1700000200.M5P6.relay,S=20:2,S\n";

    #[test]
    fn reads_a_realistic_uidlist() {
        let list = parse_uidlist(REALISTIC.as_bytes()).unwrap();
        assert_eq!((list.uid_validity, list.next_uid), (1_700_000_000, 7));
        let mut uids: Vec<_> = list.uids.iter().map(|(b, u)| (u.0, b.as_str())).collect();
        uids.sort();
        assert_eq!(
            uids,
            [
                (2, "1700000000.M1P2.relay,S=1234,W=1260"),
                (5, "1700000100.M3P4.relay,S=10"),
                (6, "1700000200.M5P6.relay,S=20"),
            ]
        );
        // A torn last record is left out; the rest stands.
        let torn = format!("{REALISTIC}7 :1700000300.M7");
        assert_eq!(parse_uidlist(torn.as_bytes()).unwrap().uids.len(), 3);
        // A file listed twice keeps the later UID.
        let twice = "3 V1 N9\n1 :a.b\n2 :a.b:2,S\n";
        assert_eq!(parse_uidlist(twice.as_bytes()).unwrap().uids["a.b"], Uid(2));
        // Records appended after the header was written (Dovecot 2.3.19 leaves `N24`
        // above a record 25, and `N1` above records 1 and 2): UIDNEXT follows them.
        let stale = "3 V1 N24 Gx\n24 :a.b\n25 :c.d\n";
        assert_eq!(parse_uidlist(stale.as_bytes()).unwrap().next_uid, 26);
        let stale = "3 V1 N1 Gx\n1 :a.b\n2 :c.d\n";
        assert_eq!(parse_uidlist(stale.as_bytes()).unwrap().next_uid, 3);
    }

    #[test]
    fn refuses_invalid_uidlists() {
        for bad in [
            "",
            "garbage\n",
            "1 1700000000 7\n1 a\n",           // version 1: not read
            "3 V0 N7\n",                       // no UIDVALIDITY
            "3 V17 N0\n",                      // no UIDNEXT
            "3 N7\n",                          // UIDVALIDITY missing
            "3 V17 N99999999999999999999\n",   // overflows
            "3 V17 N4294967295\n",             // no room left
            "3 V-17 N7\n",                     // not digits
            "3 V17 N+7\n",                     // not digits
            "3 V17 N7\n2 :a\n2 :b\n",          // duplicate UID
            "3 V17 N7\n3 :a\n2 :b\n",          // out of order
            "3 V17 N7\n0 :a\n",                // UID 0
            "3 V17 N7\n3000000000 :a\n",       // beyond the adopted range
            "3 V17 N7\n2147483647 :a\n",       // no UIDNEXT left in the range
            "3 V17 N7\n1 W12\n",               // no file name
            "3 V17 N7\n1 :\n",                 // empty file name
            "3 V17 N7\n1 :../../etc/passwd\n", // a path
            "3 V17 N7\n1 :a\n\n",              // empty record
            "3 V17 N7\n1:a\n",                 // no separator
            "3 V17 N7\n1 ::2,S\n",             // empty base name
            "3 V17 N7\nx :a\n",                // not a UID
        ] {
            assert_eq!(parse_uidlist(bad.as_bytes()), None, "{bad:?}");
        }
        let long = format!("3 V17 N7\n1 :{}\n", "a".repeat(MAX_LINE_BYTES));
        assert_eq!(parse_uidlist(long.as_bytes()), None);
    }

    #[test]
    fn keywords_map_letters() {
        let keywords =
            DovecotKeywords::parse(b"0 $Forwarded\n1 $MDNSent\n3 bad(word\n30 $Far\nx y\n2 \n");
        let mut flags = Flags::from([Flag::Seen]);
        keywords.add_to("1.M1.relay:2,Sabcdz", &mut flags, 32);
        assert_eq!(
            flags,
            Flags::from([
                Flag::Seen,
                Flag::Keyword("$Forwarded".into()),
                Flag::Keyword("$MDNSent".into()),
            ])
        );
        let mut capped = Flags::new();
        keywords.add_to("1.M1.relay:2,ab", &mut capped, 1);
        assert_eq!(capped.len(), 1);
        assert!(has_keyword_letters("x:2,Sa"));
        assert!(!has_keyword_letters("x:2,S"));
        assert!(!has_keyword_letters("xa"));
    }

    #[test]
    fn renamed_files_keep_dovecots_keyword_letters() {
        // c: a keyword this store does not take (skipped), d: beyond the keyword limit.
        let keywords = DovecotKeywords::parse(b"0 $Forwarded\n1 $MDNSent\n2 bad(word\n3 $label1\n");
        let name = "1.M1P2.relay,S=5,W=6:2,RSabcd";
        let old = Flags::from([
            Flag::Answered,
            Flag::Seen,
            Flag::Keyword("$Forwarded".into()),
            Flag::Keyword("$MDNSent".into()),
        ]);
        // Adding \Flagged keeps every letter.
        let mut new = old.clone();
        new.insert(Flag::Flagged);
        assert_eq!(keywords.info_letters(name, &old, &new), "abcd");
        // Removing $MDNSent drops only b.
        let mut new = old.clone();
        new.remove(&Flag::Keyword("$MDNSent".into()));
        assert_eq!(keywords.info_letters(name, &old, &new), "acd");
        // A keyword Dovecot numbered gets its letter; one it did not gets none.
        let mut new = Flags::from([
            Flag::Keyword("$label1".into()),
            Flag::Keyword("$new".into()),
        ]);
        assert_eq!(
            keywords.info_letters("1.M1P2.relay:2,", &Flags::new(), &new),
            "d"
        );
        new.insert(Flag::Keyword("$Forwarded".into()));
        assert_eq!(
            keywords.info_letters("1.M1P2.relay", &Flags::new(), &new),
            "ad"
        );
    }

    #[test]
    fn new_keywords_are_numbered_after_dovecots_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let wanted = ["$Forwarded", "$new", "$b", "$new"];
        // Not a mailbox Dovecot kept: nothing written.
        let mut keywords = DovecotKeywords::default();
        keywords.number_missing(dir, wanted.into_iter());
        assert!(!dir.join(KEYWORDS_FILE).exists());
        assert_eq!(keywords.letter_of("$new"), None);
        // Index 1 is taken by a line this store skips: it keeps its meaning.
        let original = b"0 $Forwarded\n1 bad(word\n3 $x\n";
        std::fs::write(dir.join(KEYWORDS_FILE), original).unwrap();
        let mut keywords = DovecotKeywords::read(dir);
        keywords.number_missing(dir, wanted.into_iter());
        let written = std::fs::read(dir.join(KEYWORDS_FILE)).unwrap();
        assert_eq!(written, b"0 $Forwarded\n1 bad(word\n3 $x\n2 $b\n4 $new\n");
        assert_eq!(keywords, DovecotKeywords::read(dir));
        assert_eq!(
            (keywords.letter_of("$b"), keywords.letter_of("$new")),
            (Some(b'c'), Some(b'e'))
        );
        // A file cut short is left alone.
        std::fs::write(dir.join(KEYWORDS_FILE), b"0 $Forwarded\n1 $x").unwrap();
        let mut keywords = DovecotKeywords::read(dir);
        keywords.number_missing(dir, ["$y"].into_iter());
        assert_eq!(keywords.letter_of("$y"), None);
        // All 26 taken: no letter, nothing lost.
        let full: String = (0..26).map(|i| format!("{i} $k{i}\n")).collect();
        std::fs::write(dir.join(KEYWORDS_FILE), &full).unwrap();
        let mut keywords = DovecotKeywords::read(dir);
        keywords.number_missing(dir, ["$y"].into_iter());
        assert_eq!(keywords.letter_of("$y"), None);
        assert_eq!(
            std::fs::read_to_string(dir.join(KEYWORDS_FILE)).unwrap(),
            full
        );
        // Only a uidlist: the file is created.
        std::fs::remove_file(dir.join(KEYWORDS_FILE)).unwrap();
        std::fs::write(dir.join(UIDLIST_FILE), b"3 V1 N1\n").unwrap();
        let mut keywords = DovecotKeywords::read(dir);
        keywords.number_missing(dir, ["$y"].into_iter());
        assert_eq!(std::fs::read(dir.join(KEYWORDS_FILE)).unwrap(), b"0 $y\n");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_uidlist(&bytes);
            let keywords = DovecotKeywords::parse(&bytes);
            let mut flags = Flags::new();
            keywords.add_to(&String::from_utf8_lossy(&bytes), &mut flags, 32);
        }

        #[test]
        fn valid_lists_round_trip(uids in proptest::collection::btree_set(1u32..1000, 0..20)) {
            let mut text = String::from("3 V5 N1000 Gx\n");
            for uid in &uids {
                text.push_str(&format!("{uid} W{uid} :{uid}.M1P1.host\n"));
            }
            let list = parse_uidlist(text.as_bytes()).unwrap();
            prop_assert_eq!(list.uids.len(), uids.len());
            for uid in &uids {
                prop_assert_eq!(list.uids[&format!("{uid}.M1P1.host")], Uid(*uid));
            }
        }
    }
}
