//! The login algorithm of spec 2.2: look the account up, verify the password, or create
//! the account on first login when every rule and limit allows it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::types::Address;

use super::executor::{run_blocking, BlockingExecutor};
use super::limits::{check_limits, SystemLimits};
use super::password::{PasswordError, PasswordHash};
use super::store::{AccountError, AccountRecord, AccountStore, Creation, LastLoginUpdate};
use super::validate::{check_new_account, parse_login, CreationRefusal, LoginNameError};

/// Where the reference relay's operator kill switch lives: while this file exists, no new
/// account is created (existing ones keep working).
pub const DEFAULT_NOCREATE_PATH: &str = "/etc/chatmail-nocreate";

/// The answer to a login attempt (IMAP LOGIN/AUTHENTICATE, SMTP AUTH).
#[derive(Debug, Clone, PartialEq)]
pub enum LoginOutcome {
    /// The password matched; `created` tells whether this login created the account.
    LoggedIn {
        /// The account's address (lower-case).
        address: Address,
        /// Whether the account was created by this login.
        created: bool,
    },
    /// The login fails. Protocols answer every variant the same way ("authentication
    /// failed"); the variant is for logs and tests.
    Refused(LoginRefusal),
}

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginRefusal {
    /// The login name is not an address of this relay.
    #[error("{0}")]
    InvalidName(#[from] LoginNameError),
    /// The account exists and the password does not match its hash.
    #[error("wrong password")]
    WrongPassword,
    /// The account exists but its stored hash cannot be verified (unknown scheme ...).
    #[error("stored password hash unusable: {0}")]
    UnusableHash(PasswordError),
    /// The account does not exist and may not be created.
    #[error("account not created: {0}")]
    NotCreated(#[from] CreationRefusal),
}

/// The account service: the reference relay's passdb with creation on first login.
///
/// [`Accounts::login`] is async; the password hash and any blocking checks (the nocreate
/// file, system readings) run on the [`BlockingExecutor`], never on the task awaiting it.
pub struct Accounts {
    config: Arc<Config>,
    store: Arc<dyn AccountStore>,
    limits: Arc<dyn SystemLimits>,
    executor: Arc<dyn BlockingExecutor>,
    nocreate_path: PathBuf,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("domain", &self.config.mail_domain)
            .field("nocreate_path", &self.nocreate_path)
            .finish_non_exhaustive()
    }
}

impl Accounts {
    /// The service for `config`'s domain over `store`, refusing new accounts when
    /// `limits` report a shortage, running hashes on `executor`. The nocreate switch is
    /// [`DEFAULT_NOCREATE_PATH`] until changed with [`Accounts::with_nocreate_path`].
    pub fn new(
        config: Config,
        store: Arc<dyn AccountStore>,
        limits: Arc<dyn SystemLimits>,
        executor: Arc<dyn BlockingExecutor>,
    ) -> Self {
        Accounts {
            config: Arc::new(config),
            store,
            limits,
            executor,
            nocreate_path: PathBuf::from(DEFAULT_NOCREATE_PATH),
        }
    }

    /// Uses `path` as the nocreate kill switch instead of [`DEFAULT_NOCREATE_PATH`].
    pub fn with_nocreate_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.nocreate_path = path.into();
        self
    }

    /// The configuration the rules come from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The account store.
    pub fn store(&self) -> &Arc<dyn AccountStore> {
        &self.store
    }

    /// The nocreate kill-switch path.
    pub fn nocreate_path(&self) -> &Path {
        &self.nocreate_path
    }

    /// Authenticates `login` with `password` at `now` (unix seconds), creating the account
    /// on first login when allowed (spec 2.2). A wrong password never changes anything.
    ///
    /// `Err` is an infrastructure failure (storage, executor): answer with a temporary
    /// error, not "authentication failed".
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        now: u64,
    ) -> Result<LoginOutcome, AccountError> {
        let address = match parse_login(&self.config, login) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!("login refused: {e}");
                return Ok(LoginOutcome::Refused(e.into()));
            }
        };
        if let Some(record) = self.store.lookup(&address).await? {
            return self.verify(record, password).await;
        }
        if let Err(refusal) = check_new_account(&self.config, login, &address, password) {
            tracing::info!("not creating {address}: {refusal}");
            return Ok(LoginOutcome::Refused(refusal.into()));
        }
        let prepared = {
            let config = self.config.clone();
            let limits = self.limits.clone();
            let nocreate = self.nocreate_path.clone();
            let password = password.to_string();
            let address = address.clone();
            run_blocking(&*self.executor, move || {
                prepare_creation(&config, &*limits, &nocreate, &address, &password)
            })
            .await?
        };
        let hash = match prepared {
            Ok(Ok(hash)) => hash,
            Ok(Err(refusal)) => return Ok(LoginOutcome::Refused(refusal.into())),
            Err(e) => return Err(AccountError::Password(e)),
        };
        match self.store.create_if_absent(&address, hash, now).await? {
            Creation::Created(record) => Ok(LoginOutcome::LoggedIn {
                address: record.address,
                created: true,
            }),
            // Another login created it first: its hash decides, as in the reference.
            Creation::Existed(record) => self.verify(record, password).await,
        }
    }

    /// Records a successful IMAP login for expiry (spec 2.7: SMTP logins do not count).
    pub async fn record_imap_login(
        &self,
        address: &Address,
        now: u64,
    ) -> Result<LastLoginUpdate, AccountError> {
        self.store.record_login(address, now).await
    }

    async fn verify(
        &self,
        record: AccountRecord,
        password: &str,
    ) -> Result<LoginOutcome, AccountError> {
        let password = password.to_string();
        let hash = record.password;
        let verdict = run_blocking(&*self.executor, move || hash.verify(&password)).await?;
        Ok(match verdict {
            Ok(true) => LoginOutcome::LoggedIn {
                address: record.address,
                created: false,
            },
            Ok(false) => LoginOutcome::Refused(LoginRefusal::WrongPassword),
            Err(e) => {
                tracing::error!("cannot verify the password of {}: {e}", record.address);
                LoginOutcome::Refused(LoginRefusal::UnusableHash(e))
            }
        })
    }
}

/// The blocking part of creation: kill switch, system limits, hashing.
fn prepare_creation(
    config: &Config,
    limits: &dyn SystemLimits,
    nocreate: &Path,
    address: &Address,
    password: &str,
) -> Result<Result<PasswordHash, CreationRefusal>, PasswordError> {
    if nocreate.exists() {
        tracing::warn!(
            "not creating {address}: {} exists (account creation disabled)",
            nocreate.display()
        );
        return Ok(Err(CreationRefusal::NoCreate));
    }
    if let Err(limit) = check_limits(config, limits, &config.mailboxes_dir) {
        tracing::warn!("registration rejected: {limit}");
        return Ok(Err(CreationRefusal::SystemLimit(limit)));
    }
    PasswordHash::sha512_crypt(password).map(Ok)
}
