//! SUBSCRIBE and UNSUBSCRIBE.

use imap_codec::imap_types::mailbox::Mailbox;

use crate::request::Request;
use crate::session::{Completes, Session};
use crate::wire;

impl Session {
    /// SUBSCRIBE mailbox (`subscribed`), or UNSUBSCRIBE mailbox.
    pub(super) fn handle_subscribe(&mut self, tag: &str, mailbox: &Mailbox<'_>, subscribed: bool) {
        let Some(account) = self.request_account(tag) else {
            return;
        };
        let request = Request::Subscribe {
            account,
            mailbox: wire::mailbox_name(mailbox),
            subscribed,
        };
        let text = if subscribed {
            "Subscribe completed."
        } else {
            "Unsubscribe completed."
        };
        self.request(tag, request, Box::new(Completes(text)));
    }
}
