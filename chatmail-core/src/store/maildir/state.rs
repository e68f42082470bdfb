//! One mailbox's state: loading it (replaying its index, or taking over from Dovecot),
//! the cache of loaded states per account, and how a batch of changes becomes durable in
//! the index before it is published on the change feed.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::files;
use super::inner::{AccountDir, Batch, IndexSync, Inner, MailboxState, Scan};
use super::uidlist::{self, FileRef, INDEX_FILE};
use super::usage::UsageShare;
use crate::store::error::StoreError;
use crate::store::index::MailboxIndex;
use crate::store::lock::lock;
use crate::types::{Address, Change, Flags, MessageMeta, Uid, UidValidity, INBOX};

impl AccountDir {
    /// The state of an existing mailbox, loaded (and scanned) on first use.
    pub(super) fn mailbox(
        &self,
        inner: &Inner,
        name: &str,
    ) -> Result<Arc<Mutex<MailboxState>>, StoreError> {
        let mut mailboxes = lock(&self.mailboxes);
        if let Some(state) = mailboxes.get(name) {
            return Ok(state.clone());
        }
        let mut state = self.load(inner, name)?;
        state.usage.attach(state.index.size);
        let state = Arc::new(Mutex::new(state));
        mailboxes.insert(name.to_string(), state.clone());
        Ok(state)
    }

    /// Drops a state from the cache (unless another has replaced it already), so that the
    /// next use loads the mailbox from disk again.
    pub(super) fn forget(&self, name: &str, state: &Arc<Mutex<MailboxState>>) {
        let removed = {
            let mut mailboxes = lock(&self.mailboxes);
            match mailboxes.get(name) {
                Some(cached) if Arc::ptr_eq(cached, state) => mailboxes.remove(name),
                _ => None,
            }
        };
        if let Some(state) = removed {
            lock(&state).usage.detach(true);
        }
    }

    /// Drops the state of a mailbox that is deleted (`reload` false) or renamed, or of an
    /// account that is removed, from the cache. The caller holds the layout lock alone,
    /// so no operation uses the state meanwhile.
    pub(super) fn drop_state(&self, name: &str, reload: bool) {
        let removed = lock(&self.mailboxes).remove(name);
        if let Some(state) = removed {
            lock(&state).usage.detach(reload);
        }
    }

