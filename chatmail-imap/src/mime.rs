//! A light, bounded MIME reader for FETCH: header fields, the part tree with byte
//! offsets, ENVELOPE and BODYSTRUCTURE.
//!
//! It never copies a body: parts are byte ranges into the stored message, so `BODY[1]`
//! of a large message is a slice of the same [`bytes::Bytes`]. Nesting depth and the
//! number of parts are bounded; past the bounds a part is treated as a leaf.

use crate::wire;

/// Deepest multipart/message nesting that is parsed.
const MAX_DEPTH: usize = 16;
/// Most parts one message may have before the rest is treated as opaque.
const MAX_PARTS: usize = 512;

/// One MIME entity: a byte range of the message with its parsed type.
#[derive(Debug, Clone, Default)]
pub(crate) struct Part {
    /// Offset of the first header byte.
    pub header_start: usize,
    /// Offset of the first body byte (after the blank line).
    pub body_start: usize,
    /// Offset one past the last body byte.
    pub end: usize,
    /// Lower-case media type (`text`).
    pub media_type: String,
    /// Lower-case subtype (`plain`).
    pub subtype: String,
    /// Content-Type parameters, names lower-cased.
    pub params: Vec<(String, String)>,
    /// Sub-parts of a multipart.
    pub children: Vec<Part>,
    /// The encapsulated message of a message/rfc822 part.
    pub message: Option<Box<Part>>,
}

/// The header fields of a header block as `(name, raw unfolded value)`; offsets point
/// into the block, which ends before the blank line.
pub(crate) fn header_fields(block: &[u8]) -> Vec<(&[u8], Vec<u8>)> {
    let mut fields: Vec<(&[u8], Vec<u8>)> = Vec::new();
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if let Some((_, value)) = fields.last_mut() {
                value.extend_from_slice(line);
            }
            continue;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let value = trim(&line[colon + 1..]).to_vec();
            fields.push((trim(&line[..colon]), value));
        }
    }
    fields
}

/// The value of the first header field named `name` (case-insensitive).
pub(crate) fn header_value(block: &[u8], name: &str) -> Option<Vec<u8>> {
    header_fields(block)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v)
}

