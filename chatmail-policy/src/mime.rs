//! MIME structure without a tree: part boundaries and part headers found in one forward
//! pass, transfer encodings decoded only for the small parts that need it.

use crate::armor::check_armor;
use crate::direction::Direction;
use crate::headers::{line_end, strip_eol, trim, ContentType, Fields};
use std::borrow::Cow;

/// Bodies longer than this cannot be one of the short texts compared against
/// (`Version: 1`, `secure-join: vc-request`), whatever their transfer encoding.
const MAX_SHORT_BODY: usize = 4096;

/// A delimiter line found in a multipart body.
#[derive(Debug, Clone, Copy, Default)]
struct Delimiter {
    /// Offset of the line ending before the delimiter (the end of the preceding part).
    part_end: usize,
    /// Offset just after the delimiter line.
    next: usize,
    /// Whether it is the close delimiter `--boundary--`.
    close: bool,
}

/// The most delimiter lines a body the policy accepts has (two parts and the close).
const MAX_DELIMITERS: usize = 3;

/// The delimiter lines found, in order, without an allocation.
#[derive(Debug, Default)]
struct Delimiters {
    lines: [Delimiter; MAX_DELIMITERS],
    len: usize,
}

impl Delimiters {
    fn as_slice(&self) -> &[Delimiter] {
        &self.lines[..self.len]
    }
}

/// `\n--`, the start of every line that can be a delimiter line.
static NEWLINE_DASHES: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\n--"));

/// The delimiter lines of a multipart body up to and including the close delimiter,
/// at most `max` of them; `None` when the body is not that simple shape, or when it
/// could be split differently by another reader.
///
/// Every line that starts with `--boundary` must be a delimiter line exactly (`--` after
/// the boundary for the close delimiter, then only transport padding): `mailparse`, the
/// parser of Delta Chat, takes any line with that prefix for a delimiter (and `--` right
/// after it for the close), so a line such as `--boundaryX` or `--boundary--X` would
/// end a part for it and not for a strict reader. Nothing but blank lines may follow the
/// close delimiter: readers that show an epilogue would show text nobody checked.
/// Found with one pass of a prebuilt `memmem` finder, so the work is linear in the body
/// and nothing is allocated.
fn delimiters(body: &[u8], boundary: &[u8], max: usize) -> Option<Delimiters> {
    let mut found = Delimiters::default();
    // Line starts that begin with `--`: the body's start, and every `\n--` (found with
    // one prebuilt finder: in an encrypted message only delimiters and armor lines).
    let starts = (body.starts_with(b"--").then_some(0))
        .into_iter()
        .chain(NEWLINE_DASHES.find_iter(body).map(|i| i + 1));
    for pos in starts {
        if !body[pos + 2..].starts_with(boundary) {
            continue; // not this boundary
        }
        let end = line_end(body, pos);
        let close = delimiter_kind(strip_eol(&body[pos..end]), boundary)?;
        if found.len == max.min(MAX_DELIMITERS) {
            return None;
        }
        let part_end = if body[..pos].ends_with(b"\r\n") {
            pos - 2
        } else if body[..pos].ends_with(b"\n") {
            pos - 1
        } else {
            pos
        };
        found.lines[found.len] = Delimiter {
            part_end,
            next: end,
            close,
        };
        found.len += 1;
        if close {
            let epilogue = &body[end..];
            return epilogue
                .iter()
                .all(|&b| matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
                .then_some(found);
        }
    }
    None
}

/// `Some(close?)` when `line` is `--boundary` or `--boundary--`, optionally followed by
/// transport padding (spaces, tabs).
#[inline]
fn delimiter_kind(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    rest.iter()
        .all(|&b| b == b' ' || b == b'\t')
        .then_some(close)
}

/// The headers of a body part that matter here.
struct PartHeaders<'a> {
    content_type: ContentType<'a>,
    encoding: Encoding,
    /// Offset of the part body within the part.
    body: usize,
}

/// A Content-Transfer-Encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// 7bit, 8bit, binary or none: the bytes are the content.
    Identity,
    Base64,
    QuotedPrintable,
    /// Anything else: the content cannot be read, so the part fails every check.
    Unknown,
}

impl Encoding {
    /// A `Content-Transfer-Encoding` field value; `None` when readers could take it
    /// differently. `mailparse` skips the spaces after the colon, lower-cases the rest
    /// and compares it whole (anything it does not know is 7bit), so only spaces then
    /// one token are read here.
    pub(crate) fn parse(value: &[u8]) -> Option<Encoding> {
        let token = &value[value.iter().take_while(|&&b| b == b' ').count()..];
        if token.is_empty()
            || !token
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        {
            return None;
        }
        let is = |name: &[u8]| token.eq_ignore_ascii_case(name);
        Some(if is(b"7bit") || is(b"8bit") || is(b"binary") {
            Encoding::Identity
        } else if is(b"base64") {
            Encoding::Base64
        } else if is(b"quoted-printable") {
            Encoding::QuotedPrintable
        } else {
            Encoding::Unknown
        })
    }
}

