//! The reference relay's clean-up (spec 6) run by the relay itself: the daily expiry and
//! the oldest-first trimming when an account passes 75 % of its quota. Only the `maildir`
//! backend keeps mail for long; the `memory` backend has nothing to expire.

use super::{unix_now, Relay};
use chatmail_core::expiry::{
    apply_plan, plan_expiry, plan_quota_expire, quota_expire_log_line, quota_target_bytes,
    scan_account, scan_mailboxes, ApplyReport, ExpiryPolicy,
};
use chatmail_core::run_blocking;
use chatmail_core::Address;

impl Relay {
    /// Runs the daily expiry of spec 6.1 now: messages older than `delete_mails_after`,
    /// large seen ones older than `delete_large_after`, accounts inactive for
    /// `delete_inactive_users_after`, trimming to 70 % of the quota, empty directories.
    /// `None` for the memory backend or when the executor is gone.
    pub async fn run_expiry(&self) -> Option<ApplyReport> {
        let executor = self.maildir_executor.as_ref()?;
        let policy = ExpiryPolicy::from_config(&self.config);
        let dir = self.config.mailboxes_dir.clone();
        let now = unix_now();
        let report = run_blocking(executor.as_ref(), move || {
            let scan = scan_mailboxes(&dir, None);
            let plan = plan_expiry(&policy, &scan, now);
            let report = apply_plan(&plan);
            tracing::info!(
                accounts_total = plan.accounts_total,
                messages_total = plan.messages_total,
                accounts_removed = report.accounts_removed,
                files_removed = report.files_removed,
                directories_removed = report.directories_removed,
                failures = report.failures.len(),
                "expiry finished"
            );
            report
        })
        .await
        .ok()?;
        Some(report)
    }

    /// Trims one account's INBOX oldest first to 70 % of the quota, never touching
    /// messages younger than 24 hours (spec 6.2).
    pub(super) async fn trim_to_quota(&self, account: &Address) {
        let Some(executor) = self.maildir_executor.as_ref() else {
            return;
        };
        let dir = self.config.mailboxes_dir.join(account.as_str());
        let name = account.as_str().to_string();
        let target = quota_target_bytes(self.config.max_mailbox_bytes());
        let now = unix_now();
        let _ = run_blocking(executor.as_ref(), move || {
            let mut errors = Vec::new();
            let scan = scan_account(&dir, name.clone(), &mut errors);
            let plan = plan_quota_expire(&scan, target, now);
            let report = apply_plan(&plan);
            if report.files_removed > 0 {
                tracing::info!("{}", quota_expire_log_line(report.files_removed, &name));
            }
        })
        .await;
    }
}