    /// Reads a mailbox's state from disk: its index, else what Dovecot left, else a new
    /// index under a new UIDVALIDITY. INBOX is created if missing.
    pub(super) fn load(&self, inner: &Inner, name: &str) -> Result<MailboxState, StoreError> {
        let dir = self.mailbox_dir(name);
        let mut on_disk = dir.join("cur").is_dir();
        if !on_disk && name != INBOX {
            return Err(StoreError::NoSuchMailbox(name.to_string()));
        }
        if !on_disk {
            // The caller vouches that the account exists (as Dovecot, the maildir is
            // created on first use), and INBOX's UIDVALIDITY must be on disk before
            // anyone sees it.
            files::create_maildir(&dir)
                .map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
            on_disk = true;
        }
        let mut state = MailboxState {
            name: name.to_string(),
            dir,
            index: MailboxIndex::new(UidValidity(0)),
            by_base: HashMap::new(),
            indexed: false,
            log_records: 0,
            scanned: None,
            listed: false,
            pending: HashSet::new(),
            broken: false,
            usage: UsageShare::new(self.usage.clone()),
        };
        let mut missing = false;
        let text = if on_disk {
            match std::fs::read_to_string(state.dir.join(INDEX_FILE)) {
                Ok(text) => Some(text),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    missing = true;
                    None
                }
                // Not UTF-8 (or unreadable): rebuilt below like a broken index.
                Err(e) if e.kind() == io::ErrorKind::InvalidData => None,
                Err(e) => return Err(StoreError::io("reading the mailbox index", e)),
            }
        } else {
            None
        };
        match text.as_deref().and_then(uidlist::replay) {
            Some((index, records, torn)) => {
                state.index = index;
                state.log_records = records;
                for (uid, entry) in &state.index.messages {
                    state.by_base.insert(entry.body.base().to_string(), *uid);
                }
                let corrected = state.correct_adopted_sizes();
                if torn || corrected {
                    state.compact()?;
                } else {
                    state.indexed = true;
                }
            }
            // Never served by this store: Dovecot's UIDs, if it left valid ones. Only
            // then: once this store has given UIDs of its own, Dovecot's list no
            // longer tells them.
            None if missing && state.adopt_dovecot(inner)? => {}
            None => {
                // No index, or an unreadable one: the files get UIDs under a new
                // UIDVALIDITY, so clients drop whatever they cached.
                state.index = MailboxIndex::new(inner.new_uid_validity()?);
                if on_disk {
                    state.compact()?;
                }
            }
        }
        Ok(state)
    }

    /// Runs `op` on a mailbox's state after bringing it up to date with the disk, and
    /// publishes the changes the rescan found. A state whose index write failed is
    /// reloaded first.
    pub(super) fn with_mailbox<T>(
        &self,
        inner: &Inner,
        name: &str,
        scan: Scan,
        op: impl FnOnce(&mut MailboxState) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut op = Some(op);
        for _ in 0..3 {
            let state_arc = self.mailbox(inner, name)?;
            let mut state = lock(&state_arc);
            if state.broken {
                drop(state);
                self.forget(name, &state_arc);
                continue;
            }
            let refreshed = match scan {
                Scan::Yes => state.refresh(inner, &self.address),
                Scan::Once if !state.listed => state.refresh(inner, &self.address),
                // Only a vanished directory matters to a writer.
                _ if !state.dir.join("new").is_dir() => state.refresh(inner, &self.address),
                Scan::Once | Scan::No => Ok(()),
            };
            let result = match refreshed {
                Ok(()) => match op.take() {
                    Some(op) => op(&mut state),
                    None => Err(StoreError::Corrupt("mailbox operation retried".into())),
                },
                Err(e) => Err(e),
            };
            if state.broken || matches!(result, Err(StoreError::NoSuchMailbox(_))) {
                drop(state);
                self.forget(name, &state_arc);
            }
            return result;
        }
        Err(StoreError::Corrupt(format!(
            "index of mailbox {name:?} cannot be reloaded"
        )))
    }
}

impl MailboxState {
    /// Gives the messages taken over from Dovecot the size they are served with
    /// ([`files::served_size`]) where the index still records Dovecot's stored size
    /// (`,S=`), as indexes written before adopted messages were served with CRLF line
    /// ends do. Whether anything changed (the index is then to be rewritten).
    fn correct_adopted_sizes(&mut self) -> bool {
        let stale: Vec<(MessageMeta, FileRef)> = self
            .index
            .messages
            .values()
            .filter_map(|entry| {
                let base = entry.body.base();
                let served = files::served_size(base)?;
                let stale = entry.meta.size != served
                    && !files::written_by_this_store(base)
                    && files::size_field(base) == Some(entry.meta.size);
                stale.then(|| {
                    let meta = MessageMeta {
                        size: served,
                        ..entry.meta.clone()
                    };
                    (meta, entry.body.clone())
                })
            })
            .collect();
        let changed = !stale.is_empty();
        for (meta, body) in stale {
            self.index.restore(meta, body);
        }
        changed
    }

    pub(super) fn path(&self, file: &FileRef) -> PathBuf {
        self.dir.join(file.sub.dir()).join(&file.name)
    }

    /// Rewrites the index file from memory.
    pub(super) fn compact(&mut self) -> Result<(), StoreError> {
        match uidlist::rewrite(&self.dir, &self.index) {
            Ok(()) => {
                self.indexed = true;
                self.log_records = self.index.messages.len();
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(StoreError::io("writing the mailbox index", e))
            }
        }
    }

    /// Creates the mailbox's directories and index if it has none yet (INBOX).
    pub(super) fn ensure_on_disk(&mut self) -> Result<(), StoreError> {
        if self.indexed {
            return Ok(());
        }
        files::create_maildir(&self.dir)
            .map_err(|e| StoreError::io(format!("creating {}", self.dir.display()), e))?;
        self.compact()
    }