/// The headers of `part` (from just after its delimiter line to just before the next);
/// `None` when a reader could take them differently: a line that is not a field, a
/// control character, a `Content-Type` or `Content-Transfer-Encoding` given twice or
/// not in the form every reader parses alike.
fn part_headers(part: &[u8]) -> Option<PartHeaders<'_>> {
    let mut fields = Fields::new(part);
    let mut content_type = None;
    let mut encoding = None;
    for f in fields.by_ref() {
        if f.ambiguity().is_some() {
            return None;
        }
        if f.is("Content-Type") {
            if content_type.is_some() {
                return None;
            }
            content_type = Some(ContentType::parse(f.value).ok()?);
        } else if f.is("Content-Transfer-Encoding") {
            if encoding.is_some() {
                return None;
            }
            encoding = Some(Encoding::parse(f.value)?);
        }
    }
    Some(PartHeaders {
        content_type: content_type.unwrap_or_else(ContentType::default_text_plain),
        encoding: encoding.unwrap_or(Encoding::Identity),
        body: fields.body_start(),
    })
}

/// The content of a part after transfer decoding; `None` when it cannot be decoded.
fn decode(raw: &[u8], encoding: Encoding) -> Option<Cow<'_, [u8]>> {
    match encoding {
        Encoding::Identity => Some(Cow::Borrowed(raw)),
        Encoding::Base64 => decode_base64(raw).map(Cow::Owned),
        Encoding::QuotedPrintable => Some(Cow::Owned(decode_quoted_printable(raw))),
        Encoding::Unknown => None,
    }
}

/// RFC 3156: `multipart/encrypted` with exactly two parts, `application/pgp-encrypted`
/// holding `Version: 1`, then `application/octet-stream` holding the armored message
/// (as it is, or base64-encoded). `body` is the message body, `boundary` the top-level
/// boundary.
pub(crate) fn is_pgp_mime(body: &[u8], boundary: &[u8], direction: Direction) -> bool {
    let Some(d) = delimiters(body, boundary, 3) else {
        return false;
    };
    let [first, second, last] = *d.as_slice() else {
        return false;
    };
    if first.close || second.close || !last.close {
        return false;
    }
    // Part 1: the version part.
    let part = &body[first.next..second.part_end.max(first.next)];
    let Some(version) = part_headers(part) else {
        return false;
    };
    if !version.content_type.is("application/pgp-encrypted") {
        return false;
    }
    let raw = &part[version.body..];
    if raw.len() > MAX_SHORT_BODY {
        return false;
    }
    match decode(raw, version.encoding) {
        Some(text) if trim(&text) == b"Version: 1" => {}
        _ => return false,
    }
    // Part 2: the armored payload. Quoted-printable is not accepted for it: decoders
    // differ on trailing whitespace and malformed escapes, and no client uses it there.
    let part = &body[second.next..last.part_end.max(second.next)];
    let Some(payload) = part_headers(part) else {
        return false;
    };
    if !payload.content_type.is("application/octet-stream") {
        return false;
    }
    let raw = &part[payload.body..];
    let armor = match payload.encoding {
        Encoding::Identity => Cow::Borrowed(raw),
        Encoding::Base64 => match decode_base64(raw) {
            Some(decoded) => Cow::Owned(decoded),
            None => return false,
        },
        Encoding::QuotedPrintable | Encoding::Unknown => return false,
    };
    match check_armor(&armor, direction) {
        Ok(end) => armor[end..].iter().all(|&b| b == b'\r' || b == b'\n'),
        Err(_) => false,
    }
}

/// The Secure-Join exception's body test (spec 3.1): a multipart with exactly one part,
/// `text/plain`, whose content is `secure-join: vc-request` or `…vg-request`
/// (trimmed, case-insensitive).
pub(crate) fn is_securejoin_body(body: &[u8], boundary: &[u8]) -> bool {
    let Some(d) = delimiters(body, boundary, 2) else {
        return false;
    };
    let [first, last] = *d.as_slice() else {
        return false;
    };
    if first.close || !last.close {
        return false;
    }
    let part = &body[first.next..last.part_end.max(first.next)];
    let Some(headers) = part_headers(part) else {
        return false;
    };
    if !headers.content_type.is("text/plain") {
        return false;
    }
    let raw = &part[headers.body..];
    if raw.len() > MAX_SHORT_BODY {
        return false;
    }
    match decode(raw, headers.encoding) {
        Some(text) => {
            let text = trim(&text);
            text.eq_ignore_ascii_case(b"secure-join: vc-request")
                || text.eq_ignore_ascii_case(b"secure-join: vg-request")
        }
        None => false,
    }
}

