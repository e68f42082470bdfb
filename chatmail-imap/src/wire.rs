//! The wire forms: the few IMAP string forms a server writes, the untagged FETCH of a
//! flag change, and the decoding of tags, mailbox names and flags from a command.
//!
//! Responses are written straight into the session's output buffer instead of building
//! `imap-types` values first: a FETCH of a 30 MB body must go out as the stored
//! [`bytes::Bytes`] without a copy, and the rest of a response is a handful of atoms and
//! strings. The tests decode every response the engine writes with `imap-codec`'s
//! `ResponseCodec` to keep this encoder honest.

use chatmail_core::{Flags, ModSeq, Uid};
use imap_codec::imap_types::extensions::metadata::Entry;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;

/// The longest string sent in quoted form; longer ones go out as literals.
const MAX_QUOTED: usize = 1024;

/// Whether `s` may be sent as an IMAP quoted string (7-bit text, no CR/LF/NUL).
fn quotable(s: &[u8]) -> bool {
    s.len() <= MAX_QUOTED
        && s.iter()
            .all(|&b| b != 0 && b != b'\r' && b != b'\n' && b < 0x80)
}

/// Appends `s` as a quoted string or, when it cannot be quoted, as a literal.
pub(crate) fn string(out: &mut Vec<u8>, s: &[u8]) {
    if quotable(s) {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

/// Appends `s` as a literal (`{n}` CRLF bytes).
pub(crate) fn literal(out: &mut Vec<u8>, s: &[u8]) {
    literal_header(out, s.len());
    out.extend_from_slice(s);
}

/// Appends the announcement `{n}` CRLF of a literal whose bytes follow separately.
pub(crate) fn literal_header(out: &mut Vec<u8>, len: usize) {
    out.push(b'{');
    number(out, len as u64);
    out.extend_from_slice(b"}\r\n");
}

/// Appends `NIL` for `None`, else the string.
pub(crate) fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => string(out, s),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Appends a mailbox name: an atom when safe, else a quoted string or literal.
pub(crate) fn mailbox(out: &mut Vec<u8>, name: &str) {
    let atom_safe = !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'"' | b'\\' | b']' | b'%' | b'*')
        });
    if atom_safe {
        out.extend_from_slice(name.as_bytes());
    } else {
        string(out, name.as_bytes());
    }
}

