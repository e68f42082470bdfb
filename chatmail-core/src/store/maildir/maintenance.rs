//! Maintenance: the daily expiry and quota trimming carried out through the index, and
//! the sweep of `tmp/` at open.
//!
//! The expiry decides on files as the reference relay does ([`super::expiry`]), one
//! account at a time, and removes each message a mailbox lists as an IMAP EXPUNGE
//! would: the file, then the index record with a new modseq, then
//! [`Change::Expunged`] on the change feed (so an IDLE session sees `* N EXPUNGE`) and
//! the quota usage moves. Only files no mailbox lists (in `tmp/`, in folders that are
//! not valid mailboxes, Dovecot's `maildirsize`) are simply deleted. An inactive
//! account's directory goes whole under the account's layout lock, and every mailbox of
//! it the store had loaded is published as [`Change::MailboxReset`] (its sessions end).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::expiry::{
    account_dirs, parse_dovecot_name, plan_account, scan_account, DeletionReason, ExpiryPlan,
    PlannedDeletion, ScanError,
};
use super::files::base_of;
use super::inner::{read_guard, write_guard, AccountDir, Inner, Scan};
use crate::expiry::{plan_trim, ExpiryPolicy, ExpiryReport, Removal, RemovalKind, TrimCandidate};
use crate::store::error::StoreError;
use crate::store::lock::lock;
use crate::store::name::validate_mailbox_name;
use crate::types::{Address, Change, Uid, INBOX};

/// Dovecot's quota cache in an account directory, stale once messages are removed.
const QUOTA_CACHE_FILE: &str = "maildirsize";

/// Files in a `tmp/` older than this were left by deliveries that never finished (a
/// crash, a SIGKILL between write and rename); Dovecot removes them by the same rule.
const TMP_MAX_AGE: Duration = Duration::from_secs(36 * 3600);

impl Inner {
    /// The daily expiry at `now` (unix seconds) over every account directory.
    pub(super) fn expire(&self, policy: &ExpiryPolicy, now: u64) -> ExpiryReport {
        let mut report = ExpiryReport::default();
        let mut errors = Vec::new();
        for (name, dir) in account_dirs(&self.root, None, &mut errors) {
            let scan = scan_account(&dir, name, &mut errors);
            let mut plan = ExpiryPlan::default();
            plan_account(policy, &scan, now, &mut plan);
            report.accounts_total += 1;
            report.messages_total += scan.messages.len();
            if !plan.kept_without_password.is_empty() {
                tracing::info!(
                    account = %scan.name,
                    "expiry: no password file but not empty, kept"
                );
            }
            report.removals.extend(plan.deletions.iter().map(removal));
            if policy.dry_run {
                for deletion in &plan.deletions {
                    match deletion {
                        PlannedDeletion::Account { .. } => report.accounts_removed += 1,
                        PlannedDeletion::EmptyDirectory { .. } => report.directories_removed += 1,
                        PlannedDeletion::File { reason, .. }
                            if *reason != DeletionReason::QuotaCache =>
                        {
                            report.messages_removed += 1
                        }
                        PlannedDeletion::File { .. } => {}
                    }
                }
                continue;
            }
            self.apply(&scan.name, &dir, plan.deletions, &mut report);
        }
        report
            .failures
            .extend(errors.into_iter().map(|ScanError { path, error }| {
                StoreError::io(format!("expiry: reading {}", path.display()), error)
            }));
        report
    }

    /// Carries out one account's planned deletions, best effort.
    fn apply(
        &self,
        name: &str,
        dir: &Path,
        deletions: Vec<PlannedDeletion>,
        report: &mut ExpiryReport,
    ) {
        // Only a directory named exactly as the store names the account's is served by
        // the store; in any other, files are simply deleted.
        let address = Address::parse(name)
            .ok()
            .filter(|address| address.as_str() == name);
        let mut by_mailbox: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for deletion in deletions {
            match deletion {
                PlannedDeletion::Account { dir, .. } => {
                    self.remove_account(address.as_ref(), &dir, report)
                }
                PlannedDeletion::EmptyDirectory { dir } => {
                    if remove(fs::remove_dir(&dir), &dir, report) {
                        report.directories_removed += 1;
                    }
                }
                PlannedDeletion::File { path, reason } => {
                    match address.as_ref().and_then(|_| mailbox_of(dir, &path)) {
                        Some(mailbox) => by_mailbox.entry(mailbox).or_default().push(path),
                        None => {
                            let removed = remove(fs::remove_file(&path), &path, report);
                            if removed && reason != DeletionReason::QuotaCache {
                                report.messages_removed += 1;
                            }
                        }
                    }
                }
            }
        }
        if let Some(address) = address {
            for (mailbox, files) in by_mailbox {
                self.expire_files(&address, &mailbox, &files, report);
            }
        }
    }

