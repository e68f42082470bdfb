//! CREATE.

use chatmail_core::INBOX;
use imap_codec::imap_types::mailbox::Mailbox;

use crate::request::{Answer, Refusal, Request};
use crate::session::{Completes, Continuation, Session};
use crate::wire::{self, DELIMITER};

impl Session {
    /// CREATE mailbox. A trailing delimiter is dropped (RFC 3501 6.3.3): it declares
    /// that names will be created under this one, so an existing mailbox satisfies it
    /// (Dovecot answers OK too).
    pub(super) fn handle_create(&mut self, tag: &str, mailbox: &Mailbox<'_>) {
        let name = wire::mailbox_name(mailbox);
        let parent = name.ends_with(DELIMITER);
        let name = name.strip_suffix(DELIMITER).unwrap_or(&name).to_string();
        if name == INBOX && parent {
            return self.finish_ok(tag, "Create completed.");
        }
        // CREATE INBOX goes to the store: a fresh account's INBOX is made on first use,
        // and until then CREATE makes it, as Dovecot does (imaptest's `pipeline`).
        if name != INBOX && !wire::valid_new_mailbox_name(&name) {
            return self.no(tag, "[CANNOT] Invalid mailbox name.");
        }
        let Some(account) = self.request_account(tag) else {
            return;
        };
        let request = Request::CreateMailbox {
            account,
            mailbox: name,
        };
        if parent {
            self.request(tag, request, Box::new(CreateParent));
        } else {
            self.request(tag, request, Box::new(Completes("Create completed.")));
        }
    }
}

/// CREATE of a name with a trailing delimiter: an existing mailbox is fine.
#[derive(Debug)]
struct CreateParent;

impl Continuation for CreateParent {
    fn resume(self: Box<Self>, s: &mut Session, tag: &str, answer: Answer) {
        match answer {
            Answer::Done | Answer::Refused(Refusal::AlreadyExists) => {
                s.finish_ok(tag, "Create completed.")
            }
            other => s.refused(tag, other),
        }
    }
}
