//! Logins of SMTP and IMAP alike, through the failed-login limits.

use super::service::{unix_now, Relay};
use chatmail_core::account::{parse_login, Admission, CreationRefusal, LoginOutcome, LoginRefusal};
use chatmail_core::Address;
use std::net::IpAddr;
use std::time::Instant;

/// The outcome of [`Relay::authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginVerdict {
    /// Logged in as this account.
    LoggedIn(Address),
    /// Authentication failed (wrong password, unknown name, creation refused, or a
    /// failed-login penalty in force).
    Failed {
        /// Answer not before this instant (a failed-login penalty); `None`: at once.
        not_before: Option<Instant>,
    },
}

impl Relay {
    /// Checks a login (SMTP AUTH, IMAP LOGIN/AUTHENTICATE) from a client at `peer`
    /// (`None` if unknown: then only the per-account limits apply) at `now`, creating the
    /// account on first login (spec 2.2). `imap` logins record the last-login day (the
    /// reference records IMAP logins only, spec 2.7).
    ///
    /// The [`LoginThrottle`](chatmail_core::account::LoginThrottle) decides first: during a penalty the password is not checked
    /// at all. A wrong password for an existing account counts against the IP and the
    /// account; a failure tells when it may be answered. `Err` is a temporary failure
    /// (storage, a full hashing pool): answer SMTP `454 4.7.0`, IMAP `NO [UNAVAILABLE]`.
    pub async fn authenticate(
        &self,
        peer: Option<IpAddr>,
        login: &str,
        password: &str,
        imap: bool,
        now: Instant,
    ) -> Result<LoginVerdict, chatmail_core::account::AccountError> {
        let account = parse_login(&self.config, login).ok();
        if let Admission::Refuse { until } = self.throttle.admit(peer, account.as_ref(), now) {
            tracing::debug!("login refused without a check: failed-login penalty");
            return Ok(LoginVerdict::Failed {
                not_before: Some(until),
            });
        }
        let unix = unix_now();
        match self.accounts.login(login, password, unix).await? {
            LoginOutcome::LoggedIn { address, created } => {
                if created {
                    self.metrics.account_created(&address);
                }
                self.throttle.succeeded(&address);
                if imap {
                    if let Err(e) = self.accounts.record_imap_login(&address, unix).await {
                        tracing::warn!(error = %e, "could not record last login");
                    }
                }
                Ok(LoginVerdict::LoggedIn(address))
            }
            LoginOutcome::Refused(reason) => {
                tracing::debug!(%reason, "login refused");
                if matches!(
                    reason,
                    LoginRefusal::NotCreated(CreationRefusal::SystemLimit(_))
                ) {
                    self.metrics.registration_rejected();
                }
                // Only a wrong password for an existing account costs a hash and guesses
                // at something. Unknown names, refused creations and over-long passwords
                // cost nothing: counting them would only punish the clients behind a
                // shared IP for each other's typos.
                let not_before = match &account {
                    Some(account) if reason.is_wrong_password() => {
                        self.throttle.failed(peer, Some(account), now)
                    }
                    _ => None,
                };
                Ok(LoginVerdict::Failed { not_before })
            }
        }
    }

    /// [`Relay::authenticate`] without a client IP, now: `Ok(None)` is a failed login.
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        imap: bool,
    ) -> Result<Option<Address>, chatmail_core::account::AccountError> {
        Ok(
            match self
                .authenticate(None, login, password, imap, Instant::now())
                .await?
            {
                LoginVerdict::LoggedIn(address) => Some(address),
                LoginVerdict::Failed { .. } => None,
            },
        )
    }
}
