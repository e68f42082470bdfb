//! Delivery of an accepted message: local recipients' INBOXes, the outbound queue.

use super::duplicates::{Claim, RecentDeliveries, SharedDigest};
use super::expiry::trim_to_quota;
use super::plugins::NewMailNotifier;
use super::service::{unix_now, Relay};
use crate::metrics::Metrics;
use bytes::Bytes;
use chatmail_core::account::{Accounts, DeviceTokenStore};
use chatmail_core::config::Config;
use chatmail_core::store::{MailStore, StoreError};
use chatmail_core::{Address, Flags, INBOX};
use chatmail_smtp::server::DeliveryFailure;
use futures::FutureExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

impl Relay {
    /// Whether `address` is an address of this relay.
    pub fn is_local(&self, address: &str) -> bool {
        address
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(&self.address_domain))
    }

    /// Whether the operator disabled `account` (its `DISABLED` file): mail to and from it
    /// is accepted and dropped, as the reference filter does. A store that cannot tell
    /// counts as not disabled (the delivery then meets the store's error itself).
    pub async fn is_disabled(&self, account: &Address) -> bool {
        is_disabled(&self.accounts, account).await
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
        let digest = SharedDigest::default();
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
                self.deliver_local(mail_from, rcpt, known, local_copy.clone(), &digest)
                    .await,
            );
        }
        self.queue_local_retries(mail_from, recipients, &mut outcomes, &local_copy)
            .await;
        if !remote.is_empty() {
            let rcpts: Vec<String> = remote.iter().map(|&i| recipients[i].clone()).collect();
            let results = match (message, &self.queue) {
                (Some(message), Some(_)) => {
                    let queued = match self.dkim_signed(message).await {
                        Ok(signed) => {
                            self.queue_for_delivery(mail_from, &rcpts, signed, true)
                                .await
                        }
                        Err(failure) => Err(failure),
                    };
                    vec![queued; rcpts.len()]
                }
                (Some(message), None) => self.outbound.enqueue(mail_from, &rcpts, message).await,
                (None, _) => Vec::new(),
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

    /// `message` with this relay's DKIM signature in front (spec 4.5), signed once for
    /// every other domain it goes to; as it is without a signer. The hashing and RSA
    /// run on the blocking executor.
    async fn dkim_signed(&self, message: Bytes) -> Result<Bytes, DeliveryFailure> {
        let Some(signer) = self.dkim_signer.clone() else {
            return Ok(message);
        };
        let signed = chatmail_core::run_blocking(&*self.executor, move || {
            signer.sign(&message).map(|field| {
                let mut out = Vec::with_capacity(field.len() + message.len());
                out.extend_from_slice(&field);
                out.extend_from_slice(&message);
                Bytes::from(out)
            })
        })
        .await;
        match signed {
            Ok(Ok(signed)) => {
                self.metrics.dkim_signed();
                Ok(signed)
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "DKIM signing failed; the sender retries");
                Err(DeliveryFailure::LocalError)
            }
            Err(e) => Err(local_error(e)),
        }
    }

    /// Local recipients whose delivery failed for the moment (storage) go to the
    /// delivery queue as stored locally, retried after `outbound_retry_min`: the `250`
    /// the other recipients earn loses nothing, and a peer is not made to send again
    /// what some recipients already have.
    async fn queue_local_retries(
        &self,
        mail_from: &str,
        recipients: &[String],
        outcomes: &mut [Option<Result<(), DeliveryFailure>>],
        local_copy: &Bytes,
    ) {
        if self.queue.is_none() {
            return;
        }
        let mut retry: Vec<String> = Vec::new();
        for (o, rcpt) in outcomes.iter().zip(recipients) {
            let mailbox = rcpt.to_ascii_lowercase();
            if matches!(o, Some(Err(DeliveryFailure::LocalError))) && !retry.contains(&mailbox) {
                retry.push(mailbox);
            }
        }
        if retry.is_empty() {
            return;
        }
        let queued = self
            .queue_for_delivery(mail_from, &retry, local_copy.clone(), false)
            .await;
        for (o, rcpt) in outcomes.iter_mut().zip(recipients) {
            if matches!(o, Some(Err(DeliveryFailure::LocalError)))
                && retry.contains(&rcpt.to_ascii_lowercase())
            {
                *o = Some(queued.clone());
            }
        }
    }

    /// Puts `message` for `recipients` in the delivery queue, durably; `now`: first
    /// attempted at once (mail for other domains), else after `outbound_retry_min`
    /// (local recipients whose delivery just failed for the moment). Without a queue,
    /// the recipients stay failed (`451 4.3.0`, the sender retries).
    pub(super) async fn queue_for_delivery(
        &self,
        mail_from: &str,
        recipients: &[String],
        message: Bytes,
        now: bool,
    ) -> Result<(), DeliveryFailure> {
        let Some(queue) = &self.queue else {
            return Err(DeliveryFailure::LocalError);
        };
        let now_ms = super::service::unix_ms();
        let first = if now {
            now_ms
        } else {
            now_ms.saturating_add(queue.settings().retry_min.as_millis() as u64)
        };
        match queue
            .enqueue(mail_from, recipients, message, now_ms, first)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "message not queued");
                Err(DeliveryFailure::Refused(e.reply()))
            }
        }
    }

    /// Appends `message` to the INBOX of local `rcpt`; `known`: the account was found at
    /// RCPT, no second lookup; `digest`: shared by the deliveries of this `message`
    /// (`src/relay/duplicates.rs`).
    ///
    /// The whole delivery (lookup, DISABLED marker, quota, append, device tokens) runs as
    /// one job on the blocking executor, its store calls inline there
    /// ([`chatmail_core::run_blocking`]): one hand-over between threads per recipient
    /// instead of one per store call, which the profile of issue 14 found to be most of
    /// the relay's CPU per message (BENCHMARKS.md).
    pub(super) async fn deliver_local(
        &self,
        mail_from: &str,
        rcpt: &str,
        known: bool,
        message: Bytes,
        digest: &SharedDigest,
    ) -> Result<(), DeliveryFailure> {
        let local = self.local_delivery();
        let (mail_from, rcpt, digest) = (mail_from.to_string(), rcpt.to_string(), digest.clone());
        let delivery: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move {
            local
                .deliver(&mail_from, &rcpt, known, message, &digest)
                .await
        });
        // In the job every store call runs inline, so the delivery normally completes
        // on its first poll. A store that truly waits (a network database) leaves it
        // pending: the rest is awaited here, where waiting costs no thread. (Polled, not
        // `block_on`: the job may itself run inside a `block_on`, InlineExecutor's.)
        let polled = chatmail_core::run_blocking(&*self.executor, move || {
            let mut delivery = delivery;
            match (&mut delivery).now_or_never() {
                Some(outcome) => Ok(outcome),
                None => Err(delivery),
            }
        })
        .await;
        match polled {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(pending)) => pending.await,
            Err(gone) => Err(local_error(gone)),
        }
    }

    /// What a local delivery needs, shared out of the relay so that it can run as a job.
    fn local_delivery(&self) -> LocalDelivery {
        LocalDelivery {
            config: self.config.clone(),
            accounts: self.accounts.clone(),
            store: self.store.clone(),
            tokens: self.tokens.clone(),
            notifier: self.notifier.clone(),
            recent: self.recent_deliveries.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// The parts of the relay a local delivery uses (see [`Relay::deliver_local`]).
pub(super) struct LocalDelivery {
    config: Arc<Config>,
    accounts: Arc<Accounts>,
    store: Arc<dyn MailStore>,
    tokens: Arc<dyn DeviceTokenStore>,
    notifier: Option<Arc<dyn NewMailNotifier>>,
    recent: Arc<RecentDeliveries>,
    metrics: Arc<Metrics>,
}

impl LocalDelivery {
    async fn deliver(
        &self,
        mail_from: &str,
        rcpt: &str,
        known: bool,
        message: Bytes,
        digest: &SharedDigest,
    ) -> Result<(), DeliveryFailure> {
        let started = std::time::Instant::now();
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
        if is_disabled(&self.accounts, &account).await {
            tracing::info!("mail to a disabled address dropped");
            return Ok(());
        }
        // A second copy of what this recipient got lately (a sender that lost our `250`
        // and sent again) is answered as delivered: it is in the mailbox already.
        let claim = match self.recent.claim(account.as_str(), digest, &message) {
            Claim::Duplicate => {
                self.metrics.duplicate_dropped();
                tracing::info!("second copy of a recent delivery dropped");
                return Ok(());
            }
            Claim::First(key) => Some(key),
            Claim::Unchecked => None,
        };
        let outcome = self.store_new(mail_from, &account, message, started).await;
        if let (Err(_), Some(key)) = (&outcome, claim) {
            self.recent.release(key);
        }
        outcome
    }

    /// The quota check, the append and its push notification, and the quota trim.
    async fn store_new(
        &self,
        mail_from: &str,
        account: &Address,
        message: Bytes,
        started: std::time::Instant,
    ) -> Result<(), DeliveryFailure> {
        let quota = self.config.max_mailbox_bytes();
        // One reading serves both the quota check and the trim decision below.
        let used_after = match self.store.quota_usage(account).await {
            Ok(used) => used.saturating_add(message.len() as u64),
            Err(e) => return Err(store_error(e)),
        };
        if used_after > quota {
            self.metrics.quota_exceeded();
            return Err(DeliveryFailure::QuotaExceeded);
        }
        // Spec 5.3: no push for the sender's own copy (multi-device bcc-self). The tokens
        // are read before the append, in the same job (an append may complete on
        // another thread, and a read after it would be one more hand-over); the push
        // goes out only once the message is durable.
        let push_to = match &self.notifier {
            Some(notifier) if !mail_from.eq_ignore_ascii_case(account.as_str()) => {
                match self.tokens.tokens(account, unix_now()).await {
                    Ok(tokens) if !tokens.is_empty() => Some((notifier, tokens)),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading device tokens failed");
                        None
                    }
                }
            }
            _ => None,
        };
        let now = unix_now() as i64;
        if let Err(e) = self
            .store
            .append(account, INBOX, message, &Flags::new(), now)
            .await
        {
            return Err(store_error(e));
        }
        self.metrics.delivered_locally(started.elapsed());
        if let Some((notifier, tokens)) = push_to {
            notifier.new_message(account, tokens);
        }
        // Spec 4.2: past 75 % of the quota, the oldest messages are trimmed to 70 %.
        if used_after > quota / 4 * 3 {
            trim_to_quota(&self.config, &*self.store, &self.metrics, account).await;
        }
        Ok(())
    }
}

/// Whether the operator disabled `account` (its `DISABLED` file); see
/// [`Relay::is_disabled`].
async fn is_disabled(accounts: &Accounts, account: &Address) -> bool {
    match accounts.store().is_disabled(account).await {
        Ok(disabled) => disabled,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the DISABLED marker");
            false
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
pub(super) fn local_delivery_copy(message: Bytes, keep: bool) -> (Bytes, Option<Bytes>) {
    let Some(edit) = chatmail_policy::local_delivery_edit(&message) else {
        return (message.clone(), keep.then_some(message));
    };
    if keep {
        return (written(&edit, &message), Some(message));
    }
    match message.try_into_mut() {
        Ok(mut unique) => match edit.apply_in_place(&mut unique) {
            Some(start) => (unique.freeze().slice(start..), None),
            None => (written(&edit, &unique), None),
        },
        Err(shared) => (written(&edit, &shared), None),
    }
}

/// `message` with `edit` applied, written out once.
fn written(edit: &chatmail_policy::HeaderEdit, message: &[u8]) -> Bytes {
    let mut out = Vec::new();
    edit.write(message, &mut out);
    Bytes::from(out)
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
