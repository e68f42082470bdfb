//! RENAME (not of INBOX).

use chatmail_core::INBOX;
use imap_codec::imap_types::mailbox::Mailbox;

use crate::request::Request;
use crate::session::{Completes, Session};
use crate::wire;

impl Session {
    /// RENAME from to.
    pub(super) fn handle_rename(&mut self, tag: &str, from: &Mailbox<'_>, to: &Mailbox<'_>) {
        let (from, to) = (wire::mailbox_name(from), wire::mailbox_name(to));
        if from == INBOX {
            return self.no(tag, "[CANNOT] Renaming INBOX is not supported.");
        }
        if !wire::valid_new_mailbox_name(&to) {
            return self.no(tag, "[CANNOT] Invalid mailbox name.");
        }
        let Some(account) = self.request_account(tag) else {
            return;
        };
        let request = Request::RenameMailbox { account, from, to };
        self.request(tag, request, Box::new(Completes("Rename completed.")));
    }
}
