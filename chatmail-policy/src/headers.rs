//! One-pass reading of an RFC 5322 / MIME header section, without allocation.
//!
//! Lines end in CRLF or, leniently, in a bare LF (test fixtures and local tools write
//! those). A field runs from its name line through every following line that starts with
//! a space or tab (folding).

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

/// Why a header section or a MIME header field is refused: it could be read differently
/// by another parser (Delta Chat's `mailparse`, a mail client), so the policy's reading
/// would not be the reader's (issue 9, hole 3).
pub(crate) type Ambiguity = &'static str;

impl Field<'_> {
    /// `None` when the field is what every reader takes the same way: a field name
    /// directly followed by the colon (no whitespace before it: `mailparse` takes the
    /// whitespace into the name), and no control byte but tab and the line endings of
    /// folds (readers drop or keep them differently).
    pub fn ambiguity(&self) -> Option<Ambiguity> {
        if self.name.is_empty() {
            return Some("a header line that is not a field");
        }
        if self.raw.get(self.name.len()) != Some(&b':') {
            return Some("whitespace before a header field's colon");
        }
        // Without an early exit, so that the compiler vectorises it (an Autocrypt
        // field alone is over a kilobyte).
        let control = self.raw.iter().fold(0u8, |found, &b| {
            found
                | (u8::from(b < 0x20)
                    & u8::from(b != b'\t')
                    & u8::from(b != b'\r')
                    & u8::from(b != b'\n'))
                | u8::from(b == 0x7f)
        });
        if control != 0 {
            return Some("a control character in a header field");
        }
        None
    }
}

/// A `Content-Type` value that every reader parses the same way: the media type and
/// the `boundary` parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContentType<'a> {
    media: &'a [u8],
    boundary: Option<&'a [u8]>,
}

/// The most parameters a `Content-Type` may have (a real one has two or three).
const MAX_PARAMETERS: usize = 16;

/// A 256-entry membership table: a lookup per byte instead of a search of the set.
pub(crate) const fn byte_set(members: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < members.len() {
        table[members[i] as usize] = true;
        i += 1;
    }
    table
}

/// RFC 2045 `tspecials`.
const TSPECIALS: [bool; 256] = byte_set(b"()<>@,;:\\\"/[]?=");

/// RFC 2046 `bcharsnospace` other than letters and digits.
const BCHAR_PUNCTUATION: [bool; 256] = byte_set(b"'()+_,-./:=?");

/// An RFC 2045 token character (`tspecials` excluded).
fn is_token_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && !TSPECIALS[b as usize]
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token_char(b))
}

impl<'a> ContentType<'a> {
    /// Parses a `Content-Type` field value in the subset of RFC 2045 that Delta Chat's
    /// `mailparse` reads the same way: `type/subtype` then `; name=value` parameters,
    /// values tokens or quoted strings. Refused, since readers differ on them: bytes
    /// outside printable ASCII (`mailparse` decodes and trims Unicode), encoded words,
    /// comments, backslashes, semicolons or line breaks inside quoted strings
    /// (`mailparse` splits on every `;` and does not unescape), anything after a value,
    /// a parameter given twice (`mailparse` keeps the last, others the first) and RFC
    /// 2231 forms of `boundary` (`boundary*`, `boundary*0`, which `mailparse` joins).
    pub fn parse(value: &'a [u8]) -> Result<Self, Ambiguity> {
        let outside = value.iter().fold(0u8, |found, &b| {
            found | u8::from(!matches!(b, b'\t' | b'\r' | b'\n' | 0x20..=0x7e))
        });
        if outside != 0 {
            return Err("a Content-Type byte outside printable ASCII");
        }
        if memchr::memchr_iter(b'=', value).any(|i| value.get(i + 1) == Some(&b'?')) {
            return Err("an encoded word in Content-Type");
        }
        let mut segments = value.split(|&b| b == b';');
        let media = trim(segments.next().unwrap_or_default());
        match media.iter().position(|&b| b == b'/') {
            Some(i) if is_token(&media[..i]) && is_token(&media[i + 1..]) => {}
            _ => return Err("a malformed media type"),
        }
        let mut names: [&[u8]; MAX_PARAMETERS] = [&[]; MAX_PARAMETERS];
        let mut count = 0;
        let mut boundary = None;
        for segment in segments {
            let segment = trim(segment);
            if segment.is_empty() {
                continue;
            }
            let Some(eq) = segment.iter().position(|&b| b == b'=') else {
                return Err("a Content-Type parameter without a value");
            };
            let name = trim(&segment[..eq]);
            let raw = trim(&segment[eq + 1..]);
            if !is_token(name) {
                return Err("a malformed Content-Type parameter name");
            }
            let value = match raw.strip_prefix(b"\"") {
                Some(quoted) => match quoted.strip_suffix(b"\"") {
                    Some(inner)
                        if !inner
                            .iter()
                            .any(|&b| matches!(b, b'"' | b'\\' | b'\r' | b'\n')) =>
                    {
                        inner
                    }
                    _ => return Err("a malformed quoted Content-Type parameter"),
                },
                None if is_token(raw) => raw,
                None => return Err("a malformed Content-Type parameter value"),
            };
            if count == MAX_PARAMETERS {
                return Err("too many Content-Type parameters");
            }
            if names[..count].iter().any(|n| n.eq_ignore_ascii_case(name)) {
                return Err("a Content-Type parameter given twice");
            }
            names[count] = name;
            count += 1;
            if name.len() > 8 && name[..9].eq_ignore_ascii_case(b"boundary*") {
                return Err("an RFC 2231 boundary parameter");
            }
            if name.eq_ignore_ascii_case(b"boundary") {
                boundary = Some(value);
            }
        }
        Ok(ContentType { media, boundary })
    }

