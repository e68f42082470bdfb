//! The sidecar index of one maildir mailbox, [`INDEX_FILE`]: the IMAP state maildir
//! cannot hold (UIDVALIDITY, UIDs, modseqs, keywords), as an append-only text log.
//!
//! ```text
//! chatmail-uidlist 1 V<uidvalidity> N<uidnext> M<highest modseq>
//! + <uid> <modseq> <internal date> <size> <new|cur> <file name> [<flag> ...]
//! = <uid> <modseq> <new|cur> <file name> [<flag> ...]
//! - <uid> <modseq>
//! ```
//!
//! The first line is written when the file is (re)written whole; every later change
//! appends one record per message and is fsynced before the operation returns, so an
//! append costs one small write, not a rewrite. File names are %-escaped (bytes outside
//! printable ASCII, and `%`), flags are in IMAP form. A final line without its newline
//! (a write cut short by a crash) is ignored; any other unreadable line makes the whole
//! index invalid, and the mailbox is rebuilt from its files with a new UIDVALIDITY.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;

use super::files::{write_replace, Sub};
use crate::store::index::MailboxIndex;
use crate::types::{Flag, Flags, MessageMeta, ModSeq, Uid, UidValidity};

/// The index file's name inside each mailbox directory (next to `cur/ new/ tmp/`).
pub(super) const INDEX_FILE: &str = "chatmail-uidlist";

const MAGIC: &str = "chatmail-uidlist 1";

/// Where a message's file is: `<mailbox>/<sub>/<name>`; `base` is the name without the
/// `:2,` info, which stays the same when flags change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileRef {
    pub sub: Sub,
    pub name: String,
}

impl FileRef {
    pub(super) fn base(&self) -> &str {
        super::files::base_of(&self.name)
    }
}

fn escape(name: &str, out: &mut String) {
    for b in name.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn push_flags(flags: &Flags, out: &mut String) {
    for flag in flags {
        out.push(' ');
        out.push_str(flag.as_imap());
    }
}

/// Appends the record of an added message.
pub(crate) fn record_add(meta: &MessageMeta, file: &FileRef, out: &mut String) {
    let _ = write!(
        out,
        "+ {} {} {} {} {} ",
        meta.uid.0,
        meta.modseq.0,
        meta.internal_date,
        meta.size,
        file.sub.dir()
    );
    escape(&file.name, out);
    push_flags(&meta.flags, out);
    out.push('\n');
}

/// Appends the record of a flag change (and the file's new place).
pub(crate) fn record_flags(meta: &MessageMeta, file: &FileRef, out: &mut String) {
    let _ = write!(
        out,
        "= {} {} {} ",
        meta.uid.0,
        meta.modseq.0,
        file.sub.dir()
    );
    escape(&file.name, out);
    push_flags(&meta.flags, out);
    out.push('\n');
}

/// Appends the record of an expunge.
pub(crate) fn record_expunge(uid: Uid, modseq: ModSeq, out: &mut String) {
    let _ = writeln!(out, "- {} {}", uid.0, modseq.0);
}

/// The index a log describes, and whether the log ended in a torn line; `None` if the
/// log is not a valid index.
pub(crate) fn replay(text: &str) -> Option<(MailboxIndex<FileRef>, usize, bool)> {
    let torn = !text.is_empty() && !text.ends_with('\n');
    let mut lines = text.split_terminator('\n');
    if torn {
        // split_terminator keeps the unterminated tail as the last item: drop it.
        let complete = text.rfind('\n').map_or("", |end| &text[..end + 1]);
        lines = complete.split_terminator('\n');
    }
    let header = lines.next()?;
    let rest = header.strip_prefix(MAGIC)?;
    let mut fields = rest.split_ascii_whitespace();
    let uid_validity = fields.next()?.strip_prefix('V')?.parse().ok()?;
    let uid_next: u32 = fields.next()?.strip_prefix('N')?.parse().ok()?;
    let highest: u64 = fields.next()?.strip_prefix('M')?.parse().ok()?;
    let mut index = MailboxIndex::new(UidValidity(uid_validity));
    index.uid_next = Uid(uid_next.max(1));
    index.highest_modseq = ModSeq(highest.max(1));
    let mut records = 0;
    for line in lines {
        apply_record(&mut index, line)?;
        records += 1;
    }
    Some((index, records, torn))
}

fn parse_flags<'a>(fields: impl Iterator<Item = &'a str>) -> Option<Flags> {
    fields.map(Flag::from_imap).collect()
}

