//! The `maildir` backend: the reference relay's mail layout on disk.
//!
//! ```text
//! <mailboxes_dir>/<addr>/cur/ new/ tmp/          INBOX
//! <mailboxes_dir>/<addr>/chatmail-uidlist        INBOX's index (this backend's)
//! <mailboxes_dir>/<addr>/chatmail-subscriptions  subscribed mailboxes, one per line
//! <mailboxes_dir>/<addr>/.<Name>/cur/ new/ tmp/  mailbox <Name> (Maildir++), with its own
//! <mailboxes_dir>/<addr>/.<Name>/chatmail-uidlist  index and a `maildirfolder` marker
//! ```
//!
//! The other files of an account directory (`password`, `enforceE2EEincoming`,
//! `metadata.json`, Dovecot's `dovecot*` and `maildirsize`) belong to others and are
//! never written. Messages already there, as Dovecot wrote them (`new/` or `cur/`, plain
//! or gzip-compressed, `,S=<size>` in the name), are listed and read like the store's
//! own.
//!
//! # Taking over from Dovecot
//!
//! A mailbox without an index of this store's gets one when first opened. If Dovecot
//! served it before and left a valid `dovecot-uidlist` (format 3; see the `dovecot`
//! module for the format and its bounds), the index takes on Dovecot's UIDVALIDITY and
//! the UIDs of the listed files that exist, and UIDNEXT continues from the larger of
//! Dovecot's and one more than the highest UID taken on; files Dovecot did not list get
//! UIDs from there, in delivery order. Clients then keep their caches. HIGHESTMODSEQ
//! starts above any Dovecot can have reached (Dovecot's own is in its binary index, not
//! read), so a CONDSTORE client's cached value is never ahead of the mailbox. Flags
//! come from the maildir info letters: upper-case ones are system flags, lower-case
//! ones keywords numbered in `dovecot-keywords` (at most `max_keywords` per message).
//! Without a valid `dovecot-uidlist` (missing, unreadable, too large, malformed), the
//! mailbox gets a new UIDVALIDITY and UIDs in delivery order, and clients resynchronise.
//! Dovecot's files are only read once: the takeover is recorded in [`ADOPTED_FILE`]
//! before the index is written, and an index of this store's that became unreadable or
//! went missing after a takeover is rebuilt under a new UIDVALIDITY, since UIDs given
//! after the takeover are not in Dovecot's list.
//!
//! UIDVALIDITY values are unique per `mailboxes_dir`: [`UID_VALIDITY_FILE`] reserves
//! the values handed out, and an adopted value is reserved too, so every value handed
//! out later (also after a restart) is larger than any adopted one. A mailbox deleted
//! and created again, or rebuilt, never gets a UIDVALIDITY it had before.
//!
//! # Durability
//!
//! An append writes `tmp/<name>`, fsyncs it, renames it into `new/` (or `cur/` when it
//! has flags), fsyncs that directory, then appends the UID record to the mailbox's
//! [`INDEX_FILE`] and fsyncs that, all before it returns: three fsyncs per message.
//! UIDNEXT and the highest modseq are in the index, so UIDs never repeat across a restart.
//!
//! # Files changed by others
//!
//! The daily expiry deletes message files and whole account directories behind the
//! store's back. Every operation that reads a mailbox first compares the mtimes of its
//! `cur/` and `new/` with those of its last scan, and rescans on a difference (or when
//! they are so recent that a change in the same clock tick could hide). Appends do not
//! scan: a file found later just gets a later UID. A rescan turns
//! vanished files into expunges and unknown files into new UIDs, both published
//! on the change feed. An INBOX whose directory vanished starts over with a new
//! UIDVALIDITY.
//!
//! # Concurrency
//!
//! One process owns a `mailboxes_dir`; within it any number of threads may work on the
//! same mailbox. Each mailbox has a lock held while its index changes; the message file
//! of an append is written and fsynced outside that lock, so appenders to one mailbox
//! only queue for the index write. Each account has a readers-writer lock: message
//! operations share it, CREATE/DELETE/RENAME/SUBSCRIBE take it alone.
//!
//! # Blocking
//!
//! All file-system work runs in jobs handed to the store's
//! [`BlockingExecutor`](crate::BlockingExecutor). The default,
//! [`InlineExecutor`](crate::InlineExecutor), runs them on the thread that
//! polls the future, which blocks it for the length of the fsyncs (milliseconds): right
//! for tests and blocking programs. An async program passes an executor that runs jobs
//! where blocking is allowed (`tokio::task::spawn_blocking`) via
//! [`MaildirStore::with_executor`].

