//! EXPUNGE, UID EXPUNGE, CLOSE and UNSELECT.

use imap_codec::imap_types::sequence::SequenceSet;

use super::account;
use crate::request::{Answer, Request};
use crate::session::{Session, State, Task};

/// An expunge waiting for the storage.
#[derive(Debug)]
pub(crate) struct ExpungeTask {
    /// CLOSE: expunge silently, then leave the mailbox.
    close: bool,
}

fn leave_mailbox(s: &mut Session) {
    s.selected = None;
    s.state = State::Authenticated;
}

/// UNSELECT: leave without expunging.
pub(crate) fn unselect(s: &mut Session, tag: &str) {
    leave_mailbox(s);
    s.ok(tag, "Unselect completed.");
}

/// CLOSE: expunge `\Deleted` messages silently (unless read-only) and leave.
pub(crate) fn close(s: &mut Session, tag: &str) {
    let read_only = s.selected.as_deref().is_none_or(|sel| sel.read_only);
    if read_only {
        leave_mailbox(s);
        return s.ok(tag, "Close completed.");
    }
    let (Some(account), Some(mailbox)) = (account(s, tag), s.selected_mailbox()) else {
        return;
    };
    let request = Request::Expunge {
        account,
        mailbox: mailbox.to_string(),
        uids: None,
    };
    s.request(tag, request, Task::Expunge(ExpungeTask { close: true }));
}

/// EXPUNGE, or UID EXPUNGE set.
pub(crate) fn expunge(s: &mut Session, tag: &str, set: Option<&SequenceSet>) {
    if s.selected.as_deref().is_some_and(|sel| sel.read_only) {
        return s.no(tag, "[READ-ONLY] Mailbox is read-only.");
    }
    let uids = set.map(|set| s.resolve(set, true));
    if uids.as_ref().is_some_and(|u| u.is_empty()) {
        return s.finish_ok(tag, "Expunge completed.");
    }
    let (Some(account), Some(mailbox)) = (account(s, tag), s.selected_mailbox()) else {
        return;
    };
    let request = Request::Expunge {
        account,
        mailbox: mailbox.to_string(),
        uids,
    };
    s.request(tag, request, Task::Expunge(ExpungeTask { close: false }));
}

/// Writes `* n EXPUNGE` per removed message (not for CLOSE) and the tagged reply.
pub(crate) fn expunge_answered(s: &mut Session, tag: &str, task: ExpungeTask, answer: Answer) {
    let Answer::Expunged(uids) = answer else {
        return s.refused(tag, answer);
    };
    if task.close {
        leave_mailbox(s);
        return s.ok(tag, "Close completed.");
    }
    let mut out = Vec::new();
    if let Some(sel) = s.selected.as_deref_mut() {
        for uid in uids {
            if let Some(seq) = sel.uids.remove(uid) {
                out.extend_from_slice(format!("* {seq} EXPUNGE\r\n").as_bytes());
            }
        }
    }
    s.raw(&out);
    s.finish_ok(tag, "Expunge completed.");
}
