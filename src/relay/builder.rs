//! [`RelayBuilder`]: assembles a [`Relay`] from a configuration, a backend and what the
//! provider plugs in.

use super::plugins::{NewMailNotifier, OutboundQueue, RefuseOutbound, ServerMetadata};
use super::service::{OriginCheck, Relay};
use crate::dkim::{DkimSigner, DkimVerifier};
use crate::outbound::{DeliveryQueue, QueueSettings};
use chatmail_core::account::{
    AccountStore, Accounts, DeviceTokenStore, HashingPool, LinuxSystemLimits, LoginThrottle,
    MaildirAccountStore, MaildirDeviceTokens, MemoryAccountStore, MemoryDeviceTokens, SystemLimits,
    ThrottleSettings,
};
use chatmail_core::budget::MemoryBudget;
use chatmail_core::config::Config;
use chatmail_core::dns::Resolver;
use chatmail_core::store::{MailStore, MaildirStore, MemoryStore, StoreError};
use chatmail_core::BlockingExecutor;
use chatmail_policy::{Policy, PolicyConfig};
use std::sync::Arc;

/// Which storage a [`Relay`] uses.
enum Backend {
    Memory,
    Maildir(Arc<dyn BlockingExecutor>),
    /// Stores opened by the caller: PostgreSQL, or an embedder's own.
    Given(Stores),
}

/// The three stores of one backend and the executor their blocking work runs on.
type Stores = (
    Arc<dyn AccountStore>,
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
    queue_dir: Option<std::path::PathBuf>,
    queue: Option<Arc<DeliveryQueue>>,
    resolver: Option<Arc<dyn Resolver>>,
    dkim_signer: Option<DkimSigner>,
    skip_dkim_verification: bool,
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

    /// Use stores the caller opened: every account, token and mailbox operation goes to
    /// them, and blocking work (password hashes, DKIM checks, SEARCH scans) runs on
    /// `executor`. This is how a backend that is not the file system plugs in; see
    /// `RelayBuilder::postgres` (feature `postgres`) for the one this crate has.
    pub fn stores(
        mut self,
        accounts: Arc<dyn AccountStore>,
        tokens: Arc<dyn DeviceTokenStore>,
        mail: Arc<dyn MailStore>,
        executor: Arc<dyn BlockingExecutor>,
    ) -> Self {
        self.backend = Backend::Given((accounts, tokens, mail, executor));
        self
    }

    /// Keep accounts, device tokens and mail in the PostgreSQL database of `store`
    /// (feature `postgres`), which other relay nodes of the domain may share; open it
    /// first with [`PostgresStore::open`](chatmail_core::store::PostgresStore::open).
    #[cfg(feature = "postgres")]
    pub fn postgres(
        self,
        store: Arc<chatmail_core::store::PostgresStore>,
        executor: Arc<dyn BlockingExecutor>,
    ) -> Self {
        self.stores(store.clone(), store.clone(), store, executor)
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

    /// Where DNS answers come from: the mail exchangers of other domains and the DKIM
    /// keys of incoming mail. The tokio driver's `resolver_from_config` makes the one
    /// the configuration's `resolver` key names.
    pub fn resolver(mut self, resolver: Arc<dyn Resolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Sign every message that leaves for another domain with `signer` (spec 4.5); the
    /// relay example loads or creates it with [`DkimSigner::load_or_create`] in its data
    /// directory.
    pub fn dkim_signer(mut self, signer: DkimSigner) -> Self {
        self.dkim_signer = Some(signer);
        self
    }

    /// Accept mail from other servers without the DKIM origin check (spec 3.3 step 6),
    /// as the reference's `FILTERMAIL_SKIP_DKIM`: for tests that send unsigned mail,
    /// never for a relay on the Internet. Without it and without a
    /// [`RelayBuilder::resolver`], such mail is refused for the moment (`451 4.7.5`).
    pub fn skip_dkim_verification(mut self) -> Self {
        self.skip_dkim_verification = true;
        self
    }

    /// Keep a durable [`DeliveryQueue`] in `dir` (the relay example uses
    /// `<data-dir>/queue`): mail for other domains, and local recipients whose delivery
    /// failed for the moment, wait there until
    /// [`Relay::run_delivery_queue`] hands them over. Without it, remote recipients go
    /// to the [`OutboundQueue`] plugged in with [`RelayBuilder::outbound`].
    pub fn delivery_queue(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.queue_dir = Some(dir.into());
        self
    }

    /// Use `queue`, opened by the caller, as the delivery queue: the queue that the
    /// nodes of a domain share in their database
    /// (`DeliveryQueue::open_shared`, feature `postgres`). Takes precedence over
    /// [`RelayBuilder::delivery_queue`].
    pub fn with_delivery_queue(mut self, queue: Arc<DeliveryQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Builds the relay; fails if the maildir store cannot create its root directory
    /// or the delivery queue cannot be opened.
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
                    MaildirStore::open(&config.mailboxes_dir)?
                        .with_group_commit(config.mailbox_group_commit)?
                        .with_executor(executor.clone()),
                ),
                executor.clone(),
            ),
            Backend::Given(stores) => stores,
        };
        let limits = self.limits.unwrap_or_else(|| Arc::new(LinuxSystemLimits));
        let pool = self
            .hashing_pool
            .unwrap_or_else(|| Arc::new(HashingPool::from_config(&config)));
        let system_limits = limits.clone();
        let mut accounts = Accounts::new(config.clone(), accounts_store, limits, executor.clone())
            .with_hashing_pool(pool);
        if let Some(path) = self.nocreate_path {
            accounts = accounts.with_nocreate_path(path);
        }
        let queue = match (self.queue, &self.queue_dir) {
            (Some(queue), _) => Some(queue),
            (None, Some(dir)) => Some(Arc::new(
                DeliveryQueue::open(dir, QueueSettings::from_config(&config), executor.clone())
                    .map_err(|source| StoreError::Io {
                        context: format!("opening the delivery queue {}", dir.display()),
                        source,
                    })?,
            )),
            (None, None) => None,
        };
        let origin_check = match (&self.resolver, self.skip_dkim_verification) {
            (_, true) => OriginCheck::Skip,
            (Some(resolver), false) => OriginCheck::Dkim(Arc::new(DkimVerifier::new(
                resolver.clone(),
                executor.clone(),
            ))),
            (None, false) => OriginCheck::NoResolver,
        };
        Ok(Relay {
            queue,
            origin_check,
            dkim_signer: self.dkim_signer,
            resolver: self.resolver,
            address_domain: config.address_domain(),
            message_budget: MemoryBudget::new(config.max_message_memory_bytes()),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            system_limits,
            throttle: LoginThrottle::new(ThrottleSettings::from_config(&config)),
            policy: Arc::new(Policy::new(PolicyConfig::from(&config))),
            config: Arc::new(config),
            accounts: Arc::new(accounts),
            tokens,
            store,
            outbound: self.outbound,
            notifier: self.notifier,
            recent_deliveries: Arc::new(super::duplicates::RecentDeliveries::new()),
            server_metadata: self.server_metadata,
            executor,
        })
    }
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
            queue_dir: None,
            queue: None,
            resolver: None,
            dkim_signer: None,
            skip_dkim_verification: false,
        }
    }
}
