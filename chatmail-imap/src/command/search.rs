//! SEARCH and UID SEARCH: ALL, sequence and UID sets, flag keys, dates, sizes, HEADER,
//! FROM/TO/CC/BCC/SUBJECT, BODY/TEXT, MODSEQ, with AND/OR/NOT.
//!
//! Keys are evaluated on metadata first; only messages the metadata cannot decide are
//! fetched, one at a time.

use std::collections::VecDeque;

use chatmail_core::{Flag, MessageMeta, Uid};
use imap_codec::imap_types::search::SearchKey;

use super::account;
use crate::mime;
use crate::request::{Answer, Refusal, Request};
use crate::session::{Session, Task};
use crate::wire;

/// Most nodes one search program may have.
const MAX_NODES: usize = 256;

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
    Header(Vec<u8>, Vec<u8>),
    Body(Vec<u8>),
    Text(Vec<u8>),
    ModSeq(u64),
    Nothing,
}

/// A SEARCH in progress.
#[derive(Debug)]
pub(crate) struct SearchTask {
    key: Key,
    uid_command: bool,
    with_modseq: bool,
    /// Messages still to be decided with their content.
    undecided: VecDeque<MessageMeta>,
    matched: Vec<MessageMeta>,
    fetching: Option<MessageMeta>,
}

