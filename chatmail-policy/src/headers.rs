//! One-pass reading of an RFC 5322 / MIME header section, without allocation.
//!
//! Lines end in CRLF or, leniently, in a bare LF (test fixtures and local tools write
//! those). A field runs from its name line through every following line that starts with
//! a space or tab (folding).

use std::borrow::Cow;

/// One header field as it appears in the message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'a> {
    /// The field name (empty for a malformed line without a colon).
    pub name: &'a [u8],
    /// Everything after the colon up to the field's final line ending, folds included.
    pub value: &'a [u8],
    /// The whole field, final line ending included.
    pub raw: &'a [u8],
}

impl Field<'_> {
    /// ASCII case-insensitive name comparison.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The line ending the field ends with (`""` when it ends the input).
    pub fn line_ending(&self) -> &'static [u8] {
        if self.raw.ends_with(b"\r\n") {
            b"\r\n"
        } else if self.raw.ends_with(b"\n") {
            b"\n"
        } else {
            b""
        }
    }
}

/// Iterator over the fields of a header section starting at the beginning of `buf`.
/// After it returns `None`, [`Fields::body_start`] is the offset of the body (after the
/// empty line), or `buf.len()` when the input has no empty line.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields {
            buf,
            pos: 0,
            done: false,
        }
    }

    /// Offset of the body; meaningful once the iterator is exhausted.
    pub fn body_start(&self) -> usize {
        self.pos
    }
}

/// Offset just past the `\n` ending the line that starts at `pos` (or `buf.len()`).
#[inline]
pub(crate) fn line_end(buf: &[u8], pos: usize) -> usize {
    match memchr::memchr(b'\n', &buf[pos..]) {
        Some(i) => pos + i + 1,
        None => buf.len(),
    }
}

/// The line's content without its line ending.
#[inline]
pub(crate) fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        if self.done || self.pos >= self.buf.len() {
            self.done = true;
            return None;
        }
        let buf = self.buf;
        let start = self.pos;
        let first_end = line_end(buf, start);
        if strip_eol(&buf[start..first_end]).is_empty() {
            // The empty line separating header and body.
            self.pos = first_end;
            self.done = true;
            return None;
        }
        let mut end = first_end;
        while end < buf.len() && matches!(buf[end], b' ' | b'\t') {
            end = line_end(buf, end);
        }
        self.pos = end;
        let raw = &buf[start..end];
        let first_line = &buf[start..first_end];
        // `name WSP* ":"` (RFC 5322 obs-optional allows whitespace before the colon), read
        // in one pass over the name; anything else is a malformed line without a name.
        let name_len = first_line
            .iter()
            .position(|&b| !is_field_name_char(b))
            .unwrap_or(first_line.len());
        let after_name = &first_line[name_len..];
        let colon = name_len + after_name.iter().take_while(|&&b| is_ws(b)).count();
        let (name, value) = match first_line.get(colon) {
            Some(b':') if name_len > 0 => (
                &first_line[..name_len],
                strip_eol(&buf[start + colon + 1..end]),
            ),
            _ => (&b""[..], strip_eol(raw)),
        };
        Some(Field { name, value, raw })
    }
}

/// A field-name character: printable US-ASCII except the colon.
#[inline]
fn is_field_name_char(b: u8) -> bool {
    (33..=126).contains(&b) && b != b':'
}

/// Whitespace as header values use it: space, tab and the CR/LF of folds.
#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

pub(crate) fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_ws(b)).count();
    &s[n..]
}

pub(crate) fn trim_end(s: &[u8]) -> &[u8] {
    let n = s.iter().rev().take_while(|&&b| is_ws(b)).count();
    &s[..s.len() - n]
}

pub(crate) fn trim(s: &[u8]) -> &[u8] {
    trim_end(trim_start(s))
}

/// A parsed `Content-Type` value: the media type and the raw parameter list.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContentType<'a> {
    media: &'a [u8],
    params: &'a [u8],
}

impl<'a> ContentType<'a> {
    /// Parses a `Content-Type` field value.
    pub fn parse(value: &'a [u8]) -> Self {
        let value = skip_cfws(value);
        let end = value
            .iter()
            .position(|&b| b == b';' || b == b'(' || is_ws(b))
            .unwrap_or(value.len());
        let media = &value[..end];
        let params = match value[end..].iter().position(|&b| b == b';') {
            Some(i) => &value[end + i + 1..],
            None => &b""[..],
        };
        ContentType { media, params }
    }

    /// The type a part without a `Content-Type` field has (RFC 2045: `text/plain`).
    pub fn default_text_plain() -> Self {
        ContentType {
            media: b"text/plain",
            params: b"",
        }
    }

    /// Whether the media type is `media` (ASCII case-insensitive).
    pub fn is(&self, media: &str) -> bool {
        self.media.eq_ignore_ascii_case(media.as_bytes())
    }

    /// Whether the top-level type is `multipart`.
    pub fn is_multipart(&self) -> bool {
        self.media.len() > 10 && self.media[..10].eq_ignore_ascii_case(b"multipart/")
    }

