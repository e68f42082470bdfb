//! Writing SMTP replies onto the wire: one place that guarantees every reply line is
//! well formed whatever text it carries.

use chatmail_policy::Reply;

/// Longest reply text put on the wire; RFC 5321 4.5.3.1.5 bounds a reply line at 512
/// octets including the code and CRLF.
const MAX_REPLY_TEXT: usize = 500;

/// Builds a [`Reply`] from a code and its text (everything after `NNN `).
pub(crate) fn reply(code: u16, text: impl Into<String>) -> Reply {
    Reply {
        code,
        text: text.into(),
    }
}

/// Appends `NNN text\r\n` (or `NNN-text\r\n` when `more` follows) to `out`.
///
/// Control characters in `text` (a policy reply may quote a header or an address the
/// peer chose) become spaces, so a reply can never inject a second line; the text is cut
/// at the RFC 5321 line bound.
pub(crate) fn write_line(out: &mut Vec<u8>, code: u16, more: bool, text: &str) {
    let code = code.clamp(200, 599);
    out.extend_from_slice(code.to_string().as_bytes());
    out.push(if more { b'-' } else { b' ' });
    let mut end = text.len().min(MAX_REPLY_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.extend(
        text[..end]
            .bytes()
            .map(|b| if b < 0x20 || b == 0x7f { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_start_a_new_line() {
        let mut out = Vec::new();
        write_line(&mut out, 500, false, "Invalid FROM header: a\r\n250 Ok");
        assert_eq!(out, b"500 Invalid FROM header: a  250 Ok\r\n");
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let mut out = Vec::new();
        let text = "\u{e9}".repeat(400);
        write_line(&mut out, 250, true, &text);
        assert!(out.len() <= 512);
        assert!(std::str::from_utf8(&out).is_ok());
        assert!(out.starts_with(b"250-"));
    }
}
