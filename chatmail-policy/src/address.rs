//! The first address of a `From` header (RFC 5322 address list: display names, quoted
//! strings, comments, angle brackets, groups, obsolete routes).

use crate::headers::{is_ws, skip_comment, trim};
use std::borrow::Cow;

/// The first mailbox address in an address-list field value, or `None` when the value
/// holds no address (empty, only an empty group, only `<>`) or when its first address is
/// not a plain `local@domain`.
///
/// Display names, quoted strings, comments before an address, angle brackets and groups
/// are read; the address itself must be plain: no whitespace, comments, quotes or
/// obsolete routes in it. Those are read differently by different parsers (Delta Chat's
/// `mailparse` keeps the space in `< a@b>`, found by `fuzz/policy_differential`), and
/// the address is what the identity check compares with the envelope.
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
                let inner = &value[i + 1..i + close];
                if !inner.is_empty() {
                    return plain(inner);
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
                let text = trim(&value[start..i]);
                if !text.is_empty() {
                    return plain(text);
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

/// `addr` when it is `local@domain` with no byte that address parsers treat specially
/// (whitespace, controls, `()<>",;:\\`); a domain literal such as `[192.0.2.1]` is plain.
fn plain(addr: &[u8]) -> Option<Cow<'_, [u8]>> {
    const SPECIAL: [bool; 256] = crate::headers::byte_set(b"()<>\",;:\\");
    let special = |b: u8| b <= b' ' || b == 0x7f || SPECIAL[b as usize];
    let at = addr.iter().position(|&b| b == b'@')?;
    let ok = at > 0
        && at + 1 < addr.len()
        && !addr[at + 1..].contains(&b'@')
        && !addr.iter().any(|&b| special(b) || is_ws(b));
    ok.then_some(Cow::Borrowed(addr))
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
        assert_eq!(first(" (c) <a@b>").as_deref(), Some("a@b"));
        assert_eq!(
            first(" x <a@[192.0.2.1]>").as_deref(),
            Some("a@[192.0.2.1]")
        );
        assert_eq!(first(" undisclosed:;, z@y").as_deref(), Some("z@y"));
        assert_eq!(first(" Team: m@n, o@p;").as_deref(), Some("m@n"));
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

    #[test]
    fn addresses_parsers_read_differently_are_refused() {
        for value in [
            " < a@b>",
            " <a@b >",
            " a@b (Alice), c@d",
            " (c) a(x)@b",
            " <@r1,@r2:a@b>",
            " Alice a@b",
            " <\"a b\"@c>",
            " <a@b@c>",
            " <@b>",
            " <a@>",
        ] {
            assert_eq!(first(value), None, "{value}");
        }
    }
}