mod dovecot;
mod files;
mod uidlist;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use self::dovecot::DovecotKeywords;
use self::files::{base_of, sync_dir, write_replace, Sub};
use self::uidlist::FileRef;
use super::index::{check_keywords, sorted_uids, MailboxIndex};
use super::memory::{flag_changes, renamed_names};
use super::{lock, validate_mailbox_name, AppendOutcome, ChangeHub, ChangeSubscription};
use super::{CopyOutcome, MailStore, StoreError, StoreFlagsOutcome, StoreLimits};
use crate::executor::{run_blocking, BlockingExecutor, InlineExecutor};
use crate::types::{Address, Change, FlagOp, Flags, MailboxInfo, MailboxStatus, MessageMeta};
use crate::types::{ModSeq, SpecialUse, Uid, UidValidity, INBOX};

pub use self::uidlist::INDEX_FILE;

/// The account-level file listing subscribed mailboxes, one name per line. When it is
/// missing, Dovecot's `subscriptions` file is read instead.
pub const SUBSCRIPTIONS_FILE: &str = "chatmail-subscriptions";

/// Dovecot's subscriptions file (first line `V\t2`, then names), read if ours is missing.
const DOVECOT_SUBSCRIPTIONS_FILE: &str = "subscriptions";

/// The file in a mailbox directory that records that this store took over Dovecot's UIDs
/// there (it holds the adopted UIDVALIDITY). It is written before the index and outlives
/// it: if the index is lost, the mailbox is not adopted a second time (which could hand
/// out UIDs already used under that UIDVALIDITY) but gets a new UIDVALIDITY.
pub const ADOPTED_FILE: &str = "chatmail-dovecot-adopted";

/// The file in `mailboxes_dir` that reserves UIDVALIDITY values across restarts (its name
/// has no `@`, so the expiry does not take it for an account).
pub const UID_VALIDITY_FILE: &str = "chatmail-uidvalidity";

/// How many UIDVALIDITY values one write of [`UID_VALIDITY_FILE`] reserves.
const UID_VALIDITY_BLOCK: u32 = 1024;

/// How far ahead of the clock a UIDVALIDITY taken from Dovecot may be (Dovecot's are
/// creation times, or one more than the last it gave).
const MAX_ADOPTED_UID_VALIDITY_AHEAD: u32 = 30 * 24 * 3600;

/// Maildir++ marks a folder directory with this empty file.
const FOLDER_MARKER: &str = "maildirfolder";

/// Accounts whose state stays cached; beyond this, unused ones are dropped (their state
/// is on disk and reloads on the next access).
const MAX_CACHED_ACCOUNTS: usize = 4096;

/// How close to "now" a directory mtime must be to be distrusted: a change within the
/// same file-system clock tick as the scan would not change it.
const MTIME_SLACK: Duration = Duration::from_secs(2);

/// A [`MailStore`] on the reference relay's maildir layout; see the
/// [module docs](self) for the layout, durability and concurrency.
pub struct MaildirStore {
    inner: Arc<Inner>,
    executor: Arc<dyn BlockingExecutor>,
}

impl std::fmt::Debug for MaildirStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaildirStore")
            .field("root", &self.inner.root)
            .field("limits", &self.inner.limits)
            .finish()
    }
}

struct Inner {
    root: PathBuf,
    limits: StoreLimits,
    hub: ChangeHub,
    accounts: Mutex<HashMap<Address, Arc<AccountDir>>>,
    uid_validity: Mutex<IssuedUidValidity>,
    /// Makes the names of files this process writes unique (with the pid and the time).
    name_seq: AtomicU64,
    host: String,
}

/// UIDVALIDITY values handed out: the last one, and the end of the block reserved on disk.
struct IssuedUidValidity {
    last: u32,
    reserved_until: u32,
}

struct AccountDir {
    address: Address,
    path: PathBuf,
    /// Shared by message operations, exclusive for CREATE/DELETE/RENAME/SUBSCRIBE.
    layout: RwLock<()>,
    mailboxes: Mutex<HashMap<String, Arc<Mutex<MailboxState>>>>,
}

struct MailboxState {
    name: String,
    dir: PathBuf,
    index: MailboxIndex<FileRef>,
    /// Base file name to UID, for the rescan.
    by_base: HashMap<String, Uid>,
    /// The index opened for appending; `None` while the mailbox has no directory yet
    /// (INBOX of an account that never got mail).
    log: Option<File>,
    log_records: usize,
    /// Mtimes of `cur/` and `new/` at the last scan, if they can be trusted.
    scanned: Option<(SystemTime, SystemTime)>,
    /// Base names being written by an append or copy, not to be taken for foreign files.
    pending: HashSet<String>,
    /// An index write failed: memory and disk may differ, reload before the next use.
    broken: bool,
}

