//! The `Message-ID` of a message, read with the policy's own header reader, so that the
//! relay's duplicate check (`src/relay/duplicates.rs`) and the policy see one header
//! section.

use crate::headers::{trim, Fields};

/// The longest `Message-ID` value taken (RFC 5322 lines are at most 998 bytes).
const MAX_MESSAGE_ID: usize = 998;

/// The value of the message's one top-level `Message-ID` field, without surrounding
/// whitespace; `None` when it has none, more than one (two readers could take
/// different ones), an empty one or one over 998 bytes.
///
/// ```
/// let message = b"From: a@example.org\r\nMessage-ID: <x@example.org>\r\n\r\nbody";
/// assert_eq!(chatmail_policy::message_id(message), Some(&b"<x@example.org>"[..]));
/// assert_eq!(chatmail_policy::message_id(b"From: a@example.org\r\n\r\n"), None);
/// ```
pub fn message_id(message: &[u8]) -> Option<&[u8]> {
    let mut found = None;
    for field in Fields::new(message) {
        if field.is("Message-ID") {
            if found.is_some() {
                return None;
            }
            found = Some(trim(field.value));
        }
    }
    found.filter(|id| !id.is_empty() && id.len() <= MAX_MESSAGE_ID)
}

#[cfg(test)]
mod tests {
    use super::message_id;

    #[test]
    fn one_field_gives_its_trimmed_value() {
        let m = b"Subject: x\r\nmessage-id:  <a@b>\t\r\n\r\nMessage-ID: <body@b>\r\n";
        assert_eq!(message_id(m), Some(&b"<a@b>"[..]));
    }

    #[test]
    fn two_fields_or_an_empty_one_give_none() {
        assert_eq!(
            message_id(b"Message-ID: <a@b>\r\nMessage-Id: <c@d>\r\n\r\n"),
            None
        );
        assert_eq!(message_id(b"Message-ID:  \r\n\r\n"), None);
        assert_eq!(message_id(b"Subject: no id\r\n\r\n"), None);
    }

    #[test]
    fn a_folded_value_keeps_its_fold() {
        let m = b"Message-ID:\r\n <a@b>\r\n\r\n";
        assert_eq!(message_id(m), Some(&b"<a@b>"[..]));
        let long = [b"Message-ID: <".as_slice(), &[b'a'; 1000], b">\r\n\r\n"].concat();
        assert_eq!(message_id(&long), None);
    }
}
