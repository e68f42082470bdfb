//! Mailbox operations (IMAP CREATE, DELETE, RENAME, SUBSCRIBE, LIST): Maildir++ folders
//! `.<Name>/` in the account directory, under the account's layout lock held alone.

use std::io;

use super::files::{self, sync_dir};
use super::inner::{read_guard, write_guard, Inner, Scan};
use super::uidlist;
use crate::store::error::StoreError;
use crate::store::index::MailboxIndex;
use crate::store::name::{
    renamed_names, validate_deletable, validate_mailbox_name, validate_rename,
};
use crate::types::{Address, Change, MailboxInfo, SpecialUse, Uid, INBOX};

/// Maildir++ marks a folder directory with this empty file.
pub(super) const FOLDER_MARKER: &str = "maildirfolder";

impl Inner {
    pub(super) fn create_mailbox(&self, address: &Address, name: &str) -> Result<(), StoreError> {
        let name = validate_mailbox_name(name)?;
        let account = self.account(address);
        let _layout = write_guard(&account.layout);
        if name == INBOX {
            // See `MailStore::create_mailbox`: CREATE INBOX succeeds while INBOX never
            // held a message (a fresh account's, as Dovecot answers for it).
            return account.with_mailbox(self, INBOX, Scan::Once, |state| {
                if state.index.uid_next > Uid(1) {
                    return Err(StoreError::MailboxExists(name.clone()));
                }
                state.ensure_on_disk()
            });
        }
        let folders = account.folder_names()?;
        if folders.contains(&name) {
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

    pub(super) fn delete_mailbox(&self, address: &Address, name: &str) -> Result<(), StoreError> {
        let name = validate_deletable(name)?;
        let account = self.account(address);
        let _layout = write_guard(&account.layout);
        if !account.folder_names()?.contains(&name) {
            return Err(StoreError::NoSuchMailbox(name));
        }
        let dir = account.mailbox_dir(&name);
        let removed = std::fs::remove_dir_all(&dir);
        // Gone, its messages no longer count; partly gone, what is left is loaded again.
        account.drop_state(&name, removed.is_err());
        removed.map_err(|e| StoreError::io(format!("deleting {}", dir.display()), e))?;
        sync_dir(&account.path).map_err(|e| StoreError::io("deleting mailbox", e))?;
        let mut subscriptions = account.subscriptions()?;
        if subscriptions.remove(&name) {
            account.save_subscriptions(&subscriptions)?;
        }
        self.hub
            .publish(address, [Change::MailboxReset { mailbox: name }]);
        Ok(())
    }

    pub(super) fn rename_mailbox(
        &self,
        address: &Address,
        from: &str,
        to: &str,
    ) -> Result<(), StoreError> {
        let (from, to) = validate_rename(from, to)?;
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
            account.drop_state(old, true);
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

    pub(super) fn set_subscribed(
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

    pub(super) fn list_mailboxes(&self, address: &Address) -> Result<Vec<MailboxInfo>, StoreError> {
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
}
