//! STATUS: a mailbox's counters without selecting it.

use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::status::StatusDataItemName;

use crate::request::{Answer, Request};
use crate::session::{Continuation, Session};
use crate::wire;

impl Session {
    /// STATUS mailbox (items).
    pub(super) fn handle_status(
        &mut self,
        tag: &str,
        mailbox: &Mailbox<'_>,
        items: &[StatusDataItemName],
    ) {
        let Some(account) = self.request_account(tag) else {
            return;
        };
        let name = wire::mailbox_name(mailbox);
        let task = StatusTask {
            mailbox: name.clone(),
            items: items.to_vec(),
        };
        let request = Request::MailboxStatus {
            account,
            mailbox: name,
        };
        self.request(tag, request, Box::new(task));
    }
}

/// A STATUS waiting for the counters.
#[derive(Debug)]
struct StatusTask {
    mailbox: String,
    items: Vec<StatusDataItemName>,
}

impl Continuation for StatusTask {
    /// Writes `* STATUS name (...)`.
    fn resume(self: Box<Self>, s: &mut Session, tag: &str, answer: Answer) {
        let Answer::Status(st) = answer else {
            return s.refused(tag, answer);
        };
        let mut line = b"* STATUS ".to_vec();
        wire::mailbox(&mut line, &self.mailbox);
        line.extend_from_slice(b" (");
        let mut first = true;
        for item in &self.items {
            let (name, value) = match item {
                StatusDataItemName::Messages => ("MESSAGES", u64::from(st.exists)),
                StatusDataItemName::Recent => ("RECENT", u64::from(st.recent)),
                StatusDataItemName::UidNext => ("UIDNEXT", u64::from(st.uid_next.0)),
                StatusDataItemName::UidValidity => ("UIDVALIDITY", u64::from(st.uid_validity.0)),
                StatusDataItemName::Unseen => ("UNSEEN", u64::from(st.unseen)),
                StatusDataItemName::HighestModSeq => ("HIGHESTMODSEQ", st.highest_modseq.0),
                StatusDataItemName::Deleted | StatusDataItemName::DeletedStorage => continue,
            };
            if !first {
                line.push(b' ');
            }
            first = false;
            line.extend_from_slice(name.as_bytes());
            line.push(b' ');
            wire::number(&mut line, value);
        }
        line.extend_from_slice(b")\r\n");
        s.raw(&line);
        s.finish_ok(tag, "Status completed.");
    }
}
