//! [`Relay`]: the runtime-agnostic service that answers the engines' requests.
//!
//! The SMTP and IMAP engines never touch storage; each decision that needs the outside
//! world leaves them as a request. `Relay` answers those requests with the account
//! service, the mail store and the device-token store of `chatmail-core`, and carries
//! out accepted deliveries: local recipients get the message appended durably to their
//! INBOX (which wakes their IDLE sessions through the store's change feed) and a push
//! notification enqueued; remote recipients go to the [`OutboundQueue`].
//!
//! Any async runtime can drive it: the methods are `async` and never block, because
//! file-system work goes to the [`BlockingExecutor`] the stores were built with, and
//! password hashes to a [`HashingPool`] of their own (bounded: when it is full, a login
//! gets a temporary failure instead of waiting ahead of the fsyncs of deliveries).
//!
//! Logins go through one [`LoginThrottle`] shared by SMTP and IMAP: failures per client
//! IP and per account earn doubling penalties, and the engines hold the failure answer
//! until the penalty ends (on their own timers). The client IP is only kept in memory
//! for that; it is never logged or written.

use bytes::Bytes;
use chatmail_core::account::{
    parse_login, Accounts, Admission, DeviceTokenStore, HashingPool, LinuxSystemLimits,
    LoginOutcome, LoginThrottle, MaildirAccountStore, MaildirDeviceTokens, MemoryAccountStore,
    MemoryDeviceTokens, SystemLimits, ThrottleSettings,
};
use chatmail_core::budget::MemoryBudget;
use chatmail_core::config::Config;
use chatmail_core::engine::Engine;
use chatmail_core::store::{ChangeSubscription, MailStore, MaildirStore, MemoryStore, StoreError};
use chatmail_core::BlockingExecutor;
use chatmail_core::{Address, Flags, INBOX};
use chatmail_imap::SessionConfig;
use chatmail_policy::{Policy, PolicyConfig};
use chatmail_smtp::server::{DeliveryFailure, Role, ServerConfig};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Where messages for other relays go. The relay hands it every accepted message that
/// has remote recipients; it must make the message durable before it returns `Ok`.
///
/// Delivery to other servers is a later piece of work; until an implementation is
/// plugged in, [`RefuseOutbound`] answers every remote recipient with a temporary
/// failure, so the client keeps the message and retries (never a silent drop).
#[async_trait::async_trait]
pub trait OutboundQueue: Send + Sync {
    /// Queues `message` from `mail_from` (`""` for `<>`) for the remote `recipients`.
    /// Returns one outcome per recipient, in order.
    async fn enqueue(
        &self,
        mail_from: &str,
        recipients: &[String],
        message: Bytes,
    ) -> Vec<Result<(), DeliveryFailure>>;
}

/// Answers the requests of one kind of engine ([`Engine`]): what a driver calls for each
/// [`Output::Request`](chatmail_core::engine::Output::Request), whatever the engine.
/// [`Relay`] answers the SMTP server's and the IMAP server's; one generic pump (the
/// tokio driver's, a test's blocking one) then drives any engine the same way.
#[async_trait::async_trait]
pub trait RequestHandler<E: Engine>: Send + Sync {
    /// Performs `request` of an engine serving a client at `peer` (`None` if unknown;
    /// only the failed-login limits use it) and returns the answer to hand back.
    async fn handle(&self, request: E::Request, peer: Option<IpAddr>) -> E::Answer
    where
        E::Request: 'async_trait;
}

/// The outbound queue of a relay that does not deliver to other servers (yet).
#[derive(Debug, Default, Clone, Copy)]
pub struct RefuseOutbound;

#[async_trait::async_trait]
impl OutboundQueue for RefuseOutbound {
    async fn enqueue(
        &self,
        _: &str,
        recipients: &[String],
        _: Bytes,
    ) -> Vec<Result<(), DeliveryFailure>> {
        recipients
            .iter()
            .map(|_| Err(DeliveryFailure::OutboundDisabled))
            .collect()
    }
}

/// Told about every message appended to a local INBOX that is not the sender's own
/// copy, so that the recipient's devices can be woken by a push notification (spec 5.3).
pub trait NewMailNotifier: Send + Sync {
    /// A new message for `account`, whose valid device tokens are `tokens`.
    fn new_message(&self, account: &Address, tokens: Vec<String>);
}

