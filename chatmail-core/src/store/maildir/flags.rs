//! Flag changes (IMAP STORE): the index first plans them, the message files are renamed
//! to carry the new maildir info letters (and move to `cur/`), then the index records
//! them with new modseqs.

use std::io;

use super::dovecot::{self, DovecotKeywords};
use super::files::{self, Sub};
use super::inner::{Batch, Inner};
use super::uidlist::{self, FileRef};
use crate::store::error::StoreError;
use crate::store::index::{check_keywords, flag_changes};
use crate::store::mail_store::StoreFlagsOutcome;
use crate::store::name::validate_mailbox_name;
use crate::types::{Address, Flag, FlagOp, Flags, ModSeq, Uid};

impl Inner {
    pub(super) fn store_flags(
        &self,
        address: &Address,
        name: &str,
        uids: &[Uid],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<ModSeq>,
    ) -> Result<StoreFlagsOutcome, StoreError> {
        validate_mailbox_name(name)?;
        check_keywords(flags, self.limits.max_keywords)?;
        self.with_mailbox(address, name, |inner, state| {
            let plan = state.index.plan_flags(
                uids,
                op,
                flags,
                unchanged_since,
                inner.limits.max_keywords,
            )?;
            // Keep the maildir info letters in step (and move to cur/), so maildir
            // readers and the expiry's "large message in cur/" rule see what IMAP sees.
            // Dovecot's keyword letters stay in the name (and keywords it numbered get
            // theirs), so that Dovecot reads the same keywords should it take over again.
            let mut keywords: Option<DovecotKeywords> = None;
            let mut wanted = plan
                .changes
                .iter()
                .flat_map(|(_, flags)| flags.iter())
                .filter_map(|flag| match flag {
                    Flag::Keyword(keyword) => Some(keyword.as_str()),
                    _ => None,
                })
                .peekable();
            if wanted.peek().is_some() {
                let mut known = DovecotKeywords::read(&state.dir);
                known.number_missing(&state.dir, wanted);
                keywords = Some(known);
            }
            let mut moves = Vec::new();
            for (uid, new_flags) in &plan.changes {
                if let Some(entry) = state.index.messages.get(uid) {
                    let letters = if dovecot::has_keyword_letters(&entry.body.name)
                        || new_flags.iter().any(|f| matches!(f, Flag::Keyword(_)))
                    {
                        keywords
                            .get_or_insert_with(|| DovecotKeywords::read(&state.dir))
                            .info_letters(&entry.body.name, &entry.meta.flags, new_flags)
                    } else {
                        String::new()
                    };
                    let moved = FileRef {
                        sub: Sub::Cur,
                        name: files::cur_name(entry.body.base(), new_flags, &letters),
                    };
                    if moved != entry.body {
                        match std::fs::rename(state.path(&entry.body), state.path(&moved)) {
                            Ok(()) => moves.push((*uid, moved)),
                            // Gone meanwhile: the next scan expunges it.
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => return Err(StoreError::io("renaming message", e)),
                        }
                    }
                }
            }
            for (uid, moved) in moves {
                if let Some(entry) = state.index.messages.get_mut(&uid) {
                    entry.body = moved;
                }
            }
            let outcome = state.index.apply_plan(plan);
            let mut batch = Batch {
                changes: flag_changes(&state.name, &outcome.modified),
                ..Batch::default()
            };
            for meta in &outcome.modified {
                if let Some(entry) = state.index.messages.get(&meta.uid) {
                    uidlist::record_flags(meta, &entry.body, &mut batch.records);
                    batch.record_count += 1;
                }
            }
            state.commit(inner, address, batch)?;
            Ok(outcome)
        })
    }
}
