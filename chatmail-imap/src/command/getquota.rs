//! GETQUOTA (RFC 9208): STORAGE usage against `max_mailbox_size`. One quota root, `""`,
//! covers every mailbox of the account.

use crate::request::{Answer, Request};
use crate::session::{Continuation, Session};
use crate::wire;

impl Session {
    /// GETQUOTA root.
    pub(super) fn handle_getquota(&mut self, tag: &str, root: &[u8]) {
        if !root.is_empty() {
            return self.no(tag, "[NONEXISTENT] Unknown quota root.");
        }
        let Some(account) = self.request_account(tag) else {
            return;
        };
        let task = QuotaTask { root_of: None };
        self.request(tag, Request::QuotaUsage { account }, Box::new(task));
    }
}

/// A GETQUOTA or GETQUOTAROOT waiting for the account's usage.
#[derive(Debug)]
pub(super) struct QuotaTask {
    /// GETQUOTAROOT's mailbox, for the QUOTAROOT line.
    pub(super) root_of: Option<String>,
}

impl Continuation for QuotaTask {
    /// Writes QUOTAROOT (for GETQUOTAROOT) and QUOTA in KiB units.
    fn resume(self: Box<Self>, s: &mut Session, tag: &str, answer: Answer) {
        let Answer::QuotaUsage(used) = answer else {
            return s.refused(tag, answer);
        };
        let verb = if let Some(mailbox) = &self.root_of {
            let mut line = b"* QUOTAROOT ".to_vec();
            wire::mailbox(&mut line, mailbox);
            line.extend_from_slice(b" \"\"\r\n");
            s.raw(&line);
            "Getquotaroot"
        } else {
            "Getquota"
        };
        let limit = s.config.max_mailbox_bytes / 1024;
        s.line(&format!(
            "* QUOTA \"\" (STORAGE {} {limit})",
            used.div_ceil(1024)
        ));
        s.finish_ok(tag, &format!("{verb} completed."));
    }
}
