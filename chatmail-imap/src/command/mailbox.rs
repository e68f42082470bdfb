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
/// Longest LIST/LSUB reference plus pattern, in bytes (mailbox names have at most 255).
pub(crate) const MAX_PATTERN_BYTES: usize = 1024;
/// Most pattern-by-name steps one LIST/LSUB may take over all mailboxes.
const MAX_MATCH_STEPS: usize = 16 * 1024 * 1024;

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
    if reference.len() + pattern.len() > MAX_PATTERN_BYTES {
        return s.no(tag, "[LIMIT] Mailbox pattern too long.");
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
    let pattern = compact(task.pattern.as_bytes());
    let steps = mailboxes.iter().fold(0usize, |sum, m| {
        sum.saturating_add((pattern.len() + 1).saturating_mul(m.name.len() + 1))
    });
    if steps > MAX_MATCH_STEPS {
        return s.no(tag, "[LIMIT] Too many mailboxes for this pattern.");
    }
    // Sorted names: a mailbox has children if the first name after "name." starts so.
    let mut names: Vec<&str> = mailboxes.iter().map(|m| m.name.as_str()).collect();
    names.sort_unstable();
    for m in &mailboxes {
        if task.subscribed_only && !m.subscribed {
            continue;
        }
        if !matches(&pattern, m.name.as_bytes()) {
            continue;
        }
        let prefix = format!("{}{DELIMITER}", m.name);
        let first = names.partition_point(|n| *n < prefix.as_str());
        let children = names.get(first).is_some_and(|n| n.starts_with(&prefix));
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

/// `pattern` with each run of wildcards collapsed to one (`%%` is `%`; a run with a `*`
/// is `*`): the same language, and at most one wildcard per literal byte plus one.
fn compact(pattern: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(pattern.len());
    for &c in pattern {
        let wild = c == b'*' || c == b'%';
        match out.last_mut() {
            Some(last) if wild && (*last == b'*' || *last == b'%') => {
                if c == b'*' {
                    *last = b'*';
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// LIST wildcard matching: `*` matches anything, `%` anything but the delimiter.
/// Dynamic programming over (pattern byte, name byte) with two reused rows: O(pattern x
/// name), both bounded, and nothing to do when the pattern has more literal bytes than
/// the name.
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    if pattern.eq_ignore_ascii_case(b"inbox") && name == b"INBOX" {
        return true;
    }
    let literals = pattern.iter().filter(|&&c| c != b'*' && c != b'%').count();
    if literals > name.len() {
        return false;
    }
    let n = name.len();
    let mut row = vec![false; n + 1];
    let mut next = vec![false; n + 1];
    row[0] = true;
    for &pc in pattern {
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
                next[0] = false;
                for ni in 1..=n {
                    next[ni] = row[ni - 1] && name[ni - 1] == c;
                }
            }
        }
        std::mem::swap(&mut row, &mut next);
    }
    row[n]
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
    use super::{compact, matches};

    #[test]
    fn list_patterns() {
        assert!(matches(b"*", b"a.b"));
        assert!(matches(b"%", b"Sent"));
        assert!(!matches(b"%", b"a.b"));
        assert!(matches(b"a.%", b"a.b"));
        assert!(matches(b"inbox", b"INBOX"));
        assert!(!matches(b"Dr*x", b"Drafts"));
        assert!(matches(&[b'*'; 1000], b"x"));
        assert!(!matches(b"a%b*c", b"a.xbyc"));
        assert!(matches(b"a*b*c", b"a.xbyc"));
        assert!(matches(b"%.%", b"a.b") && !matches(b"%.%", b"a.b.c"));
        assert!(!matches(b"Sent", b"Sen"));
        // Wildcard runs collapse to one; more literals than the name: no work at all.
        assert_eq!(compact(b"a**%%b%%c%*%d"), b"a*b%c*d");
        assert!(!matches(&[b'a'; 1000], b"aaa"));
    }
}
