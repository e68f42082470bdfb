//! Accounts kept in memory: for tests, fuzzing and embedders without persistence.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::types::Address;

use super::password::PasswordHash;
use super::store::{
    last_login_day, AccountError, AccountRecord, AccountStore, Creation, LastLoginUpdate,
};

#[derive(Debug, Clone)]
struct Entry {
    password: PasswordHash,
    last_login: u64,
    enforce_e2ee: bool,
    disabled: bool,
}

/// An [`AccountStore`] in a map behind a mutex. Operations are short map accesses, so
/// they run directly on the calling task.
#[derive(Debug, Default)]
pub struct MemoryAccountStore {
    accounts: Mutex<BTreeMap<Address, Entry>>,
}

impl MemoryAccountStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Disables or enables an existing account (the `DISABLED` file of the maildir
    /// store): mail from and to it is accepted and dropped.
    pub fn set_disabled(&self, address: &Address, disabled: bool) -> Result<(), AccountError> {
        match self.map().get_mut(address) {
            Some(e) => {
                e.disabled = disabled;
                Ok(())
            }
            None => Err(AccountError::NoAccount(address.clone())),
        }
    }

    fn map(&self) -> MutexGuard<'_, BTreeMap<Address, Entry>> {
        // A panic while holding the lock cannot leave an entry half-written (every
        // mutation is a single map operation), so a poisoned map is still consistent.
        self.accounts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn record(address: &Address, e: &Entry) -> AccountRecord {
    AccountRecord {
        address: address.clone(),
        password: e.password.clone(),
    }
}

#[async_trait]
impl AccountStore for MemoryAccountStore {
    async fn lookup(&self, address: &Address) -> Result<Option<AccountRecord>, AccountError> {
        Ok(self
            .map()
            .get(address)
            .filter(|e| !e.password.as_str().is_empty())
            .map(|e| record(address, e)))
    }

    async fn create_if_absent(
        &self,
        address: &Address,
        password: PasswordHash,
        now: u64,
    ) -> Result<Creation, AccountError> {
        let mut map = self.map();
        if let Some(e) = map.get(address).filter(|e| !e.password.as_str().is_empty()) {
            return Ok(Creation::Existed(record(address, e)));
        }
        let e = Entry {
            password,
            last_login: last_login_day(now),
            enforce_e2ee: true,
            disabled: false,
        };
        let r = record(address, &e);
        map.insert(address.clone(), e);
        Ok(Creation::Created(r))
    }

    async fn record_login(
        &self,
        address: &Address,
        now: u64,
    ) -> Result<LastLoginUpdate, AccountError> {
        let day = last_login_day(now);
        Ok(match self.map().get_mut(address) {
            None => LastLoginUpdate::NoAccount,
            Some(e) if e.last_login == day => LastLoginUpdate::Unchanged(day),
            Some(e) => {
                e.last_login = day;
                LastLoginUpdate::Updated(day)
            }
        })
    }

    async fn last_login(&self, address: &Address) -> Result<Option<u64>, AccountError> {
        Ok(self.map().get(address).map(|e| e.last_login))
    }

    async fn accepts_cleartext(&self, address: &Address) -> Result<bool, AccountError> {
        Ok(self.map().get(address).is_some_and(|e| !e.enforce_e2ee))
    }

    async fn is_disabled(&self, address: &Address) -> Result<bool, AccountError> {
        Ok(self.map().get(address).is_some_and(|e| e.disabled))
    }

    async fn set_enforce_e2ee(&self, address: &Address, enforce: bool) -> Result<(), AccountError> {
        match self.map().get_mut(address) {
            Some(e) => {
                e.enforce_e2ee = enforce;
                Ok(())
            }
            None => Err(AccountError::NoAccount(address.clone())),
        }
    }

    async fn list(&self) -> Result<Vec<Address>, AccountError> {
        Ok(self.map().keys().cloned().collect())
    }

    async fn delete(&self, address: &Address) -> Result<bool, AccountError> {
        Ok(self.map().remove(address).is_some())
    }
}
