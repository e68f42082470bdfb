//! [`PostgresStore`] and its [`PostgresOptions`]: opening, and the [`MailStore`] methods,
//! each run on the store's runtime.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::cursors::Feed;
use super::inner::Inner;
use super::sql::get;
use super::tls::{self, Tls};
use super::{expiry, feed, flags, mailboxes, messages, schema};
use crate::expiry::{ExpiryPolicy, ExpiryReport};
use crate::store::error::StoreError;
use crate::store::feed::{ChangeHub, ChangeSubscription};
use crate::store::limits::StoreLimits;
use crate::store::mail_store::{AppendOutcome, CopyOutcome, MailStore, StoreFlagsOutcome};
use crate::types::{Address, FlagOp, Flags, MailboxInfo, MailboxStatus, MessageMeta, ModSeq, Uid};

/// How a [`PostgresStore`] connects and how it learns of other nodes' changes.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connections in the pool (the listener has one more of its own).
    pub pool_size: usize,
    /// Longest a statement may run (`statement_timeout` on every connection), also the
    /// longest wait for a pooled connection.
    pub statement_timeout: Duration,
    /// Longest a connection attempt may take.
    pub connect_timeout: Duration,
    /// Keep a `LISTEN` connection for other nodes' changes (false on an engine without
    /// `NOTIFY`; then set `poll_interval`).
    pub listen: bool,
    /// Read the changes of accounts with local subscribers this often, whether or not a
    /// notification came (the bounded poll for engines without `NOTIFY`).
    pub poll_interval: Option<Duration>,
    /// With `sslmode=require` in the URL: a PEM file of the CA certificates the
    /// database's certificate must chain to (its host name checked too); `None` trusts
    /// the system's roots. Without `require` the connections are plain.
    pub tls_roots: Option<PathBuf>,
    /// The bounds every store keeps.
    pub limits: StoreLimits,
}

impl Default for PostgresOptions {
    /// 16 connections, 30 s per statement, 10 s to connect, listening, no poll, the
    /// system's CA roots.
    fn default() -> Self {
        PostgresOptions {
            pool_size: 16,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            listen: true,
            poll_interval: None,
            tls_roots: None,
            limits: StoreLimits::default(),
        }
    }
}

/// A [`MailStore`] in a PostgreSQL database, shared by every relay node that opens the
/// same database. Cloning gives another handle to the same store. See the
/// [module docs](super) for the guarantees.
///
/// Queries run on the tokio runtime the store was opened on, so its methods may be
/// awaited from any executor.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://USER@HOST:PORT/DB`, or the key=value form), applies
    /// the schema migrations this build has and the database lacks, and starts the
    /// listener. Must be called within a tokio runtime (else an error): the store runs its
    /// queries and its listener there.
    pub async fn open(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            StoreError::io(
                "postgres: open needs a tokio runtime",
                std::io::Error::other(e),
            )
        })?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::io(
                "postgres: bad connection URL",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            )
        })?;
        let timeout_ms = options.statement_timeout.as_millis().max(1);
        // A transaction left open (a node stalled mid-way) must not hold row locks for long.
        config.options(format!(
            "-c statement_timeout={timeout_ms} -c idle_in_transaction_session_timeout={timeout_ms}"
        ));
        config.connect_timeout(options.connect_timeout);
        // A connection whose peer vanished (a partition, a killed database host) is
        // noticed in about a minute, not the system's two hours: the listener only
        // receives, and would otherwise wait on a dead connection.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3);
        if config.get_application_name().is_none() {
            config.application_name("chatmail");
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let tls = tls::connector(&config, options.tls_roots.as_deref())?;
        let manager = match &tls {
            Tls::Off => Manager::from_config(config.clone(), NoTls, manager_config),
            Tls::On(tls) => Manager::from_config(config.clone(), tls.clone(), manager_config),
        };
        let wait = Some(options.statement_timeout);
        let pool = Pool::builder(manager)
            // Expiry holds one connection for its lock while it works with another.
            .max_size(options.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(wait)
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|e| StoreError::io("postgres: pool", std::io::Error::other(e)))?;
        {
            let mut client = get(&pool).await?;
            schema::migrate(&mut client).await?;
        }
        let inner = Arc::new(Inner {
            pool,
            hub: ChangeHub::new(),
            limits: options.limits,
            runtime,
            feed: Feed::new(),
        });
        feed::start_listener(&inner, config, tls, options.listen, options.poll_interval);
        Ok(PostgresStore { inner })
    }

    /// The change feed's publishing side, e.g. to share it with other components.
    pub fn hub(&self) -> &ChangeHub {
        &self.inner.hub
    }

    /// Reads what changed since the modseqs this store last published, for every account
    /// with local subscribers, and publishes it: what the listener does after a
    /// reconnect, and what the poll does on an engine without `NOTIFY`.
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        self.run(|inner| async move { feed::catch_up_all(&inner).await })
            .await
    }

    /// Runs `work` on the store's runtime, so the caller's executor does not matter.
    pub(super) async fn run<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        let task = self.inner.runtime.spawn(work(self.inner.clone()));
        match task.await {
            Ok(result) => result,
            Err(e) if e.is_cancelled() => Err(StoreError::ExecutorGone),
            Err(e) => Err(StoreError::io(
                "postgres: store task panicked",
                std::io::Error::other(e.to_string()),
            )),
        }
    }
}

