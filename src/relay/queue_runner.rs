//! Running the [`DeliveryQueue`]: due attempts go to the [`Transport`] (other domains)
//! or to the local INBOXes (local recipients whose delivery had failed for the moment);
//! what was given up is reported to the local sender.

use super::service::{unix_ms, Relay};
use crate::outbound::{Attempt, DeliveryQueue, Handover, RecipientOutcome, Transport};
use chatmail_policy::Reply;
use chatmail_smtp::server::DeliveryFailure;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Longest sleep between two looks at the queue, whatever it says is next: a clock
/// step (NTP) cannot leave due mail waiting for long.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// How long shutdown waits for attempts in flight to be recorded; an attempt cut off
/// is attempted again after the restart.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl Relay {
    /// The delivery queue, if this relay has one ([`RelayBuilder::delivery_queue`](super::RelayBuilder::delivery_queue)).
    pub fn delivery_queue(&self) -> Option<&Arc<DeliveryQueue>> {
        self.queue.as_ref()
    }

    /// Carries out the delivery queue's attempts until `stop` completes: mail for other
    /// domains through `transport`, queued local recipients into their INBOX; reports
    /// what was given up to the sender (a DSN in the INBOX of a local sender). `sleep`
    /// is the runtime's timer. Returns at once if the relay has no queue.
    ///
    /// Attempts run concurrently inside the returned future (no task is spawned), within
    /// the queue's bounds; each is cut off after [`Transport::attempt_deadline`].
    pub async fn run_delivery_queue<S, F>(
        self: Arc<Self>,
        transport: Arc<dyn Transport>,
        sleep: S,
        stop: impl Future<Output = ()>,
    ) where
        S: Fn(Duration) -> F,
        F: Future<Output = ()>,
    {
        let Some(queue) = self.queue.clone() else {
            return;
        };
        let mut running = FuturesUnordered::new();
        let mut stop = std::pin::pin!(stop.fuse());
        // Bounded by the queue itself (destinations and attempts per destination).
        let capacity = queue.settings().max_destinations.saturating_mul(4).max(1);
        let heartbeat = crate::outbound::NODE_HEARTBEAT.as_millis() as u64;
        let mut next_heartbeat = 0;
        loop {
            let mut now = unix_ms();
            if queue.is_shared() && now >= next_heartbeat {
                // Other nodes learn this one is alive; messages of nodes that stopped
                // become this node's (they are due at once or at their recorded times).
                if let Err(e) = queue.adopt_orphans(now).await {
                    tracing::warn!(error = %e, "shared delivery queue: heartbeat failed");
                }
                now = unix_ms();
                next_heartbeat = now.saturating_add(heartbeat);
            }
            let room = capacity.saturating_sub(running.len());
            for attempt in queue.take_due(now, room) {
                let deadline = sleep(transport.attempt_deadline());
                running.push(self.clone().attempt(
                    queue.clone(),
                    transport.clone(),
                    attempt,
                    deadline,
                ));
            }
            // Sleep until the next entry is due; an entry already due but held back by
            // the bounds waits for a record (which raises `changed`).
            let mut wait = match queue.next_due() {
                Some(at) if at > now => Duration::from_millis(at - now).min(MAX_SLEEP),
                _ => MAX_SLEEP,
            };
            if queue.is_shared() {
                wait = wait.min(Duration::from_millis(next_heartbeat.saturating_sub(now)));
            }
            let mut timer = std::pin::pin!(sleep(wait).fuse());
            let mut changed = std::pin::pin!(queue.changed().fuse());
            futures::select! {
                _ = running.select_next_some() => {}
                _ = changed => {}
                _ = timer => {}
                _ = stop => break,
            }
        }
        let mut grace = std::pin::pin!(sleep(SHUTDOWN_GRACE).fuse());
        while !running.is_empty() {
            futures::select! {
                _ = running.select_next_some() => {}
                _ = grace => {
                    tracing::info!(attempts = running.len(), "delivery attempts cut off by shutdown; retried after restart");
                    break;
                }
            }
        }
    }

    /// One attempt: carry it out, record it, report what was given up.
    async fn attempt(
        self: Arc<Self>,
        queue: Arc<DeliveryQueue>,
        transport: Arc<dyn Transport>,
        attempt: Attempt,
        deadline: impl Future<Output = ()>,
    ) {
        let message = match queue.message(&attempt.id).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "queued message unreadable; deferred");
                let outcomes =
                    deferred_all(&attempt, Reply::new(451, "4.3.0 Local error in processing"));
                let _ = queue.record(&attempt, &outcomes, unix_ms()).await;
                return;
            }
        };
        let outcomes = if attempt.domain.eq_ignore_ascii_case(&self.address_domain) {
            self.deliver_queued_locally(&attempt, message.clone()).await
        } else {
            let handover = Handover {
                domain: &attempt.domain,
                mail_from: &attempt.mail_from,
                recipients: &attempt.recipients,
                message: &message,
            };
            let started = std::time::Instant::now();
            let outcomes = futures::select! {
                outcomes = transport.hand_over(handover).fuse() => outcomes,
                _ = std::pin::pin!(deadline.fuse()) => deferred_all(
                    &attempt,
                    Reply::new(421, "4.4.2 Delivery attempt timed out"),
                ),
            };
            self.metrics.outbound_attempt(started.elapsed());
            outcomes
        };
        let recorded = match queue.record(&attempt, &outcomes, unix_ms()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "could not record a delivery attempt");
                return;
            }
        };
        let delivered = outcomes
            .iter()
            .filter(|o| matches!(o, RecipientOutcome::Delivered(_)))
            .count();
        tracing::debug!(
            domain = %attempt.domain,
            recipients = attempt.recipients.len(),
            delivered,
            given_up = recorded.failed.len(),
            "delivery attempt"
        );
        if !recorded.failed.is_empty() && self.is_local(&attempt.mail_from) {
            let failed: Vec<(&String, Reply)> = recorded
                .failed
                .iter()
                .map(|(rcpt, reply)| (rcpt, reply.clone()))
                .collect();
            self.report_failures(&attempt.mail_from, &message, &failed)
                .await;
        }
    }

    /// Queued local recipients: appended to their INBOX now, or deferred again.
    async fn deliver_queued_locally(
        &self,
        attempt: &Attempt,
        message: bytes::Bytes,
    ) -> Vec<RecipientOutcome> {
        let (local_copy, _) = super::deliver::local_delivery_copy(message, false);
        let mut outcomes = Vec::with_capacity(attempt.recipients.len());
        let digest = super::duplicates::SharedDigest::default();
        for rcpt in &attempt.recipients {
            let outcome = match self
                .deliver_local(&attempt.mail_from, rcpt, false, local_copy.clone(), &digest)
                .await
            {
                Ok(()) => RecipientOutcome::Delivered(Reply::new(250, "2.0.0 Delivered")),
                Err(DeliveryFailure::LocalError) => {
                    RecipientOutcome::Deferred(DeliveryFailure::LocalError.reply(rcpt))
                }
                Err(failure) => RecipientOutcome::from_reply(failure.reply(rcpt)),
            };
            outcomes.push(outcome);
        }
        outcomes
    }
}

/// Every recipient of `attempt` deferred with `reply`.
fn deferred_all(attempt: &Attempt, reply: Reply) -> Vec<RecipientOutcome> {
    attempt
        .recipients
        .iter()
        .map(|_| RecipientOutcome::Deferred(reply.clone()))
        .collect()
}