/// Values of the server metadata entries Delta Chat reads (spec 5.1). The relay answers
/// `irohrelay`, `maxsmtprecipients`, `appversions` and `/shared/admin` from its
/// configuration; a provider can add or override entries (TURN credentials, say).
pub trait ServerMetadata: Send + Sync {
    /// The value of a server entry such as `/shared/vendor/deltachat/turn`, or `None`.
    fn get(&self, entry: &str) -> Option<String>;
}

/// The app versions document the reference ships (spec 5.6), served minified.
const APPVERSIONS_JSON: &str = r#"{"clients":[{"clientId":"deltachat","sources":[{"sourceId":"gplay","versionInteger":754,"versionString":"2.57.0","downloadUrl":"https://github.com/deltachat/deltachat-android/releases/download/v2.57.0/deltachat-gplay-release-2.57.0.apk"}]}]}"#;

/// Which storage a [`Relay`] uses.
enum Backend {
    Memory,
    Maildir(Arc<dyn BlockingExecutor>),
}

/// The three stores of one backend and the executor their blocking work runs on.
type Stores = (
    Arc<dyn chatmail_core::account::AccountStore>,
    Arc<dyn DeviceTokenStore>,
    Arc<dyn MailStore>,
    Arc<dyn BlockingExecutor>,
);

/// Assembles a [`Relay`]; see [`Relay::builder`].
pub struct RelayBuilder {
    config: Config,
    backend: Backend,
    limits: Option<Arc<dyn SystemLimits>>,
    outbound: Arc<dyn OutboundQueue>,
    notifier: Option<Arc<dyn NewMailNotifier>>,
    server_metadata: Option<Arc<dyn ServerMetadata>>,
    nocreate_path: Option<std::path::PathBuf>,
    hashing_pool: Option<Arc<HashingPool>>,
}

impl RelayBuilder {
    /// Keep everything in memory (tests, fuzzing, embedders without persistence).
    pub fn memory(mut self) -> Self {
        self.backend = Backend::Memory;
        self
    }

    /// Keep accounts and mail in `mailboxes_dir` in the reference relay's layout; blocking
    /// file-system work and password hashes run on `executor`.
    pub fn maildir(mut self, executor: Arc<dyn BlockingExecutor>) -> Self {
        self.backend = Backend::Maildir(executor);
        self
    }

