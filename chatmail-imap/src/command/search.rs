//! SEARCH and UID SEARCH: ALL, sequence and UID sets, flag keys, dates, sizes, HEADER,
//! FROM/TO/CC/BCC/SUBJECT, BODY/TEXT, MODSEQ, with AND/OR/NOT.
//!
//! The program ([`crate::search_program`]) is evaluated on metadata first. The messages
//! the metadata cannot decide go to the embedder in one [`Request::SearchContent`]:
//! reading and scanning message bodies is the embedder's to run where it may block (the
//! relay uses its blocking executor), never on the session's thread.
//!
//! Work is bounded before it starts: the program's size, key strings, keys that need
//! the content and resolved message numbers have limits, and a command whose content
//! scan would exceed [`crate::SessionConfig::max_search_bytes`] gets `NO [LIMIT]`.

use chatmail_core::MessageMeta;
use imap_codec::imap_types::search::SearchKey;

use crate::request::{Answer, Request};
use crate::search_program::{Program, Refuse, MAX_CONTENT_KEYS, MAX_KEY_BYTES};
use crate::session::{Continuation, Session};
use crate::wire;

impl Session {
    /// SEARCH / UID SEARCH [CHARSET charset] criteria.
    pub(super) fn handle_search(
        &mut self,
        tag: &str,
        charset: Option<&str>,
        criteria: &[SearchKey<'_>],
        uid_command: bool,
    ) {
        // Keys are compared as bytes, ASCII case folded: right for US-ASCII and UTF-8
        // only. RFC 3501 6.4.4: another charset gets a tagged NO with BADCHARSET.
        if charset.is_some_and(|c| {
            !c.eq_ignore_ascii_case("UTF-8") && !c.eq_ignore_ascii_case("US-ASCII")
        }) {
            return self.no(tag, "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset.");
        }
        let recent = self
            .selected
            .as_deref()
            .map(|sel| sel.recent_uids())
            .unwrap_or_default();
        let program = match Program::compile(criteria, &|set, uid| self.resolve(set, uid), &recent)
        {
            Ok(program) => program,
            Err(Refuse::TooComplex) => return self.bad(tag, "Search program too complex."),
            Err(Refuse::KeyTooLong) => {
                let text = format!("[LIMIT] Search key longer than {MAX_KEY_BYTES} bytes.");
                return self.no(tag, &text);
            }
            Err(Refuse::TooManyContentKeys) => {
                let text =
                    format!("[LIMIT] More than {MAX_CONTENT_KEYS} keys need message contents.");
                return self.no(tag, &text);
            }
            Err(Refuse::TooManyMessages) => {
                return self.no(tag, "[LIMIT] Search program names too many messages.")
            }
        };
        let with_modseq = program.uses_modseq();
        if with_modseq {
            self.condstore = true;
        }
        let all = self.resolve_all();
        if all.is_empty() {
            self.line("* SEARCH");
            return self.finish_ok_numbered(tag, "Search completed.", uid_command);
        }
        let Some((account, mailbox)) = self.request_in_selected(tag) else {
            return;
        };
        let request = Request::Messages {
            account,
            mailbox,
            uids: all,
        };
        let task = SearchTask {
            program,
            uid_command,
            with_modseq,
            undecided: Vec::new(),
            matched: Vec::new(),
        };
        self.request(tag, request, Box::new(task));
    }
}

/// A SEARCH in progress.
#[derive(Debug)]
struct SearchTask {
    program: Program,
    uid_command: bool,
    with_modseq: bool,
    /// Messages sent to the embedder for a content check, ascending by UID.
    undecided: Vec<MessageMeta>,
    matched: Vec<MessageMeta>,
}

impl Continuation for SearchTask {
    /// Continues the search with the metadata, then with the embedder's content
    /// verdicts.
    fn resume(mut self: Box<Self>, s: &mut Session, tag: &str, answer: Answer) {
        match answer {
            Answer::Messages(metas) if self.undecided.is_empty() => {
                for meta in metas {
                    match self.program.on_metadata(&meta) {
                        Some(true) => self.matched.push(meta),
                        Some(false) => {}
                        None => self.undecided.push(meta),
                    }
                }
                if !self.undecided.is_empty() {
                    return ask_for_content(s, tag, self);
                }
            }
            Answer::Matched(mut uids) if !self.undecided.is_empty() => {
                uids.sort_unstable();
                let undecided = std::mem::take(&mut self.undecided);
                self.matched.extend(
                    undecided
                        .into_iter()
                        .filter(|m| uids.binary_search(&m.uid).is_ok()),
                );
            }
            other => return s.refused(tag, other),
        }
        write_result(s, &mut self);
        s.finish_ok_numbered(tag, "Search completed.", self.uid_command);
    }
}

/// Hands the undecided messages to the embedder, unless scanning them would cost more
/// than the session's budget.
fn ask_for_content(s: &mut Session, tag: &str, task: Box<SearchTask>) {
    // Each message is read and its header parsed once; each BODY/TEXT key scans it again.
    let passes = task.program.scan_passes();
    let cost = task.undecided.iter().fold(0u64, |sum, m| {
        sum.saturating_add(m.size.saturating_mul(passes))
    });
    if cost > s.config.max_search_bytes {
        return s.no(
            tag,
            "[LIMIT] Search would scan too much message data; narrow it down.",
        );
    }
    let Some((account, mailbox)) = s.request_in_selected(tag) else {
        return;
    };
    let request = Request::SearchContent {
        account,
        mailbox,
        candidates: task.undecided.clone(),
        search: task.program.content_search(),
    };
    s.request(tag, request, task);
}

/// Writes `* SEARCH n...` (with the highest MODSEQ when a MODSEQ key was used).
fn write_result(s: &mut Session, task: &mut SearchTask) {
    task.matched.sort_by_key(|m| m.uid);
    let mut line = b"* SEARCH".to_vec();
    let mut highest = 0;
    for m in &task.matched {
        let number = if task.uid_command {
            Some(m.uid.0)
        } else {
            s.selected.as_deref().and_then(|sel| sel.uids.seq_of(m.uid))
        };
        if let Some(n) = number {
            line.push(b' ');
            wire::number(&mut line, n.into());
            highest = highest.max(m.modseq.0);
        }
    }
    if task.with_modseq && !task.matched.is_empty() {
        line.extend_from_slice(b" (MODSEQ ");
        wire::number(&mut line, highest);
        line.push(b')');
    }
    line.extend_from_slice(b"\r\n");
    s.raw(&line);
}
