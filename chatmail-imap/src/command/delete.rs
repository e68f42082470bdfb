//! DELETE (never INBOX, never the selected mailbox).

use chatmail_core::INBOX;
use imap_codec::imap_types::mailbox::Mailbox;

use crate::request::Request;
use crate::session::{Completes, Session};
use crate::wire;

impl Session {
    /// DELETE mailbox.
    pub(super) fn handle_delete(&mut self, tag: &str, mailbox: &Mailbox<'_>) {
        let name = wire::mailbox_name(mailbox);
        if name == INBOX {
            return self.no(tag, "[CANNOT] INBOX can't be deleted.");
        }
        if self.selected_mailbox() == Some(name.as_str()) {
            return self.no(tag, "[CANNOT] Can't delete the selected mailbox.");
        }
        let Some(account) = self.request_account(tag) else {
            return;
        };
        let request = Request::DeleteMailbox {
            account,
            mailbox: name,
        };
        self.request(tag, request, Box::new(Completes("Delete completed.")));
    }
}
