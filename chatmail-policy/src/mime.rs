//! MIME structure without a tree: part boundaries and part headers found in one forward
//! pass, transfer encodings decoded only for the small parts that need it.

use crate::armor::check_armor;
use crate::headers::{line_end, strip_eol, trim, ContentType, Fields};
use crate::Direction;
use std::borrow::Cow;

/// Bodies longer than this cannot be one of the short texts compared against
/// (`Version: 1`, `secure-join: vc-request`), whatever their transfer encoding.
const MAX_SHORT_BODY: usize = 4096;

/// A delimiter line found in a multipart body.
#[derive(Debug, Clone, Copy)]
struct Delimiter {
    /// Offset of the line ending before the delimiter (the end of the preceding part).
    part_end: usize,
    /// Offset just after the delimiter line.
    next: usize,
    /// Whether it is the close delimiter `--boundary--`.
    close: bool,
}

/// The next delimiter line at or after `pos` (a line start).
fn next_delimiter(body: &[u8], mut pos: usize, boundary: &[u8]) -> Option<Delimiter> {
    while pos < body.len() {
        let end = line_end(body, pos);
        if let Some(close) = delimiter_kind(strip_eol(&body[pos..end]), boundary) {
            let part_end = if body[..pos].ends_with(b"\r\n") {
                pos - 2
            } else if body[..pos].ends_with(b"\n") {
                pos - 1
            } else {
                pos
            };
            return Some(Delimiter {
                part_end,
                next: end,
                close,
            });
        }
        pos = end;
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
    /// Offset of the part body.
    body: usize,
}

/// A Content-Transfer-Encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// 7bit, 8bit, binary or none: the bytes are the content.
    Identity,
    Base64,
    QuotedPrintable,
    /// Anything else: the content cannot be read, so the part fails every check.
    Unknown,
}

fn part_headers(body: &[u8], start: usize) -> PartHeaders<'_> {
    let mut fields = Fields::new(&body[start..]);
    let mut content_type = None;
    let mut encoding = Encoding::Identity;
    for f in fields.by_ref() {
        if content_type.is_none() && f.is("Content-Type") {
            content_type = Some(ContentType::parse(f.value));
        } else if f.is("Content-Transfer-Encoding") {
            let v = trim(f.value);
            encoding = if [&b"7bit"[..], b"8bit", b"binary"]
                .iter()
                .any(|e| v.eq_ignore_ascii_case(e))
            {
                Encoding::Identity
            } else if v.eq_ignore_ascii_case(b"base64") {
                Encoding::Base64
            } else if v.eq_ignore_ascii_case(b"quoted-printable") {
                Encoding::QuotedPrintable
            } else {
                Encoding::Unknown
            };
        }
    }
    PartHeaders {
        content_type: content_type.unwrap_or_else(ContentType::default_text_plain),
        encoding,
        body: start + fields.body_start(),
    }
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

/// The first part of a multipart body if its media type is `media`, with the delimiter
/// that ends it.
fn first_part<'a>(
    body: &'a [u8],
    boundary: &[u8],
    media: &str,
) -> Option<(PartHeaders<'a>, Delimiter)> {
    let first = next_delimiter(body, 0, boundary)?;
    if first.close {
        return None;
    }
    let part = part_headers(body, first.next);
    if !part.content_type.is(media) {
        return None;
    }
    let end = next_delimiter(body, part.body, boundary)?;
    Some((part, end))
}

/// RFC 3156: `multipart/encrypted` with exactly two parts, `application/pgp-encrypted`
/// holding `Version: 1`, then `application/octet-stream` holding the armored message.
/// `body` is the message body, `boundary` the top-level boundary.
pub(crate) fn is_pgp_mime(body: &[u8], boundary: &[u8], direction: Direction) -> bool {
    // Part 1: the version part; more parts must follow.
    let Some((version, second)) = first_part(body, boundary, "application/pgp-encrypted") else {
        return false;
    };
    if second.close {
        return false;
    }
    let raw = body.get(version.body..second.part_end).unwrap_or_default();
    if raw.len() > MAX_SHORT_BODY {
        return false;
    }
    match decode(raw, version.encoding) {
        Some(text) if trim(&text) == b"Version: 1" => {}
        _ => return false,
    }
    // Part 2: the armored payload, which must be the last part.
    let payload = part_headers(body, second.next);
    if !payload.content_type.is("application/octet-stream") {
        return false;
    }
    if payload.encoding == Encoding::Identity {
        // Fast path: walk the armor in place, then expect only empty lines up to the
        // close delimiter.
        let Ok(armor_len) = check_armor(&body[payload.body..], direction) else {
            return false;
        };
        let mut pos = payload.body + armor_len;
        while pos < body.len() {
            let end = line_end(body, pos);
            let line = strip_eol(&body[pos..end]);
            if !line.is_empty() {
                return delimiter_kind(line, boundary) == Some(true);
            }
            pos = end;
        }
        false
    } else {
        let Some(last) = next_delimiter(body, payload.body, boundary) else {
            return false;
        };
        if !last.close {
            return false;
        }
        let raw = body.get(payload.body..last.part_end).unwrap_or_default();
        let Some(armor) = decode(raw, payload.encoding) else {
            return false;
        };
        match check_armor(&armor, direction) {
            Ok(end) => armor[end..].iter().all(|&b| b == b'\r' || b == b'\n'),
            Err(_) => false,
        }
    }
}

/// The Secure-Join exception's body test (spec 3.1): a multipart with exactly one part,
/// `text/plain`, whose content is `secure-join: vc-request` or `…vg-request`
/// (trimmed, case-insensitive).
pub(crate) fn is_securejoin_body(body: &[u8], boundary: &[u8]) -> bool {
    let Some((part, last)) = first_part(body, boundary, "text/plain") else {
        return false;
    };
    if !last.close {
        return false;
    }
    let raw = body.get(part.body..last.part_end).unwrap_or_default();
    if raw.len() > MAX_SHORT_BODY {
        return false;
    }
    match decode(raw, part.encoding) {
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
    fn delimiters() {
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
    fn securejoin_body() {
        let body = b"--b\r\nContent-Type: text/plain\r\n\r\nSecure-Join: VG-request\r\n--b--\r\n";
        assert!(is_securejoin_body(body, b"b"));
        let two = b"--b\r\n\r\nsecure-join: vc-request\r\n--b\r\n\r\nx\r\n--b--\r\n";
        assert!(!is_securejoin_body(two, b"b"));
        let html = b"--b\r\nContent-Type: text/html\r\n\r\nsecure-join: vc-request\r\n--b--\r\n";
        assert!(!is_securejoin_body(html, b"b"));
    }
}
