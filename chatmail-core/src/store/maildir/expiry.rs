//! The `maildir` backend's expiry decisions, made on files as the reference relay makes
//! them (spec 6.1, 6.2), with the thresholds of [`crate::expiry`]:
//!
//! 1. [`scan_account`] reads an account directory into plain data ([`AccountScan`]): its
//!    messages (any regular file in a `cur`, `new` or `tmp` directory at any depth, with
//!    mtime and size), its other files, and the `password` mtime (the last-login day),
//!    for every directory [`account_dirs`] finds in a `mailboxes_dir`.
//! 2. [`plan_account`] takes a scan, an [`ExpiryPolicy`] and
//!    `now` (unix seconds) and returns the exact deletions of the reference relay
//!    ([`ExpiryPlan`]):
//!    * accounts whose last login is older than `delete_inactive_users_after` days are
//!      removed whole;
//!    * account directories without a `password` file are removed only when empty;
//!    * messages older than `delete_mails_after` days (by mtime, which is the internal
//!      date) are removed;
//!    * messages over 200000 bytes on disk in a `cur` directory older than
//!      `delete_large_after` days are removed (large *unseen* mail in `new` is kept by
//!      this rule);
//!    * then the top-level `cur`/`new` (INBOX) are trimmed oldest-first to 70 % of
//!      `max_mailbox_size` ([`plan_quota_trim`]: the time and `S=` size of Dovecot's file
//!      names), never touching mail younger than 24 h;
//!    * if anything was removed, the Dovecot quota cache `maildirsize` goes too.
//!
//! Both steps only read: together they are a dry run (the tests make one for a whole
//! `mailboxes_dir`: `scan_mailboxes`, `plan_expiry`). [`MaildirStore::expire`] carries
//! a plan out through the store's index, so that each message removed is expunged and
//! published like an IMAP EXPUNGE; only files no mailbox lists (in `tmp/`, in broken
//! folders) are simply deleted.
//!
//! [`MaildirStore::expire`]: crate::store::MailStore::expire

use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::expiry::{plan_trim, ExpiryPolicy, TrimCandidate, LARGE_MESSAGE_BYTES};
/// Deepest directory level scanned inside an account (Maildir++ folders are flat; this
/// only bounds hostile or broken trees).
const MAX_SCAN_DEPTH: usize = 16;

/// The maildir subdirectory a message file sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum MaildirSubdir {
    /// `cur/`: seen by a client.
    Cur,
    /// `new/`: delivered, not yet seen.
    New,
    /// `tmp/`: being delivered (or left over from a crash).
    Tmp,
}

impl MaildirSubdir {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "cur" => Some(MaildirSubdir::Cur),
            "new" => Some(MaildirSubdir::New),
            "tmp" => Some(MaildirSubdir::Tmp),
            _ => None,
        }
    }
}

/// A message file found by the scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScannedMessage {
    /// Path relative to the account directory, e.g. `cur/1700000000.M1P2.host,S=10:2,S`
    /// or `.DeltaChat/new/...`.
    pub path: PathBuf,
    /// Modification time, unix seconds.
    pub mtime: u64,
    /// Size on disk in bytes (compressed size for gzip-stored mail).
    pub size: u64,
    /// Which of `cur`/`new`/`tmp` holds it.
    pub subdir: MaildirSubdir,
    /// Whether it is in the account's own `cur`/`new`/`tmp` (INBOX), not a subfolder's.
    pub top_level: bool,
}

impl ScannedMessage {
    /// The file name (where Dovecot encodes delivery time and size).
    pub(crate) fn file_name(&self) -> &str {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    }
}

/// A non-message file found by the scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScannedFile {
    /// Path relative to the account directory.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
}

/// One account directory as scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccountScan {
    /// The directory name (the address).
    pub name: String,
    /// The directory.
    pub dir: PathBuf,
    /// mtime of `password` (unix seconds), `None` if there is no password file.
    pub last_login: Option<u64>,
    /// Every message file.
    pub messages: Vec<ScannedMessage>,
    /// Every other regular file (password, metadata.json, dovecot indexes, ...).
    pub extra_files: Vec<ScannedFile>,
    /// Whether the directory has no entries at all.
    pub is_empty: bool,
}

/// Something the scan could not read; it goes on with the rest.
#[derive(Debug)]
pub(crate) struct ScanError {
    /// What could not be read.
    pub path: PathBuf,
    /// Why.
    pub error: io::Error,
}

/// A whole `mailboxes_dir` as scanned (the tests' dry run; the store scans account by
/// account).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct MailboxesScan {
    /// Every directory whose name contains `@`.
    pub accounts: Vec<AccountScan>,
    /// What could not be read.
    pub errors: Vec<ScanError>,
}

