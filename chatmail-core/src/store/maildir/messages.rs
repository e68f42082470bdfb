//! Message operations: append (the durable write of a delivery), read, expunge and copy.
//! A message file is written and fsynced outside the mailbox lock; only the index record
//! is written under it.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bytes::Bytes;

use super::durability::Durability;
use super::files::{self, base_of, sync_dir, Sub};
use super::inner::{read_guard, Batch, IndexSync, Inner, MailboxState, Scan};
use super::uidlist::FileRef;
use crate::store::error::StoreError;
use crate::store::index::{check_keywords, sorted_uids};
use crate::store::mail_store::{AppendOutcome, CopyOutcome};
use crate::store::name::validate_mailbox_name;
use crate::types::{Address, Flags, MessageMeta, Uid};

/// Messages picked for a copy: metadata and an open file (which stays readable even if
/// the source is expunged meanwhile).
struct Picked {
    meta: MessageMeta,
    path: PathBuf,
    /// The source file's name, which tells who wrote it.
    name: String,
}

impl Inner {
    /// A base name unique to this process and time, Dovecot-style.
    pub(super) fn new_base(&self, size: u64) -> String {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let seq = self.name_seq.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}.M{}P{}Q{}.{},S={}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            seq,
            self.host,
            size
        )
    }

    pub(super) fn check_size(&self, size: u64) -> Result<(), StoreError> {
        if size > self.limits.max_message_bytes {
            return Err(StoreError::MessageTooLarge {
                size,
                limit: self.limits.max_message_bytes,
            });
        }
        Ok(())
    }

    pub(super) fn with_mailbox<T>(
        &self,
        address: &Address,
        name: &str,
        op: impl FnOnce(&Inner, &mut MailboxState) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let name = validate_mailbox_name(name)?;
        let account = self.account(address);
        let _layout = read_guard(&account.layout);
        account.with_mailbox(self, &name, Scan::Yes, |state| op(self, state))
    }

    /// [`crate::store::MailStore::claim_recent`] on the mailbox state as loaded (a
    /// first load scans the directory once).
    pub(super) fn claim_recent(
        &self,
        address: &Address,
        name: &str,
    ) -> Result<std::ops::Range<Uid>, StoreError> {
        let name = validate_mailbox_name(name)?;
        let account = self.account(address);
        let _layout = read_guard(&account.layout);
        account.with_mailbox(self, &name, Scan::Once, |state| {
            Ok(state.index.claim_recent())
        })
    }

    pub(super) fn append(
        &self,
        address: &Address,
        name: &str,
        message: &[u8],
        flags: Flags,
        internal_date: i64,
    ) -> Result<AppendOutcome, StoreError> {
        let name = validate_mailbox_name(name)?;
        check_keywords(&flags, self.limits.max_keywords)?;
        let size = message.len() as u64;
        self.check_size(size)?;
        let account = self.account(address);
        let _layout = read_guard(&account.layout);
        let base = self.new_base(size);
        let sub = if flags.is_empty() { Sub::New } else { Sub::Cur };
        let file = FileRef {
            sub,
            name: files::file_name(&base, sub, &flags),
        };
        let dir = account.with_mailbox(self, &name, Scan::No, |state| {
            state.ensure_on_disk()?;
            state.pending.insert(base.clone());
            Ok(state.dir.clone())
        })?;
        // The slow part (two fsyncs) runs without the mailbox lock.
        let final_path = dir.join(sub.dir()).join(&file.name);
        let written = files::write_message(
            &dir.join("tmp").join(&base),
            &final_path,
            message,
            internal_date,
            &self.durability,
        );
        let result = written
            .map_err(|e| StoreError::io("writing message", e))
            .and_then(|grouped| {
                account.with_mailbox(self, &name, Scan::No, |state| {
                    state.pending.remove(&base);
                    let mut batch = Batch::default();
                    let meta = state.add((size, internal_date, flags), file, &mut batch)?;
                    let outcome = AppendOutcome {
                        uid_validity: state.index.uid_validity,
                        uid: meta.uid,
                        modseq: meta.modseq,
                    };
                    // Grouped: the rename and the record share the next barrier.
                    let sync = if grouped {
                        IndexSync::Group
                    } else {
                        IndexSync::Each
                    };
                    state.commit_with(self, address, batch, sync)?;
                    Ok(outcome)
                })
            });
        if result.is_err() {
            // Not acknowledged, so not kept: a later scan must not find it.
            let _ = std::fs::remove_file(&final_path);
            let _ = account.with_mailbox(self, &name, Scan::No, |state| {
                state.pending.remove(&base);
                Ok(())
            });
        }
        result
    }

    pub(super) fn read_message(
        &self,
        address: &Address,
        name: &str,
        uid: Uid,
    ) -> Result<Bytes, StoreError> {
        // Opened under the mailbox lock (a concurrent flag change may rename the file),
        // read after it.
        let (file, file_name) = self.with_mailbox(address, name, |_, state| {
            for _ in 0..2 {
                let entry = state
                    .index
                    .messages
                    .get(&uid)
                    .ok_or(StoreError::NoSuchMessage(uid.0))?;
                match File::open(state.path(&entry.body)) {
                    Ok(file) => return Ok((file, entry.body.name.clone())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        // Moved or deleted by someone else since the last scan.
                        state.scanned = None;
                        state.refresh(self, address)?;
                    }
                    Err(e) => return Err(StoreError::io("opening message", e)),
                }
            }
            Err(StoreError::NoSuchMessage(uid.0))
        })?;
        files::read_message(file, &file_name, self.limits.max_message_bytes)
    }

    pub(super) fn expunge(
        &self,
        address: &Address,
        name: &str,
        uids: &[Uid],
    ) -> Result<Vec<Uid>, StoreError> {
        self.with_mailbox(address, name, |inner, state| {
            let (removed, result) = state.expunge(inner, address, uids);
            result.map(|()| removed)
        })
    }

    pub(super) fn copy(
        &self,
        address: &Address,
        from: &str,
        uids: &[Uid],
        to: &str,
    ) -> Result<CopyOutcome, StoreError> {
        let from = validate_mailbox_name(from)?;
        let to = validate_mailbox_name(to)?;
        let account = self.account(address);
        let _layout = read_guard(&account.layout);
        let picked: Vec<Picked> = account.with_mailbox(self, &from, Scan::Yes, |state| {
            let uids = sorted_uids(uids);
            Ok(uids
                .iter()
                .filter_map(|uid| state.index.messages.get(uid))
                .map(|entry| Picked {
                    meta: entry.meta.clone(),
                    path: state.path(&entry.body),
                    name: entry.body.name.clone(),
                })
                .collect())
        })?;
        let planned: Vec<(Picked, String, FileRef)> = picked
            .into_iter()
            .map(|p| {
                let base = self.new_base(p.meta.size);
                let sub = if p.meta.flags.is_empty() {
                    Sub::New
                } else {
                    Sub::Cur
                };
                let file = FileRef {
                    sub,
                    name: files::file_name(&base, sub, &p.meta.flags),
                };
                (p, base, file)
            })
            .collect();
        let dir = account.with_mailbox(self, &to, Scan::No, |state| {
            state.ensure_on_disk()?;
            state
                .pending
                .extend(planned.iter().map(|(_, base, _)| base.clone()));
            Ok(state.dir.clone())
        })?;
        // Hard links share the (immutable) file, as Dovecot's maildir copy does; a
        // message whose source vanished meanwhile is not copied.
        let mut copied = Vec::with_capacity(planned.len());
        let mut failure = None;
        for (picked, base, file) in planned.iter() {
            let target = dir.join(file.sub.dir()).join(&file.name);
            let write_copy = || -> io::Result<()> {
                let source = File::open(&picked.path)?;
                let message =
                    files::read_message(source, &picked.name, self.limits.max_message_bytes)
                        .map_err(|e| io::Error::other(e.to_string()))?;
                // Copies sync file by file: the directories are synced below, once.
                files::write_message(
                    &dir.join("tmp").join(base),
                    &target,
                    &message,
                    picked.meta.internal_date,
                    &Durability::each_file(),
                )
                .map(|_| ())
            };
            let linked = if files::written_by_this_store(base_of(&picked.name)) {
                std::fs::hard_link(&picked.path, &target).or_else(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        return Err(e);
                    }
                    write_copy()
                })
            } else {
                // Another program's file may be gzip-compressed, and a file under this
                // store's name is never decompressed: the copy is written plain.
                write_copy()
            };
            match linked {
                Ok(()) => copied.push((picked, base, file, target)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    failure = Some(StoreError::io("copying message", e));
                    break;
                }
            }
        }
        let synced = [Sub::New, Sub::Cur]
            .iter()
            .try_for_each(|sub| sync_dir(&dir.join(sub.dir())))
            .map_err(|e| StoreError::io("copying message", e));
        let result = match failure.or(synced.err()) {
            Some(e) => Err(e),
            None => account.with_mailbox(self, &to, Scan::No, |state| {
                let mut batch = Batch::default();
                let mut outcome = CopyOutcome {
                    uid_validity: state.index.uid_validity,
                    mapping: Vec::with_capacity(copied.len()),
                };
                for (picked, base, file, _) in &copied {
                    state.pending.remove(*base);
                    let meta = (
                        picked.meta.size,
                        picked.meta.internal_date,
                        picked.meta.flags.clone(),
                    );
                    let new = state.add(meta, (*file).clone(), &mut batch)?;
                    outcome.mapping.push((picked.meta.uid, new.uid));
                }
                state.commit(self, address, batch)?;
                Ok(outcome)
            }),
        };
        if result.is_err() {
            for (_, _, _, target) in &copied {
                let _ = std::fs::remove_file(target);
            }
            let _ = account.with_mailbox(self, &to, Scan::No, |state| {
                for (_, base, _) in &planned {
                    state.pending.remove(base);
                }
                Ok(())
            });
        }
        result
    }
}

