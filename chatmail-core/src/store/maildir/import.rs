//! Writing a migration's accounts and mailboxes into an empty `mailboxes_dir`
//! ([`MaildirImport`]), in exactly the layout [`MaildirStore`](super::MaildirStore) and
//! [`MaildirAccountStore`](crate::account::MaildirAccountStore) read: the account files
//! (`password` with the last login as its mtime, the markers, `metadata.json`), and per
//! mailbox the message files plus an index (`chatmail-uidlist`) holding the given
//! UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and each message's UID, modseq, internal date,
//! flags and keywords.
//!
//! Durability is the store's: each message file is fsynced before its rename out of
//! `tmp/`, the directories' entries are fsynced before the index naming them is written,
//! and the index, the subscriptions and the UIDVALIDITY reservation are each replaced
//! durably. A message file's mtime is its internal date, as the store's own.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::account::SUBSCRIPTIONS_FILE;
use super::files::{self, sync_dir, write_replace, Sub};
use super::mailboxes::FOLDER_MARKER;
use super::uid_validity::{read_reserved, UID_VALIDITY_FILE};
use super::uidlist::{self, FileRef};
use crate::account::{
    fsutil, write_token_times, AccountError, DISABLED_FILE, ENFORCE_E2EE_FILE, PASSWORD_FILE,
};
use crate::store::error::StoreError;
use crate::store::index::MailboxIndex;
use crate::store::migrate::data::{AccountData, MailboxData};
use crate::types::{Address, MessageMeta, ModSeq, INBOX};

/// A migration's writer into an empty `mailboxes_dir`: accounts with
/// [`MaildirImport::import_account`], then each of their mailboxes with
/// [`MaildirImport::begin_mailbox`], [`MaildirMailboxImport::add`] per message and
/// [`MaildirImport::finish_mailbox`], then [`MaildirImport::finish_account`] (which
/// writes the subscriptions). No relay may serve the directory meanwhile.
#[derive(Debug)]
pub struct MaildirImport {
    root: PathBuf,
    /// The end of the UIDVALIDITY values reserved in [`UID_VALIDITY_FILE`].
    reserved: u32,
    /// The host part of message file names.
    host: String,
    /// The subscribed mailboxes of the accounts being written.
    subscriptions: BTreeMap<Address, BTreeSet<String>>,
}

/// One mailbox being written: its directory and the index of the messages written so far
/// (metadata only, the bodies are on disk).
#[derive(Debug)]
pub struct MaildirMailboxImport {
    address: Address,
    name: String,
    subscribed: bool,
    dir: PathBuf,
    index: MailboxIndex<FileRef>,
    /// UIDNEXT and HIGHESTMODSEQ as the source had them.
    uid_next: crate::types::Uid,
    highest_modseq: ModSeq,
    /// Message file names are `<prefix><seq>.<host>,S=<size>`, unique in the mailbox.
    prefix: String,
    host: String,
    seq: u64,
}

