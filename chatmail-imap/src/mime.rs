//! FETCH's view of a message: header fields, the part tree with byte offsets, ENVELOPE
//! and BODYSTRUCTURE.
//!
//! Each entity's header block is read by Stalwart's `mail-parser` (RFC complete: the
//! address lists with display names, comments, groups and encoded words; Content-Type
//! and Content-Disposition with RFC 2231 parameters). The tree itself is cut here by
//! delimiter and blank lines into byte ranges of the stored message, so `BODY[1]` of a
//! large message is a slice of the same [`bytes::Bytes`]; nesting depth and the number
//! of parts are bounded, past the bounds a part is a leaf (see [`parse`] for why
//! mail-parser does not cut the tree). The header slicing for `HEADER.FIELDS` and
//! SEARCH stays here too: it reports fields byte for byte as stored.

use mail_parser::{Addr, Address, ContentType, Header, HeaderName, MessageParser};

use crate::wire;

/// Deepest multipart/message nesting that is reported.
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
    /// Content-Disposition: lower-case kind and parameters.
    pub disposition: Option<(String, Vec<(String, String)>)>,
    /// Sub-parts of a multipart.
    pub children: Vec<Part>,
    /// The encapsulated message of a message/rfc822 part.
    pub message: Option<Box<Part>>,
    /// The address fields of a message (the root, an encapsulated message).
    pub envelope: Option<Envelope>,
}

impl Part {
    /// RFC 2045 5.2's default: `text/plain; charset=us-ascii`, at offset 0.
    fn plain_text() -> Part {
        Part {
            media_type: "text".into(),
            subtype: "plain".into(),
            params: vec![("charset".into(), "us-ascii".into())],
            ..Part::default()
        }
    }
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

/// Parses the message `msg` into its part tree. The tree is cut here, by delimiter lines
/// and blank lines, within [`MAX_DEPTH`] and [`MAX_PARTS`]; each part's header block is
/// read by Stalwart's `mail-parser` (RFC 5322/2045-2049 complete: groups, comments,
/// encoded words, RFC 2231 parameters). mail-parser is not given whole bodies: it nests
/// encapsulated messages without a depth bound and frees them recursively, so a message
/// of many thousand nested parts would exhaust the stack.
pub(crate) fn parse(msg: &[u8]) -> Part {
    let mut budget = MAX_PARTS;
    parse_entity(msg, 0, msg.len(), 0, false, &mut budget)
}

/// The entity `msg[start..end]`; `in_digest`: its parent is a multipart/digest, where
/// the default type is message/rfc822 (RFC 2046 5.1.5).
fn parse_entity(
    msg: &[u8],
    start: usize,
    end: usize,
    depth: usize,
    in_digest: bool,
    budget: &mut usize,
) -> Part {
    let (_, body_start) = split_header(msg, start, end);
    let mut part = Part {
        header_start: start,
        body_start,
        end,
        ..Part::plain_text()
    };
    let parsed = MessageParser::default().parse_headers(&msg[start..body_start]);
    let headers = parsed
        .as_ref()
        .and_then(|m| m.parts.first())
        .map_or(&[][..], |p| p.headers());
    let field = |name: HeaderName<'_>| headers.iter().rev().find(|h| h.name == name);
    match field(HeaderName::ContentType).and_then(|h| h.value.as_content_type()) {
        Some(ct) => {
            // RFC 2045 5.2: an unusable Content-Type is text/plain.
            if let Some(subtype) = ct.subtype().filter(|s| !s.is_empty()) {
                part.media_type = ct.ctype().to_ascii_lowercase();
                part.subtype = subtype.to_ascii_lowercase();
                part.params = attributes(ct);
            }
        }
        None if in_digest => {
            part.media_type = "message".into();
            part.subtype = "rfc822".into();
            part.params.clear();
        }
        None => {}
    }
    part.disposition = field(HeaderName::ContentDisposition)
        .and_then(|h| h.value.as_content_type())
        .map(|d| (d.ctype().to_ascii_lowercase(), attributes(d)));
    if depth == 0 {
        part.envelope = Some(Envelope::of(headers));
    }
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
        let digest = part.subtype == "digest";
        if let Some(boundary) = boundary.filter(|b| !b.is_empty()) {
            for (s, e) in split_multipart(msg, body_start, end, boundary.as_bytes()) {
                if *budget == 0 {
                    break;
                }
                part.children
                    .push(parse_entity(msg, s, e, depth + 1, digest, budget));
            }
        }
    } else if part.media_type == "message" && part.subtype == "rfc822" {
        let mut inner = parse_entity(msg, body_start, end, depth + 1, false, budget);
        // The encapsulated message's own fields make its ENVELOPE.
        let inner_header = &msg[inner.header_start..inner.body_start];
        let parsed = MessageParser::default().parse_headers(inner_header);
        let headers = parsed
            .as_ref()
            .and_then(|m| m.parts.first())
            .map_or(&[][..], |p| p.headers());
        inner.envelope = Some(Envelope::of(headers));
        part.message = Some(Box::new(inner));
    }
    part
}

