//! The SEARCH program: the client's keys in owned form, bounded before any work, and
//! their evaluation on a message's metadata and, where that cannot decide, its content.
//!
//! The command itself (`command/search.rs`) evaluates the program on metadata and hands
//! the undecided messages to the embedder with the program as a [`ContentSearch`].
//! Scanning is linear: a message's header is parsed once for all keys, and each text
//! key has one substring finder, built once per command, run over the message
//! lower-cased a chunk at a time.

use std::cell::OnceCell;
use std::sync::Arc;

use chatmail_core::{Flag, MessageMeta, Uid};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::SequenceSet;
use memchr::memmem::Finder;

use crate::mime;

/// Most nodes one search program may have.
const MAX_NODES: usize = 256;
/// Longest string of one key (BODY, TEXT, HEADER, FROM, ...), in bytes.
pub(crate) const MAX_KEY_BYTES: usize = 1024;
/// Most keys in one program that need a message's content (text and sent-date keys).
pub(crate) const MAX_CONTENT_KEYS: usize = 16;
/// Most message numbers the sequence-set keys of one program may resolve to in total.
const MAX_RESOLVED: usize = 1_000_000;
/// Bytes lower-cased at a time for a case-insensitive scan.
const FOLD_CHUNK: usize = 64 * 1024;

/// A lower-case search string with its substring finder, built once per command.
#[derive(Debug, Clone)]
struct Needle {
    finder: Finder<'static>,
}

impl Needle {
    fn new(text: &[u8]) -> Needle {
        Needle {
            finder: Finder::new(&text.to_ascii_lowercase()).into_owned(),
        }
    }

    /// Whether the needle occurs in `haystack`, which is lower-case already.
    fn in_folded(&self, haystack: &[u8]) -> bool {
        self.finder.find(haystack).is_some()
    }

    /// Whether the needle occurs in `haystack`, ASCII case ignored. Linear: the haystack
    /// is lower-cased [`FOLD_CHUNK`] bytes at a time into one buffer, and consecutive
    /// windows overlap by the needle's length less one, so no occurrence is cut.
    fn in_text(&self, haystack: &[u8]) -> bool {
        let n = self.finder.needle().len();
        if n == 0 {
            return true;
        }
        let mut buf = Vec::with_capacity(FOLD_CHUNK + n);
        let mut start = 0;
        while start + n <= haystack.len() {
            let end = (start + FOLD_CHUNK + n - 1).min(haystack.len());
            buf.clear();
            buf.extend_from_slice(&haystack[start..end]);
            buf.make_ascii_lowercase();
            if self.in_folded(&buf) {
                return true;
            }
            start += FOLD_CHUNK;
        }
        false
    }
}

/// A search key in owned form.
#[derive(Debug, Clone)]
enum Key {
    All,
    And(Vec<Key>),
    Or(Box<Key>, Box<Key>),
    Not(Box<Key>),
    /// Messages whose UID is in the (resolved, ascending) list.
    Uids(Vec<Uid>),
    Flag(Flag, bool),
    Larger(u64),
    Smaller(u64),
    /// INTERNALDATE day comparisons (days since the epoch).
    Before(i64),
    On(i64),
    Since(i64),
    /// Date: header day comparisons.
    SentBefore(i64),
    SentOn(i64),
    SentSince(i64),
    /// A header field (lower-case name) whose value contains the needle.
    Header(Vec<u8>, Needle),
    Body(Needle),
    Text(Needle),
    ModSeq(u64),
}

/// Why a program is refused before any work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refuse {
    /// More than [`MAX_NODES`] nodes, or a key this server does not know: BAD.
    TooComplex,
    /// A key string longer than [`MAX_KEY_BYTES`]: `NO [LIMIT]`.
    KeyTooLong,
    /// More than [`MAX_CONTENT_KEYS`] content keys: `NO [LIMIT]`.
    TooManyContentKeys,
    /// Sequence sets resolving to more than [`MAX_RESOLVED`] messages: `NO [LIMIT]`.
    TooManyMessages,
}

