//! Files changed by others: before a mailbox is read, its `cur/` and `new/` are compared
//! with the last scan (by their mtimes) and, on a difference, listed again; vanished
//! files become expunges and unknown ones new UIDs, published like the store's own.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::time::{Duration, SystemTime};

use super::dovecot::{self, DovecotKeywords};
use super::files::{self, base_of, Sub};
use super::inner::{Batch, Inner, MailboxState};
use super::uidlist::FileRef;
use crate::store::error::StoreError;
use crate::store::index::MailboxIndex;
use crate::types::{Address, Change, Flags, Uid, INBOX};

/// How close to "now" a directory mtime must be to be distrusted: a change within the
/// same file-system clock tick as the scan would not change it.
const MTIME_SLACK: Duration = Duration::from_secs(2);

impl MailboxState {
    /// Brings the index up to date with the files, if the directories changed since the
    /// last scan.
    pub(super) fn refresh(&mut self, inner: &Inner, account: &Address) -> Result<(), StoreError> {
        let mtime = |sub: &str| std::fs::metadata(self.dir.join(sub)).and_then(|m| m.modified());
        let (cur, new) = match (mtime("cur"), mtime("new")) {
            (Ok(cur), Ok(new)) => (cur, new),
            (Err(e), _) | (_, Err(e)) if e.kind() == io::ErrorKind::NotFound => {
                return self.vanished(inner, account);
            }
            (Err(e), _) | (_, Err(e)) => {
                return Err(StoreError::io(format!("reading {}", self.dir.display()), e))
            }
        };
        if self.scanned == Some((cur, new)) {
            return Ok(());
        }
        let scan_start = SystemTime::now();
        self.scan(inner, account)?;
        let trusted = |t: SystemTime| t + MTIME_SLACK < scan_start;
        self.scanned = (trusted(cur) && trusted(new)).then_some((cur, new));
        Ok(())
    }

    /// The mailbox directory is gone (deleted by expiry or by hand).
    pub(super) fn vanished(&mut self, inner: &Inner, account: &Address) -> Result<(), StoreError> {
        if self.name != INBOX {
            return Err(StoreError::NoSuchMailbox(self.name.clone()));
        }
        if !self.indexed {
            return Ok(()); // reset already; recreated on the next write
        }
        // The account was removed: whatever comes next is a new mailbox.
        self.index = MailboxIndex::new(inner.new_uid_validity()?);
        self.usage.update(self.index.size);
        self.by_base.clear();
        self.indexed = false;
        self.log_records = 0;
        self.scanned = None;
        inner.hub.publish(
            account,
            [Change::MailboxReset {
                mailbox: self.name.clone(),
            }],
        );
        Ok(())
    }

    /// The message files in `new/` and `cur/` by base name, without those being written.
    pub(super) fn list_files(&self) -> Result<HashMap<String, FileRef>, StoreError> {
        let mut on_disk: HashMap<String, FileRef> = HashMap::new();
        for sub in [Sub::New, Sub::Cur] {
            let dir = self.dir.join(sub.dir());
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?;
            for entry in entries {
                let entry = entry.map_err(|e| StoreError::io("listing messages", e))?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue; // not a name any maildir writer makes
                };
                if name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_file()) {
                    continue;
                }
                let base = base_of(&name).to_string();
                if self.pending.contains(&base) {
                    continue;
                }
                on_disk.insert(base, FileRef { sub, name });
            }
        }
        Ok(on_disk)
    }

    /// Size, internal date and flags of a message file someone else wrote; `None` if
    /// it was deleted meanwhile.
    ///
    /// The size is the one the message is served with ([`files::served_size`]: Dovecot's
    /// `,W=`, with CRLF line ends), so that RFC822.SIZE, SEARCH LARGER and SMALLER and
    /// partial fetches agree with the bytes served and with what Dovecot served. Quota
    /// usage (the index's sum of sizes) counts the same figure: the store's own messages
    /// are counted by their CRLF bytes too, so every message counts alike; Dovecot's
    /// quota counted the LF size (`,S=`), a few percent less. Trimming to the quota still
    /// goes by `,S=` as the reference does (`maintenance`).
    pub(super) fn found_meta(
        &self,
        inner: &Inner,
        base: &str,
        file: &FileRef,
        keywords: &mut Option<DovecotKeywords>,
    ) -> Option<(u64, i64, Flags)> {
        let path = self.path(file);
        let metadata = std::fs::metadata(&path).ok()?;
        let internal_date = metadata.modified().map(files::unix_secs).unwrap_or(0);
        let size = match files::served_size(base) {
            Some(size) => size,
            None => match File::open(&path)
                .map_err(|e| StoreError::io("opening message", e))
                .and_then(|f| files::read_message(f, &file.name, inner.limits.max_message_bytes))
            {
                Ok(message) => message.len() as u64,
                Err(_) => metadata.len(),
            },
        };
        let mut flags = files::info_flags(&file.name);
        if dovecot::has_keyword_letters(&file.name) {
            keywords
                .get_or_insert_with(|| DovecotKeywords::read(&self.dir))
                .add_to(&file.name, &mut flags, inner.limits.max_keywords);
        }
        Some((size, internal_date, flags))
    }

    pub(super) fn scan(&mut self, inner: &Inner, account: &Address) -> Result<(), StoreError> {
        let mut on_disk = self.list_files()?;
        self.listed = true;
        let mut batch = Batch::default();
        // Gone from disk: expunged by someone else.
        let gone: Vec<Uid> = self
            .index
            .messages
            .iter()
            .filter(|(_, e)| !on_disk.contains_key(e.body.base()))
            .map(|(uid, _)| *uid)
            .collect();
        for uid in gone {
            self.remove(uid, &mut batch);
        }
        // Moved (new/ to cur/) or renamed for flags by someone else: follow the file.
        for entry in self.index.messages.values_mut() {
            if let Some(file) = on_disk.remove(entry.body.base()) {
                entry.body = file;
            }
        }
        // Unknown files: delivered by someone else (Dovecot before us), in delivery order.
        let mut found: Vec<(i64, String, FileRef)> = on_disk
            .into_iter()
            .map(|(base, file)| (files::name_time(&base).unwrap_or(i64::MAX), base, file))
            .collect();
        found.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        if !found.is_empty() {
            self.ensure_on_disk()?;
        }
        let mut keywords = None;
        for (_, base, file) in found {
            let Some(meta_in) = self.found_meta(inner, &base, &file, &mut keywords) else {
                continue; // deleted while we looked
            };
            self.add(meta_in, file, &mut batch)?;
        }
        self.commit(inner, account, batch)
    }
}
