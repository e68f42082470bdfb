//! Expiry and quota trimming (spec 6.1, 6.2): the settings, thresholds and ordering
//! every mail store applies, whatever it keeps mail in.
//!
//! The daily clean-up removes messages older than `delete_mails_after` days, messages
//! over [`LARGE_MESSAGE_BYTES`] a client has seen that are older than
//! `delete_large_after` days, and trims each INBOX oldest first to 70 % of the quota
//! ([`quota_target_bytes`]); a store that keeps the accounts' last logins also removes
//! accounts unused for `delete_inactive_users_after` days. Past 75 % of the quota, a
//! delivery trims the recipient's INBOX to 70 % at once. Trimming never removes mail
//! younger than [`TRIM_PROTECTION_SECS`], so the "quota full" signal can still reach the
//! user.
//!
//! The stores carry these out themselves, [`MailStore::expire`] and
//! [`MailStore::trim_to_quota`], so that every message removed is expunged as an IMAP
//! EXPUNGE is: a new modseq, the index updated, [`Change::Expunged`] on the change feed
//! (an IDLE session sees `* N EXPUNGE`). The `maildir` backend decides on files as the
//! reference relay does (its `store/maildir/expiry.rs`).
//!
//! ```
//! use chatmail_core::config::Config;
//! use chatmail_core::expiry::{plan_trim, ExpiryPolicy, TrimCandidate};
//!
//! let policy = ExpiryPolicy::from_config(&Config::with_domain("chat.example.org"));
//! assert_eq!(policy.delete_mails_after_secs, 20 * 86_400);
//! let now = 1_700_000_000;
//! let candidates = vec![
//!     TrimCandidate { time: now - 3 * 86_400, size: 600, key: "older" },
//!     TrimCandidate { time: now - 2 * 86_400, size: 600, key: "old" },
//!     TrimCandidate { time: now - 60, size: 600, key: "young" },
//! ];
//! // 1800 bytes down to 1000: the oldest goes, then the next; the young one stays.
//! assert_eq!(plan_trim(candidates, 1000, now), ["older", "old"]);
//! ```
//!
//! [`MailStore::expire`]: crate::store::MailStore::expire
//! [`MailStore::trim_to_quota`]: crate::store::MailStore::trim_to_quota
//! [`Change::Expunged`]: crate::Change::Expunged

use crate::config::Config;
use crate::store::error::StoreError;

/// Seconds per day.
const DAY: u64 = 86_400;
/// Messages larger than this (bytes) fall under `delete_large_after`.
pub const LARGE_MESSAGE_BYTES: u64 = 200_000;
/// Quota trimming never removes mail younger than this, so the "quota full" signal can
/// still reach the user.
pub const TRIM_PROTECTION_SECS: u64 = DAY;

/// The expiry settings, in seconds and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryPolicy {
    /// Messages older than this are removed (`delete_mails_after`).
    pub delete_mails_after_secs: u64,
    /// Large seen messages older than this are removed (`delete_large_after`).
    pub delete_large_after_secs: u64,
    /// Accounts whose last login is older than this are removed
    /// (`delete_inactive_users_after`).
    pub delete_inactive_after_secs: u64,
    /// Quota trimming target: 70 % of `max_mailbox_size`, in bytes.
    pub quota_target_bytes: u64,
    /// Decide only: the report lists what would be removed, nothing is touched
    /// (`relay expire --dry-run`).
    pub dry_run: bool,
}

impl ExpiryPolicy {
    /// The policy of a relay configuration.
    pub fn from_config(config: &Config) -> Self {
        ExpiryPolicy {
            delete_mails_after_secs: u64::from(config.delete_mails_after) * DAY,
            delete_large_after_secs: u64::from(config.delete_large_after) * DAY,
            delete_inactive_after_secs: u64::from(config.delete_inactive_users_after) * DAY,
            quota_target_bytes: quota_target_bytes(config.max_mailbox_bytes()),
            dry_run: false,
        }
    }
}

