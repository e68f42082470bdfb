//! Header rewrites: submission clean-up (spec 4.4) and local-delivery clean-up (spec 4.3).
//!
//! Only the top-level header section is touched; the body is appended as one slice.

use crate::headers::Fields;

/// Header fields removed on submission (spec 4.4): client IP and software never leave.
const SUBMISSION_REMOVED: [&str; 4] = ["Received", "X-Originating-IP", "X-Mailer", "User-Agent"];
/// Header fields removed before a local mailbox append (spec 4.3).
const DELIVERY_REMOVED: [&str; 3] = ["DKIM-Signature", "Authentication-Results", "Received"];

/// Appends `message` with the submission rewrite: every `Subject` becomes
/// `Subject: [...]`, the fields of [`SUBMISSION_REMOVED`] are dropped (folded lines
/// included).
pub(crate) fn write_submission(message: &[u8], out: &mut Vec<u8>) {
    out.reserve(message.len());
    let mut fields = Fields::new(message);
    let mut copied = 0; // start of the not yet copied run of unchanged fields
    let mut pos = 0;
    for f in fields.by_ref() {
        let start = pos;
        pos += f.raw.len();
        let replace = f.is("Subject");
        if replace || SUBMISSION_REMOVED.iter().any(|n| f.is(n)) {
            out.extend_from_slice(&message[copied..start]);
            if replace {
                out.extend_from_slice(b"Subject: [...]");
                out.extend_from_slice(f.line_ending());
            }
            copied = pos;
        }
    }
    out.extend_from_slice(&message[copied..]);
}

/// Spec 4.3: appends `message` without its `DKIM-Signature`, `Authentication-Results`
/// and `Received` header fields (all of them, folded lines included), as it must be
/// stored in a local mailbox. The body is copied unchanged.
pub fn write_for_local_delivery(message: &[u8], out: &mut Vec<u8>) {
    out.reserve(message.len());
    let mut copied = 0;
    let mut pos = 0;
    for f in Fields::new(message) {
        let start = pos;
        pos += f.raw.len();
        if DELIVERY_REMOVED.iter().any(|n| f.is(n)) {
            out.extend_from_slice(&message[copied..start]);
            copied = pos;
        }
    }
    out.extend_from_slice(&message[copied..]);
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
}