    /// The type a part without a `Content-Type` field has (RFC 2045: `text/plain`).
    pub fn default_text_plain() -> Self {
        ContentType {
            media: b"text/plain",
            boundary: None,
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

    /// The `boundary` parameter, unquoted; `None` when absent, empty, over-long or
    /// holding a character outside RFC 2046's `bcharsnospace` (a space would make the
    /// delimiter line's transport padding ambiguous).
    pub fn boundary(&self) -> Option<&'a [u8]> {
        let value = self.boundary?;
        let bchar = |b: u8| b.is_ascii_alphanumeric() || BCHAR_PUNCTUATION[b as usize];
        (!value.is_empty() && value.len() <= 200 && value.iter().all(|&b| bchar(b)))
            .then_some(value)
    }
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
            b" Multipart/Encrypted; protocol=\"application/pgp-encrypted\";\r\n\tboundary=\"a=b\"",
        )
        .unwrap();
        assert!(ct.is("multipart/encrypted") && ct.is_multipart());
        assert_eq!(ct.boundary(), Some(&b"a=b"[..]));
        let ct = ContentType::parse(b"multipart/mixed; boundary=abc;").unwrap();
        assert_eq!(ct.boundary(), Some(&b"abc"[..]));
        assert!(ContentType::parse(b"text/plain")
            .unwrap()
            .boundary()
            .is_none());
        for ambiguous in [
            &b"multipart/mixed; boundary=\"x"[..],
            b"multipart/mixed; boundary=abc (comment)",
            b"multipart/mixed; boundary=\"a\\\"b\"",
            b"multipart/mixed; boundary=\"a;b\"",
            b"multipart/mixed; boundary=\"a\"b",
            b"multipart/mixed; boundary=a b",
            b"multipart/mixed; boundary=A; boundary=B",
            b"multipart/mixed; BOUNDARY=A; boundary=A",
            b"multipart/mixed; boundary*=utf-8''A",
            b"multipart/mixed; boundary*0=A; boundary*1=B",
            b"multipart/mixed (comment); boundary=A",
            b"multipart/mixed; =?utf-8?q?boundary?==A",
            b"multipart/mixed; boundary=\"\xc2\xa0A\"",
            b"multipart/mixed; junk",
            b"multipart; boundary=A",
            b"",
        ] {
            assert!(
                ContentType::parse(ambiguous).is_err(),
                "{}",
                String::from_utf8_lossy(ambiguous)
            );
        }
    }

    #[test]
    fn field_ambiguities() {
        let first = |msg: &'static [u8]| Fields::new(msg).next().unwrap().ambiguity();
        assert_eq!(first(b"From: a\r\n"), None);
        assert!(first(b"From : a\r\n").is_some());
        assert!(first(b"\x1f\x8b\x08\r\n").is_some());
        assert!(first(b"No colon\r\n").is_some());
        assert!(first(b"Subject: a\x01b\r\n").is_some());
        assert!(first(b"Subject: a\x7f\r\n").is_some());
        assert_eq!(first(b"Subject: \xc3\xa4\r\n\tb\r\n"), None);
    }
}