fn mtime_secs(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// Scans every entry of `mailboxes_dir` whose name contains `@` (at most `max_accounts`
/// of them, in directory order, like the reference's `--maxnum`). A missing directory
/// is an empty scan.
#[cfg(test)]
pub(crate) fn scan_mailboxes(mailboxes_dir: &Path, max_accounts: Option<usize>) -> MailboxesScan {
    let mut scan = MailboxesScan::default();
    for (name, dir) in account_dirs(mailboxes_dir, max_accounts, &mut scan.errors) {
        let account = scan_account(&dir, name, &mut scan.errors);
        scan.accounts.push(account);
    }
    scan
}

/// The account directories of `mailboxes_dir`: every directory whose name contains `@`
/// (at most `max_accounts`, in directory order), by name. A missing `mailboxes_dir` has
/// none; what cannot be read is added to `errors`.
pub(crate) fn account_dirs(
    mailboxes_dir: &Path,
    max_accounts: Option<usize>,
    errors: &mut Vec<ScanError>,
) -> Vec<(String, PathBuf)> {
    let mut dirs = Vec::new();
    let entries = match fs::read_dir(mailboxes_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return dirs,
        Err(error) => {
            errors.push(ScanError {
                path: mailboxes_dir.to_path_buf(),
                error,
            });
            return dirs;
        }
    };
    for entry in entries {
        if max_accounts.is_some_and(|m| dirs.len() >= m) {
            break;
        }
        let entry = match entry {
            Ok(e) => e,
            Err(error) => {
                errors.push(ScanError {
                    path: mailboxes_dir.to_path_buf(),
                    error,
                });
                continue;
            }
        };
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // file_type() does not follow symlinks: a link is not an account.
        if !name.contains('@') || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        dirs.push((name, entry.path()));
    }
    dirs
}

/// Scans one account directory; unreadable parts are added to `errors`.
pub(crate) fn scan_account(dir: &Path, name: String, errors: &mut Vec<ScanError>) -> AccountScan {
    let mut account = AccountScan {
        name,
        dir: dir.to_path_buf(),
        last_login: None,
        messages: Vec::new(),
        extra_files: Vec::new(),
        is_empty: true,
    };
    walk(dir, Path::new(""), 0, &mut account, errors);
    account
}

fn walk(
    abs: &Path,
    rel: &Path,
    depth: usize,
    account: &mut AccountScan,
    errors: &mut Vec<ScanError>,
) {
    let entries = match fs::read_dir(abs) {
        Ok(e) => e,
        Err(error) => {
            errors.push(ScanError {
                path: abs.to_path_buf(),
                error,
            });
            return;
        }
    };
    let subdir = rel
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(MaildirSubdir::from_name);
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(error) => {
                errors.push(ScanError {
                    path: abs.to_path_buf(),
                    error,
                });
                continue;
            }
        };
        if depth == 0 {
            account.is_empty = false;
        }
        let child_rel = rel.join(entry.file_name());
        // file_type() does not follow symlinks: links are neither walked nor deleted.
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            if depth + 1 < MAX_SCAN_DEPTH {
                walk(&entry.path(), &child_rel, depth + 1, account, errors);
            }
            continue;
        }
        if !ft.is_file() {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(m) => m,
            // Vanished between listing and stat (delivery, expunge): not an error.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(error) => {
                errors.push(ScanError {
                    path: entry.path(),
                    error,
                });
                continue;
            }
        };
        match subdir {
            Some(subdir) => account.messages.push(ScannedMessage {
                path: child_rel,
                mtime: mtime_secs(&meta),
                size: meta.len(),
                subdir,
                top_level: depth == 1,
            }),
            None => {
                if depth == 0 && entry.file_name() == "password" {
                    account.last_login = Some(mtime_secs(&meta));
                }
                account.extra_files.push(ScannedFile {
                    path: child_rel,
                    size: meta.len(),
                });
            }
        }
    }
}

/// Why something is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeletionReason {
    /// Last login older than `delete_inactive_users_after`.
    InactiveAccount,
    /// Older than `delete_mails_after`.
    OldMessage,
    /// Over 200000 bytes in `cur`, older than `delete_large_after`.
    LargeOldMessage,
    /// Removed by oldest-first trimming to 70 % of the quota.
    QuotaTrim,
    /// The Dovecot quota cache, stale after removals.
    QuotaCache,
}

/// One deletion of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PlannedDeletion {
    /// Remove a whole account directory tree.
    Account {
        /// The directory.
        dir: PathBuf,
        /// Why.
        reason: DeletionReason,
    },
    /// Remove a directory only if it is (still) empty.
    EmptyDirectory {
        /// The directory.
        dir: PathBuf,
    },
    /// Remove one file.
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: DeletionReason,
    },
}

/// What [`plan_expiry`] decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExpiryPlan {
    /// Deletions, account by account.
    pub deletions: Vec<PlannedDeletion>,
    /// Account directories without `password` that are not empty (the reference prints
    /// "doesn't have last_login but isn't empty" and leaves them).
    pub kept_without_password: Vec<PathBuf>,
    /// Accounts scanned.
    pub accounts_total: usize,
    /// Message files scanned.
    pub messages_total: usize,
}

