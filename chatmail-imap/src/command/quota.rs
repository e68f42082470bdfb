//! GETQUOTA and GETQUOTAROOT (RFC 9208): STORAGE usage against `max_mailbox_size`.
//! One quota root, `""`, covers every mailbox of the account.

use imap_codec::imap_types::mailbox::Mailbox;

use super::account;
use crate::request::{Answer, Request};
use crate::session::{mailbox_name, Session, Task};
use crate::wire;

/// What the quota answer is for.
#[derive(Debug)]
pub(crate) struct QuotaTask {
    /// GETQUOTAROOT's mailbox, for the QUOTAROOT line.
    root_of: Option<String>,
}

/// GETQUOTA root.
pub(crate) fn get_quota(s: &mut Session, tag: &str, root: &[u8]) {
    if !root.is_empty() {
        return s.no(tag, "[NONEXISTENT] Unknown quota root.");
    }
    let Some(account) = account(s, tag) else {
        return;
    };
    let task = QuotaTask { root_of: None };
    s.request(tag, Request::QuotaUsage { account }, Task::Quota(task));
}

/// GETQUOTAROOT mailbox.
pub(crate) fn get_quota_root(s: &mut Session, tag: &str, mailbox: &Mailbox<'_>) {
    let Some(account) = account(s, tag) else {
        return;
    };
    let task = QuotaTask {
        root_of: Some(mailbox_name(mailbox)),
    };
    s.request(tag, Request::QuotaUsage { account }, Task::Quota(task));
}

/// Writes QUOTAROOT (for GETQUOTAROOT) and QUOTA in KiB units.
pub(crate) fn quota_answered(s: &mut Session, tag: &str, task: QuotaTask, answer: Answer) {
    let Answer::QuotaUsage(used) = answer else {
        return s.refused(tag, answer);
    };
    let verb = if let Some(mailbox) = &task.root_of {
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