/// The raw header lines (with folding) of fields whose names are (not, with `exclude`) in
/// `names`, followed by the terminating blank line, as BODY[HEADER.FIELDS (...)] returns.
pub(crate) fn header_lines(block: &[u8], names: &[Vec<u8>], exclude: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut keep = false;
    for line in block.split_inclusive(|&b| b == b'\n') {
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        let bare = bare.strip_suffix(b"\r").unwrap_or(bare);
        if bare.is_empty() {
            break;
        }
        if bare[0] != b' ' && bare[0] != b'\t' {
            let name = bare
                .split(|&b| b == b':')
                .next()
                .map(trim)
                .unwrap_or_default();
            let listed = names.iter().any(|n| n.eq_ignore_ascii_case(name));
            keep = listed != exclude;
        }
        if keep {
            out.extend_from_slice(bare);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// Where the header block of `msg[start..end]` ends: `(end of header lines, body start)`.
fn split_header(msg: &[u8], start: usize, end: usize) -> (usize, usize) {
    let mut i = start;
    while i < end {
        let line_end = msg[i..end]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| i + p + 1);
        let Some(next) = line_end else {
            return (end, end);
        };
        let line = &msg[i..next];
        if line == b"\r\n" || line == b"\n" {
            return (i, next);
        }
        i = next;
    }
    (end, end)
}

/// Where the top-level header of `msg` ends: `(end of header lines, body start)`, without
/// parsing any part.
pub(crate) fn top_header(msg: &[u8]) -> (usize, usize) {
    split_header(msg, 0, msg.len())
}

/// Parses the message `msg` into its part tree.
pub(crate) fn parse(msg: &[u8]) -> Part {
    let mut budget = MAX_PARTS;
    parse_entity(msg, 0, msg.len(), 0, &mut budget)
}

fn parse_entity(msg: &[u8], start: usize, end: usize, depth: usize, budget: &mut usize) -> Part {
    let (header_end, body_start) = split_header(msg, start, end);
    let header = &msg[start..header_end];
    let (media_type, subtype, params) = match header_value(header, "content-type") {
        Some(v) => content_type(&v),
        None => (
            "text".to_string(),
            "plain".to_string(),
            vec![("charset".to_string(), "us-ascii".to_string())],
        ),
    };
    let mut part = Part {
        header_start: start,
        body_start,
        end,
        media_type,
        subtype,
        params,
        children: Vec::new(),
        message: None,
    };
    if depth >= MAX_DEPTH || *budget == 0 {
        return part;
    }
    *budget -= 1;
    if part.media_type == "multipart" {
        let boundary = part
            .params
            .iter()
            .find(|(n, _)| n == "boundary")
            .map(|(_, v)| v.clone());
        if let Some(boundary) = boundary.filter(|b| !b.is_empty()) {
            for (s, e) in split_multipart(msg, body_start, end, boundary.as_bytes()) {
                if *budget == 0 {
                    break;
                }
                part.children
                    .push(parse_entity(msg, s, e, depth + 1, budget));
            }
        }
    } else if part.media_type == "message" && part.subtype == "rfc822" {
        part.message = Some(Box::new(parse_entity(
            msg,
            body_start,
            end,
            depth + 1,
            budget,
        )));
    }
    part
}

/// The byte ranges of the body parts between `--boundary` delimiter lines.
fn split_multipart(msg: &[u8], start: usize, end: usize, boundary: &[u8]) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    let mut i = start;
    while i < end {
        let next = msg[i..end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(end, |p| i + p + 1);
        let line = &msg[i..next];
        if let Some(rest) = line
            .strip_prefix(b"--")
            .and_then(|l| l.strip_prefix(boundary))
        {
            let rest = trim(rest);
            if rest.is_empty() || rest == b"--" {
                if let Some(s) = current {
                    // The CRLF before the delimiter belongs to the delimiter.
                    let mut e = i;
                    if e > s && msg[e - 1] == b'\n' {
                        e -= 1;
                        if e > s && msg[e - 1] == b'\r' {
                            e -= 1;
                        }
                    }
                    parts.push((s, e.max(s)));
                }
                if rest == b"--" {
                    return parts;
                }
                current = Some(next);
            }
        }
        i = next;
    }
    if let Some(s) = current {
        parts.push((s, end));
    }
    parts
}

/// Parses a Content-Type value into lower-case type, subtype and parameters.
fn content_type(value: &[u8]) -> (String, String, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(value);
    let mut pieces = split_params(&text).into_iter();
    let full = pieces.next().unwrap_or_default().to_ascii_lowercase();
    let (t, s) = match full.split_once('/') {
        Some((t, s)) if !t.trim().is_empty() && !s.trim().is_empty() => {
            (t.trim().to_string(), s.trim().to_string())
        }
        _ => ("text".to_string(), "plain".to_string()),
    };
    let params = pieces
        .filter_map(|p| {
            let (n, v) = p.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .map(|v| v.replace("\\\"", "\"").replace("\\\\", "\\"))
                .unwrap_or_else(|| v.to_string());
            Some((n.trim().to_ascii_lowercase(), v))
        })
        .take(32)
        .collect();
    (t, s, params)
}

/// Splits at `;` outside quoted strings.
fn split_params(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(std::mem::take(&mut cur).trim().to_string());
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur.trim().to_string());
    out
}

impl Part {
    /// The header block of this part (without the blank line).
    pub(crate) fn header<'m>(&self, msg: &'m [u8]) -> &'m [u8] {
        let (header_end, _) = split_header(msg, self.header_start, self.end);
        &msg[self.header_start..header_end]
    }

    /// The part reached by a section path like `[1, 2]`; `[]` is the part itself.
    /// Number 1 of a non-multipart is the part itself (RFC 3501 6.4.5).
    pub(crate) fn find(&self, path: &[u32]) -> Option<&Part> {
        let Some((&first, rest)) = path.split_first() else {
            return Some(self);
        };
        let inner = match &self.message {
            Some(m) => m,
            None => self,
        };
        let child = if inner.media_type == "multipart" {
            inner.children.get(first.checked_sub(1)? as usize)?
        } else if first == 1 {
            inner
        } else {
            return None;
        };
        child.find(rest)
    }

    /// Appends the BODYSTRUCTURE (`extended`) or BODY form of this part.
    pub(crate) fn write_structure(&self, msg: &[u8], out: &mut Vec<u8>, extended: bool) {
        out.push(b'(');
        if self.media_type == "multipart" && !self.children.is_empty() {
            for child in &self.children {
                child.write_structure(msg, out, extended);
            }
            out.push(b' ');
            wire::string(out, self.subtype.as_bytes());
            if extended {
                out.push(b' ');
                self.write_params(out);
                self.write_disposition(msg, out);
                out.extend_from_slice(b" NIL NIL");
            }
        } else {
            let header = self.header(msg);
            let (media_type, subtype) = if self.media_type == "multipart" {
                // A multipart without parts is reported as the text it really is.
                ("text", "plain")
            } else {
                (self.media_type.as_str(), self.subtype.as_str())
            };
            wire::string(out, media_type.as_bytes());
            out.push(b' ');
            wire::string(out, subtype.as_bytes());
            out.push(b' ');
            self.write_params(out);
            for field in ["content-id", "content-description"] {
                out.push(b' ');
                wire::nstring(out, header_value(header, field).as_deref());
            }
            out.push(b' ');
            let encoding = header_value(header, "content-transfer-encoding")
                .map(|e| e.to_ascii_uppercase())
                .unwrap_or_else(|| b"7BIT".to_vec());
            wire::string(out, &encoding);
            out.push(b' ');
            let body = &msg[self.body_start..self.end];
            wire::number(out, body.len() as u64);
            if let Some(inner) = self.message.as_deref() {
                out.push(b' ');
                write_envelope(inner.header(msg), out);
                out.push(b' ');
                inner.write_structure(msg, out, extended);
            }
            if media_type == "text" || self.message.is_some() {
                out.push(b' ');
                wire::number(out, line_count(body));
            }
            if extended {
                out.extend_from_slice(b" NIL");
                self.write_disposition(msg, out);
                out.extend_from_slice(b" NIL NIL");
            }
        }
        out.push(b')');
    }

    fn write_params(&self, out: &mut Vec<u8>) {
        let params: Vec<_> = self.params.iter().filter(|(n, _)| !n.is_empty()).collect();
        if params.is_empty() {
            out.extend_from_slice(b"NIL");
            return;
        }
        out.push(b'(');
        for (i, (n, v)) in params.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            wire::string(out, n.as_bytes());
            out.push(b' ');
            wire::string(out, v.as_bytes());
        }
        out.push(b')');
    }

    fn write_disposition(&self, msg: &[u8], out: &mut Vec<u8>) {
        out.push(b' ');
        match header_value(self.header(msg), "content-disposition") {
            Some(v) => {
                let text = String::from_utf8_lossy(&v);
                let mut pieces = split_params(&text).into_iter();
                let kind = pieces.next().unwrap_or_default();
                out.push(b'(');
                wire::string(out, kind.as_bytes());
                out.push(b' ');
                let params: Vec<(String, String)> = pieces
                    .filter_map(|p| {
                        let (n, v) = p.split_once('=')?;
                        let v = v.trim().trim_matches('"').to_string();
                        Some((n.trim().to_ascii_lowercase(), v))
                    })
                    .take(32)
                    .collect();
                Part {
                    params,
                    ..Part::default()
                }
                .write_params(out);
                out.push(b')');
            }
            None => out.extend_from_slice(b"NIL"),
        }
    }
}