/// The byte ranges of the body parts between `--boundary` delimiter lines; the line end
/// before a delimiter belongs to the delimiter (RFC 2046 5.1.1).
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

/// Content-Type or Content-Disposition parameters, names lower-cased (at most 32).
fn attributes(ct: &ContentType<'_>) -> Vec<(String, String)> {
    ct.attributes()
        .unwrap_or_default()
        .iter()
        .take(32)
        .map(|a| (a.name.to_ascii_lowercase(), a.value.to_string()))
        .collect()
}

/// The address fields of an ENVELOPE, as `mail-parser` read them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Envelope {
    from: Vec<EnvelopeAddress>,
    sender: Vec<EnvelopeAddress>,
    reply_to: Vec<EnvelopeAddress>,
    to: Vec<EnvelopeAddress>,
    cc: Vec<EnvelopeAddress>,
    bcc: Vec<EnvelopeAddress>,
}

/// One element of an ENVELOPE address list (RFC 3501 7.4.2).
#[derive(Debug, Clone)]
enum EnvelopeAddress {
    /// `(name adl mailbox host)`.
    Mailbox {
        name: Option<String>,
        route: Option<String>,
        mailbox: String,
        host: Option<String>,
    },
    /// `(NIL NIL "group" NIL)`: the start of a group.
    GroupStart(String),
    /// `(NIL NIL NIL NIL)`: the end of a group.
    GroupEnd,
}

/// Most addresses one ENVELOPE list reports.
const MAX_ENVELOPE_ADDRESSES: usize = 1000;

impl Envelope {
    /// The envelope fields of a header list.
    fn of(headers: &[Header<'_>]) -> Envelope {
        let list = |name: HeaderName<'_>| -> Vec<EnvelopeAddress> {
            // The last field of that name wins, as in the reference's Dovecot.
            headers
                .iter()
                .rev()
                .find(|h| h.name == name)
                .and_then(|h| h.value.as_address())
                .map(addresses)
                .unwrap_or_default()
        };
        let from = list(HeaderName::From);
        let or_from = |l: Vec<EnvelopeAddress>| if l.is_empty() { from.clone() } else { l };
        Envelope {
            sender: or_from(list(HeaderName::Sender)),
            reply_to: or_from(list(HeaderName::ReplyTo)),
            to: list(HeaderName::To),
            cc: list(HeaderName::Cc),
            bcc: list(HeaderName::Bcc),
            from,
        }
    }
}

/// An address header's value as ENVELOPE list elements.
fn addresses(value: &Address<'_>) -> Vec<EnvelopeAddress> {
    let mut out = Vec::new();
    match value {
        Address::List(list) => out.extend(list.iter().filter_map(mailbox)),
        Address::Group(groups) => {
            for group in groups {
                match &group.name {
                    Some(name) => {
                        out.push(EnvelopeAddress::GroupStart(name.to_string()));
                        out.extend(group.addresses.iter().filter_map(mailbox));
                        out.push(EnvelopeAddress::GroupEnd);
                    }
                    None => out.extend(group.addresses.iter().filter_map(mailbox)),
                }
            }
        }
    }
    out.truncate(MAX_ENVELOPE_ADDRESSES);
    out
}

/// One mailbox of an address list; `None` without an address.
fn mailbox(addr: &Addr<'_>) -> Option<EnvelopeAddress> {
    let address = addr.address.as_deref()?.trim();
    if address.is_empty() {
        return None;
    }
    // An obsolete source route (`@route:user@host`, RFC 5322 4.4) is the ENVELOPE's adl.
    let (route, address) = match address.strip_prefix('@').and_then(|r| r.split_once(':')) {
        Some((route, rest)) => (Some(format!("@{route}")), rest),
        None => (None, address),
    };
    let (mailbox, host) = match address.rsplit_once('@') {
        Some((m, h)) => (m.to_string(), Some(h.to_string())),
        None => (address.to_string(), None),
    };
    let name = addr
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(encoded_word);
    Some(EnvelopeAddress::Mailbox {
        name,
        route,
        mailbox,
        host,
    })
}

