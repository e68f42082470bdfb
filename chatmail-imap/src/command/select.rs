//! SELECT and EXAMINE (with CONDSTORE): the mailbox's counters and flags, then the
//! selected state. Changes to the mailbox that arrive while the embedder lists it are
//! kept ([`crate::selected::Opening`]) and applied once it is open.

use std::collections::BTreeSet;

use chatmail_core::Flag;
use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::mailbox::Mailbox;

use crate::request::{Answer, Request};
use crate::selected::{Opening, Selected, MAX_ANNOUNCED_KEYWORDS};
use crate::session::{Continuation, Session, State};
use crate::uidmap::UidMap;
use crate::wire;

impl Session {
    /// SELECT/EXAMINE mailbox [(CONDSTORE)].
    pub(super) fn handle_select(
        &mut self,
        tag: &str,
        mailbox: &Mailbox<'_>,
        read_only: bool,
        parameters: &[SelectParameter],
    ) {
        // Selecting closes the previous mailbox without expunging (RFC 3501 6.3.1).
        if self.selected.take().is_some() {
            self.line("* OK [CLOSED] Previous mailbox closed.");
        }
        self.state = State::Authenticated;
        if parameters
            .iter()
            .any(|p| matches!(p, SelectParameter::CondStore))
        {
            self.condstore = true;
        }
        if parameters
            .iter()
            .any(|p| matches!(p, SelectParameter::QResync { .. }))
        {
            return self.bad(tag, "QRESYNC is not supported.");
        }
        let Some(account) = self.request_account(tag) else {
            return;
        };
        let name = wire::mailbox_name(mailbox);
        self.opening = Some(Opening {
            name: name.clone(),
            early: Vec::new(),
        });
        let request = Request::Select {
            account,
            mailbox: name,
            claim_recent: !read_only,
        };
        self.request(tag, request, Box::new(SelectTask { read_only }));
    }
}

/// A SELECT/EXAMINE waiting for the mailbox (its name and the changes arriving
/// meanwhile are the session's [`Opening`]).
#[derive(Debug)]
struct SelectTask {
    read_only: bool,
}

impl Continuation for SelectTask {
    /// Writes the SELECT responses and makes the mailbox the selected one.
    fn resume(self: Box<Self>, s: &mut Session, tag: &str, answer: Answer) {
        let Some(opening) = s.opening.take() else {
            return s.no(tag, "[SERVERBUG] No mailbox being opened.");
        };
        let Answer::Selected {
            status,
            messages,
            recent,
        } = answer
        else {
            return s.refused(tag, answer);
        };
        let mut keywords: BTreeSet<String> = BTreeSet::new();
        for m in &messages {
            for f in &m.flags {
                if let Flag::Keyword(k) = f {
                    if keywords.len() < MAX_ANNOUNCED_KEYWORDS {
                        keywords.insert(k.clone());
                    }
                }
            }
        }
        let first_unseen = messages
            .iter()
            .position(|m| !m.flags.contains(&Flag::Seen))
            .map(|i| i + 1);
        let uids = UidMap::from_sorted(messages.iter().map(|m| m.uid));
        let mut out = Vec::new();
        wire::flags_responses(&mut out, &keywords, self.read_only);
        s.raw(&out);
        let selected = Selected::new(
            opening.name,
            self.read_only,
            status.highest_modseq,
            uids,
            keywords,
            recent,
        );
        s.line(&format!("* {} EXISTS", selected.uids.len()));
        s.line(&format!("* {} RECENT", selected.recent_told));
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
        s.selected = Some(Box::new(selected));
        s.state = State::Selected;
        for change in &opening.early {
            s.queue_change(change);
        }
        let access = if self.read_only {
            "[READ-ONLY] Examine completed"
        } else {
            "[READ-WRITE] Select completed"
        };
        s.finish_ok(tag, &format!("{access} ({} msgs).", messages.len()));
    }
}
