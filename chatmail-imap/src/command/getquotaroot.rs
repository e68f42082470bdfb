//! GETQUOTAROOT (RFC 9208): every mailbox has the one quota root `""`.

use imap_codec::imap_types::mailbox::Mailbox;

use super::getquota::QuotaTask;
use crate::request::Request;
use crate::session::Session;
use crate::wire;

impl Session {
    /// GETQUOTAROOT mailbox.
    pub(super) fn handle_getquotaroot(&mut self, tag: &str, mailbox: &Mailbox<'_>) {
        let Some(account) = self.request_account(tag) else {
            return;
        };
        let task = QuotaTask {
            root_of: Some(wire::mailbox_name(mailbox)),
        };
        self.request(tag, Request::QuotaUsage { account }, Box::new(task));
    }
}
