//! What the IMAP fuzz targets' storage answers (included with `#[path]`): one account,
//! one mailbox of `messages`, a SEARCH content request run on `message`.

use chatmail_core::{Address, MailboxStatus, MessageMeta, ModSeq, Uid, UidValidity};
use chatmail_imap::{Answer, Bytes, Request};

/// The answer to `req` for a mailbox holding `messages`, each with the bytes `message`.
pub fn answer(req: Request, messages: &[MessageMeta], message: &Bytes) -> Option<Answer> {
    let next = messages.last().map_or(1, |m| m.uid.0 + 1);
    Some(match req {
        Request::Authenticate { .. } => {
            Answer::Authenticated(Address::parse("abcdefghi@example.org").unwrap())
        }
        Request::Select { .. } => Answer::Selected {
            status: MailboxStatus {
                uid_validity: UidValidity(1),
                uid_next: Uid(next),
                highest_modseq: ModSeq(u64::from(next)),
                exists: messages.len() as u32,
                unseen: messages.len() as u32,
                recent: 1,
                size: message.len() as u64 * messages.len() as u64,
            },
            messages: messages.to_vec(),
            recent: Uid(next - 1)..Uid(next),
        },
        Request::ClaimRecent { .. } => Answer::RecentClaimed(Uid(next)..Uid(next)),
        Request::FetchMessage { .. } => Answer::Message(message.clone()),
        Request::Messages { .. } => Answer::Messages(messages.to_vec()),
        Request::SearchContent {
            candidates, search, ..
        } => Answer::Matched(
            candidates
                .iter()
                .filter(|m| search.matches(m, message))
                .map(|m| m.uid)
                .collect(),
        ),
        _ => return None,
    })
}
