//! APPEND: the message literal is bounded by `max_message_size` before it is read and
//! handed to the embedder without a copy; the embedder counts it against the quota.

use bytes::Bytes;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;

use crate::framing::PLACEHOLDER;
use crate::request::{Answer, Refusal, Request};
use crate::session::{Continuation, Session};
use crate::wire;

impl Session {
    /// `APPEND mailbox [(flags)] [date] literal`. `large` is the message literal the framer
    /// kept aside: `(address of its placeholder in the command buffer, bytes)`.
    pub(super) fn handle_append(
        &mut self,
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
            Some(_) => return self.bad(tag, "Only the message may be a large literal."),
            None => Bytes::copy_from_slice(inline),
        };
        if message.is_empty() {
            return self.no(tag, "[CANNOT] Can't save an empty message.");
        }
        if message.len() as u64 > self.config.max_message_size {
            return self.no(tag, "[TOOBIG] Message too large.");
        }
        let Some(account) = self.request_account(tag) else {
            return;
        };
        let request = Request::Append {
            account,
            mailbox: wire::mailbox_name(mailbox),
            flags: wire::to_flags(flags),
            internal_date: date.map(|d| d.as_ref().timestamp()),
            message,
        };
        self.request(tag, request, Box::new(AppendTask));
    }
}

/// An APPEND waiting for the message to be stored.
#[derive(Debug)]
struct AppendTask;

impl Continuation for AppendTask {
    /// Tagged OK with APPENDUID (UIDPLUS), or the refusal (`[TRYCREATE]` for a missing
    /// mailbox, `[OVERQUOTA]`).
    fn resume(self: Box<Self>, s: &mut Session, tag: &str, answer: Answer) {
        match answer {
            Answer::Appended { uid_validity, uid } => s.finish_ok(
                tag,
                &format!("[APPENDUID {} {}] Append completed.", uid_validity.0, uid.0),
            ),
            Answer::Refused(Refusal::NonExistent) => {
                s.no(tag, "[TRYCREATE] Mailbox doesn't exist.")
            }
            other => s.refused(tag, other),
        }
    }
}