fn apply_record(index: &mut MailboxIndex<FileRef>, line: &str) -> Option<()> {
    let mut fields = line.split(' ');
    let kind = fields.next()?;
    let uid = Uid(fields.next()?.parse().ok()?);
    let modseq = ModSeq(fields.next()?.parse().ok()?);
    match kind {
        "+" => {
            let internal_date = fields.next()?.parse().ok()?;
            let size = fields.next()?.parse().ok()?;
            let sub = Sub::parse(fields.next()?)?;
            let name = unescape(fields.next()?)?;
            let flags = parse_flags(fields)?;
            let meta = MessageMeta {
                uid,
                size,
                internal_date,
                flags,
                modseq,
            };
            index.restore(meta, FileRef { sub, name });
        }
        "=" => {
            let sub = Sub::parse(fields.next()?)?;
            let name = unescape(fields.next()?)?;
            let flags = parse_flags(fields)?;
            index.highest_modseq = index.highest_modseq.max(modseq);
            if let Some(entry) = index.messages.get_mut(&uid) {
                entry.meta.flags = flags;
                entry.meta.modseq = modseq;
                entry.body = FileRef { sub, name };
            }
        }
        "-" => {
            index.highest_modseq = index.highest_modseq.max(modseq);
            index.forget(uid);
        }
        _ => return None,
    }
    Some(())
}

/// The whole index as a fresh log: header plus one `+` record per message.
pub(crate) fn snapshot(index: &MailboxIndex<FileRef>) -> String {
    let mut out = String::with_capacity(64 + index.messages.len() * 96);
    let _ = writeln!(
        out,
        "{MAGIC} V{} N{} M{}",
        index.uid_validity.0, index.uid_next.0, index.highest_modseq.0
    );
    for entry in index.messages.values() {
        record_add(&entry.meta, &entry.body, &mut out);
    }
    out
}

/// Replaces `dir/INDEX_FILE` with a snapshot of `index`, durably.
pub(crate) fn rewrite(dir: &Path, index: &MailboxIndex<FileRef>) -> io::Result<()> {
    write_replace(dir, INDEX_FILE, snapshot(index).as_bytes())
}

/// Appends `records` to `dir/INDEX_FILE`, not synced: the caller syncs the returned
/// file, or a shared barrier covers it. The file is opened for this write only (the
/// caller drops it), so that loaded mailboxes hold no descriptors. `None`: nothing to
/// write.
pub(crate) fn append_records(dir: &Path, records: &[u8]) -> io::Result<Option<File>> {
    if records.is_empty() {
        return Ok(None);
    }
    let mut file = OpenOptions::new().append(true).open(dir.join(INDEX_FILE))?;
    file.write_all(records)?;
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_round_trip() {
        let mut index = MailboxIndex::new(UidValidity(77));
        let weird = FileRef {
            sub: Sub::Cur,
            name: "17.M1P2.h o%st,S=5:2,S".to_string(),
        };
        let meta = index
            .insert(5, 17, Flags::from([Flag::Seen]), weird.clone())
            .unwrap();
        let mut log = snapshot(&index);
        let mut changed = meta.clone();
        changed.flags.insert(Flag::Keyword("$MDNSent".into()));
        changed.modseq = index.bump_modseq();
        record_flags(&changed, &weird, &mut log);
        record_expunge(Uid(9), index.bump_modseq(), &mut log);
        log.push_str("+ 3 9"); // torn tail
        let (replayed, records, torn) = replay(&log).unwrap();
        assert!(torn);
        assert_eq!(records, 3);
        assert_eq!(replayed.uid_validity, UidValidity(77));
        assert_eq!(replayed.uid_next, Uid(2));
        assert_eq!(replayed.highest_modseq, ModSeq(4));
        let entry = &replayed.messages[&Uid(1)];
        assert_eq!(entry.meta, changed);
        assert_eq!(entry.body, weird);
        assert!(replay("garbage\n").is_none());
        assert!(replay(&format!("{log}\n? 1 2\n")).is_none());
    }
}
