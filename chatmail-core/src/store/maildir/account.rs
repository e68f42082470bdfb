//! An account's directory: finding it (the cache of accounts), its folders on disk and
//! its subscriptions.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use super::files::write_replace;
use super::inner::{AccountDir, Inner};
use super::usage::Usage;
use crate::store::error::StoreError;
use crate::store::lock::lock;
use crate::store::name::validate_mailbox_name;
use crate::types::{Address, INBOX};

/// The account-level file listing subscribed mailboxes, one name per line. When it is
/// missing, Dovecot's `subscriptions` file is read instead.
pub(crate) const SUBSCRIPTIONS_FILE: &str = "chatmail-subscriptions";

/// Dovecot's subscriptions file (first line `V\t2`, then names), read if ours is missing.
const DOVECOT_SUBSCRIPTIONS_FILE: &str = "subscriptions";

/// Accounts whose state stays cached; beyond this, unused ones are dropped (their state
/// is on disk and reloads on the next access).
const MAX_CACHED_ACCOUNTS: usize = 4096;

impl Inner {
    pub(super) fn account(&self, address: &Address) -> Arc<AccountDir> {
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
                    usage: Usage::new(),
                })
            })
            .clone()
    }
}

impl AccountDir {
    pub(super) fn mailbox_dir(&self, name: &str) -> PathBuf {
        if name == INBOX {
            self.path.clone()
        } else {
            self.path.join(format!(".{name}"))
        }
    }

    /// The names of the account's folders on disk (not INBOX), sorted.
    pub(super) fn folder_names(&self) -> Result<BTreeSet<String>, StoreError> {
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

    pub(super) fn subscriptions(&self) -> Result<BTreeSet<String>, StoreError> {
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

    pub(super) fn save_subscriptions(&self, names: &BTreeSet<String>) -> Result<(), StoreError> {
        let mut text = String::new();
        for name in names {
            text.push_str(name);
            text.push('\n');
        }
        write_replace(&self.path, SUBSCRIPTIONS_FILE, text.as_bytes())
            .map_err(|e| StoreError::io("writing subscriptions", e))
    }
}
