//! The address of a `From` header, in the one shape every reader parses alike.

use crate::headers::{is_ws, trim};
use std::borrow::Cow;

/// The address of a `From` field value written as `local@domain`, `<local@domain>` or
/// `display name <local@domain>`; `None` for anything else.
///
/// The display name may hold words, encoded words and quoted strings (without
/// backslashes). Refused, because parsers read them differently (Delta Chat's
/// `mailparse` among them; `fuzz/policy_differential` found two such inputs): groups,
/// comments, several mailboxes, text after the `>`, specials outside quotes in the
/// display name, and an address with whitespace, comments, quotes or an obsolete route
/// inside it (`mailparse` keeps the space in `< a@b>`). The address is what the
/// identity check compares with the envelope, so both must be what a reader shows.
pub(crate) fn first_address(value: &[u8]) -> Option<Cow<'_, [u8]>> {
    let value = trim(value);
    if !value.contains(&b'<') {
        return plain(value);
    }
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'"' => {
                let end = skip_quoted(value, i);
                if end > value.len() || value[i..end].contains(&b'\\') {
                    return None;
                }
                i = end;
            }
            b'<' => break,
            b'(' | b')' | b',' | b';' | b':' | b'>' | b'\\' | b'[' | b']' | b'@' => return None,
            _ => i += 1,
        }
    }
    let rest = value.get(i + 1..)?;
    let close = rest.iter().position(|&b| b == b'>')?;
    if close + 1 != rest.len() {
        return None; // text after the address: another mailbox, a comment, ...
    }
    plain(&rest[..close])
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

/// Index just past the quoted string that starts at `value[i] == b'"'`; past the end
/// (`value.len() + 1`) when it is not closed.
fn skip_quoted(value: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < value.len() {
        match value[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    value.len() + 1
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
            first(" \"Doe, <John>\" <j@d.org>").as_deref(),
            Some("j@d.org")
        );
        assert_eq!(first(" =?utf-8?q?A?= <a@b>").as_deref(), Some("a@b"));
        assert_eq!(first(" J. Doe <a@b>").as_deref(), Some("a@b"));
        assert_eq!(first(" Name\r\n <a@b>").as_deref(), Some("a@b"));
        assert_eq!(first(" J\u{f6}rg <a@b>").as_deref(), Some("a@b"));
        assert_eq!(
            first(" x <a@[192.0.2.1]>").as_deref(),
            Some("a@[192.0.2.1]")
        );
    }

    #[test]
    fn no_address_or_ambiguous() {
        for value in [
            "",
            "  ",
            " <>",
            " group:;",
            " Name <a@b",
            " < a@b>",
            " <a@b >",
            " a@b (Alice)",
            " (c) <a@b>",
            " (c) a(x)@b",
            " <@r1,@r2:a@b>",
            " Alice a@b",
            " <\"a b\"@c>",
            " <a@b@c>",
            " <@b>",
            " <a@>",
            " Team: m@n, o@p;",
            " undisclosed:;, z@y",
            " <a@b>, <c@d>",
            " \"Doe\" <j@d.org>, x@y",
            " <a@b> (comment)",
            " \"a\\\"b\" <a@b>",
            " \"unterminated <a@b>",
            " a@b <c@d>",
            " x: <alice@example.org>;",
        ] {
            assert_eq!(first(value), None, "{value:?}");
        }
    }
}