/// Whether an operation needs the index in step with files changed by others. Readers
/// do; appends do not (a message found later simply gets a later UID), which keeps a
/// delivery from reading a large directory.
#[derive(Clone, Copy)]
enum Scan {
    Yes,
    No,
}

/// Lines for the index, and changes to publish once they are durable.
#[derive(Default)]
struct Batch {
    records: String,
    record_count: usize,
    changes: Vec<Change>,
}

impl MaildirStore {
    /// Serves the maildirs under `mailboxes_dir` (created if missing), running file-system
    /// work inline (see the module docs on blocking).
    pub fn open(mailboxes_dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = mailboxes_dir.into();
        std::fs::create_dir_all(&root)
            .map_err(|e| StoreError::io(format!("creating {}", root.display()), e))?;
        let reserved = match std::fs::read_to_string(root.join(UID_VALIDITY_FILE)) {
            Ok(text) => text.trim().parse().map_err(|_| {
                StoreError::Corrupt(format!("{UID_VALIDITY_FILE} holds {text:?}, not a number"))
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(StoreError::io(format!("reading {UID_VALIDITY_FILE}"), e)),
        };
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect::<String>();
        Ok(MaildirStore {
            inner: Arc::new(Inner {
                root,
                limits: StoreLimits::default(),
                hub: ChangeHub::new(),
                accounts: Mutex::new(HashMap::new()),
                uid_validity: Mutex::new(IssuedUidValidity {
                    last: reserved,
                    reserved_until: reserved,
                }),
                name_seq: AtomicU64::new(0),
                host: if host.is_empty() {
                    "localhost".into()
                } else {
                    host
                },
            }),
            executor: Arc::new(InlineExecutor),
        })
    }

    /// Runs file-system work through `executor` (e.g. one that calls
    /// `tokio::task::spawn_blocking`).
    pub fn with_executor(mut self, executor: Arc<dyn BlockingExecutor>) -> Self {
        self.executor = executor;
        self
    }

    /// Uses other bounds (only before the store is shared).
    pub fn with_limits(mut self, limits: StoreLimits) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.limits = limits;
        }
        self
    }

    /// Publishes on (and subscribes from) `hub` instead of the store's own, so that other
    /// components share one change feed.
    pub fn with_hub(mut self, hub: ChangeHub) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.hub = hub;
        }
        self
    }

    /// The change feed's publishing side.
    pub fn hub(&self) -> &ChangeHub {
        &self.inner.hub
    }

    /// The `mailboxes_dir` served.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    async fn run<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        run_blocking(&*self.executor, move || job(&inner)).await?
    }
}

fn read_guard(l: &RwLock<()>) -> std::sync::RwLockReadGuard<'_, ()> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write_guard(l: &RwLock<()>) -> std::sync::RwLockWriteGuard<'_, ()> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn now_secs() -> i64 {
    files::unix_secs(SystemTime::now())
}

impl Inner {
    fn account(&self, address: &Address) -> Arc<AccountDir> {
        let mut accounts = lock(&self.accounts);
        if accounts.len() >= MAX_CACHED_ACCOUNTS && !accounts.contains_key(address) {
            accounts.retain(|_, account| Arc::strong_count(account) > 1);
        }
        accounts
            .entry(address.clone())
            .or_insert_with(|| {
                Arc::new(AccountDir {
                    address: address.clone(),
                    path: self.root.join(address.as_str()),
                    layout: RwLock::new(()),
                    mailboxes: Mutex::new(HashMap::new()),
                })
            })
            .clone()
    }

    /// A UIDVALIDITY never handed out before for this `mailboxes_dir`: the current
    /// time, or one more than the last if that is not later. Values are reserved in
    /// blocks in [`UID_VALIDITY_FILE`], so a restart (or a clock that went back) cannot
    /// hand out one again: a mailbox deleted and created again always gets a new one.
    fn new_uid_validity(&self) -> Result<UidValidity, StoreError> {
        let mut issued = lock(&self.uid_validity);
        let now = u32::try_from(now_secs()).unwrap_or(u32::MAX);
        let next = now.max(issued.last.saturating_add(1));
        self.reserve_uid_validity(&mut issued, next)?;
        Ok(UidValidity(next))
    }

