//! The quota usage job: the figure `usage` keeps, completed on first use by loading
//! every mailbox of the account.

use super::inner::{read_guard, Inner, Scan};
use crate::store::error::StoreError;
use crate::store::lock::lock;
use crate::types::{Address, INBOX};

impl Inner {
    /// The account's usage: the kept figure, after loading every mailbox not loaded yet.
    pub(super) fn quota_usage(&self, address: &Address) -> Result<u64, StoreError> {
        let account = self.account(address);
        let _layout = read_guard(&account.layout);
        let generation = {
            let usage = lock(&account.usage);
            if usage.complete {
                return Ok(usage.bytes);
            }
            usage.generation
        };
        for name in std::iter::once(INBOX.to_string()).chain(account.folder_names()?) {
            // A scan takes in files of others (Dovecot's before the takeover) once.
            match account.with_mailbox(self, &name, Scan::Yes, |_| Ok(())) {
                Ok(()) => {}
                // Deleted by someone else between the listing and now.
                Err(StoreError::NoSuchMailbox(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let mut usage = lock(&account.usage);
        if usage.generation == generation {
            usage.complete = true;
        }
        Ok(usage.bytes)
    }
}