/// SEARCH / UID SEARCH criteria.
pub(crate) fn search(s: &mut Session, tag: &str, criteria: &[SearchKey<'_>], uid_command: bool) {
    let mut nodes = 0;
    let keys: Option<Vec<Key>> = criteria.iter().map(|k| convert(s, k, &mut nodes)).collect();
    let Some(keys) = keys else {
        return s.bad(tag, "Search program too complex.");
    };
    let key = Key::And(keys);
    let with_modseq = uses_modseq(&key);
    if with_modseq {
        s.condstore = true;
    }
    let all = s.resolve_all();
    if all.is_empty() {
        s.line("* SEARCH");
        return finish(s, tag, uid_command);
    }
    let (Some(account), Some(mailbox)) = (account(s, tag), s.selected_mailbox()) else {
        return;
    };
    let request = Request::Messages {
        account,
        mailbox: mailbox.to_string(),
        uids: all,
    };
    let task = SearchTask {
        key,
        uid_command,
        with_modseq,
        undecided: VecDeque::new(),
        matched: Vec::new(),
        fetching: None,
    };
    s.request(tag, request, Task::Search(task));
}

fn finish(s: &mut Session, tag: &str, uid_command: bool) {
    if uid_command {
        s.finish_ok(tag, "Search completed.");
    } else {
        s.finish_ok_no_expunge(tag, "Search completed.");
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

fn convert(s: &Session, key: &SearchKey<'_>, nodes: &mut usize) -> Option<Key> {
    *nodes += 1;
    if *nodes > MAX_NODES {
        return None;
    }
    let text = |a: &imap_codec::imap_types::core::AString<'_>| a.as_ref().to_ascii_lowercase();
    let header = |name: &str, a| Key::Header(name.as_bytes().to_vec(), text(a));
    Some(match key {
        SearchKey::All | SearchKey::Old => Key::All,
        SearchKey::And(keys) => Key::And(
            keys.as_ref()
                .iter()
                .map(|k| convert(s, k, nodes))
                .collect::<Option<_>>()?,
        ),
        SearchKey::Or(a, b) => Key::Or(
            Box::new(convert(s, a, nodes)?),
            Box::new(convert(s, b, nodes)?),
        ),
        SearchKey::Not(k) => Key::Not(Box::new(convert(s, k, nodes)?)),
        SearchKey::SequenceSet(set) => Key::Uids(s.resolve(set, false)),
        SearchKey::Uid(set) => Key::Uids(s.resolve(set, true)),
        SearchKey::Answered => Key::Flag(Flag::Answered, true),
        SearchKey::Unanswered => Key::Flag(Flag::Answered, false),
        SearchKey::Deleted => Key::Flag(Flag::Deleted, true),
        SearchKey::Undeleted => Key::Flag(Flag::Deleted, false),
        SearchKey::Draft => Key::Flag(Flag::Draft, true),
        SearchKey::Undraft => Key::Flag(Flag::Draft, false),
        SearchKey::Flagged => Key::Flag(Flag::Flagged, true),
        SearchKey::Unflagged => Key::Flag(Flag::Flagged, false),
        SearchKey::Seen => Key::Flag(Flag::Seen, true),
        SearchKey::Unseen | SearchKey::New => Key::Flag(Flag::Seen, false),
        SearchKey::Recent => Key::Nothing,
        SearchKey::Keyword(k) => Key::Flag(Flag::Keyword(k.as_ref().to_string()), true),
        SearchKey::Unkeyword(k) => Key::Flag(Flag::Keyword(k.as_ref().to_string()), false),
        SearchKey::Larger(n) => Key::Larger(u64::from(*n)),
        SearchKey::Smaller(n) => Key::Smaller(u64::from(*n)),
        SearchKey::Before(d) => Key::Before(days(d)),
        SearchKey::On(d) => Key::On(days(d)),
        SearchKey::Since(d) => Key::Since(days(d)),
        SearchKey::SentBefore(d) => Key::SentBefore(days(d)),
        SearchKey::SentOn(d) => Key::SentOn(days(d)),
        SearchKey::SentSince(d) => Key::SentSince(days(d)),
        SearchKey::From(a) => header("from", a),
        SearchKey::To(a) => header("to", a),
        SearchKey::Cc(a) => header("cc", a),
        SearchKey::Bcc(a) => header("bcc", a),
        SearchKey::Subject(a) => header("subject", a),
        SearchKey::Header(name, value) => Key::Header(text(name), text(value)),
        SearchKey::Body(a) => Key::Body(text(a)),
        SearchKey::Text(a) => Key::Text(text(a)),
        SearchKey::ModSequence { modseq, .. } => Key::ModSeq(*modseq),
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

/// Case-insensitive substring test; `needle` is lower-case already.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack.windows(needle.len()).any(|w| {
            w.iter()
                .zip(needle)
                .all(|(a, b)| a.to_ascii_lowercase() == *b)
        })
}

/// Three-valued evaluation: `None` when the content is needed but not given.
fn eval(key: &Key, meta: &MessageMeta, content: Option<&[u8]>) -> Option<bool> {
    let day = meta.internal_date.div_euclid(86_400);
    Some(match key {
        Key::All => true,
        Key::Nothing => false,
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
            let msg = content?;
            let part = mime::parse(msg);
            let sent = mime::header_value(part.header(msg), "date")
                .and_then(|d| {
                    chrono::DateTime::parse_from_rfc2822(&String::from_utf8_lossy(&d)).ok()
                })
                .map(|d| days_since_epoch(d.date_naive()));
            let Some(sent) = sent else {
                return Some(false);
            };
            match key {
                Key::SentBefore(d) => sent < *d,
                Key::SentOn(d) => sent == *d,
                _ => matches!(key, Key::SentSince(d) if sent >= *d),
            }
        }
        Key::Header(name, value) => {
            let msg = content?;
            let part = mime::parse(msg);
            mime::header_fields(part.header(msg))
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case(name) && contains(v, value))
        }
        Key::Body(text) => {
            let msg = content?;
            let part = mime::parse(msg);
            contains(&msg[part.body_start..], text)
        }
        Key::Text(text) => contains(content?, text),
    })
}

/// Continues the search with metadata or a message's bytes.
pub(crate) fn search_answered(s: &mut Session, tag: &str, mut task: SearchTask, answer: Answer) {
    match (task.fetching.take(), answer) {
        (None, Answer::Messages(metas)) => {
            for meta in metas {
                match eval(&task.key, &meta, None) {
                    Some(true) => task.matched.push(meta),
                    Some(false) => {}
                    None => task.undecided.push_back(meta),
                }
            }
        }
        (Some(meta), Answer::Message(bytes)) => {
            if eval(&task.key, &meta, Some(&bytes)) == Some(true) {
                task.matched.push(meta);
            }
        }
        (Some(_), Answer::Refused(Refusal::NonExistent)) => {}
        (_, other) => return s.refused(tag, other),
    }
    if let Some(meta) = task.undecided.pop_front() {
        let (Some(account), Some(mailbox)) = (account(s, tag), s.selected_mailbox()) else {
            return;
        };
        let request = Request::FetchMessage {
            account,
            mailbox: mailbox.to_string(),
            uid: meta.uid,
        };
        task.fetching = Some(meta);
        return s.request(tag, request, Task::Search(task));
    }
    write_result(s, &mut task);
    finish(s, tag, task.uid_command);
}

fn write_result(s: &mut Session, task: &mut SearchTask) {
    task.matched.sort_by_key(|m| m.uid);
    let mut line = b"* SEARCH".to_vec();
    let mut highest = 0;
    for m in &task.matched {
        let number = if task.uid_command {
            Some(m.uid.0)
        } else {
            s.selected.as_deref().and_then(|sel| sel.uids.seq_of(m.uid))
        };
        if let Some(n) = number {
            line.push(b' ');
            wire::number(&mut line, n.into());
            highest = highest.max(m.modseq.0);
        }
    }
    if task.with_modseq && !task.matched.is_empty() {
        line.extend_from_slice(b" (MODSEQ ");
        wire::number(&mut line, highest);
        line.push(b')');
    }
    line.extend_from_slice(b"\r\n");
    s.raw(&line);
}