    /// Takes on a mailbox's UIDVALIDITY from Dovecot: reserves it in
    /// [`UID_VALIDITY_FILE`] so that [`Inner::new_uid_validity`] only hands out later
    /// values from now on, even after a restart. `false` (nothing reserved) for a value
    /// so far ahead of the clock that the values after it could run out.
    fn adopt_uid_validity(&self, value: u32) -> Result<bool, StoreError> {
        let now = u32::try_from(now_secs()).unwrap_or(u32::MAX);
        if value == 0 || value > now.saturating_add(MAX_ADOPTED_UID_VALIDITY_AHEAD) {
            return Ok(false);
        }
        let mut issued = lock(&self.uid_validity);
        self.reserve_uid_validity(&mut issued, value)?;
        Ok(true)
    }

    /// Records `value` as used, first extending the reservation on disk if it does not
    /// cover `value` yet.
    fn reserve_uid_validity(
        &self,
        issued: &mut IssuedUidValidity,
        value: u32,
    ) -> Result<(), StoreError> {
        if value >= issued.reserved_until {
            let reserved_until = value.saturating_add(UID_VALIDITY_BLOCK);
            write_replace(
                &self.root,
                UID_VALIDITY_FILE,
                format!("{reserved_until}\n").as_bytes(),
            )
            .map_err(|e| StoreError::io("reserving UIDVALIDITY values", e))?;
            issued.reserved_until = reserved_until;
        }
        issued.last = issued.last.max(value);
        Ok(())
    }

    /// A base name unique to this process and time, Dovecot-style.
    fn new_base(&self, size: u64) -> String {
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

    fn check_size(&self, size: u64) -> Result<(), StoreError> {
        if size > self.limits.max_message_bytes {
            return Err(StoreError::MessageTooLarge {
                size,
                limit: self.limits.max_message_bytes,
            });
        }
        Ok(())
    }
}

impl AccountDir {
    fn mailbox_dir(&self, name: &str) -> PathBuf {
        if name == INBOX {
            self.path.clone()
        } else {
            self.path.join(format!(".{name}"))
        }
    }