/// Text lines of a body: a last line without line end counts too.
fn line_count(body: &[u8]) -> u64 {
    let newlines = body.iter().filter(|&&b| b == b'\n').count() as u64;
    newlines + u64::from(body.last().is_some_and(|&b| b != b'\n'))
}

/// Appends the ENVELOPE of a message whose header block is `header`.
pub(crate) fn write_envelope(header: &[u8], out: &mut Vec<u8>) {
    let fields = header_fields(header);
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    };
    out.push(b'(');
    wire::nstring(out, get("date"));
    out.push(b' ');
    wire::nstring(out, get("subject"));
    let from = get("from");
    for (name, fallback) in [
        ("from", None),
        ("sender", from),
        ("reply-to", from),
        ("to", None),
        ("cc", None),
        ("bcc", None),
    ] {
        out.push(b' ');
        write_addresses(get(name).or(fallback), out);
    }
    out.push(b' ');
    wire::nstring(out, get("in-reply-to"));
    out.push(b' ');
    wire::nstring(out, get("message-id"));
    out.push(b')');
}

/// Appends an address list `((name adl mailbox host) ...)` or NIL.
fn write_addresses(value: Option<&[u8]>, out: &mut Vec<u8>) {
    let addresses: Vec<(Option<Vec<u8>>, Vec<u8>)> = value
        .map(|v| {
            split_addresses(v)
                .into_iter()
                .filter_map(|a| parse_address(&a))
                .collect()
        })
        .unwrap_or_default();
    if addresses.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (name, addr) in addresses.iter().take(1000) {
        let (mailbox, host) = match addr.iter().rposition(|&b| b == b'@') {
            Some(at) => (&addr[..at], Some(&addr[at + 1..])),
            None => (&addr[..], None),
        };
        out.push(b'(');
        wire::nstring(out, name.as_deref());
        out.extend_from_slice(b" NIL ");
        wire::string(out, mailbox);
        out.push(b' ');
        // RFC 3501: a missing host is sent as NIL-free empty-ish; use the string form.
        wire::nstring(out, host);
        out.push(b')');
    }
    out.push(b')');
}

