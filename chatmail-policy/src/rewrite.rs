//! Header rewrites: submission clean-up (spec 4.4) and local-delivery clean-up (spec 4.3).
//!
//! Only the top-level header section is touched; the body is appended as one slice.

use crate::headers::Fields;

/// Header fields removed on submission (spec 4.4): client IP and software never leave.
const SUBMISSION_REMOVED: [&str; 4] = ["Received", "X-Originating-IP", "X-Mailer", "User-Agent"];
/// Header fields removed before a local mailbox append (spec 4.3).
const DELIVERY_REMOVED: [&str; 3] = ["DKIM-Signature", "Authentication-Results", "Received"];

/// A rewrite of the top-level header fields: `message[..len]` (the fields, up to but
/// not including the blank line) is replaced by `fields`; the rest is kept as is.
///
/// It is computed without touching the message, so the caller chooses how to apply it:
/// [`HeaderEdit::apply_in_place`] moves only header bytes (no copy of the body, the bulk
/// of every message), [`HeaderEdit::write`] writes the edited message out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderEdit {
    /// Bytes of the original header fields replaced.
    pub len: usize,
    /// Their replacement.
    pub fields: Vec<u8>,
}

impl HeaderEdit {
    /// Applies the edit inside `message`'s own buffer when the new fields are not longer
    /// than the old ones (removing fields, the common case): they are written so that
    /// they end where the old ones ended, and the edited message is `message[start..]`
    /// for the returned `start`. `None` (the buffer unchanged) when they do not fit.
    pub fn apply_in_place(&self, message: &mut [u8]) -> Option<usize> {
        let start = self.len.checked_sub(self.fields.len())?;
        message
            .get_mut(start..self.len)?
            .copy_from_slice(&self.fields);
        Some(start)
    }

    /// Appends the edited `message` to `out`.
    pub fn write(&self, message: &[u8], out: &mut Vec<u8>) {
        out.reserve(message.len() + self.fields.len() - self.len.min(self.fields.len()));
        out.extend_from_slice(&self.fields);
        out.extend_from_slice(message.get(self.len..).unwrap_or_default());
    }
}

/// The edit that drops every field named in `removed` (folded lines included) and, with
/// `hide_subject`, turns every `Subject` into `Subject: [...]`; `None` when nothing
/// changes.
fn edit_fields(message: &[u8], removed: &[&str], hide_subject: bool) -> Option<HeaderEdit> {
    let mut fields = Vec::new();
    let mut copied = 0; // start of the not yet copied run of unchanged fields
    let mut pos = 0;
    let mut changed = false;
    for f in Fields::new(message) {
        let start = pos;
        pos += f.raw.len();
        // Delta Chat already sends `Subject: [...]`: that field stays as it is, so its
        // messages need no edit at all.
        let replace = hide_subject && f.is("Subject") && !is_hidden_subject(f.raw);
        if replace || removed.iter().any(|n| f.is(n)) {
            changed = true;
            fields.extend_from_slice(&message[copied..start]);
            if replace {
                fields.extend_from_slice(b"Subject: [...]");
                fields.extend_from_slice(f.line_ending());
            }
            copied = pos;
        }
    }
    if !changed {
        return None;
    }
    fields.extend_from_slice(&message[copied..pos]);
    Some(HeaderEdit { len: pos, fields })
}

/// Whether a raw `Subject` field is exactly what the submission rewrite writes.
fn is_hidden_subject(raw: &[u8]) -> bool {
    raw.strip_prefix(b"Subject: [...]")
        .is_some_and(|end| end == b"\r\n" || end == b"\n" || end.is_empty())
}

/// The submission rewrite (spec 4.4): every `Subject` becomes `Subject: [...]`, the
/// fields of [`SUBMISSION_REMOVED`] are dropped.
pub(crate) fn submission_edit(message: &[u8]) -> Option<HeaderEdit> {
    edit_fields(message, &SUBMISSION_REMOVED, true)
}

