//! The login algorithm of spec 2.2: look the account up, verify the password, or create
//! the account on first login when every rule and limit allows it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::types::Address;

use super::hashing::HashingPool;
use super::limits::{check_limits, SystemLimits};
use super::password::{PasswordError, PasswordHash};
use super::store::{AccountError, AccountRecord, AccountStore, Creation, LastLoginUpdate};
use super::validate::{
    check_new_account, parse_login, CreationRefusal, LoginNameError, MAX_PASSWORD_LEN,
};
use crate::executor::{run_blocking, BlockingExecutor};

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
    /// The password is longer than any account's can be ([`MAX_PASSWORD_LEN`]): refused
    /// before any lookup or hash, whether the account exists or not.
    #[error("password has {length} bytes, no account has more than {max}")]
    PasswordTooLong {
        /// Bytes given.
        length: usize,
        /// [`MAX_PASSWORD_LEN`].
        max: usize,
    },
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

impl LoginRefusal {
    /// Whether the login named an existing account (a guess at its password), as opposed
    /// to an unknown or invalid name or a password no account can have.
    pub fn is_wrong_password(&self) -> bool {
        matches!(
            self,
            LoginRefusal::WrongPassword | LoginRefusal::UnusableHash(_)
        )
    }
}

/// The account service: the reference relay's passdb with creation on first login.
///
/// [`Accounts::login`] is async; the password hash and any blocking checks (the nocreate
/// file, system readings) run on the [`BlockingExecutor`] (hashes on the
/// [`HashingPool`] when one is set), never on the task awaiting it.
pub struct Accounts {
    config: Arc<Config>,
    store: Arc<dyn AccountStore>,
    limits: Arc<dyn SystemLimits>,
    executor: Arc<dyn BlockingExecutor>,
    hashing: Option<Arc<HashingPool>>,
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
            hashing: None,
            nocreate_path: PathBuf::from(DEFAULT_NOCREATE_PATH),
        }
    }

    /// Runs password hashes on `pool` instead of the executor: when the pool is full, a
    /// login fails with [`AccountError::HashingBusy`] instead of waiting.
    pub fn with_hashing_pool(mut self, pool: Arc<HashingPool>) -> Self {
        self.hashing = Some(pool);
        self
    }

    /// The pool password hashes run on, if one is set.
    pub fn hashing_pool(&self) -> Option<&Arc<HashingPool>> {
        self.hashing.as_ref()
    }

    /// Runs a hash (`f`) on the pool if there is one, else on the executor.
    async fn hash<T, F>(&self, f: F) -> Result<T, AccountError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        match &self.hashing {
            Some(pool) => Ok(pool.run(f).await?),
            None => Ok(run_blocking(&*self.executor, f).await?),
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
    /// A password longer than [`MAX_PASSWORD_LEN`] is refused before anything else.
    ///
    /// `Err` is an infrastructure failure (storage, executor, a full hashing pool): answer
    /// with a temporary error, not "authentication failed".
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        now: u64,
    ) -> Result<LoginOutcome, AccountError> {
        if password.len() > MAX_PASSWORD_LEN {
            // SHA-crypt's cost grows with the square of the length: never hash it.
            return Ok(LoginOutcome::Refused(LoginRefusal::PasswordTooLong {
                length: password.len(),
                max: MAX_PASSWORD_LEN,
            }));
        }
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
        let allowed = {
            let config = self.config.clone();
            let limits = self.limits.clone();
            let nocreate = self.nocreate_path.clone();
            let address = address.clone();
            run_blocking(&*self.executor, move || {
                creation_allowed(&config, &*limits, &nocreate, &address)
            })
            .await?
        };
        if let Err(refusal) = allowed {
            return Ok(LoginOutcome::Refused(refusal.into()));
        }
        let hash = {
            let password = password.to_string();
            self.hash(move || PasswordHash::sha512_crypt(&password))
                .await??
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
        let verdict = self.hash(move || hash.verify(&password)).await?;
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

/// The file-system part of creation: kill switch and system limits (the hash follows on
/// the hashing pool).
fn creation_allowed(
    config: &Config,
    limits: &dyn SystemLimits,
    nocreate: &Path,
    address: &Address,
) -> Result<(), CreationRefusal> {
    if nocreate.exists() {
        tracing::warn!(
            "not creating {address}: {} exists (account creation disabled)",
            nocreate.display()
        );
        return Err(CreationRefusal::NoCreate);
    }
    if let Err(limit) = check_limits(config, limits, &config.mailboxes_dir) {
        tracing::warn!("registration rejected: {limit}");
        return Err(CreationRefusal::SystemLimit(limit));
    }
    Ok(())
}