/// Splits an address list at commas outside quotes, angle brackets and comments.
fn split_addresses(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let (mut quoted, mut angle, mut comment, mut escaped) = (false, false, 0u32, false);
    for &b in value {
        if escaped {
            escaped = false;
            cur.push(b);
            continue;
        }
        match b {
            b'\\' if quoted || comment > 0 => escaped = true,
            b'"' if comment == 0 => quoted = !quoted,
            b'<' if !quoted && comment == 0 => angle = true,
            b'>' if !quoted && comment == 0 => angle = false,
            b'(' if !quoted => comment = comment.saturating_add(1),
            b')' if !quoted => comment = comment.saturating_sub(1),
            b',' if !quoted && !angle && comment == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(b);
    }
    out.push(cur);
    out
}

/// One address: `(display name, addr-spec)`.
fn parse_address(text: &[u8]) -> Option<(Option<Vec<u8>>, Vec<u8>)> {
    let text = trim(text);
    if text.is_empty() {
        return None;
    }
    if let (Some(open), Some(close)) = (
        text.iter().rposition(|&b| b == b'<'),
        text.iter().rposition(|&b| b == b'>'),
    ) {
        if open < close {
            let addr = trim(&text[open + 1..close]).to_vec();
            let raw_name = trim(&text[..open]);
            let name = raw_name
                .strip_prefix(b"\"")
                .and_then(|n| n.strip_suffix(b"\""))
                .unwrap_or(raw_name);
            let name = (!name.is_empty()).then(|| unescape(name));
            return Some((name, addr));
        }
    }
    // A bare addr-spec, possibly followed by a (comment).
    let bare = text.split(|&b| b == b'(').next().map(trim).unwrap_or(text);
    Some((None, bare.to_vec()))
}

fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut escaped = false;
    for &b in s {
        if b == b'\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MULTI: &[u8] = b"From: \"Alice A\" <alice@example.org>\r\nTo: bob@example.org, Carol <c@x.org>\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--b1--\r\n";

    #[test]
    fn multipart_tree_and_sections() {
        let part = parse(MULTI);
        assert_eq!(part.children.len(), 2);
        let first = part.find(&[1]).unwrap();
        assert_eq!(&MULTI[first.body_start..first.end], b"hello");
        let second = part.find(&[2]).unwrap();
        assert_eq!(&MULTI[second.body_start..second.end], b"AAAA");
        assert!(part.find(&[3]).is_none());
        let mut out = Vec::new();
        part.write_structure(MULTI, &mut out, true);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("((\"text\" \"plain\" NIL NIL NIL \"7BIT\" 5 1"),
            "{text}"
        );
        assert!(text.contains("\"mixed\" (\"boundary\" \"b1\")"), "{text}");
    }

    #[test]
    fn envelope_addresses() {
        let mut out = Vec::new();
        write_envelope(parse(MULTI).header(MULTI), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("((\"Alice A\" NIL \"alice\" \"example.org\"))"),
            "{text}"
        );
        assert!(text.contains("((NIL NIL \"bob\" \"example.org\")(\"Carol\" NIL \"c\" \"x.org\"))"));
        let fields = header_lines(parse(MULTI).header(MULTI), &[b"subject".to_vec()], false);
        assert_eq!(fields, b"Subject: hi\r\n\r\n");
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut msg = Vec::new();
        for i in 0..100 {
            msg.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n")
                    .as_bytes(),
            );
        }
        msg.extend_from_slice(b"\r\nx\r\n");
        let part = parse(&msg);
        let mut out = Vec::new();
        part.write_structure(&msg, &mut out, true);
        assert!(out.len() < 10_000);
    }
}