    /// Makes `batch`'s records durable, then publishes its changes. On a write failure
    /// the state is marked broken so that it is reloaded from disk.
    pub(super) fn commit(
        &mut self,
        inner: &Inner,
        account: &Address,
        batch: Batch,
    ) -> Result<(), StoreError> {
        self.commit_with(inner, account, batch, IndexSync::Each)
    }

    /// [`MailboxState::commit`], with the records made durable by their own fdatasync
    /// or by the store's next shared barrier (which also covers whatever the caller
    /// wrote before, such as an append's rename). The mailbox lock is held across the
    /// sync either way, so that no one sees a UID before it is durable.
    pub(super) fn commit_with(
        &mut self,
        inner: &Inner,
        account: &Address,
        batch: Batch,
        sync: IndexSync,
    ) -> Result<(), StoreError> {
        let written = match sync {
            IndexSync::Each => self.write_records(&batch).and_then(|file| match file {
                Some(file) => file
                    .sync_data()
                    .map_err(|e| StoreError::io("writing the mailbox index", e)),
                None => Ok(()),
            }),
            IndexSync::Group => self.write_records(&batch).and_then(|_| {
                inner
                    .durability
                    .barrier()
                    .map_err(|e| StoreError::io("writing the mailbox index", e))
            }),
        };
        if let Err(e) = written {
            self.broken = true;
            return Err(e);
        }
        self.publish_commit(inner, account, batch);
        Ok(())
    }

    /// Appends `batch`'s records to the index file, not synced; the file written, for a
    /// caller that syncs it itself. On a failure the caller marks the state broken
    /// (memory and disk may differ).
    pub(super) fn write_records(&mut self, batch: &Batch) -> Result<Option<File>, StoreError> {
        if batch.record_count == 0 {
            return Ok(None);
        }
        if !self.indexed {
            return Err(StoreError::Corrupt("mailbox index is not on disk".into()));
        }
        uidlist::append_records(&self.dir, batch.records.as_bytes())
            .map_err(|e| StoreError::io("writing the mailbox index", e))
    }

    /// After `batch`'s records are durable: counts them, moves the quota usage,
    /// publishes the changes, and compacts an index grown too long.
    pub(super) fn publish_commit(&mut self, inner: &Inner, account: &Address, batch: Batch) {
        self.log_records += batch.record_count;
        self.usage.update(self.index.size);
        inner.hub.publish(account, batch.changes);
        if self.log_records > 2 * self.index.messages.len() + 256 {
            // The records are durable already; if the compaction fails, the state is
            // marked broken and reloads from whichever complete file is on disk.
            let _ = self.compact();
        }
    }

    pub(super) fn add(
        &mut self,
        meta_in: (u64, i64, Flags),
        file: FileRef,
        batch: &mut Batch,
    ) -> Result<MessageMeta, StoreError> {
        let (size, internal_date, flags) = meta_in;
        let base = file.base().to_string();
        let meta = self.index.insert(size, internal_date, flags, file)?;
        self.by_base.insert(base, meta.uid);
        if let Some(entry) = self.index.messages.get(&meta.uid) {
            uidlist::record_add(&meta, &entry.body, &mut batch.records);
            batch.record_count += 1;
        }
        batch.changes.push(Change::Appended {
            mailbox: self.name.clone(),
            meta: meta.clone(),
        });
        Ok(meta)
    }

    pub(super) fn remove(&mut self, uid: Uid, batch: &mut Batch) -> Option<FileRef> {
        let (entry, modseq) = self.index.remove(uid)?;
        self.by_base.remove(entry.body.base());
        uidlist::record_expunge(uid, modseq, &mut batch.records);
        batch.record_count += 1;
        batch.changes.push(Change::Expunged {
            mailbox: self.name.clone(),
            uid,
            modseq,
        });
        Some(entry.body)
    }
}
