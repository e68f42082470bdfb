//! CREATE, DELETE, RENAME, SUBSCRIBE/UNSUBSCRIBE, LIST/LSUB and STATUS.

use chatmail_core::{MailboxInfo, INBOX};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::status::StatusDataItemName;

use super::account;
use crate::request::{Answer, Request};
use crate::session::{mailbox_name, Session, Task};
use crate::wire;

/// The hierarchy delimiter (Maildir++ layout).
const DELIMITER: char = '.';

/// A LIST/LSUB waiting for the mailbox list.
#[derive(Debug)]
pub(crate) struct ListTask {
    pattern: String,
    subscribed_only: bool,
}

/// A STATUS waiting for the counters.
#[derive(Debug)]
pub(crate) struct StatusTask {
    mailbox: String,
    items: Vec<StatusDataItemName>,
}

fn valid_new_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.eq_ignore_ascii_case(INBOX)
        && !name.starts_with(DELIMITER)
        && !name.ends_with(DELIMITER)
        && !name.contains("..")
        && !name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\' || c == '*' || c == '%')
}

/// CREATE mailbox.
pub(crate) fn create(s: &mut Session, tag: &str, mailbox: &Mailbox<'_>) {
    let name = mailbox_name(mailbox);
    let name = name.strip_suffix(DELIMITER).unwrap_or(&name).to_string();
    if name == INBOX {
        return s.no(tag, "[ALREADYEXISTS] Mailbox already exists.");
    }
    if !valid_new_name(&name) {
        return s.no(tag, "[CANNOT] Invalid mailbox name.");
    }
    let Some(account) = account(s, tag) else {
        return;
    };
    let request = Request::CreateMailbox {
        account,
        mailbox: name,
    };
    s.request(tag, request, Task::Simple("Create completed."));
}

/// DELETE mailbox (never INBOX, never the selected one).
pub(crate) fn delete(s: &mut Session, tag: &str, mailbox: &Mailbox<'_>) {
    let name = mailbox_name(mailbox);
    if name == INBOX {
        return s.no(tag, "[CANNOT] INBOX can't be deleted.");
    }
    if s.selected_mailbox() == Some(name.as_str()) {
        return s.no(tag, "[CANNOT] Can't delete the selected mailbox.");
    }
    let Some(account) = account(s, tag) else {
        return;
    };
    let request = Request::DeleteMailbox {
        account,
        mailbox: name,
    };
    s.request(tag, request, Task::Simple("Delete completed."));
}

/// RENAME from to.
pub(crate) fn rename(s: &mut Session, tag: &str, from: &Mailbox<'_>, to: &Mailbox<'_>) {
    let (from, to) = (mailbox_name(from), mailbox_name(to));
    if from == INBOX {
        return s.no(tag, "[CANNOT] Renaming INBOX is not supported.");
    }
    if !valid_new_name(&to) {
        return s.no(tag, "[CANNOT] Invalid mailbox name.");
    }
    let Some(account) = account(s, tag) else {
        return;
    };
    let request = Request::RenameMailbox { account, from, to };
    s.request(tag, request, Task::Simple("Rename completed."));
}

/// SUBSCRIBE / UNSUBSCRIBE.
pub(crate) fn subscribe(s: &mut Session, tag: &str, mailbox: &Mailbox<'_>, subscribed: bool) {
    let Some(account) = account(s, tag) else {
        return;
    };
    let request = Request::Subscribe {
        account,
        mailbox: mailbox_name(mailbox),
        subscribed,
    };
    let text = if subscribed {
        "Subscribe completed."
    } else {
        "Unsubscribe completed."
    };
    s.request(tag, request, Task::Simple(text));
}

/// LIST / LSUB reference pattern.
pub(crate) fn list(
    s: &mut Session,
    tag: &str,
    reference: &Mailbox<'_>,
    wildcard: &ListMailbox<'_>,
    subscribed_only: bool,
) {
    let pattern_bytes: &[u8] = match wildcard {
        ListMailbox::Token(t) => t.as_ref(),
        ListMailbox::String(s) => s.as_ref(),
    };
    let pattern = String::from_utf8_lossy(pattern_bytes).into_owned();
    let reference = match reference {
        Mailbox::Inbox => INBOX.to_string(),
        Mailbox::Other(_) => mailbox_name(reference),
    };
    if pattern.is_empty() {
        // RFC 3501: an empty pattern asks for the delimiter and root.
        let verb = if subscribed_only { "LSUB" } else { "LIST" };
        s.line(&format!("* {verb} (\\Noselect) \".\" \"\""));
        return s.finish_ok(tag, &format!("{verb} completed."));
    }
    let Some(account) = account(s, tag) else {
        return;
    };
    let task = ListTask {
        pattern: format!("{reference}{pattern}"),
        subscribed_only,
    };
    s.request(tag, Request::ListMailboxes { account }, Task::List(task));
}

