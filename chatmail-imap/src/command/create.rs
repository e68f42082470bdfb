//! CREATE.

use chatmail_core::INBOX;
use imap_codec::imap_types::mailbox::Mailbox;

use crate::request::Request;
use crate::session::{Completes, Session};
use crate::wire::{self, DELIMITER};

impl Session {
    /// CREATE mailbox (a trailing delimiter is dropped, RFC 3501 6.3.3).
    pub(super) fn handle_create(&mut self, tag: &str, mailbox: &Mailbox<'_>) {
        let name = wire::mailbox_name(mailbox);
        let name = name.strip_suffix(DELIMITER).unwrap_or(&name).to_string();
        if name == INBOX {
            return self.no(tag, "[ALREADYEXISTS] Mailbox already exists.");
        }
        if !wire::valid_new_mailbox_name(&name) {
            return self.no(tag, "[CANNOT] Invalid mailbox name.");
        }
        let Some(account) = self.request_account(tag) else {
            return;
        };
        let request = Request::CreateMailbox {
            account,
            mailbox: name,
        };
        self.request(tag, request, Box::new(Completes("Create completed.")));
    }
}