    /// Expunges the messages of `mailbox` whose files are `files` (rescanning it first,
    /// so that files of others have UIDs); files it does not list are deleted.
    fn expire_files(
        &self,
        address: &Address,
        mailbox: &str,
        files: &[PathBuf],
        report: &mut ExpiryReport,
    ) {
        let account = self.account(address);
        let _layout = read_guard(&account.layout);
        let expunged = account.with_mailbox(self, mailbox, Scan::Yes, |state| {
            let mut uids = Vec::new();
            let mut unlisted = Vec::new();
            for path in files {
                let base = path.file_name().and_then(|n| n.to_str()).map(base_of);
                match base.map(|base| (state.by_base.get(base), base)) {
                    Some((Some(uid), _)) => uids.push(*uid),
                    // Being written by an append (with an old internal date): the next
                    // run decides on it, once it is listed.
                    Some((None, base)) if state.pending.contains(base) => {}
                    _ => unlisted.push(path),
                }
            }
            let (removed, result) = state.expunge(self, address, &uids);
            Ok((removed.len(), result, unlisted))
        });
        let unlisted: Vec<&PathBuf> = match expunged {
            Ok((removed, result, unlisted)) => {
                report.messages_removed += removed;
                if let Err(e) = result {
                    report.failures.push(e);
                }
                unlisted
            }
            // Not a mailbox the store can open (a folder without `new/`): plain files.
            Err(StoreError::NoSuchMailbox(_)) => files.iter().collect(),
            Err(e) => {
                report.failures.push(e);
                files.iter().collect()
            }
        };
        for path in unlisted {
            if remove(fs::remove_file(path), path, report) {
                report.messages_removed += 1;
            }
        }
    }

    /// Removes an inactive account's directory whole.
    fn remove_account(&self, address: Option<&Address>, dir: &Path, report: &mut ExpiryReport) {
        let Some(address) = address else {
            if remove(fs::remove_dir_all(dir), dir, report) {
                report.accounts_removed += 1;
            }
            return;
        };
        let account = self.account(address);
        let _layout = write_guard(&account.layout);
        let removed = fs::remove_dir_all(dir);
        let loaded: Vec<String> = lock(&account.mailboxes).keys().cloned().collect();
        for mailbox in &loaded {
            account.drop_state(mailbox, true);
        }
        self.hub.publish(
            address,
            loaded
                .into_iter()
                .map(|mailbox| Change::MailboxReset { mailbox }),
        );
        if remove(removed, dir, report) {
            report.accounts_removed += 1;
        }
    }

    /// Trims the account's INBOX oldest first to `target_bytes` (spec 6.2), by the time
    /// and `S=` size of Dovecot's file names as the reference does. Works on the index
    /// as it is once the mailbox was listed after start (a delivery calls it, and must
    /// not read the directory each time): files others add later are trimmed once a
    /// rescan has listed them.
    pub(super) fn trim_to_quota(
        &self,
        address: &Address,
        target_bytes: u64,
        now: u64,
    ) -> Result<Vec<Uid>, StoreError> {
        let account = self.account(address);
        let _layout = read_guard(&account.layout);
        let removed = account.with_mailbox(self, INBOX, Scan::Once, |state| {
            let candidates = state
                .index
                .messages
                .iter()
                .filter_map(|(uid, entry)| {
                    let (time, size) = parse_dovecot_name(&entry.body.name)?;
                    Some(TrimCandidate {
                        time,
                        size,
                        key: (entry.body.name.as_str(), *uid),
                    })
                })
                .collect();
            let uids: Vec<Uid> = plan_trim(candidates, target_bytes, now)
                .into_iter()
                .map(|(_, uid)| uid)
                .collect();
            let (removed, result) = state.expunge(self, address, &uids);
            result.map(|()| removed)
        })?;
        if !removed.is_empty() {
            remove_quota_cache(&account);
        }
        Ok(removed)
    }
}

/// The mailbox whose `cur/` or `new/` holds `path` (an account's file), if the store
/// serves it: INBOX, or a Maildir++ folder with a valid name.
fn mailbox_of(account_dir: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(account_dir).ok()?;
    let parts: Vec<&str> = relative
        .iter()
        .map(|part| part.to_str())
        .collect::<Option<_>>()?;
    let in_maildir = |sub: &str| sub == "cur" || sub == "new";
    match parts.as_slice() {
        [sub, _] if in_maildir(sub) => Some(INBOX.to_string()),
        [folder, sub, _] if in_maildir(sub) => {
            let name = folder.strip_prefix('.')?;
            validate_mailbox_name(name)
                .ok()
                .filter(|valid| valid == name && valid != INBOX)
        }
        _ => None,
    }
}

/// Removes Dovecot's quota cache of an account, if it has one.
fn remove_quota_cache(account: &AccountDir) {
    let path = account.path.join(QUOTA_CACHE_FILE);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
        _ => {}
    }
}

/// Reports a removal's outcome: true if it removed something; a target already gone is
/// no failure.
fn remove(result: io::Result<()>, path: &Path, report: &mut ExpiryReport) -> bool {
    match result {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!("expiry: cannot remove {}: {e}", path.display());
            report.failures.push(StoreError::io(
                format!("expiry: removing {}", path.display()),
                e,
            ));
            false
        }
    }
}