#[cfg(test)]
impl ExpiryPlan {
    /// How many whole accounts the plan removes.
    pub(crate) fn accounts_removed(&self) -> usize {
        self.deletions
            .iter()
            .filter(|d| matches!(d, PlannedDeletion::Account { .. }))
            .count()
    }
}

/// The reference relay's daily expiry decision for every scanned account at `now` (the
/// tests' dry run; the store plans account by account).
#[cfg(test)]
pub(crate) fn plan_expiry(policy: &ExpiryPolicy, scan: &MailboxesScan, now: u64) -> ExpiryPlan {
    let mut plan = ExpiryPlan {
        accounts_total: scan.accounts.len(),
        ..ExpiryPlan::default()
    };
    for account in &scan.accounts {
        plan.messages_total += account.messages.len();
        plan_account(policy, account, now, &mut plan);
    }
    plan
}

/// Adds one account's deletions to `plan` (spec 6.1 steps 2 to 6).
pub(crate) fn plan_account(
    policy: &ExpiryPolicy,
    account: &AccountScan,
    now: u64,
    plan: &mut ExpiryPlan,
) {
    let Some(last_login) = account.last_login else {
        if account.is_empty {
            plan.deletions.push(PlannedDeletion::EmptyDirectory {
                dir: account.dir.clone(),
            });
        } else {
            plan.kept_without_password.push(account.dir.clone());
        }
        return;
    };
    if last_login < now.saturating_sub(policy.delete_inactive_after_secs) {
        plan.deletions.push(PlannedDeletion::Account {
            dir: account.dir.clone(),
            reason: DeletionReason::InactiveAccount,
        });
        return;
    }
    let old_cutoff = now.saturating_sub(policy.delete_mails_after_secs);
    let large_cutoff = now.saturating_sub(policy.delete_large_after_secs);
    let mut removed = vec![false; account.messages.len()];
    let mut any = false;
    for (i, m) in account.messages.iter().enumerate() {
        let reason = if m.mtime < old_cutoff {
            DeletionReason::OldMessage
        } else if m.size > LARGE_MESSAGE_BYTES
            && m.mtime < large_cutoff
            && m.subdir == MaildirSubdir::Cur
        {
            DeletionReason::LargeOldMessage
        } else {
            continue;
        };
        removed[i] = true;
        any = true;
        plan.deletions.push(PlannedDeletion::File {
            path: account.dir.join(&m.path),
            reason,
        });
    }
    let remaining: Vec<&ScannedMessage> = account
        .messages
        .iter()
        .zip(&removed)
        .filter(|(m, gone)| !**gone && m.top_level && m.subdir != MaildirSubdir::Tmp)
        .map(|(m, _)| m)
        .collect();
    for m in plan_quota_trim(&remaining, policy.quota_target_bytes, now) {
        any = true;
        plan.deletions.push(PlannedDeletion::File {
            path: account.dir.join(&m.path),
            reason: DeletionReason::QuotaTrim,
        });
    }
    if any {
        push_quota_cache_removal(account, plan);
    }
}

fn push_quota_cache_removal(account: &AccountScan, plan: &mut ExpiryPlan) {
    if account
        .extra_files
        .iter()
        .any(|f| f.path == Path::new("maildirsize"))
    {
        plan.deletions.push(PlannedDeletion::File {
            path: account.dir.join("maildirsize"),
            reason: DeletionReason::QuotaCache,
        });
    }
}

/// Delivery time and logical size from a Dovecot maildir file name
/// `<unix-time>.<unique>,S=<size>[,W=<vsize>][:2,<flags>]`; `None` for other names.
// `pub` for the fuzz targets' re-export (`crate::fuzzing`), crate-internal otherwise.
#[cfg_attr(not(fuzzing), allow(unreachable_pub))]
pub fn parse_dovecot_name(name: &str) -> Option<(u64, u64)> {
    let (time, rest) = name.split_once('.')?;
    if time.is_empty() || !time.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let time = time.parse().ok()?;
    let base = rest.split(':').next()?;
    let size = base.split(',').find_map(|f| f.strip_prefix("S="))?;
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((time, size.parse().ok()?))
}

/// Oldest-first trimming (spec 6.2) of `messages` (the top-level `cur`/`new` mail): those
/// with Dovecot names, by the time and `S=` size in their names (see [`plan_trim`]).
/// Returns the messages to remove, oldest first.
pub(crate) fn plan_quota_trim<'a>(
    messages: &[&'a ScannedMessage],
    target_bytes: u64,
    now: u64,
) -> Vec<&'a ScannedMessage> {
    let candidates = messages
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let (time, size) = parse_dovecot_name(m.file_name())?;
            Some(TrimCandidate {
                time,
                size,
                key: (m.file_name(), i),
            })
        })
        .collect();
    plan_trim(candidates, target_bytes, now)
        .into_iter()
        .map(|(_, i)| messages[i])
        .collect()
}

#[cfg(test)]
mod tests;
