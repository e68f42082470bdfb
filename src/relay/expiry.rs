//! The reference relay's clean-up (spec 6) run by the relay itself: the daily expiry and
//! the oldest-first trimming when an account passes 75 % of its quota. Both are
//! operations of the mail store, which expunges what it removes as an IMAP EXPUNGE
//! would, so IDLE sessions learn of it.

use super::service::{unix_now, Relay};
use crate::metrics::Metrics;
use chatmail_core::config::Config;
use chatmail_core::expiry::{
    quota_expire_log_line, quota_target_bytes, ExpiryPolicy, ExpiryReport,
};
use chatmail_core::store::{MailStore, StoreError};
use chatmail_core::Address;

impl Relay {
    /// Runs the daily expiry of spec 6.1 now: messages older than `delete_mails_after`,
    /// large seen ones older than `delete_large_after`, trimming to 70 % of the quota,
    /// and (where the store keeps logins: maildir) accounts inactive for
    /// `delete_inactive_users_after` and empty account directories. `Err` only when the
    /// store could not run at all (its executor is gone); what failed on the way is in
    /// the report.
    pub async fn run_expiry(&self) -> Result<ExpiryReport, StoreError> {
        self.run_expiry_with(false).await
    }

    /// [`Relay::run_expiry`], or with `dry_run` only its decisions: the report's
    /// `removals` list what would go and nothing is removed (`relay expire --dry-run`).
    pub async fn run_expiry_with(&self, dry_run: bool) -> Result<ExpiryReport, StoreError> {
        let mut policy = ExpiryPolicy::from_config(&self.config);
        policy.dry_run = dry_run;
        let report = self.store.expire(&policy, unix_now()).await?;
        tracing::info!(
            dry_run,
            accounts_total = report.accounts_total,
            messages_total = report.messages_total,
            accounts_removed = report.accounts_removed,
            messages_removed = report.messages_removed,
            directories_removed = report.directories_removed,
            failures = report.failures.len(),
            "expiry finished"
        );
        if !dry_run {
            // The daily run's trims count like a delivery's (spec 6.4's quota_expire_*):
            // one run per account trimmed.
            let mut trimmed: std::collections::BTreeMap<&std::path::Path, usize> =
                Default::default();
            for removal in &report.removals {
                if removal.kind == chatmail_core::expiry::RemovalKind::QuotaTrim {
                    let account = removal.path.parent().and_then(|p| p.parent());
                    *trimmed.entry(account.unwrap_or(&removal.path)).or_default() += 1;
                }
            }
            for removed in trimmed.into_values() {
                self.metrics.quota_trimmed(removed);
            }
        }
        Ok(report)
    }
}

/// Trims one account's INBOX oldest first to 70 % of the quota, never touching messages
/// younger than 24 hours (spec 6.2).
pub(super) async fn trim_to_quota(
    config: &Config,
    store: &dyn MailStore,
    metrics: &Metrics,
    account: &Address,
) {
    let target = quota_target_bytes(config.max_mailbox_bytes());
    match store.trim_to_quota(account, target, unix_now()).await {
        Ok(removed) if !removed.is_empty() => {
            metrics.quota_trimmed(removed.len());
            tracing::info!("{}", quota_expire_log_line(removed.len(), account.as_str()));
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "quota trimming failed"),
    }
}