/// The local-delivery clean-up (spec 4.3): without `DKIM-Signature`,
/// `Authentication-Results` and `Received` fields, as a message must be stored in a
/// local mailbox. `None` when it has none of them.
pub fn local_delivery_edit(message: &[u8]) -> Option<HeaderEdit> {
    edit_fields(message, &DELIVERY_REMOVED, false)
}

/// Appends `message` with the submission rewrite ([`submission_edit`]).
#[cfg(test)]
pub(crate) fn write_submission(message: &[u8], out: &mut Vec<u8>) {
    match submission_edit(message) {
        Some(edit) => edit.write(message, out),
        None => out.extend_from_slice(message),
    }
}

/// Appends `message` as it must be stored in a local mailbox ([`local_delivery_edit`]).
/// The body is copied unchanged.
pub fn write_for_local_delivery(message: &[u8], out: &mut Vec<u8>) {
    match local_delivery_edit(message) {
        Some(edit) => edit.write(message, out),
        None => out.extend_from_slice(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"Received: from x\r\n\tby y\r\nFrom: a@b\r\nsubject: hello\r\n world\r\n\
X-Mailer: m\r\nUser-Agent: u\r\nX-Originating-IP: 1.2.3.4\r\nDKIM-Signature: v=1;\r\n b=x\r\n\
Authentication-Results: r\r\n\r\nReceived: body line\r\nSubject: body\r\n";

    #[test]
    fn submission_rewrite() {
        let mut out = Vec::new();
        write_submission(MSG, &mut out);
        assert_eq!(
            out,
            b"From: a@b\r\nSubject: [...]\r\nDKIM-Signature: v=1;\r\n b=x\r\n\
Authentication-Results: r\r\n\r\nReceived: body line\r\nSubject: body\r\n"
                .to_vec()
        );
    }

    #[test]
    fn delivery_rewrite() {
        let mut out = Vec::new();
        write_for_local_delivery(MSG, &mut out);
        assert_eq!(
            out,
            b"From: a@b\r\nsubject: hello\r\n world\r\n\
X-Mailer: m\r\nUser-Agent: u\r\nX-Originating-IP: 1.2.3.4\r\n\r\nReceived: body line\r\nSubject: body\r\n"
                .to_vec()
        );
    }

    #[test]
    fn lf_only_and_headers_without_body() {
        let mut out = Vec::new();
        write_submission(b"Subject: x\nFrom: a@b", &mut out);
        assert_eq!(out, b"Subject: [...]\nFrom: a@b".to_vec());
    }

    #[test]
    fn edits_in_place_move_header_bytes_only() {
        for (edit, expected) in [
            (submission_edit(MSG), {
                let mut out = Vec::new();
                write_submission(MSG, &mut out);
                out
            }),
            (local_delivery_edit(MSG), {
                let mut out = Vec::new();
                write_for_local_delivery(MSG, &mut out);
                out
            }),
        ] {
            let edit = edit.expect("fields to edit");
            let mut buffer = MSG.to_vec();
            let start = edit
                .apply_in_place(&mut buffer)
                .expect("shorter fields fit");
            assert_eq!(&buffer[start..], &expected[..]);
            // The body was not moved: it sits where it was received.
            let body = MSG.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            assert_eq!(&buffer[body..], &MSG[body..]);
        }
        // Longer fields than before do not fit; the caller writes the message out.
        let grown = submission_edit(b"Subject: x\r\n\r\nbody").expect("an edit");
        assert_eq!(
            grown.apply_in_place(&mut b"Subject: x\r\n\r\nbody".to_vec()),
            None
        );
    }

    #[test]
    fn a_hidden_subject_needs_no_edit() {
        let message = b"From: a@b\r\nSubject: [...]\r\n\r\nbody\r\n";
        assert_eq!(submission_edit(message), None);
        let mut out = Vec::new();
        write_submission(message, &mut out);
        assert_eq!(out, message.to_vec());
        // A longer or differently spelled subject is still replaced.
        assert!(submission_edit(b"Subject: [...] hi\r\n\r\n").is_some());
    }
}
