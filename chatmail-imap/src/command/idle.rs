//! IDLE/DONE and the announcement of mailbox changes (EXISTS, FETCH, EXPUNGE).
//!
//! A change for the selected mailbox is queued in the session's view; an idling
//! session announces it within the same input call, others at the end of their next
//! command. Changes the client already learnt from its own command (its EXPUNGE,
//! its APPEND) are recognised by UID and not announced twice.

use chatmail_core::Change;

use crate::session::{write_flags_fetch, Mode, Session, State, Task};

/// IDLE: `+ idling`, then changes flow until DONE.
pub(crate) fn idle(s: &mut Session, tag: &str) {
    s.raw(b"+ idling\r\n");
    announce(s, true);
    s.mode = Mode::Idle(tag.to_string());
}

/// The line that ends IDLE.
pub(crate) fn done(s: &mut Session, tag: &str) {
    let line = s_line(s);
    if line.eq_ignore_ascii_case(b"DONE\r\n") {
        s.finish_ok(tag, "Idle completed.");
    } else {
        s.bad(tag, "Expected DONE.");
    }
}

fn s_line(s: &Session) -> Vec<u8> {
    s.framer_command().to_vec()
}

/// Queues (and, in IDLE, announces) a change.
pub(crate) fn handle_change(s: &mut Session, change: &Change) {
    let limit = s.config.max_queued_changes;
    if let Some(p) = s.pending.as_deref_mut() {
        if let Task::Select(task) = &mut p.task {
            if task.mailbox() == change.mailbox() {
                if task.early.len() >= limit {
                    return s.bye("Too many mailbox changes, please reconnect.");
                }
                task.early.push(change.clone());
                return;
            }
        }
    }
    if s.state != State::Selected {
        return;
    }
    let Some(sel) = s.selected.as_deref_mut() else {
        return;
    };
    if sel.name != change.mailbox() {
        return;
    }
    if matches!(change, Change::MailboxReset { .. }) {
        return s.bye("Mailbox was deleted or renamed, please reconnect.");
    }
    if sel.queued.len() >= limit {
        return s.bye("Too many mailbox changes, please reconnect.");
    }
    sel.queued.push(change.clone());
    if s.is_idle() {
        announce(s, true);
    }
}

/// Announces queued changes; EXPUNGEs only when `with_expunges`, else they stay queued.
pub(crate) fn announce(s: &mut Session, with_expunges: bool) {
    let condstore = s.condstore;
    let Some(sel) = s.selected.as_deref_mut() else {
        return;
    };
    if sel.queued.is_empty() {
        return;
    }
    let mut out = Vec::new();
    let mut exists_changed = false;
    let mut kept = Vec::new();
    for change in std::mem::take(&mut sel.queued) {
        match change {
            Change::Appended { meta, .. } => {
                exists_changed |= sel.uids.push(meta.uid);
                sel.highest_modseq = sel.highest_modseq.max(meta.modseq);
            }
            Change::FlagsChanged {
                uid, flags, modseq, ..
            } => {
                sel.highest_modseq = sel.highest_modseq.max(modseq);
                if let Some(seq) = sel.uids.seq_of(uid) {
                    write_flags_fetch(&mut out, seq, uid, &flags, condstore.then_some(modseq));
                }
            }
            Change::Expunged { uid, modseq, .. } => {
                if !with_expunges {
                    kept.push(Change::Expunged {
                        mailbox: String::new(),
                        uid,
                        modseq,
                    });
                    continue;
                }
                sel.highest_modseq = sel.highest_modseq.max(modseq);
                if exists_changed {
                    // Announce new messages before sequence numbers shift.
                    out.extend_from_slice(format!("* {} EXISTS\r\n", sel.uids.len()).as_bytes());
                    exists_changed = false;
                }
                if let Some(seq) = sel.uids.remove(uid) {
                    out.extend_from_slice(format!("* {seq} EXPUNGE\r\n").as_bytes());
                }
            }
            Change::MailboxReset { .. } => {}
        }
    }
    if exists_changed {
        out.extend_from_slice(format!("* {} EXISTS\r\n", sel.uids.len()).as_bytes());
    }
    sel.queued = kept;
    if sel.queued.is_empty() {
        sel.queued = Vec::new();
    }
    s.raw(&out);
}
