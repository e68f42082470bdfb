//! Accounts in the reference relay's directory layout ([`MaildirAccountStore`]).

use std::collections::hash_map::DefaultHasher;
use std::fs::{self, File, FileTimes};
use std::hash::{Hash, Hasher};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::types::Address;

use super::fsutil::{self, lock_file, write_atomic, LockError};
use super::password::PasswordHash;
use super::store::{
    last_login_day, AccountError, AccountRecord, AccountStore, Creation, LastLoginUpdate,
};
use crate::executor::{run_blocking, BlockingExecutor};

/// Name of the password file inside an account directory.
pub(crate) const PASSWORD_FILE: &str = "password";
/// Name of the creation lock file.
const PASSWORD_LOCK_FILE: &str = "password.lock";
/// Name of the marker that refuses cleartext mail from outside.
pub(crate) const ENFORCE_E2EE_FILE: &str = "enforceE2EEincoming";
/// Name of the operator's marker that disables an address (mail to and from it is
/// dropped silently, as the reference filter does).
pub(crate) const DISABLED_FILE: &str = "DISABLED";
/// In-process creation locks, striped by address: bounded memory, no clean-up needed.
const LOCK_STRIPES: usize = 64;

/// An [`AccountStore`] over `<mailboxes_dir>/<addr>/` directories, in the reference
/// relay's layout (spec 2.1), so an operator can point this relay at an existing
/// `mailboxes_dir` and every account keeps working:
///
/// ```text
/// <mailboxes_dir>/<addr>/password              {SHA512-CRYPT}$6$…  (no newline; mtime = last-login day)
/// <mailboxes_dir>/<addr>/password.lock         flock held while creating
/// <mailboxes_dir>/<addr>/enforceE2EEincoming   empty marker: refuse cleartext from outside
/// ```
///
/// File-system calls run on the [`BlockingExecutor`] given at construction.
#[derive(Clone)]
pub struct MaildirAccountStore {
    inner: Arc<Inner>,
    executor: Arc<dyn BlockingExecutor>,
}

struct Inner {
    root: PathBuf,
    stripes: Vec<Mutex<()>>,
    lock_timeout: Duration,
}

impl std::fmt::Debug for MaildirAccountStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaildirAccountStore")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

impl MaildirAccountStore {
    /// A store over `mailboxes_dir` (created on the first account if missing).
    pub fn new(mailboxes_dir: impl Into<PathBuf>, executor: Arc<dyn BlockingExecutor>) -> Self {
        MaildirAccountStore {
            inner: Arc::new(Inner {
                root: mailboxes_dir.into(),
                stripes: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
                lock_timeout: fsutil::LOCK_TIMEOUT,
            }),
            executor,
        }
    }

    /// The directory holding one directory per account.
    pub fn mailboxes_dir(&self) -> &Path {
        &self.inner.root
    }

    /// The directory of one account (its Maildir root and Dovecot home in the reference).
    pub fn account_dir(&self, address: &Address) -> PathBuf {
        self.inner.account_dir(address)
    }

    async fn run<T, F>(&self, f: F) -> Result<T, AccountError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, AccountError> + Send + 'static,
    {
        let inner = self.inner.clone();
        run_blocking(&*self.executor, move || f(&inner)).await?
    }
}

impl Inner {
    fn account_dir(&self, address: &Address) -> PathBuf {
        // `Address` guarantees no '/', NUL or "..", so this stays inside `root`.
        self.root.join(address.as_str())
    }