impl MailboxState {
    /// Removes exactly the messages `uids` (IMAP EXPUNGE, expiry, trimming): each file
    /// first, then the index records, then the [`Change::Expunged`]s are published.
    /// Returns the UIDs removed, ascending, also when a later one failed (they stay
    /// removed and recorded), with the failure.
    ///
    /// [`Change::Expunged`]: crate::Change::Expunged
    pub(super) fn expunge(
        &mut self,
        inner: &Inner,
        account: &Address,
        uids: &[Uid],
    ) -> (Vec<Uid>, Result<(), StoreError>) {
        let uids = sorted_uids(uids);
        let mut batch = Batch::default();
        let mut removed = Vec::new();
        let mut touched = BTreeSet::new();
        let mut failure = None;
        for uid in uids {
            let Some(entry) = self.index.messages.get(&uid) else {
                continue;
            };
            // File first: if the index record were written first and the unlink
            // failed, a later scan would bring the message back under a new UID.
            match std::fs::remove_file(self.path(&entry.body)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    failure = Some(StoreError::io("deleting message", e));
                    break;
                }
            }
            touched.insert(entry.body.sub.dir());
            self.remove(uid, &mut batch);
            removed.push(uid);
        }
        for sub in touched {
            if let Err(e) = sync_dir(&self.dir.join(sub)) {
                failure.get_or_insert(StoreError::io("expunging", e));
            }
        }
        // What was removed is recorded even if a later message failed.
        let result = self.commit(inner, account, batch).and(match failure {
            Some(e) => Err(e),
            None => Ok(()),
        });
        (removed, result)
    }
}