/// What converting a program has used so far.
#[derive(Debug, Default)]
struct Tally {
    nodes: usize,
    content_keys: usize,
    resolved: usize,
    /// BODY and TEXT keys: each scans a whole message.
    full_scans: usize,
}

impl Tally {
    fn content_key(&mut self, full_scan: bool) -> Result<(), Refuse> {
        self.content_keys += 1;
        self.full_scans += usize::from(full_scan);
        if self.content_keys > MAX_CONTENT_KEYS {
            return Err(Refuse::TooManyContentKeys);
        }
        Ok(())
    }

    fn uids(&mut self, uids: Vec<Uid>) -> Result<Key, Refuse> {
        self.resolved = self.resolved.saturating_add(uids.len());
        if self.resolved > MAX_RESOLVED {
            return Err(Refuse::TooManyMessages);
        }
        Ok(Key::Uids(uids))
    }
}

/// The part of a SEARCH program that needs message content, handed to the embedder in
/// [`crate::Request::SearchContent`]. Cheap to clone (shared); equal only to its own clones.
#[derive(Debug, Clone)]
pub struct ContentSearch(Arc<Key>);

impl PartialEq for ContentSearch {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ContentSearch {}

impl ContentSearch {
    /// Whether the message with metadata `meta` and bytes `message` matches the program.
    ///
    /// The work is linear in the message's size times the program's text keys (at most
    /// 16): run it where blocking is allowed (a blocking executor), not on an async
    /// worker.
    pub fn matches(&self, meta: &MessageMeta, message: &[u8]) -> bool {
        let content = Content::new(message);
        eval(&self.0, meta, Some(&content)) == Some(true)
    }
}

/// A message's bytes with what the keys need from them, each computed at most once.
struct Content<'m> {
    msg: &'m [u8],
    header: &'m [u8],
    body_start: usize,
    /// Header fields as `(name, lower-cased unfolded value)`.
    fields: OnceCell<Vec<(&'m [u8], Vec<u8>)>>,
    /// The Date: header's day (days since the epoch), if it parses.
    sent_day: OnceCell<Option<i64>>,
    /// Address fields in normal form (`mime::normalized_addresses`).
    addresses: OnceCell<Vec<(String, Vec<u8>)>>,
}

impl<'m> Content<'m> {
    fn new(msg: &'m [u8]) -> Content<'m> {
        let (header_end, body_start) = mime::top_header(msg);
        Content {
            msg,
            header: &msg[..header_end],
            body_start,
            fields: OnceCell::new(),
            sent_day: OnceCell::new(),
            addresses: OnceCell::new(),
        }
    }

    fn fields(&self) -> &[(&'m [u8], Vec<u8>)] {
        self.fields.get_or_init(|| {
            mime::header_fields(self.header)
                .into_iter()
                .map(|(name, mut value)| {
                    value.make_ascii_lowercase();
                    (name, value)
                })
                .collect()
        })
    }

    fn sent_day(&self) -> Option<i64> {
        *self.sent_day.get_or_init(|| {
            let date = mime::header_value(self.header, "date")?;
            let date =
                chrono::DateTime::parse_from_rfc2822(&String::from_utf8_lossy(&date)).ok()?;
            Some(days_since_epoch(date.date_naive()))
        })
    }
}

/// Header fields whose SEARCH also matches their addresses in normal form (RFC 3501
/// 6.4.4 FROM, TO, CC, BCC and their siblings).
const ADDRESS_FIELDS: [&[u8]; 6] = [b"from", b"to", b"cc", b"bcc", b"sender", b"reply-to"];

/// A converted SEARCH program: the client's keys ANDed, with what running it costs.
#[derive(Debug)]
pub(crate) struct Program {
    key: Arc<Key>,
    /// BODY/TEXT keys: each scans a whole message once more.
    full_scans: usize,
}

impl Program {
    /// Converts the client's criteria, refusing a program past the bounds before any
    /// work. `resolve` turns a sequence set (a UID set when its flag is true) into the
    /// selected mailbox's UIDs, ascending; `recent` are the session's `\Recent` UIDs,
    /// ascending (RECENT, NEW, OLD).
    pub(crate) fn compile(
        criteria: &[SearchKey<'_>],
        resolve: &dyn Fn(&SequenceSet, bool) -> Vec<Uid>,
        recent: &[Uid],
    ) -> Result<Program, Refuse> {
        let mut tally = Tally::default();
        let view = View { resolve, recent };
        let keys = criteria
            .iter()
            .map(|k| convert(&view, k, &mut tally))
            .collect::<Result<Vec<Key>, Refuse>>()?;
        Ok(Program {
            key: Arc::new(Key::And(keys)),
            full_scans: tally.full_scans,
        })
    }

    /// Whether a MODSEQ key is used (the result then reports the highest MODSEQ).
    pub(crate) fn uses_modseq(&self) -> bool {
        uses_modseq(&self.key)
    }

    /// The verdict on metadata alone: `None` when the content must decide.
    pub(crate) fn on_metadata(&self, meta: &MessageMeta) -> Option<bool> {
        eval(&self.key, meta, None)
    }

    /// How many times a content check reads each message's bytes.
    pub(crate) fn scan_passes(&self) -> u64 {
        1 + self.full_scans as u64
    }

    /// The program for the embedder's content check.
    pub(crate) fn content_search(&self) -> ContentSearch {
        ContentSearch(self.key.clone())
    }
}

fn uses_modseq(key: &Key) -> bool {
    match key {
        Key::ModSeq(_) => true,
        Key::And(v) => v.iter().any(uses_modseq),
        Key::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        Key::Not(k) => uses_modseq(k),
        _ => false,
    }
}

fn days(date: &imap_codec::imap_types::datetime::NaiveDate) -> i64 {
    days_since_epoch(*date.as_ref())
}

fn days_since_epoch(date: chrono::NaiveDate) -> i64 {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    date.signed_duration_since(epoch).num_days()
}

/// A key string, refused past [`MAX_KEY_BYTES`].
fn key_bytes<'a>(a: &'a imap_codec::imap_types::core::AString<'_>) -> Result<&'a [u8], Refuse> {
    let bytes: &[u8] = a.as_ref();
    if bytes.len() > MAX_KEY_BYTES {
        return Err(Refuse::KeyTooLong);
    }
    Ok(bytes)
}

fn header_key(
    tally: &mut Tally,
    name: &str,
    value: &imap_codec::imap_types::core::AString<'_>,
) -> Result<Key, Refuse> {
    tally.content_key(false)?;
    Ok(Key::Header(
        name.as_bytes().to_vec(),
        Needle::new(key_bytes(value)?),
    ))
}

/// What the keys that name messages resolve against: the session's view.
struct View<'v> {
    resolve: &'v dyn Fn(&SequenceSet, bool) -> Vec<Uid>,
    recent: &'v [Uid],
}

fn convert(view: &View<'_>, key: &SearchKey<'_>, tally: &mut Tally) -> Result<Key, Refuse> {
    tally.nodes += 1;
    if tally.nodes > MAX_NODES {
        return Err(Refuse::TooComplex);
    }
    Ok(match key {
        SearchKey::All => Key::All,
        SearchKey::Old => Key::Not(Box::new(tally.uids(view.recent.to_vec())?)),
        SearchKey::And(keys) => Key::And(
            keys.as_ref()
                .iter()
                .map(|k| convert(view, k, tally))
                .collect::<Result<_, _>>()?,
        ),
        SearchKey::Or(a, b) => Key::Or(
            Box::new(convert(view, a, tally)?),
            Box::new(convert(view, b, tally)?),
        ),
        SearchKey::Not(k) => Key::Not(Box::new(convert(view, k, tally)?)),
        SearchKey::SequenceSet(set) => tally.uids((view.resolve)(set, false))?,
        SearchKey::Uid(set) => tally.uids((view.resolve)(set, true))?,
        SearchKey::Answered => Key::Flag(Flag::Answered, true),
        SearchKey::Unanswered => Key::Flag(Flag::Answered, false),
        SearchKey::Deleted => Key::Flag(Flag::Deleted, true),
        SearchKey::Undeleted => Key::Flag(Flag::Deleted, false),
        SearchKey::Draft => Key::Flag(Flag::Draft, true),
        SearchKey::Undraft => Key::Flag(Flag::Draft, false),
        SearchKey::Flagged => Key::Flag(Flag::Flagged, true),
        SearchKey::Unflagged => Key::Flag(Flag::Flagged, false),
        SearchKey::Seen => Key::Flag(Flag::Seen, true),
        SearchKey::Unseen => Key::Flag(Flag::Seen, false),
        SearchKey::New => Key::And(vec![
            tally.uids(view.recent.to_vec())?,
            Key::Flag(Flag::Seen, false),
        ]),
        SearchKey::Recent => tally.uids(view.recent.to_vec())?,
        SearchKey::Keyword(k) => Key::Flag(Flag::Keyword(k.as_ref().to_string()), true),
        SearchKey::Unkeyword(k) => Key::Flag(Flag::Keyword(k.as_ref().to_string()), false),
        SearchKey::Larger(n) => Key::Larger(u64::from(*n)),
        SearchKey::Smaller(n) => Key::Smaller(u64::from(*n)),
        SearchKey::Before(d) => Key::Before(days(d)),
        SearchKey::On(d) => Key::On(days(d)),
        SearchKey::Since(d) => Key::Since(days(d)),
        SearchKey::SentBefore(d) => {
            tally.content_key(false)?;
            Key::SentBefore(days(d))
        }
        SearchKey::SentOn(d) => {
            tally.content_key(false)?;
            Key::SentOn(days(d))
        }
        SearchKey::SentSince(d) => {
            tally.content_key(false)?;
            Key::SentSince(days(d))
        }
        SearchKey::From(a) => header_key(tally, "from", a)?,
        SearchKey::To(a) => header_key(tally, "to", a)?,
        SearchKey::Cc(a) => header_key(tally, "cc", a)?,
        SearchKey::Bcc(a) => header_key(tally, "bcc", a)?,
        SearchKey::Subject(a) => header_key(tally, "subject", a)?,
        SearchKey::Header(name, value) => {
            tally.content_key(false)?;
            let name = key_bytes(name)?.to_ascii_lowercase();
            Key::Header(name, Needle::new(key_bytes(value)?))
        }
        SearchKey::Body(a) => {
            tally.content_key(true)?;
            Key::Body(Needle::new(key_bytes(a)?))
        }
        SearchKey::Text(a) => {
            tally.content_key(true)?;
            Key::Text(Needle::new(key_bytes(a)?))
        }
        SearchKey::ModSequence { modseq, .. } => Key::ModSeq(*modseq),
        #[allow(unreachable_patterns)]
        _ => return Err(Refuse::TooComplex),
    })
}

/// Three-valued evaluation: `None` when the content is needed but not given.
fn eval(key: &Key, meta: &MessageMeta, content: Option<&Content<'_>>) -> Option<bool> {
    let day = meta.internal_date.div_euclid(86_400);
    Some(match key {
        Key::All => true,
        Key::And(keys) => {
            let mut unknown = false;
            for k in keys {
                match eval(k, meta, content) {
                    Some(false) => return Some(false),
                    None => unknown = true,
                    Some(true) => {}
                }
            }
            return (!unknown).then_some(true);
        }
        Key::Or(a, b) => match (eval(a, meta, content), eval(b, meta, content)) {
            (Some(true), _) | (_, Some(true)) => true,
            (Some(false), Some(false)) => false,
            _ => return None,
        },
        Key::Not(k) => !eval(k, meta, content)?,
        Key::Uids(uids) => uids.binary_search(&meta.uid).is_ok(),
        Key::Flag(f, has) => meta.flags.contains(f) == *has,
        Key::Larger(n) => meta.size > *n,
        Key::Smaller(n) => meta.size < *n,
        Key::Before(d) => day < *d,
        Key::On(d) => day == *d,
        Key::Since(d) => day >= *d,
        Key::ModSeq(m) => meta.modseq.0 >= *m,
        Key::SentBefore(_) | Key::SentOn(_) | Key::SentSince(_) => {
            let Some(sent) = content?.sent_day() else {
                return Some(false);
            };
            match key {
                Key::SentBefore(d) => sent < *d,
                Key::SentOn(d) => sent == *d,
                _ => matches!(key, Key::SentSince(d) if sent >= *d),
            }
        }
        Key::Header(name, needle) => {
            let c = content?;
            c.fields()
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case(name) && needle.in_folded(v))
                || ADDRESS_FIELDS.contains(&name.as_slice())
                    && c.addresses
                        .get_or_init(|| mime::normalized_addresses(c.header))
                        .iter()
                        .any(|(n, v)| n.as_bytes() == name.as_slice() && needle.in_folded(v))
        }
        Key::Body(needle) => {
            let c = content?;
            needle.in_text(&c.msg[c.body_start..])
        }
        Key::Text(needle) => needle.in_text(content?.msg),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_search_finds_matches_across_chunk_edges() {
        let needle = Needle::new(b"NeedLE");
        for at in [
            0,
            FOLD_CHUNK - 3,
            FOLD_CHUNK,
            2 * FOLD_CHUNK - 1,
            3 * FOLD_CHUNK - 6,
        ] {
            let mut hay = vec![b'x'; 3 * FOLD_CHUNK];
            hay[at..at + 6].copy_from_slice(b"nEEDle");
            assert!(needle.in_text(&hay), "at {at}");
            hay[at] = b'y';
            assert!(!needle.in_text(&hay), "at {at}");
        }
        assert!(Needle::new(b"").in_text(b""));
        assert!(!needle.in_text(b"needl"));
    }

    #[test]
    fn the_header_is_parsed_once_for_all_keys() {
        let msg = b"From: Alice <a@x.org>\r\nSubject: Hello There\r\nDate: Sun, 15 Oct 2023 16:43:21 +0000\r\n\r\nbody text\r\n";
        let content = Content::new(msg);
        let from = Key::Header(b"from".to_vec(), Needle::new(b"ALICE"));
        let subject = Key::Header(b"subject".to_vec(), Needle::new(b"there"));
        let meta = MessageMeta {
            uid: Uid(1),
            size: msg.len() as u64,
            internal_date: 0,
            flags: Default::default(),
            modseq: chatmail_core::ModSeq(1),
        };
        assert_eq!(eval(&from, &meta, Some(&content)), Some(true));
        let first = content.fields().as_ptr();
        assert_eq!(eval(&subject, &meta, Some(&content)), Some(true));
        assert_eq!(content.fields().as_ptr(), first, "parsed once");
        let body = Key::Body(Needle::new(b"TEXT"));
        assert_eq!(eval(&body, &meta, Some(&content)), Some(true));
        let not_in_body = Key::Body(Needle::new(b"hello"));
        assert_eq!(eval(&not_in_body, &meta, Some(&content)), Some(false));
        let sent = Key::SentOn(days_since_epoch(
            chrono::NaiveDate::from_ymd_opt(2023, 10, 15).unwrap(),
        ));
        assert_eq!(eval(&sent, &meta, Some(&content)), Some(true));
    }
}
