//! LIST and LSUB, with CHILDREN and SPECIAL-USE attributes. Pattern matching is bounded:
//! the pattern's length before the embedder is asked, the matching work over all
//! mailboxes after.

use std::collections::BTreeSet;

use chatmail_core::{MailboxInfo, INBOX};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};

use crate::request::{Answer, Request};
use crate::session::{Continuation, Session};
use crate::wire::{self, DELIMITER};

/// Longest LIST/LSUB reference plus pattern, in bytes (mailbox names have at most 255).
const MAX_PATTERN_BYTES: usize = 1024;
/// Most pattern-by-name steps one LIST/LSUB may take over all mailboxes.
const MAX_MATCH_STEPS: usize = 16 * 1024 * 1024;

impl Session {
    /// LIST / LSUB reference pattern.
    pub(super) fn handle_list(
        &mut self,
        tag: &str,
        reference: &Mailbox<'_>,
        wildcard: &ListMailbox<'_>,
        subscribed_only: bool,
    ) {
        let pattern_bytes: &[u8] = match wildcard {
            ListMailbox::Token(t) => t.as_ref(),
            ListMailbox::String(string) => string.as_ref(),
        };
        let pattern = String::from_utf8_lossy(pattern_bytes).into_owned();
        let reference = match reference {
            Mailbox::Inbox => INBOX.to_string(),
            Mailbox::Other(_) => wire::mailbox_name(reference),
        };
        if pattern.is_empty() {
            // RFC 3501: an empty pattern asks for the delimiter and root.
            let verb = if subscribed_only { "LSUB" } else { "LIST" };
            self.line(&format!("* {verb} (\\Noselect) \".\" \"\""));
            return self.finish_ok(tag, &format!("{verb} completed."));
        }
        if reference.len() + pattern.len() > MAX_PATTERN_BYTES {
            return self.no(tag, "[LIMIT] Mailbox pattern too long.");
        }
        let Some(account) = self.request_account(tag) else {
            return;
        };
        let task = ListTask {
            pattern: format!("{reference}{pattern}"),
            subscribed_only,
        };
        self.request(tag, Request::ListMailboxes { account }, Box::new(task));
    }
}

/// A LIST/LSUB waiting for the mailbox list.
#[derive(Debug)]
struct ListTask {
    pattern: String,
    subscribed_only: bool,
}

impl Continuation for ListTask {
    /// Writes the matching mailboxes.
    fn resume(self: Box<Self>, s: &mut Session, tag: &str, answer: Answer) {
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
        let verb = if self.subscribed_only { "LSUB" } else { "LIST" };
        let pattern = compact(self.pattern.as_bytes());
        // LSUB may match each ancestor of a name too (one more match per level).
        let steps = mailboxes.iter().fold(0usize, |sum, m| {
            let levels = if self.subscribed_only {
                m.name.matches(DELIMITER).count() + 1
            } else {
                1
            };
            sum.saturating_add(
                (pattern.len() + 1)
                    .saturating_mul(m.name.len() + 1)
                    .saturating_mul(levels),
            )
        });
        if steps > MAX_MATCH_STEPS {
            return s.no(tag, "[LIMIT] Too many mailboxes for this pattern.");
        }
        // Sorted names: a mailbox has children if the first name after "name." starts so.
        let mut names: Vec<&str> = mailboxes.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        let mut noselect_parents: BTreeSet<&str> = BTreeSet::new();
        let subscribed: BTreeSet<&str> = mailboxes
            .iter()
            .filter(|m| m.subscribed)
            .map(|m| m.name.as_str())
            .collect();
        for m in &mailboxes {
            if self.subscribed_only && !m.subscribed {
                continue;
            }
            if !matches(&pattern, m.name.as_bytes()) {
                if self.subscribed_only {
                    // RFC 3501 6.3.9: with `%`, LSUB names the unsubscribed parent of a
                    // subscribed mailbox the pattern does not reach, as \Noselect. Each
                    // ancestor is a prefix of the name: the steps counted above bound
                    // this per level.
                    for (i, _) in m.name.match_indices(DELIMITER) {
                        let parent = &m.name[..i];
                        if !subscribed.contains(parent) && matches(&pattern, parent.as_bytes()) {
                            noselect_parents.insert(parent);
                        }
                    }
                }
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
        for parent in noselect_parents {
            let mut line = format!("* {verb} (\\Noselect) \".\" ").into_bytes();
            wire::mailbox(&mut line, parent);
            line.extend_from_slice(b"\r\n");
            s.raw(&line);
        }
        s.finish_ok(tag, &format!("{verb} completed."));
    }
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