    /// The `boundary` parameter, unquoted; `None` when absent, empty or over-long.
    pub fn boundary(&self) -> Option<Cow<'a, [u8]>> {
        let value = self.param("boundary")?;
        (!value.is_empty() && value.len() <= 200).then_some(value)
    }

    /// The value of parameter `name` (case-insensitive name), quoted strings unquoted.
    pub fn param(&self, name: &str) -> Option<Cow<'a, [u8]>> {
        let mut rest = self.params;
        loop {
            rest = skip_cfws(rest);
            if rest.is_empty() {
                return None;
            }
            let eq = rest.iter().position(|&b| b == b'=' || b == b';')?;
            if rest[eq] == b';' {
                rest = &rest[eq + 1..];
                continue;
            }
            let pname = trim(&rest[..eq]);
            let after = skip_cfws(&rest[eq + 1..]);
            let (value, remaining) = if after.first() == Some(&b'"') {
                read_quoted(after)?
            } else {
                let end = after
                    .iter()
                    .position(|&b| b == b';' || b == b'(' || is_ws(b))
                    .unwrap_or(after.len());
                (Cow::Borrowed(&after[..end]), &after[end..])
            };
            if pname.eq_ignore_ascii_case(name.as_bytes()) {
                return Some(value);
            }
            rest = match remaining.iter().position(|&b| b == b';') {
                Some(i) => &remaining[i + 1..],
                None => &b""[..],
            };
        }
    }
}

/// Reads a quoted string at the start of `s` (which begins with `"`); returns the content
/// with escapes resolved and folds removed, and the rest after the closing quote.
fn read_quoted(s: &[u8]) -> Option<(Cow<'_, [u8]>, &[u8])> {
    let body = &s[1..];
    let close = body
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b == b'\r' || b == b'\n');
    if let Some(i) = close {
        if body[i] == b'"' {
            return Some((Cow::Borrowed(&body[..i]), &body[i + 1..]));
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => return Some((Cow::Owned(out), &body[i + 1..])),
            b'\\' if i + 1 < body.len() => {
                out.push(body[i + 1]);
                i += 2;
            }
            b'\r' | b'\n' => i += 1,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

/// Skips whitespace and (nested) comments.
pub(crate) fn skip_cfws(mut s: &[u8]) -> &[u8] {
    loop {
        s = trim_start(s);
        if s.first() != Some(&b'(') {
            return s;
        }
        s = skip_comment(s);
    }
}

/// Skips a comment starting at `s[0] == b'('`, nesting and escapes included; an
/// unterminated comment runs to the end.
pub(crate) fn skip_comment(s: &[u8]) -> &[u8] {
    let mut depth = 0usize;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return &s[i + 1..];
                }
            }
            _ => {}
        }
        i += 1;
    }
    &s[s.len()..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_unfold_and_find_the_body() {
        let msg = b"From: a@b\r\nSubject: x\r\n y\r\nbad line\r\n\r\nbody\r\n";
        let mut it = Fields::new(msg);
        let f = it.next().unwrap();
        assert_eq!((f.name, f.value), (&b"From"[..], &b" a@b"[..]));
        let f = it.next().unwrap();
        assert_eq!((f.name, f.value), (&b"Subject"[..], &b" x\r\n y"[..]));
        assert_eq!(f.line_ending(), b"\r\n");
        let f = it.next().unwrap();
        assert_eq!(f.name, b"");
        assert!(it.next().is_none());
        assert_eq!(&msg[it.body_start()..], b"body\r\n");
    }

    #[test]
    fn field_names_allow_whitespace_before_the_colon_only() {
        let names = |msg: &'static [u8]| -> Vec<&'static [u8]> {
            Fields::new(msg).map(|f| f.name).collect()
        };
        assert_eq!(
            names(b"From : a\r\nSubject\t\r:b\r\nFr om: c\r\n: d\r\nX\x7f: e\r\nNo colon\r\n"),
            [&b"From"[..], b"Subject", b"", b"", b"", b""]
        );
        let f = Fields::new(b"From :  a@b\r\n").next().unwrap();
        assert_eq!(f.value, b"  a@b");
    }

    #[test]
    fn content_type_parameters() {
        let ct = ContentType::parse(
            b" Multipart/Encrypted; protocol=\"application/pgp-encrypted\";\r\n\tboundary=\"a\\\"b\"",
        );
        assert!(ct.is("multipart/encrypted") && ct.is_multipart());
        assert_eq!(ct.boundary().as_deref(), Some(&b"a\"b"[..]));
        let ct = ContentType::parse(b"multipart/mixed; boundary=abc (comment)");
        assert_eq!(ct.boundary().as_deref(), Some(&b"abc"[..]));
        assert!(ContentType::parse(b"text/plain").boundary().is_none());
        assert!(ContentType::parse(b"multipart/mixed; boundary=\"x")
            .boundary()
            .is_none());
    }
}
