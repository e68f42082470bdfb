//! APPEND: the message literal is bounded by `max_message_size` before it is read and
//! handed to the embedder without a copy; the embedder counts it against the quota.

use bytes::Bytes;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;

use super::account;
use crate::framing::PLACEHOLDER;
use crate::request::{Answer, Refusal, Request};
use crate::session::{mailbox_name, to_flags, Session, Task};

/// APPEND mailbox [(flags)] [date] literal. `large` is the message literal the framer
/// kept aside: `(address of its placeholder in the command buffer, bytes)`.
pub(crate) fn append(
    s: &mut Session,
    tag: &str,
    mailbox: &Mailbox<'_>,
    flags: &[Flag<'_>],
    date: Option<DateTime>,
    message: &LiteralOrLiteral8<'_>,
    large: Option<(usize, Vec<u8>)>,
) {
    let inline: &[u8] = match message {
        LiteralOrLiteral8::Literal(l) => l.as_ref(),
        LiteralOrLiteral8::Literal8(l) => &l.data,
    };
    let message = match large {
        // The placeholder must be exactly the parsed message, not some other argument.
        Some((addr, data)) if inline.len() == 1 && inline.as_ptr() as usize == addr => {
            debug_assert_eq!(inline[0], PLACEHOLDER);
            Bytes::from(data)
        }
        Some(_) => return s.bad(tag, "Only the message may be a large literal."),
        None => Bytes::copy_from_slice(inline),
    };
    if message.is_empty() {
        return s.no(tag, "[CANNOT] Can't save an empty message.");
    }
    if message.len() as u64 > s.config.max_message_size {
        return s.no(tag, "[TOOBIG] Message too large.");
    }
    let Some(account) = account(s, tag) else {
        return;
    };
    let request = Request::Append {
        account,
        mailbox: mailbox_name(mailbox),
        flags: to_flags(flags),
        internal_date: date.map(|d| d.as_ref().timestamp()),
        message,
    };
    s.request(tag, request, Task::Append);
}

/// Tagged OK with APPENDUID (UIDPLUS), or the refusal (`[TRYCREATE]` for a missing
/// mailbox, `[OVERQUOTA]`).
pub(crate) fn append_answered(s: &mut Session, tag: &str, answer: Answer) {
    match answer {
        Answer::Appended { uid_validity, uid } => s.finish_ok(
            tag,
            &format!("[APPENDUID {} {}] Append completed.", uid_validity.0, uid.0),
        ),
        Answer::Refused(Refusal::NonExistent) => s.no(tag, "[TRYCREATE] Mailbox doesn't exist."),
        other => s.refused(tag, other),
    }
}