#[async_trait]
impl MailStore for PostgresStore {
    async fn create_mailbox(&self, account: &Address, mailbox: &str) -> Result<(), StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(|inner| async move { mailboxes::create(&inner, &account, &mailbox).await })
            .await
    }

    async fn delete_mailbox(&self, account: &Address, mailbox: &str) -> Result<(), StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(|inner| async move { mailboxes::delete(&inner, &account, &mailbox).await })
            .await
    }

    async fn rename_mailbox(
        &self,
        account: &Address,
        from: &str,
        to: &str,
    ) -> Result<(), StoreError> {
        let (account, from, to) = (account.clone(), from.to_string(), to.to_string());
        self.run(|inner| async move { mailboxes::rename(&inner, &account, &from, &to).await })
            .await
    }

    async fn set_subscribed(
        &self,
        account: &Address,
        mailbox: &str,
        subscribed: bool,
    ) -> Result<(), StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(|inner| async move {
            mailboxes::set_subscribed(&inner, &account, &mailbox, subscribed).await
        })
        .await
    }

    async fn list_mailboxes(&self, account: &Address) -> Result<Vec<MailboxInfo>, StoreError> {
        let account = account.clone();
        self.run(|inner| async move { mailboxes::list(&inner, &account).await })
            .await
    }

    async fn status(&self, account: &Address, mailbox: &str) -> Result<MailboxStatus, StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(|inner| async move { mailboxes::status(&inner, &account, &mailbox).await })
            .await
    }

    async fn claim_recent(
        &self,
        account: &Address,
        mailbox: &str,
    ) -> Result<std::ops::Range<Uid>, StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(|inner| async move { mailboxes::claim_recent(&inner, &account, &mailbox).await })
            .await
    }

    async fn append(
        &self,
        account: &Address,
        mailbox: &str,
        message: Bytes,
        flags: &Flags,
        internal_date: i64,
    ) -> Result<AppendOutcome, StoreError> {
        let (account, mailbox, flags) = (account.clone(), mailbox.to_string(), flags.clone());
        self.run(|inner| async move {
            messages::append(&inner, &account, &mailbox, message, &flags, internal_date).await
        })
        .await
    }

    async fn list_messages(
        &self,
        account: &Address,
        mailbox: &str,
        changed_since: Option<ModSeq>,
    ) -> Result<Vec<MessageMeta>, StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(
            |inner| async move { messages::list(&inner, &account, &mailbox, changed_since).await },
        )
        .await
    }

    async fn read_message(
        &self,
        account: &Address,
        mailbox: &str,
        uid: Uid,
    ) -> Result<Bytes, StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        self.run(|inner| async move { messages::read(&inner, &account, &mailbox, uid).await })
            .await
    }

    async fn store_flags(
        &self,
        account: &Address,
        mailbox: &str,
        uids: &[Uid],
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<ModSeq>,
    ) -> Result<StoreFlagsOutcome, StoreError> {
        let (account, mailbox) = (account.clone(), mailbox.to_string());
        let (uids, flags) = (uids.to_vec(), flags.clone());
        self.run(|inner| async move {
            flags::store(
                &inner,
                &account,
                &mailbox,
                &uids,
                op,
                &flags,
                unchanged_since,
            )
            .await
        })
        .await
    }

    async fn expunge(
        &self,
        account: &Address,
        mailbox: &str,
        uids: &[Uid],
    ) -> Result<Vec<Uid>, StoreError> {
        let (account, mailbox, uids) = (account.clone(), mailbox.to_string(), uids.to_vec());
        self.run(|inner| async move { messages::expunge(&inner, &account, &mailbox, &uids).await })
            .await
    }

    async fn copy(
        &self,
        account: &Address,
        from: &str,
        uids: &[Uid],
        to: &str,
    ) -> Result<CopyOutcome, StoreError> {
        let (account, from, to) = (account.clone(), from.to_string(), to.to_string());
        let uids = uids.to_vec();
        self.run(|inner| async move { messages::copy(&inner, &account, &from, &uids, &to).await })
            .await
    }

    async fn quota_usage(&self, account: &Address) -> Result<u64, StoreError> {
        let account = account.clone();
        self.run(|inner| async move { expiry::quota_usage(&inner, &account).await })
            .await
    }

    /// The daily clean-up by internal date, as the memory store does it, plus the
    /// removal of accounts whose last login is older than `delete_inactive_after_secs`
    /// (their mailboxes published as `MailboxReset`), on one node at a time (an advisory
    /// lock; a node that does not get it reports nothing done). Also prunes expunge
    /// tombstones older than a day.
    async fn expire(&self, policy: &ExpiryPolicy, now: u64) -> Result<ExpiryReport, StoreError> {
        let policy = *policy;
        self.run(|inner| async move { expiry::expire(&inner, &policy, now).await })
            .await
    }

    async fn trim_to_quota(
        &self,
        account: &Address,
        target_bytes: u64,
        now: u64,
    ) -> Result<Vec<Uid>, StoreError> {
        let account = account.clone();
        self.run(|inner| async move { expiry::trim(&inner, &account, target_bytes, now).await })
            .await
    }

    fn subscribe(&self, account: &Address) -> ChangeSubscription {
        let subscription = self.inner.hub.subscribe(account);
        feed::watch(&self.inner, account);
        subscription
    }
}
