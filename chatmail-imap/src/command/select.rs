//! SELECT, EXAMINE and ENABLE.

use std::collections::BTreeSet;

use chatmail_core::{Change, Flag};
use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::mailbox::Mailbox;

use super::account;
use crate::request::{Answer, Request};
use crate::session::{mailbox_name, Selected, Session, State, Task};
use crate::uidmap::UidMap;
use crate::wire;

/// Most distinct keywords listed in the FLAGS response.
const MAX_LISTED_KEYWORDS: usize = 64;

/// A SELECT/EXAMINE waiting for the mailbox; changes arriving meanwhile are kept.
#[derive(Debug)]
pub(crate) struct SelectTask {
    name: String,
    read_only: bool,
    /// Changes for this mailbox that arrived before the answer.
    pub(crate) early: Vec<Change>,
}

impl SelectTask {
    /// The mailbox being opened.
    pub(crate) fn mailbox(&self) -> &str {
        &self.name
    }
}

/// SELECT/EXAMINE mailbox [(CONDSTORE)].
pub(crate) fn select(
    s: &mut Session,
    tag: &str,
    mailbox: &Mailbox<'_>,
    read_only: bool,
    parameters: &[SelectParameter],
) {
    // Selecting closes the previous mailbox without expunging (RFC 3501 6.3.1).
    if s.selected.take().is_some() {
        s.line("* OK [CLOSED] Previous mailbox closed.");
    }
    s.state = State::Authenticated;
    if parameters
        .iter()
        .any(|p| matches!(p, SelectParameter::CondStore))
    {
        s.condstore = true;
    }
    if parameters
        .iter()
        .any(|p| matches!(p, SelectParameter::QResync { .. }))
    {
        return s.bad(tag, "QRESYNC is not supported.");
    }
    let Some(account) = account(s, tag) else {
        return;
    };
    let name = mailbox_name(mailbox);
    let task = SelectTask {
        name: name.clone(),
        read_only,
        early: Vec::new(),
    };
    let request = Request::Select {
        account,
        mailbox: name,
    };
    s.request(tag, request, Task::Select(task));
}

/// Writes the SELECT responses and makes the mailbox the selected one.
pub(crate) fn select_answered(s: &mut Session, tag: &str, task: SelectTask, answer: Answer) {
    let Answer::Selected { status, messages } = answer else {
        return s.refused(tag, answer);
    };
    let mut keywords: BTreeSet<&str> = BTreeSet::new();
    for m in &messages {
        for f in &m.flags {
            if let Flag::Keyword(k) = f {
                if keywords.len() < MAX_LISTED_KEYWORDS {
                    keywords.insert(k);
                }
            }
        }
    }
    let mut flags = String::from(wire::SYSTEM_FLAGS);
    for k in &keywords {
        flags.push(' ');
        flags.push_str(k);
    }
    let first_unseen = messages
        .iter()
        .position(|m| !m.flags.contains(&Flag::Seen))
        .map(|i| i + 1);
    let uids = UidMap::from_sorted(messages.iter().map(|m| m.uid));
    s.line(&format!("* FLAGS ({flags})"));
    if task.read_only {
        s.line("* OK [PERMANENTFLAGS ()] Read-only mailbox.");
    } else {
        s.line(&format!(
            "* OK [PERMANENTFLAGS ({flags} \\*)] Flags permitted."
        ));
    }
    s.line(&format!("* {} EXISTS", uids.len()));
    s.line("* 0 RECENT");
    if let Some(seq) = first_unseen {
        s.line(&format!("* OK [UNSEEN {seq}] First unseen."));
    }
    s.line(&format!(
        "* OK [UIDVALIDITY {}] UIDs valid",
        status.uid_validity.0
    ));
    s.line(&format!(
        "* OK [UIDNEXT {}] Predicted next UID",
        status.uid_next.0
    ));
    s.line(&format!(
        "* OK [HIGHESTMODSEQ {}] Highest",
        status.highest_modseq.0
    ));
    s.selected = Some(Box::new(Selected {
        name: task.name,
        read_only: task.read_only,
        highest_modseq: status.highest_modseq,
        uids,
        queued: Vec::new(),
    }));
    s.state = State::Selected;
    for change in &task.early {
        super::idle::handle_change(s, change);
    }
    let access = if task.read_only {
        "[READ-ONLY] Examine completed"
    } else {
        "[READ-WRITE] Select completed"
    };
    s.finish_ok(tag, &format!("{access} ({} msgs).", messages.len()));
}

/// ENABLE: CONDSTORE is the one extension that changes behaviour.
pub(crate) fn enable(s: &mut Session, tag: &str, capabilities: Vec1<CapabilityEnable<'_>>) {
    let mut enabled = Vec::new();
    for cap in capabilities.as_ref() {
        if matches!(cap, CapabilityEnable::CondStore) {
            s.condstore = true;
            enabled.push("CONDSTORE");
        }
    }
    if enabled.is_empty() {
        s.line("* ENABLED");
    } else {
        s.line(&format!("* ENABLED {}", enabled.join(" ")));
    }
    s.finish_ok(tag, "Enabled.");
}
