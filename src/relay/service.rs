//! The [`Relay`] itself: what it holds and what it hands out to drivers and engines.

use super::plugins::{NewMailNotifier, OutboundQueue, ServerMetadata};
use chatmail_core::account::{Accounts, DeviceTokenStore, LoginThrottle};
use chatmail_core::budget::MemoryBudget;
use chatmail_core::config::Config;
use chatmail_core::store::{ChangeSubscription, MailStore};
use chatmail_core::Address;
use chatmail_core::BlockingExecutor;
use chatmail_imap::SessionConfig;
use chatmail_policy::Policy;
use chatmail_smtp::server::{Role, ServerConfig};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The relay: configuration, policy, accounts, storage and the outbound queue, shared
/// by every session (keep it in an `Arc`).
pub struct Relay {
    pub(super) config: Arc<Config>,
    pub(super) policy: Arc<Policy>,
    pub(super) accounts: Arc<Accounts>,
    /// Failed logins per client IP and per account, shared by SMTP and IMAP.
    pub(super) throttle: LoginThrottle,
    pub(super) tokens: Arc<dyn DeviceTokenStore>,
    pub(super) store: Arc<dyn MailStore>,
    pub(super) outbound: Arc<dyn OutboundQueue>,
    /// Where DNS answers come from (delivery, DKIM keys), if the relay was given one.
    pub(super) resolver: Option<Arc<dyn chatmail_core::dns::Resolver>>,
    /// Signs what leaves for other domains, if the relay has a key.
    pub(super) dkim_signer: Option<crate::dkim::DkimSigner>,
    /// How the origin of mail from other servers is checked.
    pub(super) origin_check: OriginCheck,
    /// The durable queue of recipients not delivered at once, if the relay has one.
    pub(super) queue: Option<Arc<crate::outbound::DeliveryQueue>>,
    pub(super) notifier: Option<Arc<dyn NewMailNotifier>>,
    /// Local deliveries of the last hour, so that a sender's second copy is not
    /// stored twice.
    pub(super) recent_deliveries: Arc<super::duplicates::RecentDeliveries>,
    pub(super) server_metadata: Option<Arc<dyn ServerMetadata>>,
    /// Where CPU-bound work of the engines' requests runs (SEARCH scans), off the
    /// runtime's workers.
    pub(super) executor: Arc<dyn BlockingExecutor>,
    /// `config.address_domain()`, computed once: it is compared for every recipient.
    pub(super) address_domain: String,
    /// `max_message_memory`: message bytes all sessions together hold while receiving.
    pub(super) message_budget: Arc<MemoryBudget>,
    /// The operator's counters, gauges and histograms.
    pub(super) metrics: Arc<crate::metrics::Metrics>,
    /// Machine readings (free disk for the metrics; the accounts' creation limits hold
    /// the same).
    pub(super) system_limits: Arc<dyn chatmail_core::account::SystemLimits>,
}

/// How a relay checks where mail from other servers comes from.
pub(crate) enum OriginCheck {
    /// Strict DKIM with keys from the relay's resolver.
    Dkim(Arc<crate::dkim::DkimVerifier>),
    /// Not at all ([`RelayBuilder::skip_dkim_verification`](super::RelayBuilder::skip_dkim_verification), tests).
    Skip,
    /// The relay has no resolver to fetch keys with: mail from DNS domains is refused
    /// for the moment, never let through unchecked.
    NoResolver,
}

/// Unix milliseconds now (the delivery queue's clock).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Relay {
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

    /// The resolver the relay was built with ([`RelayBuilder::resolver`](super::RelayBuilder::resolver)).
    pub fn resolver(&self) -> Option<&Arc<dyn chatmail_core::dns::Resolver>> {
        self.resolver.as_ref()
    }

    /// The operator's metrics, served by a driver on `metrics_listen`.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// The Prometheus exposition of [`Relay::metrics`] with what is read at scrape time:
    /// the delivery queue's length and bytes, the free disk of the mailboxes (one
    /// `statvfs`).
    pub fn render_metrics(&self) -> String {
        let queue = self.queue.as_ref();
        self.metrics.render(&crate::metrics::Readings {
            queue_messages: queue.map(|q| q.len()),
            queue_bytes: queue.map(|q| q.bytes()),
            free_disk_bytes: self
                .system_limits
                .free_disk_bytes(&self.config.mailboxes_dir),
        })
    }

    /// The change feed of `account`, for an IMAP session in IDLE.
    pub fn subscribe(&self, account: &Address) -> ChangeSubscription {
        self.store.subscribe(account)
    }
}