/// A display name as it may appear in a header: itself if ASCII, else one RFC 2047
/// encoded word (`mail-parser` decoded the original; a client decodes this one alike).
fn encoded_word(name: &str) -> String {
    if name.is_ascii() {
        return name.to_string();
    }
    use base64::Engine as _;
    format!(
        "=?utf-8?b?{}?=",
        base64::engine::general_purpose::STANDARD.encode(name.as_bytes())
    )
}

impl Part {
    /// The header block of this part (without the blank line).
    pub(crate) fn header<'m>(&self, msg: &'m [u8]) -> &'m [u8] {
        let (header_end, _) = split_header(msg, self.header_start, self.end);
        &msg[self.header_start..header_end]
    }

    /// The part reached by a section path like `[1, 2]`; `[]` is the part itself.
    /// Number 1 of a non-multipart message is its body (RFC 3501 6.4.5), and below the
    /// top a message/rfc822 part's numbers are those of the message it encapsulates.
    pub(crate) fn find(&self, path: &[u32]) -> Option<&Part> {
        self.find_below(path, true)
    }

    fn find_below(&self, path: &[u32], top: bool) -> Option<&Part> {
        let Some((&first, rest)) = path.split_first() else {
            return Some(self);
        };
        let inner = match (&self.message, top) {
            (Some(m), false) => m,
            _ => self,
        };
        let child = if inner.media_type == "multipart" {
            inner.children.get(first.checked_sub(1)? as usize)?
        } else if first == 1 {
            inner
        } else {
            return None;
        };
        child.find_below(rest, false)
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
                self.write_disposition(out);
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
            let rfc822 = media_type == "message" && subtype == "rfc822";
            if let Some(inner) = self.message.as_deref() {
                out.push(b' ');
                inner.write_envelope(msg, out);
                out.push(b' ');
                inner.write_structure(msg, out, extended);
            } else if rfc822 {
                // A transfer-encoded message (not parsed further): the syntax still
                // needs an envelope and a body.
                out.extend_from_slice(
                    b" (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) \
                      (\"text\" \"plain\" NIL NIL NIL \"7BIT\" 0 0)",
                );
            }
            if media_type == "text" || rfc822 {
                out.push(b' ');
                wire::number(out, line_count(body));
            }
            if extended {
                out.extend_from_slice(b" NIL");
                self.write_disposition(out);
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

    fn write_disposition(&self, out: &mut Vec<u8>) {
        out.push(b' ');
        match &self.disposition {
            Some((kind, params)) => {
                out.push(b'(');
                wire::string(out, kind.as_bytes());
                out.push(b' ');
                Part {
                    params: params.clone(),
                    ..Part::default()
                }
                .write_params(out);
                out.push(b')');
            }
            None => out.extend_from_slice(b"NIL"),
        }
    }

    /// Appends the ENVELOPE of this message part (the root, or the message of a
    /// message/rfc822 part): date, subject, in-reply-to and message-id as stored, the
    /// address lists as parsed.
    pub(crate) fn write_envelope(&self, msg: &[u8], out: &mut Vec<u8>) {
        let fields = header_fields(self.header(msg));
        let get = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
                .map(|(_, v)| v.as_slice())
        };
        let empty = Envelope::default();
        let envelope = self.envelope.as_ref().unwrap_or(&empty);
        out.push(b'(');
        wire::nstring(out, get("date"));
        out.push(b' ');
        wire::nstring(out, get("subject"));
        for list in [
            &envelope.from,
            &envelope.sender,
            &envelope.reply_to,
            &envelope.to,
            &envelope.cc,
            &envelope.bcc,
        ] {
            out.push(b' ');
            write_addresses(list, out);
        }
        out.push(b' ');
        wire::nstring(out, get("in-reply-to"));
        out.push(b' ');
        wire::nstring(out, get("message-id"));
        out.push(b')');
    }
}

/// Text lines of a body: a last line without line end counts too.
fn line_count(body: &[u8]) -> u64 {
    let newlines = body.iter().filter(|&&b| b == b'\n').count() as u64;
    newlines + u64::from(body.last().is_some_and(|&b| b != b'\n'))
}

/// Appends an address list `((name adl mailbox host) ...)` or NIL.
fn write_addresses(list: &[EnvelopeAddress], out: &mut Vec<u8>) {
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for address in list {
        match address {
            EnvelopeAddress::Mailbox {
                name,
                route,
                mailbox,
                host,
            } => {
                out.push(b'(');
                wire::nstring(out, name.as_deref().map(str::as_bytes));
                out.push(b' ');
                wire::nstring(out, route.as_deref().map(str::as_bytes));
                out.push(b' ');
                wire::string(out, mailbox.as_bytes());
                out.push(b' ');
                wire::nstring(out, host.as_deref().map(str::as_bytes));
                out.push(b')');
            }
            EnvelopeAddress::GroupStart(name) => {
                out.extend_from_slice(b"(NIL NIL ");
                wire::string(out, name.as_bytes());
                out.extend_from_slice(b" NIL)");
            }
            EnvelopeAddress::GroupEnd => out.extend_from_slice(b"(NIL NIL NIL NIL)"),
        }
    }
    out.push(b')');
}