/// Appends a decimal number.
pub(crate) fn number(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends a parenthesised flag list, with `\Recent` first when `recent` (a session
/// flag, never stored).
pub(crate) fn flag_list(out: &mut Vec<u8>, flags: &Flags, recent: bool) {
    out.push(b'(');
    if recent {
        out.extend_from_slice(b"\\Recent");
    }
    for (i, flag) in flags.iter().enumerate() {
        if i > 0 || recent {
            out.push(b' ');
        }
        out.extend_from_slice(flag.as_imap().as_bytes());
    }
    out.push(b')');
}

/// Writes the FLAGS response and the PERMANENTFLAGS response code of SELECT for a
/// mailbox whose announced keywords are `keywords` (read-only mailboxes permit none).
pub(crate) fn flags_responses<'k>(
    out: &mut Vec<u8>,
    keywords: impl IntoIterator<Item = &'k String> + Clone,
    read_only: bool,
) {
    let mut flags = String::from(SYSTEM_FLAGS);
    for k in keywords {
        flags.push(' ');
        flags.push_str(k);
    }
    out.extend_from_slice(format!("* FLAGS ({flags})\r\n").as_bytes());
    if read_only {
        out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n");
    } else {
        out.extend_from_slice(
            format!("* OK [PERMANENTFLAGS ({flags} \\*)] Flags permitted.\r\n").as_bytes(),
        );
    }
}

/// Appends a UID set in compact form (`1:3,7`) from ascending UIDs.
pub(crate) fn uid_set(out: &mut Vec<u8>, uids: impl IntoIterator<Item = u32>) {
    let mut run: Option<(u32, u32)> = None;
    let mut first = true;
    let mut emit = |out: &mut Vec<u8>, (a, b): (u32, u32)| {
        if !first {
            out.push(b',');
        }
        first = false;
        number(out, a.into());
        if b != a {
            out.push(b':');
            number(out, b.into());
        }
    };
    for uid in uids {
        run = match run {
            Some((a, b)) if b.checked_add(1) == Some(uid) => Some((a, uid)),
            Some(r) => {
                emit(out, r);
                Some((uid, uid))
            }
            None => Some((uid, uid)),
        };
    }
    if let Some(r) = run {
        emit(out, r);
    }
}

/// Formats a Unix timestamp as an IMAP date-time (`"02-Jan-2024 15:04:05 +0000"`).
pub(crate) fn internal_date(out: &mut Vec<u8>, unix: i64) {
    let dt = chrono::DateTime::from_timestamp(unix, 0).unwrap_or_default();
    let text = dt.format("\"%d-%b-%Y %H:%M:%S +0000\"").to_string();
    out.extend_from_slice(text.as_bytes());
}

/// The flags every mailbox accepts, for the FLAGS response of SELECT.
pub(crate) const SYSTEM_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft";

/// Writes `* n FETCH (UID u FLAGS (...) [MODSEQ (m)])` for a flag change.
pub(crate) fn flags_fetch(
    out: &mut Vec<u8>,
    seq: u32,
    uid: Uid,
    flags: &Flags,
    recent: bool,
    modseq: Option<ModSeq>,
) {
    out.extend_from_slice(b"* ");
    number(out, seq.into());
    out.extend_from_slice(b" FETCH (UID ");
    number(out, uid.0.into());
    out.extend_from_slice(b" FLAGS ");
    flag_list(out, flags, recent);
    if let Some(m) = modseq {
        out.extend_from_slice(b" MODSEQ (");
        number(out, m.0);
        out.push(b')');
    }
    out.extend_from_slice(b")\r\n");
}

/// A tag to answer with: the client's first word if it is a valid tag, else `*`.
pub(crate) fn tag_of(word: &[u8]) -> String {
    let valid = !word.is_empty()
        && word.len() <= 64
        && word.iter().all(|&b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
        });
    if valid {
        String::from_utf8_lossy(word).into_owned()
    } else {
        "*".to_string()
    }
}

/// The hierarchy delimiter of mailbox names (Maildir++ layout).
pub(crate) const DELIMITER: char = '.';

/// Whether a client may give a mailbox this name (CREATE, RENAME): not INBOX, no empty
/// hierarchy level, no wildcard, control character or path separator.
pub(crate) fn valid_new_mailbox_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.eq_ignore_ascii_case(chatmail_core::INBOX)
        && !name.starts_with(DELIMITER)
        && !name.ends_with(DELIMITER)
        && !name.contains("..")
        && !name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\' || c == '*' || c == '%')
}

/// A mailbox name from the wire (`INBOX` case-insensitively canonical).
pub(crate) fn mailbox_name(mailbox: &Mailbox<'_>) -> String {
    match mailbox {
        Mailbox::Inbox => chatmail_core::INBOX.to_string(),
        Mailbox::Other(other) => String::from_utf8_lossy(other.as_ref()).into_owned(),
    }
}

/// A metadata entry name from the wire (GETMETADATA, SETMETADATA).
pub(crate) fn metadata_entry(entry: &Entry<'_>) -> String {
    String::from_utf8_lossy(entry.inner().as_ref()).into_owned()
}

/// Converts wire flags to storable flags (`\Recent` and unknown system flags dropped).
pub(crate) fn to_flags<'a>(flags: impl IntoIterator<Item = &'a Flag<'a>>) -> Flags {
    flags
        .into_iter()
        .filter_map(|f| chatmail_core::Flag::from_imap(&f.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_quote_or_literal() {
        let mut out = Vec::new();
        string(&mut out, b"a \"b\" \\c");
        assert_eq!(out, b"\"a \\\"b\\\" \\\\c\"");
        out.clear();
        string(&mut out, b"line\r\nbreak");
        assert_eq!(out, b"{11}\r\nline\r\nbreak");
        out.clear();
        uid_set(&mut out, [1, 2, 3, 7, 9, 10]);
        assert_eq!(out, b"1:3,7,9:10");
        out.clear();
        internal_date(&mut out, 0);
        assert_eq!(out, b"\"01-Jan-1970 00:00:00 +0000\"");
        out.clear();
        mailbox(&mut out, "Sent Messages");
        assert_eq!(out, b"\"Sent Messages\"");
    }
}