    /// The names of the account's folders on disk (not INBOX), sorted.
    fn folder_names(&self) -> Result<BTreeSet<String>, StoreError> {
        let mut names = BTreeSet::new();
        let entries = match std::fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
            Err(e) => {
                return Err(StoreError::io(
                    format!("listing {}", self.path.display()),
                    e,
                ))
            }
        };
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("listing mailboxes", e))?;
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix('.'))
                .map(String::from)
            else {
                continue;
            };
            // Only valid names with a maildir inside; INBOX is not a folder.
            if validate_mailbox_name(&name).is_ok_and(|n| n == name && n != INBOX)
                && entry.path().join("cur").is_dir()
            {
                names.insert(name);
            }
        }
        Ok(names)
    }

    fn subscriptions(&self) -> Result<BTreeSet<String>, StoreError> {
        let read = |file: &str| match std::fs::read_to_string(self.path.join(file)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(format!("reading {file}"), e)),
        };
        let text = match read(SUBSCRIPTIONS_FILE)? {
            Some(text) => text,
            None => read(DOVECOT_SUBSCRIPTIONS_FILE)?.unwrap_or_default(),
        };
        Ok(text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with("V\t"))
            .filter_map(|line| validate_mailbox_name(line).ok())
            .collect())
    }

    fn save_subscriptions(&self, names: &BTreeSet<String>) -> Result<(), StoreError> {
        let mut text = String::new();
        for name in names {
            text.push_str(name);
            text.push('\n');
        }
        write_replace(&self.path, SUBSCRIPTIONS_FILE, text.as_bytes())
            .map_err(|e| StoreError::io("writing subscriptions", e))
    }

    /// The state of an existing mailbox, loaded (and scanned) on first use.
    fn mailbox(&self, inner: &Inner, name: &str) -> Result<Arc<Mutex<MailboxState>>, StoreError> {
        let mut mailboxes = lock(&self.mailboxes);
        if let Some(state) = mailboxes.get(name) {
            return Ok(state.clone());
        }
        let state = Arc::new(Mutex::new(self.load(inner, name)?));
        mailboxes.insert(name.to_string(), state.clone());
        Ok(state)
    }

    fn forget(&self, name: &str, state: &Arc<Mutex<MailboxState>>) {
        let mut mailboxes = lock(&self.mailboxes);
        if mailboxes.get(name).is_some_and(|s| Arc::ptr_eq(s, state)) {
            mailboxes.remove(name);
        }
    }

    fn load(&self, inner: &Inner, name: &str) -> Result<MailboxState, StoreError> {
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
            log: None,
            log_records: 0,
            scanned: None,
            pending: HashSet::new(),
            broken: false,
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
                if torn {
                    state.compact()?;
                } else {
                    let log = std::fs::OpenOptions::new()
                        .append(true)
                        .open(state.dir.join(INDEX_FILE))
                        .map_err(|e| StoreError::io("opening the mailbox index", e))?;
                    state.log = Some(log);
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
    fn with_mailbox<T>(
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
                // Only a vanished directory matters to a writer.
                Scan::No if !state.dir.join("new").is_dir() => state.refresh(inner, &self.address),
                Scan::No => Ok(()),
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
    fn path(&self, file: &FileRef) -> PathBuf {
        self.dir.join(file.sub.dir()).join(&file.name)
    }

    /// Rewrites the index file from memory and reopens it for appending.
    fn compact(&mut self) -> Result<(), StoreError> {
        match uidlist::rewrite(&self.dir, &self.index) {
            Ok(file) => {
                self.log = Some(file);
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
    fn ensure_on_disk(&mut self) -> Result<(), StoreError> {
        if self.log.is_some() {
            return Ok(());
        }
        files::create_maildir(&self.dir)
            .map_err(|e| StoreError::io(format!("creating {}", self.dir.display()), e))?;
        self.compact()
    }

    /// Makes `batch`'s records durable, then publishes its changes. On a write failure
    /// the state is marked broken so that it is reloaded from disk.
    fn commit(&mut self, inner: &Inner, account: &Address, batch: Batch) -> Result<(), StoreError> {
        if batch.record_count > 0 {
            let Some(log) = self.log.as_mut() else {
                self.broken = true;
                return Err(StoreError::Corrupt("mailbox index is not open".into()));
            };
            if let Err(e) = log
                .write_all(batch.records.as_bytes())
                .and_then(|()| log.sync_data())
            {
                self.broken = true;
                return Err(StoreError::io("writing the mailbox index", e));
            }
            self.log_records += batch.record_count;
        }
        inner.hub.publish(account, batch.changes);
        if self.log_records > 2 * self.index.messages.len() + 256 {
            // The records are durable already; if the compaction fails, the state is
            // marked broken and reloads from whichever complete file is on disk.
            let _ = self.compact();
        }
        Ok(())
    }

    fn add(
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

    fn remove(&mut self, uid: Uid, batch: &mut Batch) -> Option<FileRef> {
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

    /// Brings the index up to date with the files, if the directories changed since the
    /// last scan.
    fn refresh(&mut self, inner: &Inner, account: &Address) -> Result<(), StoreError> {
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
    fn vanished(&mut self, inner: &Inner, account: &Address) -> Result<(), StoreError> {
        if self.name != INBOX {
            return Err(StoreError::NoSuchMailbox(self.name.clone()));
        }
        if self.log.is_none() {
            return Ok(()); // reset already; recreated on the next write
        }
        // The account was removed: whatever comes next is a new mailbox.
        self.index = MailboxIndex::new(inner.new_uid_validity()?);
        self.by_base.clear();
        self.log = None;
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
    fn list_files(&self) -> Result<HashMap<String, FileRef>, StoreError> {
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
    fn found_meta(
        &self,
        inner: &Inner,
        base: &str,
        file: &FileRef,
        keywords: &mut Option<DovecotKeywords>,
    ) -> Option<(u64, i64, Flags)> {
        let path = self.path(file);
        let metadata = std::fs::metadata(&path).ok()?;
        let internal_date = metadata.modified().map(files::unix_secs).unwrap_or(0);
        let size = match files::size_field(base) {
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

    /// Takes on the UIDVALIDITY and UIDs of Dovecot's `dovecot-uidlist` for the files
    /// it lists, and writes the index. `false` (nothing changed) without a valid one.
    /// Files it does not list are left to the next scan, which numbers them from
    /// UIDNEXT on: Dovecot's, or one more than the highest UID taken on.
    fn adopt_dovecot(&mut self, inner: &Inner) -> Result<bool, StoreError> {
        // Adopted once already: UIDs given since are not in Dovecot's list.
        if self.dir.join(ADOPTED_FILE).exists() {
            return Ok(false);
        }
        let Some(dovecot) = dovecot::read_uidlist(&self.dir) else {
            return Ok(false);
        };
        if !inner.adopt_uid_validity(dovecot.uid_validity)? {
            return Ok(false);
        }
        files::write_replace(
            &self.dir,
            ADOPTED_FILE,
            format!("{}\n", dovecot.uid_validity).as_bytes(),
        )
        .map_err(|e| StoreError::io("recording the takeover from Dovecot", e))?;
        let mut index = MailboxIndex::new(UidValidity(dovecot.uid_validity));
        index.uid_next = Uid(dovecot.next_uid);
        // Clients keep the HIGHESTMODSEQ Dovecot told them; ours must not be lower.
        index.highest_modseq = adopted_modseq_floor();
        let mut listed: Vec<(Uid, String, FileRef)> = self
            .list_files()?
            .into_iter()
            .filter_map(|(base, file)| Some((*dovecot.uids.get(&base)?, base, file)))
            .collect();
        listed.sort_unstable_by_key(|(uid, _, _)| *uid);
        let mut keywords = None;
        for (uid, base, file) in listed {
            let Some((size, internal_date, flags)) =
                self.found_meta(inner, &base, &file, &mut keywords)
            else {
                continue;
            };
            let modseq = index.bump_modseq();
            let meta = MessageMeta {
                uid,
                size,
                internal_date,
                flags,
                modseq,
            };
            index.restore(meta, file);
            self.by_base.insert(base, uid);
        }
        self.index = index;
        self.compact()?;
        Ok(true)
    }

    fn scan(&mut self, inner: &Inner, account: &Address) -> Result<(), StoreError> {
        let mut on_disk = self.list_files()?;
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

/// The HIGHESTMODSEQ a mailbox taken over from Dovecot starts from: 1024 per second
/// since the epoch, above any Dovecot reaches (one per change) and above what an
/// earlier takeover of the same mailbox could have reached at a sustained 1024 changes
/// a second.
fn adopted_modseq_floor() -> ModSeq {
    ModSeq(now_secs().max(1).unsigned_abs().saturating_mul(1024))
}

/// Messages picked for a copy: metadata and an open file (which stays readable even if
/// the source is expunged meanwhile).
struct Picked {
    meta: MessageMeta,
    path: PathBuf,
    /// The source file's name, which tells who wrote it.
    name: String,
}

impl Inner {
    fn create_mailbox(&self, address: &Address, name: &str) -> Result<(), StoreError> {
        let name = validate_mailbox_name(name)?;
        let account = self.account(address);
        let _layout = write_guard(&account.layout);
        let folders = account.folder_names()?;
        if name == INBOX || folders.contains(&name) {
            return Err(StoreError::MailboxExists(name));
        }
        if folders.len() >= self.limits.max_mailboxes {
            return Err(StoreError::TooManyMailboxes(self.limits.max_mailboxes));
        }
        let dir = account.mailbox_dir(&name);
        let io_err = |e| StoreError::io(format!("creating {}", dir.display()), e);
        files::create_maildir(&account.path).map_err(io_err)?;
        files::create_maildir(&dir).map_err(io_err)?;
        match files::create_new_file(&dir.join(FOLDER_MARKER)) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_err(e)),
            _ => {}
        }
        // A leftover index (a crashed DELETE) must not revive old UIDs.
        let index = MailboxIndex::new(self.new_uid_validity()?);
        uidlist::rewrite(&dir, &index).map_err(io_err)?;
        sync_dir(&account.path).map_err(io_err)?;
        Ok(())
    }

    fn delete_mailbox(&self, address: &Address, name: &str) -> Result<(), StoreError> {
        let name = validate_mailbox_name(name)?;
        if name == INBOX {
            return Err(StoreError::InboxImmutable);
        }
        let account = self.account(address);
        let _layout = write_guard(&account.layout);
        if !account.folder_names()?.contains(&name) {
            return Err(StoreError::NoSuchMailbox(name));
        }
        lock(&account.mailboxes).remove(&name);
        let dir = account.mailbox_dir(&name);
        std::fs::remove_dir_all(&dir)
            .map_err(|e| StoreError::io(format!("deleting {}", dir.display()), e))?;
        sync_dir(&account.path).map_err(|e| StoreError::io("deleting mailbox", e))?;
        let mut subscriptions = account.subscriptions()?;
        if subscriptions.remove(&name) {
            account.save_subscriptions(&subscriptions)?;
        }
        self.hub
            .publish(address, [Change::MailboxReset { mailbox: name }]);
        Ok(())
    }

    fn rename_mailbox(&self, address: &Address, from: &str, to: &str) -> Result<(), StoreError> {
        let from = validate_mailbox_name(from)?;
        let to = validate_mailbox_name(to)?;
        if from == INBOX {
            return Err(StoreError::InboxImmutable);
        }
        let account = self.account(address);
        let _layout = write_guard(&account.layout);
        let folders = account.folder_names()?;
        if !folders.contains(&from) {
            return Err(StoreError::NoSuchMailbox(from));
        }
        let renames = renamed_names(folders.iter(), &from, &to)?;
        for (_, new) in &renames {
            if new == INBOX || folders.contains(new) {
                return Err(StoreError::MailboxExists(new.clone()));
            }
        }
        let mut subscriptions = account.subscriptions()?;
        let mut resubscribe = false;
        for (old, new) in &renames {
            lock(&account.mailboxes).remove(old);
            std::fs::rename(account.mailbox_dir(old), account.mailbox_dir(new))
                .map_err(|e| StoreError::io(format!("renaming mailbox {old:?}"), e))?;
            if subscriptions.remove(old) {
                subscriptions.insert(new.clone());
                resubscribe = true;
            }
        }
        sync_dir(&account.path).map_err(|e| StoreError::io("renaming mailbox", e))?;
        if resubscribe {
            account.save_subscriptions(&subscriptions)?;
        }
        self.hub.publish(
            address,
            renames
                .into_iter()
                .map(|(old, _)| Change::MailboxReset { mailbox: old }),
        );
        Ok(())
    }

    fn set_subscribed(
        &self,
        address: &Address,
        name: &str,
        subscribe: bool,
    ) -> Result<(), StoreError> {
        let name = validate_mailbox_name(name)?;
        let account = self.account(address);
        let _layout = write_guard(&account.layout);
        if subscribe && name != INBOX && !account.folder_names()?.contains(&name) {
            return Err(StoreError::NoSuchMailbox(name));
        }
        let mut subscriptions = account.subscriptions()?;
        let changed = if subscribe {
            subscriptions.insert(name)
        } else {
            subscriptions.remove(&name)
        };
        if changed {
            files::create_maildir(&account.path)
                .map_err(|e| StoreError::io("creating the account directory", e))?;
            account.save_subscriptions(&subscriptions)?;
        }
        Ok(())
    }

    fn list_mailboxes(&self, address: &Address) -> Result<Vec<MailboxInfo>, StoreError> {
        let account = self.account(address);
        let _layout = read_guard(&account.layout);
        let subscriptions = account.subscriptions()?;
        let folders = account.folder_names()?;
        Ok(std::iter::once(INBOX.to_string())
            .chain(folders)
            .map(|name| MailboxInfo {
                special_use: SpecialUse::for_name(&name),
                subscribed: subscriptions.contains(&name),
                name,
            })
            .collect())
    }

    fn with_mailbox<T>(
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

    fn append(
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
        );
        let result = written
            .map_err(|e| StoreError::io("writing message", e))
            .and_then(|()| {
                account.with_mailbox(self, &name, Scan::No, |state| {
                    state.pending.remove(&base);
                    let mut batch = Batch::default();
                    let meta = state.add((size, internal_date, flags), file, &mut batch)?;
                    let outcome = AppendOutcome {
                        uid_validity: state.index.uid_validity,
                        uid: meta.uid,
                        modseq: meta.modseq,
                    };
                    state.commit(self, address, batch)?;
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

    fn read_message(&self, address: &Address, name: &str, uid: Uid) -> Result<Bytes, StoreError> {
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

    fn store_flags(
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
            let mut moves = Vec::new();
            for (uid, new_flags) in &plan.changes {
                if let Some(entry) = state.index.messages.get(uid) {
                    let moved = FileRef {
                        sub: Sub::Cur,
                        name: files::file_name(entry.body.base(), Sub::Cur, new_flags),
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

    fn expunge(&self, address: &Address, name: &str, uids: &[Uid]) -> Result<Vec<Uid>, StoreError> {
        self.with_mailbox(address, name, |inner, state| {
            let uids = sorted_uids(uids);
            let mut batch = Batch::default();
            let mut removed = Vec::new();
            let mut touched = BTreeSet::new();
            let mut failure = None;
            for uid in uids {
                let Some(entry) = state.index.messages.get(&uid) else {
                    continue;
                };
                // File first: if the index record were written first and the unlink
                // failed, a later scan would bring the message back under a new UID.
                match std::fs::remove_file(state.path(&entry.body)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        failure = Some(StoreError::io("deleting message", e));
                        break;
                    }
                }
                touched.insert(entry.body.sub.dir());
                state.remove(uid, &mut batch);
                removed.push(uid);
            }
            for sub in touched {
                if let Err(e) = sync_dir(&state.dir.join(sub)) {
                    failure.get_or_insert(StoreError::io("expunging", e));
                }
            }
            // What was removed is recorded even if a later message failed.
            state.commit(inner, address, batch)?;
            match failure {
                Some(e) => Err(e),
                None => Ok(removed),
            }
        })
    }

    fn copy(
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
                files::write_message(
                    &dir.join("tmp").join(base),
                    &target,
                    &message,
                    picked.meta.internal_date,
                )
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

    fn quota_usage(&self, address: &Address) -> Result<u64, StoreError> {
        let account = self.account(address);
        let _layout = read_guard(&account.layout);
        let mut total = 0;
        for name in std::iter::once(INBOX.to_string()).chain(account.folder_names()?) {
            match account.with_mailbox(self, &name, Scan::Yes, |state| {
                Ok(state.index.status().size)
            }) {
                Ok(size) => total += size,
                // Deleted by someone else between the listing and now.
                Err(StoreError::NoSuchMailbox(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }
}

#[async_trait]
impl MailStore for MaildirStore {
    async fn create_mailbox(&self, account: &Address, mailbox: &str) -> Result<(), StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(move |inner| inner.create_mailbox(&account, &mailbox))
            .await
    }

    async fn delete_mailbox(&self, account: &Address, mailbox: &str) -> Result<(), StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(move |inner| inner.delete_mailbox(&account, &mailbox))
            .await
    }

    async fn rename_mailbox(
        &self,
        account: &Address,
        from: &str,
        to: &str,
    ) -> Result<(), StoreError> {
        let (account, from, to) = (account.clone(), from.to_string(), to.to_string());
        self.run(move |inner| inner.rename_mailbox(&account, &from, &to))
            .await
    }

    async fn set_subscribed(
        &self,
        account: &Address,
        mailbox: &str,
        subscribed: bool,
    ) -> Result<(), StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(move |inner| inner.set_subscribed(&account, &mailbox, subscribed))
            .await
    }

    async fn list_mailboxes(&self, account: &Address) -> Result<Vec<MailboxInfo>, StoreError> {
        let account = account.clone();
        self.run(move |inner| inner.list_mailboxes(&account)).await
    }

    async fn status(&self, account: &Address, mailbox: &str) -> Result<MailboxStatus, StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(move |inner| {
            inner.with_mailbox(&account, &mailbox, |_, state| Ok(state.index.status()))
        })
        .await
    }

    async fn append(
        &self,
        account: &Address,
        mailbox: &str,
        message: Bytes,
        flags: &Flags,
        internal_date: i64,
    ) -> Result<AppendOutcome, StoreError> {
        let (account, mailbox, flags) = (account.clone(), mailbox.to_string(), flags.clone());
        self.run(move |inner| inner.append(&account, &mailbox, &message, flags, internal_date))
            .await
    }

    async fn list_messages(
        &self,
        account: &Address,
        mailbox: &str,
        changed_since: Option<ModSeq>,
    ) -> Result<Vec<MessageMeta>, StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(move |inner| {
            inner.with_mailbox(&account, &mailbox, |_, state| {
                Ok(state.index.list(changed_since))
            })
        })
        .await
    }

    async fn read_message(
        &self,
        account: &Address,
        mailbox: &str,
        uid: Uid,
    ) -> Result<Bytes, StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(move |inner| inner.read_message(&account, &mailbox, uid))
            .await
    }

    async fn store_flags(
        &self,
        account: &Address,
        mailbox: &str,
        uids: &[Uid],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<ModSeq>,
    ) -> Result<StoreFlagsOutcome, StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        let (uids, flags) = (uids.to_vec(), flags.clone());
        self.run(move |inner| {
            inner.store_flags(&account, &mailbox, &uids, op, &flags, unchanged_since)
        })
        .await
    }

    async fn expunge(
        &self,
        account: &Address,
        mailbox: &str,
        uids: &[Uid],
    ) -> Result<Vec<Uid>, StoreError> {
        let (account, mailbox, uids) = (account.clone(), mailbox.to_string(), uids.to_vec());
        self.run(move |inner| inner.expunge(&account, &mailbox, &uids))
            .await
    }

    async fn copy(
        &self,
        account: &Address,
        from: &str,
        uids: &[Uid],
        to: &str,
    ) -> Result<CopyOutcome, StoreError> {
        let (account, from, to) = (account.clone(), from.to_string(), to.to_string());
        let uids = uids.to_vec();
        self.run(move |inner| inner.copy(&account, &from, &uids, &to))
            .await
    }

    async fn quota_usage(&self, account: &Address) -> Result<u64, StoreError> {
        let account = account.clone();
        self.run(move |inner| inner.quota_usage(&account)).await
    }

    fn subscribe(&self, account: &Address) -> ChangeSubscription {
        self.inner.hub.subscribe(account)
    }
}
