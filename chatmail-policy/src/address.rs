//! The first address of a `From` header (RFC 5322 address list: display names, quoted
//! strings, comments, angle brackets, groups, obsolete routes).

use crate::headers::{is_ws, skip_comment, trim};
use std::borrow::Cow;

/// The first mailbox address in an address-list field value, or `None` when the value
/// holds no address (empty, only an empty group, only `<>`).
pub(crate) fn first_address(value: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut start = 0;
    let mut i = 0;
    let mut in_group = false;
    while i <= value.len() {
        let b = value.get(i).copied();
        match b {
            Some(b'"') => i = skip_quoted(value, i),
            Some(b'(') => i = value.len() - skip_comment(&value[i..]).len(),
            Some(b'<') => {
                let close = value[i..].iter().position(|&c| c == b'>')?;
                let inner = route_stripped(trim(&value[i + 1..i + close]));
                if !inner.is_empty() {
                    return Some(Cow::Borrowed(inner));
                }
                i += close + 1;
                start = i;
            }
            Some(b':') if !in_group => {
                // A group: its display name ends here; mailboxes follow.
                in_group = true;
                i += 1;
                start = i;
            }
            Some(b',') | Some(b';') | None => {
                if let Some(addr) = bare_address(&value[start..i]) {
                    return Some(addr);
                }
                if b == Some(b';') {
                    in_group = false;
                }
                i += 1;
                start = i;
            }
            Some(_) => i += 1,
        }
    }
    None
}

/// Index just past the quoted string that starts at `value[i] == b'"'`.
fn skip_quoted(value: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < value.len() {
        match value[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    value.len()
}

/// `@route1,@route2:local@domain` → `local@domain` (RFC 5322 obs-route).
fn route_stripped(addr: &[u8]) -> &[u8] {
    if addr.first() == Some(&b'@') {
        if let Some(colon) = addr.iter().position(|&b| b == b':') {
            return trim(&addr[colon + 1..]);
        }
    }
    addr
}

/// An addr-spec written without angle brackets; comments and folding whitespace removed.
fn bare_address(text: &[u8]) -> Option<Cow<'_, [u8]>> {
    let text = trim(text);
    if text.is_empty() {
        return None;
    }
    if !text.iter().any(|&b| b == b'(' || is_ws(b)) {
        return Some(Cow::Borrowed(text));
    }
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'(' => i = text.len() - skip_comment(&text[i..]).len(),
            b'"' => {
                let end = skip_quoted(text, i);
                out.extend_from_slice(&text[i..end]);
                i = end;
            }
            b if is_ws(b) => i += 1,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    (!out.is_empty()).then_some(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(v: &str) -> Option<String> {
        first_address(v.as_bytes()).map(|a| String::from_utf8(a.into_owned()).unwrap())
    }

    #[test]
    fn the_forms_clients_write() {
        assert_eq!(first(" a@b.org").as_deref(), Some("a@b.org"));
        assert_eq!(first(" <a@b.org>").as_deref(), Some("a@b.org"));
        assert_eq!(
            first(" Mail Delivery <MAILER-DAEMON@x.org>").as_deref(),
            Some("MAILER-DAEMON@x.org")
        );
        assert_eq!(
            first(" \"Doe, <John>\" <j@d.org>, x@y").as_deref(),
            Some("j@d.org")
        );
        assert_eq!(first(" =?utf-8?q?A?= <a@b>").as_deref(), Some("a@b"));
        assert_eq!(first(" a@b (Alice), c@d").as_deref(), Some("a@b"));
        assert_eq!(first(" (c) a(x)@b").as_deref(), Some("a@b"));
        assert_eq!(first(" undisclosed:;, z@y").as_deref(), Some("z@y"));
        assert_eq!(first(" Team: m@n, o@p;").as_deref(), Some("m@n"));
        assert_eq!(first(" <@r1,@r2:a@b>").as_deref(), Some("a@b"));
        assert_eq!(first(" Name\r\n <a@b>").as_deref(), Some("a@b"));
    }

    #[test]
    fn no_address() {
        assert_eq!(first(""), None);
        assert_eq!(first("  "), None);
        assert_eq!(first(" <>"), None);
        assert_eq!(first(" group:;"), None);
        assert_eq!(first(" Name <a@b"), None);
    }
}