    /// Replace the machine readings that refuse new accounts when short of resources.
    pub fn system_limits(mut self, limits: Arc<dyn SystemLimits>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Where messages for other servers go.
    pub fn outbound(mut self, queue: Arc<dyn OutboundQueue>) -> Self {
        self.outbound = queue;
        self
    }

    /// Who learns of new mail (push notifications).
    pub fn notifier(mut self, notifier: Arc<dyn NewMailNotifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Extra server metadata entries (TURN credentials ...).
    pub fn server_metadata(mut self, provider: Arc<dyn ServerMetadata>) -> Self {
        self.server_metadata = Some(provider);
        self
    }

    /// The operator's kill switch for account creation (default `/etc/chatmail-nocreate`).
    pub fn nocreate_path(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.nocreate_path = Some(path.into());
        self
    }

    /// Where password hashes run (default: a pool of `password_hash_threads` threads
    /// with `password_hash_queue` places, made for this relay).
    pub fn hashing_pool(mut self, pool: Arc<HashingPool>) -> Self {
        self.hashing_pool = Some(pool);
        self
    }

    /// Builds the relay; fails if the maildir store cannot create its root directory.
    pub fn build(self) -> Result<Relay, StoreError> {
        let config = self.config;
        let (accounts_store, tokens, store, executor): Stores = match self.backend {
            Backend::Memory => (
                Arc::new(MemoryAccountStore::new()),
                Arc::new(MemoryDeviceTokens::new()),
                Arc::new(MemoryStore::new()),
                Arc::new(chatmail_core::InlineExecutor),
            ),
            Backend::Maildir(ref executor) => (
                Arc::new(MaildirAccountStore::new(
                    &config.mailboxes_dir,
                    executor.clone(),
                )),
                Arc::new(MaildirDeviceTokens::new(
                    &config.mailboxes_dir,
                    executor.clone(),
                )),
                Arc::new(
                    MaildirStore::open(&config.mailboxes_dir)?.with_executor(executor.clone()),
                ),
                executor.clone(),
            ),
        };
        let limits = self.limits.unwrap_or_else(|| Arc::new(LinuxSystemLimits));
        let pool = self
            .hashing_pool
            .unwrap_or_else(|| Arc::new(HashingPool::from_config(&config)));
        let mut accounts = Accounts::new(config.clone(), accounts_store, limits, executor.clone())
            .with_hashing_pool(pool);
        if let Some(path) = self.nocreate_path {
            accounts = accounts.with_nocreate_path(path);
        }
        Ok(Relay {
            address_domain: config.address_domain(),
            message_budget: MemoryBudget::new(config.max_message_memory_bytes()),
            throttle: LoginThrottle::new(ThrottleSettings::from_config(&config)),
            policy: Arc::new(Policy::new(PolicyConfig::from(&config))),
            config: Arc::new(config),
            accounts: Arc::new(accounts),
            tokens,
            store,
            outbound: self.outbound,
            notifier: self.notifier,
            server_metadata: self.server_metadata,
            executor,
        })
    }
}

/// The relay: configuration, policy, accounts, storage and the outbound queue, shared
/// by every session (keep it in an `Arc`).
pub struct Relay {
    config: Arc<Config>,
    policy: Arc<Policy>,
    accounts: Arc<Accounts>,
    /// Failed logins per client IP and per account, shared by SMTP and IMAP.
    throttle: LoginThrottle,
    tokens: Arc<dyn DeviceTokenStore>,
    store: Arc<dyn MailStore>,
    outbound: Arc<dyn OutboundQueue>,
    notifier: Option<Arc<dyn NewMailNotifier>>,
    server_metadata: Option<Arc<dyn ServerMetadata>>,
    /// Where CPU-bound work of the engines' requests runs (SEARCH scans), off the
    /// runtime's workers.
    executor: Arc<dyn BlockingExecutor>,
    /// `config.address_domain()`, computed once: it is compared for every recipient.
    address_domain: String,
    /// `max_message_memory`: message bytes all sessions together hold while receiving.
    message_budget: Arc<MemoryBudget>,
}

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

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Relay {
    /// Starts assembling a relay for `config` (maildir storage on `config.mailboxes_dir`
    /// with blocking work on plain threads, unless told otherwise).
    pub fn builder(config: Config) -> RelayBuilder {
        RelayBuilder {
            config,
            backend: Backend::Maildir(Arc::new(chatmail_core::ThreadExecutor)),
            limits: None,
            outbound: Arc::new(RefuseOutbound),
            notifier: None,
            server_metadata: None,
            nocreate_path: None,
            hashing_pool: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The bound on message bytes all sessions hold in memory (`max_message_memory`);
    /// [`Relay::smtp_config`] and [`Relay::imap_config`] hand it to the engines.
    pub fn message_budget(&self) -> &Arc<MemoryBudget> {
        &self.message_budget
    }

    /// The SMTP engine's settings for a listener in `role`: the mail domain as host
    /// name, the deadlines of `config.timeouts`, this relay's message budget.
    pub fn smtp_config(&self, role: Role) -> ServerConfig {
        let mut config = ServerConfig::new(role, self.config.mail_domain.clone())
            .with_timeouts(&self.config.timeouts);
        config.message_budget = Some(self.message_budget.clone());
        config
    }

    /// The IMAP engine's settings for a listener whose transport is TLS from the start
    /// (993) or not (143, STARTTLS): limits and deadlines of the configuration, this
    /// relay's message budget.
    pub fn imap_config(&self, tls_active: bool) -> SessionConfig {
        let mut config = SessionConfig::from_config(&self.config, tls_active);
        config.message_budget = Some(self.message_budget.clone());
        config
    }

    /// The message-acceptance policy every SMTP session shares.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The mail store.
    pub fn store(&self) -> &Arc<dyn MailStore> {
        &self.store
    }

    /// The account service.
    pub fn accounts(&self) -> &Arc<Accounts> {
        &self.accounts
    }

    /// The failed-login limits every SMTP and IMAP login goes through.
    pub fn login_throttle(&self) -> &LoginThrottle {
        &self.throttle
    }

    /// The device tokens of push notifications.
    pub fn device_tokens(&self) -> &Arc<dyn DeviceTokenStore> {
        &self.tokens
    }

    /// The change feed of `account`, for an IMAP session in IDLE.
    pub fn subscribe(&self, account: &Address) -> ChangeSubscription {
        self.store.subscribe(account)
    }

    /// Checks a login (SMTP AUTH, IMAP LOGIN/AUTHENTICATE) from a client at `peer`
    /// (`None` if unknown: then only the per-account limits apply) at `now`, creating the
    /// account on first login (spec 2.2). `imap` logins record the last-login day (the
    /// reference records IMAP logins only, spec 2.7).
    ///
    /// The [`LoginThrottle`] decides first: during a penalty the password is not checked
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
            LoginOutcome::LoggedIn { address, .. } => {
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

    /// Whether `address` is an address of this relay.
    pub fn is_local(&self, address: &str) -> bool {
        address
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(&self.address_domain))
    }

    /// Whether a local recipient exists, and whether it accepts cleartext from outside.
    /// `None`: no such account.
    pub async fn local_recipient(&self, address: &str) -> Result<Option<bool>, DeliveryFailure> {
        let Ok(addr) = Address::parse(address) else {
            return Ok(None);
        };
        let store = self.accounts.store();
        match store.lookup(&addr).await {
            Ok(None) => Ok(None),
            Ok(Some(_)) => match store.accepts_cleartext(&addr).await {
                Ok(cleartext) => Ok(Some(cleartext)),
                Err(e) => Err(local_error(e)),
            },
            Err(e) => Err(local_error(e)),
        }
    }

    /// Delivers an accepted message: local recipients get it appended to their INBOX
    /// (after the delivery clean-up of spec 4.3, with a quota check), remote ones go to
    /// the outbound queue. `confirmed[i]` says the mailbox of `recipients[i]` was looked
    /// up at RCPT already (missing entries: not confirmed). One outcome per recipient, in
    /// order; `Ok` means durable.
    pub async fn deliver(
        &self,
        mail_from: &str,
        recipients: &[String],
        confirmed: &[bool],
        message: Bytes,
    ) -> Vec<Result<(), DeliveryFailure>> {
        let mut outcomes: Vec<Option<Result<(), DeliveryFailure>>> = vec![None; recipients.len()];
        let mut remote = Vec::new();
        let has_remote = recipients.iter().any(|r| !self.is_local(r));
        let (local_copy, message) = local_delivery_copy(message, has_remote);
        // The first recipient index of each local mailbox: a repeated recipient (LMTP
        // keeps repeated RCPTs, and `Bob@` is `bob@`) shares its outcome, not a copy.
        let mut mailboxes: std::collections::HashMap<String, usize> = Default::default();
        for (i, rcpt) in recipients.iter().enumerate() {
            if !self.is_local(rcpt) {
                remote.push(i);
                continue;
            }
            let mailbox = rcpt.to_ascii_lowercase();
            if let Some(&first) = mailboxes.get(&mailbox) {
                outcomes[i] = outcomes[first].clone();
                continue;
            }
            mailboxes.insert(mailbox, i);
            let known = confirmed.get(i).copied().unwrap_or(false);
            outcomes[i] = Some(
                self.deliver_local(mail_from, rcpt, known, local_copy.clone())
                    .await,
            );
        }
        if !remote.is_empty() {
            let rcpts: Vec<String> = remote.iter().map(|&i| recipients[i].clone()).collect();
            let results = match message {
                Some(message) => self.outbound.enqueue(mail_from, &rcpts, message).await,
                None => Vec::new(),
            };
            for (k, &i) in remote.iter().enumerate() {
                outcomes[i] = Some(
                    results
                        .get(k)
                        .cloned()
                        .unwrap_or(Err(DeliveryFailure::LocalError)),
                );
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Err(DeliveryFailure::LocalError)))
            .collect()
    }

    /// Appends `message` to the INBOX of local `rcpt`; `known`: the account was found at
    /// RCPT, no second lookup.
    async fn deliver_local(
        &self,
        mail_from: &str,
        rcpt: &str,
        known: bool,
        message: Bytes,
    ) -> Result<(), DeliveryFailure> {
        let account = match Address::parse(rcpt) {
            Ok(a) => a,
            Err(_) => return Err(DeliveryFailure::UnknownRecipient),
        };
        if !known {
            match self.accounts.store().lookup(&account).await {
                Ok(Some(_)) => {}
                Ok(None) => return Err(DeliveryFailure::UnknownRecipient),
                Err(e) => return Err(local_error(e)),
            }
        }
        let quota = self.config.max_mailbox_bytes();
        // One reading serves both the quota check and the trim decision below.
        let used_after = match self.store.quota_usage(&account).await {
            Ok(used) => used.saturating_add(message.len() as u64),
            Err(e) => return Err(store_error(e)),
        };
        if used_after > quota {
            return Err(DeliveryFailure::QuotaExceeded);
        }
        let now = unix_now() as i64;
        if let Err(e) = self
            .store
            .append(&account, INBOX, message, &Flags::new(), now)
            .await
        {
            return Err(store_error(e));
        }
        // Spec 4.2: past 75 % of the quota, the oldest messages are trimmed to 70 %.
        if used_after > quota / 4 * 3 {
            self.trim_to_quota(&account).await;
        }
        // Spec 5.3: no push for the sender's own copy (multi-device bcc-self).
        if !mail_from.eq_ignore_ascii_case(account.as_str()) {
            if let Some(notifier) = &self.notifier {
                match self.tokens.tokens(&account, unix_now()).await {
                    Ok(tokens) if !tokens.is_empty() => notifier.new_message(&account, tokens),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "reading device tokens failed"),
                }
            }
        }
        Ok(())
    }

    /// The value of a server metadata entry (spec 5.1), or `None`.
    pub fn server_metadata(&self, entry: &str) -> Option<String> {
        if let Some(v) = self.server_metadata.as_ref().and_then(|p| p.get(entry)) {
            return Some(v);
        }
        match entry {
            "/shared/vendor/deltachat/irohrelay" => match &self.config.iroh_relay {
                None => Some(format!("https://{}", self.config.mail_domain)),
                Some(v) if v.is_empty() => None,
                Some(v) => Some(v.clone()),
            },
            "/shared/vendor/deltachat/maxsmtprecipients" => Some("1000".into()),
            "/shared/vendor/deltachat/appversions" => Some(APPVERSIONS_JSON.into()),
            "/shared/admin" if !self.config.privacy_mail.is_empty() => {
                Some(format!("mailto:{}", self.config.privacy_mail))
            }
            _ => None,
        }
    }
}

/// The message as stored in local mailboxes (spec 4.3: without `DKIM-Signature`,
/// `Authentication-Results` and `Received`), and the message itself when `keep` (remote
/// recipients need it as accepted).
///
/// No byte of the body is copied when nothing else holds the buffer and no original is
/// kept (incoming mail, the common case of a signed message): the new header fields are
/// written in place. Otherwise the stored copy shares the buffer when there is nothing to
/// drop, and is written out once when there is.
fn local_delivery_copy(message: Bytes, keep: bool) -> (Bytes, Option<Bytes>) {
    let Some(edit) = chatmail_policy::local_delivery_edit(&message) else {
        return (message.clone(), keep.then_some(message));
    };
    if !keep {
        match message.try_into_mut() {
            Ok(mut unique) => {
                if let Some(start) = edit.apply_in_place(&mut unique) {
                    return (unique.freeze().slice(start..), None);
                }
                let mut out = Vec::new();
                edit.write(&unique, &mut out);
                return (Bytes::from(out), None);
            }
            Err(shared) => {
                let mut out = Vec::new();
                edit.write(&shared, &mut out);
                return (Bytes::from(out), None);
            }
        }
    }
    let mut out = Vec::new();
    edit.write(&message, &mut out);
    (Bytes::from(out), Some(message))
}

fn local_error(e: impl std::fmt::Display) -> DeliveryFailure {
    tracing::error!(error = %e, "account store failed");
    DeliveryFailure::LocalError
}

fn store_error(e: StoreError) -> DeliveryFailure {
    match e {
        StoreError::MessageTooLarge { .. } => DeliveryFailure::MessageTooLarge,
        other => {
            tracing::error!(error = %other, "mail store failed");
            DeliveryFailure::LocalError
        }
    }
}

mod expiry;
mod imap_answers;
mod smtp_answers;
