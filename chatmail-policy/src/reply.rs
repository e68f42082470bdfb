//! SMTP replies as the reference relay words them (spec 9.1).

use std::fmt;

/// An SMTP reply the relay gives for a policy decision: the three-digit code and the text
/// after it, exactly as the reference writes it (spec 9.1), e.g. code 523 with text
/// `Encryption Needed: Invalid Unencrypted Mail`.
///
/// The text is always one line of printable characters: anything taken from the peer's
/// message is sanitised and bounded before it is put into a reply.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reply {
    /// The SMTP reply code (`250`, `450`, `500`, `523`, `552`, `553`, ...).
    pub code: u16,
    /// Everything after `"NNN "`, enhanced status code included where the reference has one.
    pub text: String,
}

/// At most this many bytes of peer-supplied text go into one reply.
const MAX_QUOTED_LEN: usize = 200;

impl Reply {
    /// A reply with the given code and text, used as is (the policy makes peer-supplied
    /// text safe before it goes in: no control characters, bounded length).
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            text: text.into(),
        }
    }

    /// The RFC 3463 enhanced status code `class.subject.detail` at the start of the text,
    /// if the text has one (`"4.7.1: Too much mail ..."` gives `Some((4, 7, 1))`).
    pub fn enhanced_status(&self) -> Option<(u8, u16, u16)> {
        let text = self.text.as_bytes();
        let (class, rest) = leading_number(text, 1)?;
        let rest = rest.strip_prefix(b".")?;
        let (subject, rest) = leading_number(rest, 3)?;
        let rest = rest.strip_prefix(b".")?;
        let (detail, rest) = leading_number(rest, 3)?;
        if !matches!(class, 2 | 4 | 5) {
            return None;
        }
        match rest.first() {
            None | Some(b' ' | b':' | b'\t') => Some((class as u8, subject, detail)),
            _ => None,
        }
    }

    /// Whether the code is a positive completion (2xx).
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// Parses 1..=`max_digits` ASCII digits at the start of `s`.
fn leading_number(s: &[u8], max_digits: usize) -> Option<(u16, &[u8])> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > max_digits {
        return None;
    }
    let value = s[..digits]
        .iter()
        .fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
    Some((value, &s[digits..]))
}

/// Makes peer-supplied bytes safe to quote in a one-line reply: invalid UTF-8 and control
/// characters become `?`, and the result is cut to a bounded length.
pub(crate) fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len().min(MAX_QUOTED_LEN));
    for c in text.chars() {
        if out.len() + c.len_utf8() > MAX_QUOTED_LEN {
            out.push_str("...");
            break;
        }
        out.push(if c.is_control() || c == '\u{FFFD}' {
            '?'
        } else {
            c
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_status_is_parsed_from_the_start() {
        let r = Reply::new(450, "4.7.1: Too much mail from a@b, rate limited");
        assert_eq!(r.enhanced_status(), Some((4, 7, 1)));
        let r = Reply::new(
            553,
            "5.7.1 <a@b>: Sender address rejected: not owned by user c@d",
        );
        assert_eq!(r.enhanced_status(), Some((5, 7, 1)));
        assert_eq!(
            Reply::new(523, "Encryption Needed: Invalid").enhanced_status(),
            None
        );
        assert_eq!(Reply::new(500, "5.7").enhanced_status(), None);
        assert_eq!(Reply::new(500, "3.1.1 x").enhanced_status(), None);
        assert_eq!(Reply::new(500, "5.1.1x").enhanced_status(), None);
    }

    #[test]
    fn display_is_code_space_text() {
        let r = Reply::new(552, "Message exceeds maximum size");
        assert_eq!(r.to_string(), "552 Message exceeds maximum size");
    }

    #[test]
    fn quote_removes_line_breaks_and_bounds_length() {
        assert_eq!(quote(b"a\r\nb\xff"), "a??b?");
        let long = vec![b'x'; 1000];
        assert!(quote(&long).len() <= MAX_QUOTED_LEN + 3);
    }
}