/// Writes the matching mailboxes.
pub(crate) fn list_answered(s: &mut Session, tag: &str, task: ListTask, answer: Answer) {
    let Answer::Mailboxes(mut mailboxes) = answer else {
        return s.refused(tag, answer);
    };
    if !mailboxes.iter().any(|m| m.name == INBOX) {
        mailboxes.insert(
            0,
            MailboxInfo {
                name: INBOX.to_string(),
                special_use: None,
                subscribed: true,
            },
        );
    }
    let verb = if task.subscribed_only { "LSUB" } else { "LIST" };
    for m in &mailboxes {
        if task.subscribed_only && !m.subscribed {
            continue;
        }
        if !matches(task.pattern.as_bytes(), m.name.as_bytes()) {
            continue;
        }
        let prefix = format!("{}{DELIMITER}", m.name);
        let children = mailboxes.iter().any(|c| c.name.starts_with(&prefix));
        let mut attrs = vec![if children {
            "\\HasChildren"
        } else {
            "\\HasNoChildren"
        }];
        if let Some(u) = m.special_use {
            attrs.push(u.as_imap());
        }
        let mut line = format!("* {verb} ({}) \".\" ", attrs.join(" ")).into_bytes();
        wire::mailbox(&mut line, &m.name);
        line.extend_from_slice(b"\r\n");
        s.raw(&line);
    }
    s.finish_ok(tag, &format!("{verb} completed."));
}

/// LIST wildcard matching: `*` matches anything, `%` anything but the delimiter.
/// Iterative with backtracking to the last star, so work is O(pattern x name).
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    // Dynamic programming over (pattern index, name index); both are bounded in length.
    let n = name.len();
    let mut row = vec![false; n + 1];
    row[0] = true;
    for &pc in pattern {
        let mut next = vec![false; n + 1];
        match pc {
            b'*' => {
                let mut any = false;
                for ni in 0..=n {
                    any |= row[ni];
                    next[ni] = any;
                }
            }
            b'%' => {
                let mut any = false;
                for ni in 0..=n {
                    if ni > 0 && name[ni - 1] == DELIMITER as u8 {
                        any = false;
                    }
                    any |= row[ni];
                    next[ni] = any;
                }
            }
            c => {
                for ni in 1..=n {
                    next[ni] = row[ni - 1] && name[ni - 1] == c;
                }
            }
        }
        row = next;
    }
    row[n] || (pattern.eq_ignore_ascii_case(b"inbox") && name == b"INBOX")
}

/// STATUS mailbox (items).
pub(crate) fn status(
    s: &mut Session,
    tag: &str,
    mailbox: &Mailbox<'_>,
    items: &[StatusDataItemName],
) {
    let Some(account) = account(s, tag) else {
        return;
    };
    let name = mailbox_name(mailbox);
    let task = StatusTask {
        mailbox: name.clone(),
        items: items.to_vec(),
    };
    let request = Request::MailboxStatus {
        account,
        mailbox: name,
    };
    s.request(tag, request, Task::Status(task));
}

/// Writes `* STATUS name (...)`.
pub(crate) fn status_answered(s: &mut Session, tag: &str, task: StatusTask, answer: Answer) {
    let Answer::Status(st) = answer else {
        return s.refused(tag, answer);
    };
    let mut line = b"* STATUS ".to_vec();
    wire::mailbox(&mut line, &task.mailbox);
    line.extend_from_slice(b" (");
    let mut first = true;
    for item in &task.items {
        let (name, value) = match item {
            StatusDataItemName::Messages => ("MESSAGES", u64::from(st.exists)),
            StatusDataItemName::Recent => ("RECENT", 0),
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

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn list_patterns() {
        assert!(matches(b"*", b"a.b"));
        assert!(matches(b"%", b"Sent"));
        assert!(!matches(b"%", b"a.b"));
        assert!(matches(b"a.%", b"a.b"));
        assert!(matches(b"inbox", b"INBOX"));
        assert!(!matches(b"Dr*x", b"Drafts"));
        assert!(matches(&[b'*'; 1000], b"x"));
    }
}