/// The address fields of a header block in the normal form `Name <mailbox@host>`, one
/// `(lower-case field name, lower-case value)` per field, for SEARCH FROM/TO/CC/BCC:
/// an address written with comments or odd spacing still matches its plain form.
pub(crate) fn normalized_addresses(header: &[u8]) -> Vec<(String, Vec<u8>)> {
    let Some(message) = MessageParser::default().parse_headers(header) else {
        return Vec::new();
    };
    let Some(root) = message.parts.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for h in root.headers() {
        let Some(value) = h.value.as_address() else {
            continue;
        };
        let mut text = String::new();
        for address in addresses(value) {
            if let EnvelopeAddress::Mailbox {
                name,
                mailbox,
                host,
                ..
            } = address
            {
                if !text.is_empty() {
                    text.push_str(", ");
                }
                if let Some(name) = name {
                    text.push_str(&name);
                    text.push(' ');
                }
                text.push('<');
                text.push_str(&mailbox);
                if let Some(host) = host {
                    text.push('@');
                    text.push_str(&host);
                }
                text.push('>');
            }
        }
        out.push((
            h.name.as_str().to_ascii_lowercase(),
            text.to_lowercase().into_bytes(),
        ));
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
        parse(MULTI).write_envelope(MULTI, &mut out);
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

    #[test]
    fn envelope_groups_comments_routes_and_encoded_names() {
        let msg: &[u8] = b"Date: Thu, 15 Feb 2007 01:02:03 +0200\r\nFrom: user@domain (Real Name)\r\nSender: \r\nTo: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\nCc: group:;, <@route:user@domain>\r\nBcc: =?utf-8?q?J=C3=B6rg?= <j@x.org>\r\n\r\nbody\r\n";
        let mut out = Vec::new();
        parse(msg).write_envelope(msg, &mut out);
        let text = String::from_utf8(out).unwrap();
        let expected = concat!(
            "(\"Thu, 15 Feb 2007 01:02:03 +0200\" NIL ",
            "((\"Real Name\" NIL \"user\" \"domain\")) ",
            "((\"Real Name\" NIL \"user\" \"domain\")) ",
            "((\"Real Name\" NIL \"user\" \"domain\")) ",
            "((NIL NIL \"group\" NIL)(NIL NIL \"g1\" \"d1.org\")(NIL NIL \"g2\" \"d2.org\")",
            "(NIL NIL NIL NIL)(NIL NIL \"group2\" NIL)(NIL NIL \"g3\" \"d3.org\")(NIL NIL NIL NIL)) ",
            "((NIL NIL \"group\" NIL)(NIL NIL NIL NIL)(NIL \"@route\" \"user\" \"domain\")) ",
            "((\"=?utf-8?b?SsO2cmc=?=\" NIL \"j\" \"x.org\")) NIL NIL)"
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn encapsulated_message_numbering() {
        let msg: &[u8] = b"From: a@b.org\r\nContent-Type: message/rfc822\r\n\r\nFrom: sub@b.org\r\nSubject: s\r\n\r\nHello\r\n";
        let root = parse(msg);
        let body = root.find(&[1]).unwrap();
        assert_eq!(
            &msg[body.body_start..body.end],
            b"From: sub@b.org\r\nSubject: s\r\n\r\nHello\r\n"
        );
        let inner = root.message.as_deref().unwrap();
        assert_eq!(&msg[inner.body_start..inner.end], b"Hello\r\n");
        let mut out = Vec::new();
        root.write_structure(msg, &mut out, false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("(\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 38 (NIL \"s\" ((NIL NIL \"sub\" \"b.org\"))"), "{text}");
    }

    #[test]
    fn hundred_thousand_nested_messages_stay_bounded() {
        // mail-parser alone would nest them all and free them recursively.
        let mut msg = Vec::new();
        for _ in 0..100_000 {
            msg.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        msg.extend_from_slice(b"Subject: deep\r\n\r\nbody\r\n");
        let part = parse(&msg);
        let mut depth = 0;
        let mut cur = &part;
        while let Some(inner) = cur.message.as_deref() {
            depth += 1;
            cur = inner;
        }
        assert!(depth <= MAX_DEPTH, "{depth}");
        let mut out = Vec::new();
        part.write_structure(&msg, &mut out, true);
        assert!(out.len() < 64 * 1024, "{}", out.len());
    }
}