/// 70 % of a mailbox quota: the level oldest-first trimming brings a mailbox down to.
pub fn quota_target_bytes(max_mailbox_bytes: u64) -> u64 {
    // u128 so that huge quotas cannot overflow.
    (u128::from(max_mailbox_bytes) * 7 / 10) as u64
}

/// What one run of [`MailStore::expire`](crate::store::MailStore::expire) did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ExpiryReport {
    /// Accounts looked at.
    pub accounts_total: usize,
    /// Messages looked at.
    pub messages_total: usize,
    /// Whole accounts removed (inactive).
    pub accounts_removed: usize,
    /// Messages removed (too old, large and seen, or trimmed), each published as
    /// [`Change::Expunged`](crate::Change::Expunged) if a mailbox listed it.
    pub messages_removed: usize,
    /// Empty account directories removed.
    pub directories_removed: usize,
    /// What could not be read or removed; the run went on with the rest.
    pub failures: Vec<StoreError>,
    /// Every removal the run decided, in order (in a dry run: would have carried out).
    pub removals: Vec<Removal>,
}

/// One removal an expiry run decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// What is removed and why.
    pub kind: RemovalKind,
    /// The file or directory (the memory store names messages `account/mailbox/UID`).
    pub path: std::path::PathBuf,
}

/// What a [`Removal`] removes, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemovalKind {
    /// A whole account, unused for `delete_inactive_users_after` days.
    InactiveAccount,
    /// A message older than `delete_mails_after` days.
    OldMessage,
    /// A seen message over [`LARGE_MESSAGE_BYTES`] older than `delete_large_after` days.
    LargeOldMessage,
    /// A message trimmed oldest first to 70 % of the quota.
    QuotaTrim,
    /// An empty account directory without a password.
    EmptyDirectory,
    /// Dovecot's quota cache `maildirsize`, stale after removals.
    QuotaCache,
}

impl RemovalKind {
    /// A few words for an operator: `message older than delete_mails_after`.
    pub fn describe(self) -> &'static str {
        match self {
            RemovalKind::InactiveAccount => {
                "account inactive longer than delete_inactive_users_after"
            }
            RemovalKind::OldMessage => "message older than delete_mails_after",
            RemovalKind::LargeOldMessage => "large seen message older than delete_large_after",
            RemovalKind::QuotaTrim => "message trimmed to 70 % of the quota",
            RemovalKind::EmptyDirectory => "empty account directory without password",
            RemovalKind::QuotaCache => "stale quota cache",
        }
    }
}

/// A message quota trimming may remove: when it arrived (unix seconds), its size, and
/// what the store knows it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrimCandidate<K> {
    /// Delivery time, unix seconds.
    pub time: u64,
    /// Size in bytes; the candidates' sizes add up to the usage being trimmed.
    pub size: u64,
    /// The store's name for the message; it also orders messages of equal time and size.
    pub key: K,
}

/// Oldest-first trimming (spec 6.2): sorted by (time, size, key), candidates are removed
/// while their total size exceeds `target_bytes`, stopping at the first one younger than
/// [`TRIM_PROTECTION_SECS`] at `now`. Returns the keys to remove, oldest first.
pub fn plan_trim<K: Ord>(
    mut candidates: Vec<TrimCandidate<K>>,
    target_bytes: u64,
    now: u64,
) -> Vec<K> {
    candidates.sort_by(|a, b| (a.time, a.size, &a.key).cmp(&(b.time, b.size, &b.key)));
    let mut total: u64 = candidates
        .iter()
        .map(|c| c.size)
        .fold(0, u64::saturating_add);
    let mut out = Vec::new();
    for candidate in candidates {
        if total <= target_bytes || now.saturating_sub(candidate.time) < TRIM_PROTECTION_SECS {
            break;
        }
        total -= candidate.size;
        out.push(candidate.key);
    }
    out
}

/// `quota-expire: removed <n> message(s) from <mailbox>`: the reference's log line for a
/// trim, which metrics count.
pub fn quota_expire_log_line(removed: usize, mailbox: &str) -> String {
    format!("quota-expire: removed {removed} message(s) from {mailbox}")
}