/// Decodes base64 content, ignoring line breaks and whitespace; `None` on any other
/// character or wrong padding.
fn decode_base64(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0u32;
    let mut padding = 0usize;
    let mut count = 0usize;
    for &b in raw {
        match b {
            b'\r' | b'\n' | b' ' | b'\t' => continue,
            b'=' => {
                padding += 1;
                continue;
            }
            _ => {}
        }
        if padding > 0 {
            return None;
        }
        let v = crate::armor::sextet(b)?;
        count += 1;
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    let ok = match count % 4 {
        0 => padding == 0,
        2 => padding == 2,
        3 => padding == 1,
        _ => false,
    };
    ok.then_some(out)
}

/// Decodes quoted-printable content (soft line breaks removed, `=XX` resolved; a
/// malformed escape is kept literally, as lenient decoders do).
fn decode_quoted_printable(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'=' {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let rest = &raw[i + 1..];
        if rest.starts_with(b"\r\n") {
            i += 3;
        } else if rest.starts_with(b"\n") {
            i += 2;
        } else if let (Some(h), Some(l)) = (
            rest.first().and_then(|&c| hex(c)),
            rest.get(1).and_then(|&c| hex(c)),
        ) {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b'=');
            i += 1;
        }
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiter_kinds() {
        assert_eq!(delimiter_kind(b"--abc", b"abc"), Some(false));
        assert_eq!(delimiter_kind(b"--abc-- \t", b"abc"), Some(true));
        assert_eq!(delimiter_kind(b"--abcd", b"abc"), None);
        assert_eq!(delimiter_kind(b"-abc", b"abc"), None);
    }

    #[test]
    fn transfer_decodings() {
        assert_eq!(
            decode_base64(b"VmVyc2lvbjog\r\nMQ==\r\n").unwrap(),
            b"Version: 1"
        );
        assert!(decode_base64(b"VmV=yc2").is_none());
        assert!(decode_base64(b"VmVy!").is_none());
        assert_eq!(
            decode_quoted_printable(b"Version:=20=\r\n1=3"),
            b"Version: 1=3"
        );
    }

    #[test]
    fn delimiter_lines_every_reader_agrees_on() {
        let ok = b"pre\r\n--b\r\nx\r\n--b \r\ny\r\n--b--\r\n\r\n";
        let d = delimiters(ok, b"b", 3).unwrap();
        let d = d.as_slice();
        assert_eq!(d.len(), 3);
        assert!(!d[0].close && !d[1].close && d[2].close);
        assert_eq!(&ok[d[0].next..d[1].part_end], b"x");
        // A longer line with the delimiter as prefix ends a part for mailparse.
        assert!(delimiters(b"--b\r\nx\r\n--bX\r\n--b--\r\n", b"b", 3).is_none());
        assert!(delimiters(b"--b\r\nx\r\n--b--X\r\n", b"b", 3).is_none());
        // Text after the close delimiter; more parts than asked for; no close.
        assert!(delimiters(b"--b\r\nx\r\n--b--\r\nhidden\r\n", b"b", 3).is_none());
        assert!(delimiters(b"--b\r\n--b\r\n--b\r\n--b--\r\n", b"b", 3).is_none());
        assert!(delimiters(b"--b\r\nx\r\n", b"b", 3).is_none());
        // Not at a line start: not a delimiter for anyone.
        let d = delimiters(b"--b\r\nx --b\r\n--b--\r\n", b"b", 3).unwrap();
        assert_eq!(d.as_slice().len(), 2);
    }

    #[test]
    fn transfer_encoding_values() {
        assert_eq!(Encoding::parse(b" base64"), Some(Encoding::Base64));
        assert_eq!(Encoding::parse(b"7BIT"), Some(Encoding::Identity));
        assert_eq!(Encoding::parse(b" x-uue"), Some(Encoding::Unknown));
        for ambiguous in [
            &b"\tbase64"[..],
            b" base64 ",
            b" base64 (c)",
            b"",
            b" base\r\n 64",
        ] {
            assert_eq!(Encoding::parse(ambiguous), None);
        }
    }

    #[test]
    fn securejoin_body() {
        let body = b"--b\r\nContent-Type: text/plain\r\n\r\nSecure-Join: VG-request\r\n--b--\r\n";
        assert!(is_securejoin_body(body, b"b"));
        let two = b"--b\r\n\r\nsecure-join: vc-request\r\n--b\r\n\r\nx\r\n--b--\r\n";
        assert!(!is_securejoin_body(two, b"b"));
        let html = b"--b\r\nContent-Type: text/html\r\n\r\nsecure-join: vc-request\r\n--b--\r\n";
        assert!(!is_securejoin_body(html, b"b"));
    }
}
