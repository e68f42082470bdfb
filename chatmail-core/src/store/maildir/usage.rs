//! Quota usage: the bytes of an account's messages across its mailboxes.

use super::{read_guard, Inner, Scan};
use crate::store::StoreError;
use crate::types::{Address, INBOX};

impl Inner {
    pub(super) fn quota_usage(&self, address: &Address) -> Result<u64, StoreError> {
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
