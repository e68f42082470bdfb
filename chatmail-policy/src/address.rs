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
    // The `<` that opens the address: the first outside a quoted string (quoted strings
    // hold no backslash, or the display name is refused below).
    let mut in_quote = false;
    let mut open = 0;
    loop {
        match *value.get(open)? {
            b'"' => in_quote = !in_quote,
            b'<' if !in_quote => break,
            _ => {}
        }
        open += 1;
    }
    if !display_name_ok(&value[..open]) {
        return None;
    }
    let rest = &value[open + 1..];
    let close = rest.iter().position(|&b| b == b'>')?;
    if close + 1 != rest.len() {
        return None; // text after the address: another mailbox, a comment, ...
    }
    plain(&rest[..close])
}

/// A display name in the form every reader tokenizes alike: valid UTF-8 (`mailparse`
/// falls back to Latin-1 otherwise), and either one quoted string holding no `"`, `\\`,
/// `<`, `>`, line break or encoded word, or whitespace-separated words of RFC 5322
/// `atext` and dots and well-formed encoded words made of safe characters. Anything
/// else — specials, comments, several or empty quoted strings, an encoded word that
/// could swallow a quote or a `<` — is refused (`fuzz/policy_differential` found
/// `mailparse` reading such names into the address).
fn display_name_ok(name: &[u8]) -> bool {
    if std::str::from_utf8(name).is_err() {
        return false;
    }
    let has_encoded_word_start = |s: &[u8]| s.windows(2).any(|w| w == b"=?");
    let name = trim(name);
    if let Some(quoted) = name.strip_prefix(b"\"") {
        let Some(inner) = quoted.strip_suffix(b"\"") else {
            return false;
        };
        return !inner.is_empty()
            && !inner
                .iter()
                .any(|&c| matches!(c, b'"' | b'\\' | b'<' | b'>' | b'\r' | b'\n'))
            && !has_encoded_word_start(inner);
    }
    name.split(|&c| is_ws(c)).all(|word| {
        if word.starts_with(b"=?") {
            is_encoded_word(word)
        } else {
            !has_encoded_word_start(word)
                && word.iter().all(|&c| c >= 0x80 || ATEXT_OR_DOT[c as usize])
        }
    })
}

/// RFC 5322 `atext`, and the dot of `obs-phrase`.
const ATEXT_OR_DOT: [bool; 256] = {
    let mut t = crate::headers::byte_set(b"!#$%&'*+-/=?^_`{|}~.");
    let mut c = 0;
    while c < 128 {
        if (c as u8).is_ascii_alphanumeric() {
            t[c] = true;
        }
        c += 1;
    }
    t
};

/// `=?charset?B|Q?text?=` with a plain charset and text of letters, digits and
/// `!*+-/=_.,%` only (RFC 2047; nothing a parser could take for structure).
fn is_encoded_word(word: &[u8]) -> bool {
    let Some(inner) = word.strip_prefix(b"=?").and_then(|w| w.strip_suffix(b"?=")) else {
        return false;
    };
    let mut fields = inner.split(|&c| c == b'?');
    let (Some(charset), Some(encoding), Some(text), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return false;
    };
    !charset.is_empty()
        && charset
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
        && matches!(encoding, b"B" | b"b" | b"Q" | b"q")
        && !text.is_empty()
        && text
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"!*+-/=_.,%".contains(c))
}

/// `addr` when it is `local@domain` with no byte that address parsers treat specially
/// (whitespace, controls, `()<>",;:\\`); a domain literal such as `[192.0.2.1]` is plain.
fn plain(addr: &[u8]) -> Option<Cow<'_, [u8]>> {
    const SPECIAL: [bool; 256] = crate::headers::byte_set(b"()<>\",;:\\");
    let special = |b: u8| b <= b' ' || b == 0x7f || SPECIAL[b as usize];
    let at = addr.iter().position(|&b| b == b'@')?;
    let ok = at > 0
        && at + 1 < addr.len()
        && std::str::from_utf8(addr).is_ok()
        && !addr[at + 1..].contains(&b'@')
        && !addr.iter().any(|&b| special(b) || is_ws(b));
    ok.then_some(Cow::Borrowed(addr))
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
            first(" \"Doe, John\" <j@d.org>").as_deref(),
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
            " \"=?a?q?x\" <e@x>?=\" <a@b>",
            " =?a?q?x\"<e@x>?= <a@b>",
            " =?a?q??= <a@b>",
            " a=?b <a@b>",
            " \u{fffd}\u{0} <a@b>",
            " \"x\" y\" <a@b>",
            " \"\" <a@b>",
            " \"a\" \"b\" <a@b>",
            " x \"y\" <a@b>",
            " \"<o: <b\" <a@b>",
            " \"Doe, <John>\" <j@d.org>",
        ] {
            assert_eq!(first(value), None, "{value:?}");
        }
        // Not UTF-8: mailparse reads it as Latin-1.
        assert_eq!(first_address(b" \xff <a@b>"), None);
        assert_eq!(first_address(b" <\xff@b>"), None);
    }
}