/// Removes the files in every `tmp/` under `root` (INBOX's and each folder's of every
/// account) last modified more than 36 hours before `now`; returns how many.
/// A planned deletion as the report lists it.
fn removal(deletion: &PlannedDeletion) -> Removal {
    let kind = |reason: &DeletionReason| match reason {
        DeletionReason::InactiveAccount => RemovalKind::InactiveAccount,
        DeletionReason::OldMessage => RemovalKind::OldMessage,
        DeletionReason::LargeOldMessage => RemovalKind::LargeOldMessage,
        DeletionReason::QuotaTrim => RemovalKind::QuotaTrim,
        DeletionReason::QuotaCache => RemovalKind::QuotaCache,
    };
    match deletion {
        PlannedDeletion::Account { dir, reason } => Removal {
            kind: kind(reason),
            path: dir.clone(),
        },
        PlannedDeletion::EmptyDirectory { dir } => Removal {
            kind: RemovalKind::EmptyDirectory,
            path: dir.clone(),
        },
        PlannedDeletion::File { path, reason } => Removal {
            kind: kind(reason),
            path: path.clone(),
        },
    }
}

pub(super) fn sweep_tmp(root: &Path, now: SystemTime) -> usize {
    let Some(cutoff) = now.checked_sub(TMP_MAX_AGE) else {
        return 0;
    };
    let mut errors = Vec::new();
    let mut removed = 0;
    for (_, dir) in account_dirs(root, None, &mut errors) {
        let mut tmps = vec![dir.join("tmp")];
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let folder = entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with('.'));
                // file_type() does not follow symlinks: a link is not a folder.
                if folder && entry.file_type().is_ok_and(|t| t.is_dir()) {
                    tmps.push(entry.path().join("tmp"));
                }
            }
        }
        for tmp in tmps {
            removed += sweep_dir(&tmp, cutoff);
        }
    }
    for ScanError { path, error } in errors {
        tracing::warn!("tmp sweep: cannot read {}: {error}", path.display());
    }
    removed
}

/// Removes the regular files of `dir` last modified before `cutoff`.
fn sweep_dir(dir: &Path, cutoff: SystemTime) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0; // no tmp/ (a folder without one), or unreadable: nothing to do
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let stale = entry.file_type().is_ok_and(|t| t.is_file())
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified < cutoff);
        if !stale {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("tmp sweep: cannot remove {}: {e}", entry.path().display()),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::maildir::MaildirStore;

    /// Moved with `apply_plan` (now the store's): every deletion is tried, a target
    /// already gone is no failure, the others are reported and the run goes on.
    #[test]
    fn apply_reports_failures_and_goes_on() {
        let tmp = tempfile::tempdir().unwrap();
        let store = MaildirStore::open(tmp.path()).unwrap();
        let a_dir = tmp.path().join("a-directory");
        fs::create_dir(&a_dir).unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        let deletions = vec![
            PlannedDeletion::File {
                path: a_dir.clone(),
                reason: DeletionReason::OldMessage,
            },
            PlannedDeletion::File {
                path: tmp.path().join("already-gone"),
                reason: DeletionReason::OldMessage,
            },
            PlannedDeletion::EmptyDirectory {
                dir: tmp.path().to_path_buf(),
            },
            PlannedDeletion::File {
                path: file.clone(),
                reason: DeletionReason::OldMessage,
            },
        ];
        let mut report = ExpiryReport::default();
        // Not an address: nothing there is a mailbox of the store's, files are files.
        store
            .inner
            .apply("not-an-account", tmp.path(), deletions, &mut report);
        assert_eq!(report.messages_removed, 1);
        assert_eq!(report.directories_removed, 0);
        assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
        assert!(
            report.failures[0]
                .to_string()
                .contains(&a_dir.display().to_string()),
            "{}",
            report.failures[0]
        );
        assert!(!file.exists());
        assert!(a_dir.exists());
    }

    #[test]
    fn mailboxes_of_files() {
        let account = Path::new("/m/alice@example.org");
        let of = |rel: &str| mailbox_of(account, &account.join(rel));
        assert_eq!(of("cur/1.M1,S=2:2,S").as_deref(), Some(INBOX));
        assert_eq!(of("new/1.M1,S=2").as_deref(), Some(INBOX));
        assert_eq!(of(".DeltaChat/cur/1.M1").as_deref(), Some("DeltaChat"));
        assert_eq!(of(".a.b/new/1.M1").as_deref(), Some("a.b"));
        assert_eq!(of("tmp/1.M1"), None);
        assert_eq!(of(".DeltaChat/tmp/1.M1"), None);
        assert_eq!(of("maildirsize"), None);
        assert_eq!(of(".INBOX/cur/1.M1"), None);
        assert_eq!(of("x/cur/1.M1"), None);
        assert_eq!(of(".DeltaChat/sub/cur/1.M1"), None);
        assert_eq!(mailbox_of(account, Path::new("/elsewhere/cur/1")), None);
    }
}