    fn lookup(&self, address: &Address) -> Result<Option<AccountRecord>, AccountError> {
        let path = self.account_dir(address).join(PASSWORD_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                if text.trim().is_empty() {
                    tracing::error!("password file {} is empty", path.display());
                    return Ok(None);
                }
                Ok(Some(AccountRecord {
                    address: address.clone(),
                    password: PasswordHash::from_stored(&text),
                }))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AccountError::io("read", path, e)),
        }
    }

    fn create_if_absent(
        &self,
        address: &Address,
        password: PasswordHash,
        now: u64,
    ) -> Result<Creation, AccountError> {
        if let Some(r) = self.lookup(address)? {
            return Ok(Creation::Existed(r));
        }
        // Threads of this process queue on a stripe; other processes on the flock.
        let mut h = DefaultHasher::new();
        address.hash(&mut h);
        let stripe = &self.stripes[(h.finish() % LOCK_STRIPES as u64) as usize];
        let _guard = stripe.lock().unwrap_or_else(|e| e.into_inner());

        let dir = self.account_dir(address);
        // Durable before the account is: its entry in `mailboxes_dir` is fsynced too.
        fsutil::create_dir_all_durable(&dir, None)
            .map_err(|e| AccountError::io("create directory", &dir, e))?;
        let lock_path = dir.join(PASSWORD_LOCK_FILE);
        let _lock = lock_file(&lock_path, self.lock_timeout).map_err(|e| match e {
            LockError::Timeout => AccountError::LockTimeout(address.clone()),
            LockError::Io(e) => AccountError::io("lock", &lock_path, e),
        })?;
        // Someone may have created it while we waited for the locks.
        if let Some(r) = self.lookup(address)? {
            return Ok(Creation::Existed(r));
        }
        // The marker goes first: if we crash before the password lands, the account does
        // not exist yet; the reverse order could leave an account accepting cleartext.
        let marker = dir.join(ENFORCE_E2EE_FILE);
        File::create(&marker).map_err(|e| AccountError::io("create", &marker, e))?;
        let pw_path = dir.join(PASSWORD_FILE);
        write_atomic(&dir, PASSWORD_FILE, password.as_str().as_bytes())
            .map_err(|e| AccountError::io("write", &pw_path, e))?;
        set_mtime(&pw_path, last_login_day(now))?;
        tracing::info!("Created address: {address}");
        Ok(Creation::Created(AccountRecord {
            address: address.clone(),
            password,
        }))
    }

    fn record_login(&self, address: &Address, now: u64) -> Result<LastLoginUpdate, AccountError> {
        let day = last_login_day(now);
        let path = self.account_dir(address).join(PASSWORD_FILE);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                tracing::warn!("last login of {address}: no password file, ignored");
                return Ok(LastLoginUpdate::NoAccount);
            }
            Err(e) => return Err(AccountError::io("stat", path, e)),
        };
        let current = meta.modified().map(fsutil::unix_secs).ok();
        if current == Some(day) {
            return Ok(LastLoginUpdate::Unchanged(day));
        }
        set_mtime(&path, day)?;
        Ok(LastLoginUpdate::Updated(day))
    }

    fn last_login(&self, address: &Address) -> Result<Option<u64>, AccountError> {
        let path = self.account_dir(address).join(PASSWORD_FILE);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.modified().map(fsutil::unix_secs).ok()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AccountError::io("stat", path, e)),
        }
    }

    fn is_disabled(&self, address: &Address) -> Result<bool, AccountError> {
        let marker = self.account_dir(address).join(DISABLED_FILE);
        match fs::symlink_metadata(&marker) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(AccountError::io("stat", marker, e)),
        }
    }

    fn accepts_cleartext(&self, address: &Address) -> Result<bool, AccountError> {
        if self.lookup(address)?.is_none() {
            return Ok(false);
        }
        let marker = self.account_dir(address).join(ENFORCE_E2EE_FILE);
        match fs::symlink_metadata(&marker) {
            Ok(_) => Ok(false),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(true),
            Err(e) => Err(AccountError::io("stat", marker, e)),
        }
    }

    fn set_enforce_e2ee(&self, address: &Address, enforce: bool) -> Result<(), AccountError> {
        if self.lookup(address)?.is_none() {
            return Err(AccountError::NoAccount(address.clone()));
        }
        let marker = self.account_dir(address).join(ENFORCE_E2EE_FILE);
        let result = if enforce {
            File::create(&marker).map(drop)
        } else {
            match fs::remove_file(&marker) {
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        result.map_err(|e| AccountError::io("update", marker, e))
    }

    fn list(&self) -> Result<Vec<Address>, AccountError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(AccountError::io("list", &self.root, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| AccountError::io("list", &self.root, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str().filter(|n| n.contains('@')) else {
                continue;
            };
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            match Address::parse(name) {
                // Only canonical (lower-case) names: anything else is not reachable by login.
                Ok(a) if a.as_str() == name => out.push(a),
                _ => tracing::warn!("ignoring account directory with unusable name {name:?}"),
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, address: &Address) -> Result<bool, AccountError> {
        let dir = self.account_dir(address);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(AccountError::io("remove", dir, e)),
        }
    }
}

/// Sets atime and mtime of `path` to `unix` seconds.
fn set_mtime(path: &Path, unix: u64) -> Result<(), AccountError> {
    let t = fsutil::system_time(unix);
    File::open(path)
        .and_then(|f| f.set_times(FileTimes::new().set_accessed(t).set_modified(t)))
        .map_err(|e| AccountError::io("set times", path, e))
}

#[async_trait]
impl AccountStore for MaildirAccountStore {
    async fn lookup(&self, address: &Address) -> Result<Option<AccountRecord>, AccountError> {
        let a = address.clone();
        self.run(move |i| i.lookup(&a)).await
    }

    async fn create_if_absent(
        &self,
        address: &Address,
        password: PasswordHash,
        now: u64,
    ) -> Result<Creation, AccountError> {
        let a = address.clone();
        self.run(move |i| i.create_if_absent(&a, password, now))
            .await
    }

    async fn record_login(
        &self,
        address: &Address,
        now: u64,
    ) -> Result<LastLoginUpdate, AccountError> {
        let a = address.clone();
        self.run(move |i| i.record_login(&a, now)).await
    }

    async fn last_login(&self, address: &Address) -> Result<Option<u64>, AccountError> {
        let a = address.clone();
        self.run(move |i| i.last_login(&a)).await
    }

    async fn accepts_cleartext(&self, address: &Address) -> Result<bool, AccountError> {
        let a = address.clone();
        self.run(move |i| i.accepts_cleartext(&a)).await
    }

    async fn is_disabled(&self, address: &Address) -> Result<bool, AccountError> {
        let a = address.clone();
        self.run(move |i| i.is_disabled(&a)).await
    }

    async fn set_enforce_e2ee(&self, address: &Address, enforce: bool) -> Result<(), AccountError> {
        let a = address.clone();
        self.run(move |i| i.set_enforce_e2ee(&a, enforce)).await
    }

    async fn list(&self) -> Result<Vec<Address>, AccountError> {
        self.run(|i| i.list()).await
    }

    async fn delete(&self, address: &Address) -> Result<bool, AccountError> {
        let a = address.clone();
        self.run(move |i| i.delete(&a)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::fsutil::synced;

    #[test]
    fn a_new_account_directory_is_durable_in_its_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("mailboxes");
        let store = MaildirAccountStore::new(&root, Arc::new(crate::InlineExecutor));
        let address = Address::parse("newuser01@chat.example.org").unwrap();
        synced::take();
        let created = store
            .inner
            .create_if_absent(&address, PasswordHash::from_stored("{PLAIN}x"), 0)
            .unwrap();
        assert!(matches!(created, Creation::Created(_)));
        let synced = synced::take();
        // The account directory's entry (in `mailboxes_dir`), the new `mailboxes_dir`'s
        // entry (in its parent), and the password file's entry (in the account).
        for dir in [root.as_path(), tmp.path(), &store.account_dir(&address)] {
            assert!(synced.iter().any(|s| s == dir), "{dir:?} not in {synced:?}");
        }
        // An existing account directory (say, left by a crash before the password)
        // is taken as it is; the password file's directory is still synced.
        let other = Address::parse("newuser02@chat.example.org").unwrap();
        fs::create_dir(store.account_dir(&other)).unwrap();
        synced::take();
        store
            .inner
            .create_if_absent(&other, PasswordHash::from_stored("{PLAIN}x"), 0)
            .unwrap();
        assert_eq!(synced::take(), [store.account_dir(&other)]);
    }
}