fn io_error(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> StoreError {
    move |e| StoreError::io(what, e)
}

impl MaildirImport {
    /// A writer into `mailboxes_dir` (created if missing), which must hold no account
    /// directory yet: anything named like an address makes it
    /// [`MigrateError::DestinationNotEmpty`](crate::store::migrate::data::MigrateError::DestinationNotEmpty).
    pub fn open(
        mailboxes_dir: impl Into<PathBuf>,
    ) -> Result<Self, crate::store::migrate::data::MigrateError> {
        let root = mailboxes_dir.into();
        fsutil::create_dir_all_durable(&root, None)
            .map_err(io_error(format!("creating {}", root.display())))?;
        let entries =
            std::fs::read_dir(&root).map_err(io_error(format!("listing {}", root.display())))?;
        for entry in entries {
            let entry = entry.map_err(io_error(format!("listing {}", root.display())))?;
            if entry.file_name().to_string_lossy().contains('@') {
                return Err(
                    crate::store::migrate::data::MigrateError::DestinationNotEmpty(format!(
                        "maildir:{}",
                        root.display()
                    )),
                );
            }
        }
        let reserved = read_reserved(&root)?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(64)
            .collect::<String>();
        Ok(MaildirImport {
            root,
            reserved,
            host: if host.is_empty() {
                "localhost".into()
            } else {
                host
            },
            subscriptions: BTreeMap::new(),
        })
    }

    fn account_dir(&self, address: &Address) -> PathBuf {
        // `Address` guarantees no '/', NUL or "..", so this stays inside `root`.
        self.root.join(address.as_str())
    }

    /// Writes an account's files: the markers first, then the password (whose mtime is
    /// the last login), then the device tokens. An address without a password gets its
    /// directory only (its mail follows).
    pub fn import_account(&mut self, account: &AccountData) -> Result<(), AccountError> {
        let dir = self.account_dir(&account.address);
        fsutil::create_dir_all_durable(&dir, None)
            .map_err(|e| AccountError::io("create directory", &dir, e))?;
        // As at creation, the marker goes before the password: never an account that
        // accepts cleartext by accident.
        for (marker, wanted) in [
            (ENFORCE_E2EE_FILE, account.enforce_e2ee),
            (DISABLED_FILE, account.disabled),
        ] {
            if wanted {
                fsutil::write_atomic(&dir, marker, b"")
                    .map_err(|e| AccountError::io("write", dir.join(marker), e))?;
            }
        }
        if let Some(password) = &account.password {
            let path = dir.join(PASSWORD_FILE);
            fsutil::write_atomic(&dir, PASSWORD_FILE, password.as_str().as_bytes())
                .map_err(|e| AccountError::io("write", &path, e))?;
            if let Some(day) = account.last_login {
                let time = fsutil::system_time(day);
                File::open(&path)
                    .and_then(|file| {
                        file.set_times(
                            std::fs::FileTimes::new()
                                .set_accessed(time)
                                .set_modified(time),
                        )?;
                        // The mtime is the last login: durable like the content.
                        file.sync_all()
                    })
                    .map_err(|e| AccountError::io("set times", &path, e))?;
            }
        }
        write_token_times(&dir, &account.tokens)?;
        self.subscriptions
            .insert(account.address.clone(), BTreeSet::new());
        Ok(())
    }

    /// Creates a mailbox with the given UIDVALIDITY (reserved store-wide first, so that
    /// the store never hands it out again), ready for its messages.
    pub fn begin_mailbox(
        &mut self,
        address: &Address,
        mailbox: &MailboxData,
    ) -> Result<MaildirMailboxImport, StoreError> {
        mailbox.check(address)?;
        let name = mailbox.name.clone();
        if mailbox.uid_validity.0 > self.reserved {
            write_replace(
                &self.root,
                UID_VALIDITY_FILE,
                format!("{}\n", mailbox.uid_validity.0).as_bytes(),
            )
            .map_err(io_error("reserving UIDVALIDITY values"))?;
            self.reserved = mailbox.uid_validity.0;
        }
        let account = self.account_dir(address);
        let dir = if name == INBOX {
            account.clone()
        } else {
            account.join(format!(".{name}"))
        };
        let create = io_error(format!("creating {}", dir.display()));
        files::create_maildir(&account)
            .map_err(io_error(format!("creating {}", account.display())))?;
        if name != INBOX {
            files::create_maildir(&dir).map_err(create)?;
            match files::create_new_file(&dir.join(FOLDER_MARKER)) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(StoreError::io(format!("creating {}", dir.display()), e))
                }
                _ => {}
            }
        }
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let mut index = MailboxIndex::new(mailbox.uid_validity);
        index.uid_next = mailbox.uid_next;
        index.highest_modseq = mailbox.highest_modseq.max(ModSeq(1));
        Ok(MaildirMailboxImport {
            address: address.clone(),
            subscribed: mailbox.subscribed,
            dir,
            index,
            uid_next: mailbox.uid_next,
            highest_modseq: mailbox.highest_modseq,
            // The store's own naming (`M<usec>P<pid>Q<seq>`), so that the files are
            // served as stored, never converted as Dovecot's are.
            prefix: format!(
                "{}.M{}P{}Q",
                now.as_secs(),
                now.subsec_micros(),
                std::process::id()
            ),
            host: self.host.clone(),
            seq: 0,
            name,
        })
    }

    /// Makes the mailbox's files durable, then writes its index: from then on the store
    /// serves it with the imported UIDVALIDITY and UIDs.
    pub fn finish_mailbox(&mut self, mut mailbox: MaildirMailboxImport) -> Result<(), StoreError> {
        for sub in [Sub::New, Sub::Cur] {
            let dir = mailbox.dir.join(sub.dir());
            sync_dir(&dir).map_err(io_error(format!("syncing {}", dir.display())))?;
        }
        // Never below the source's: UIDs it handed out and expunged stay used.
        mailbox.index.uid_next = mailbox.index.uid_next.max(mailbox.uid_next);
        mailbox.index.highest_modseq = mailbox.index.highest_modseq.max(mailbox.highest_modseq);
        uidlist::rewrite(&mailbox.dir, &mailbox.index)
            .map_err(io_error("writing the mailbox index"))?;
        if mailbox.subscribed {
            self.subscriptions
                .entry(mailbox.address)
                .or_default()
                .insert(mailbox.name);
        }
        Ok(())
    }

    /// Writes the account's subscriptions (the mailboxes imported as subscribed).
    pub fn finish_account(&mut self, address: &Address) -> Result<(), StoreError> {
        let Some(names) = self.subscriptions.remove(address) else {
            return Ok(());
        };
        if names.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for name in &names {
            text.push_str(name);
            text.push('\n');
        }
        write_replace(
            &self.account_dir(address),
            SUBSCRIPTIONS_FILE,
            text.as_bytes(),
        )
        .map_err(io_error("writing subscriptions"))
    }
}

impl MaildirMailboxImport {
    /// Writes one message with exactly `meta`'s UID, modseq, internal date, flags and
    /// keywords, its size being `body`'s length. Messages may come in any UID order; a
    /// UID given twice keeps the later message.
    pub fn add(&mut self, meta: &MessageMeta, body: &[u8]) -> Result<(), StoreError> {
        if meta.uid.0 == 0 {
            return Err(StoreError::Corrupt(format!(
                "message with UID 0 in {:?} of {}",
                self.name, self.address
            )));
        }
        self.seq += 1;
        let size = body.len() as u64;
        let base = format!("{}{}.{},S={size}", self.prefix, self.seq, self.host);
        // As an append places them: flagged messages in cur/, the others in new/.
        let sub = if meta.flags.is_empty() {
            Sub::New
        } else {
            Sub::Cur
        };
        let file = FileRef {
            sub,
            name: files::file_name(&base, sub, &meta.flags),
        };
        let tmp = self.dir.join("tmp").join(&base);
        let target = self.dir.join(sub.dir()).join(&file.name);
        write_file(&tmp, &target, body, meta.internal_date)
            .map_err(io_error(format!("writing {}", target.display())))?;
        self.index.restore(
            MessageMeta {
                size,
                ..meta.clone()
            },
            file,
        );
        Ok(())
    }
}

/// Writes `body` to `tmp` with mtime `internal_date`, fsyncs it and renames it to
/// `target` (whose directory the caller syncs once for all its messages).
fn write_file(tmp: &Path, target: &Path, body: &[u8], internal_date: i64) -> io::Result<()> {
    let result = (|| {
        let mut file = files::create_new_file(tmp)?;
        file.write_all(body)?;
        file.set_modified(files::system_time(internal_date))?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(tmp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    result
}
