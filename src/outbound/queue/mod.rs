//! [`DeliveryQueue`]: the durable queue of every recipient not delivered at once.
//!
//! Submission hands it the recipients on other servers, and local recipients whose
//! delivery failed for the moment; the relay answers `250` only once the message is in
//! the queue's directory (fsynced, see `spool`). The queue decides what is due: it
//! groups the recipients of one message by destination domain (one attempt hands one
//! message to one domain), retries deferred recipients after `outbound_retry_min`,
//! doubling up to `outbound_retry_max`, gives up after `outbound_queue_lifetime`, and
//! bounds the work in flight (`outbound_max_destinations` domains at once, a few attempts
//! per domain) and what it holds (`outbound_queue_max_messages`,
//! `outbound_queue_max_size`: past them, new mail gets `452 4.3.1`).
//!
//! It does no network I/O and reads no clock: the caller passes the time, takes due
//! [`Attempt`]s with [`DeliveryQueue::take_due`], carries them out and reports with
//! [`DeliveryQueue::record`]. `Relay::run_delivery_queue` is that caller.
//!
//! Delivery is at least once: a crash after the receiving server said `250` and before
//! the envelope was rewritten sends that recipient again after the restart (as Postfix
//! does); the window is one fsync long.

mod spool;

use crate::outbound::signal::Signal;
use crate::outbound::transport::RecipientOutcome;
use bytes::Bytes;
use chatmail_core::config::Config;
use chatmail_core::BlockingExecutor;
use chatmail_policy::Reply;
use spool::{domain_of, Envelope, QueuedRecipient, Spool, Status};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Attempts in flight to one destination domain at once.
const PER_DESTINATION: usize = 4;

/// Most due entries one [`DeliveryQueue::take_due`] looks at, so that a queue full of
/// mail for a few busy destinations does not make every call scan it all.
const MAX_SCAN: usize = 10_000;

/// The retry, lifetime and size settings of a [`DeliveryQueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// Wait before the first retry (`outbound_retry_min`).
    pub retry_min: Duration,
    /// Longest wait between two attempts (`outbound_retry_max`).
    pub retry_max: Duration,
    /// After this, a recipient not yet delivered is given up (`outbound_queue_lifetime`).
    pub lifetime: Duration,
    /// Most messages held (`outbound_queue_max_messages`).
    pub max_messages: u64,
    /// Most message bytes held (`outbound_queue_max_size`).
    pub max_bytes: u64,
    /// Destination domains attempted at the same time (`outbound_max_destinations`).
    pub max_destinations: usize,
}

impl QueueSettings {
    /// The settings of `config`.
    pub fn from_config(config: &Config) -> QueueSettings {
        QueueSettings {
            retry_min: config.outbound_retry_min,
            retry_max: config.outbound_retry_max,
            lifetime: config.outbound_queue_lifetime,
            max_messages: config.outbound_queue_max_messages,
            max_bytes: config.outbound_queue_max_bytes(),
            max_destinations: config.outbound_max_destinations,
        }
    }

    /// The wait after the `attempts`-th deferred attempt: `retry_min`, doubling, at most
    /// `retry_max`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(32);
        self.retry_min
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.retry_max)
    }
}

/// Why [`DeliveryQueue::enqueue`] did not take a message.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue holds `outbound_queue_max_messages` or `outbound_queue_max_size`.
    #[error("the delivery queue is full")]
    Full,
    /// Writing the message failed.
    #[error("delivery queue storage failed: {0}")]
    Storage(#[from] std::io::Error),
    /// The blocking executor is gone (shutting down).
    #[error(transparent)]
    ExecutorGone(#[from] chatmail_core::ExecutorGone),
}

impl QueueError {
    /// The SMTP reply for the sender: `452 4.3.1` when the queue or its disk is full
    /// (RFC 3463 4.3.1, "mail system full"), `451 4.3.0` otherwise.
    pub fn reply(&self) -> Reply {
        match self {
            QueueError::Full => Reply::new(
                452,
                "4.3.1 Insufficient system storage: delivery queue full, try again later",
            ),
            QueueError::Storage(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                Reply::new(452, "4.3.1 Insufficient system storage, try again later")
            }
            _ => Reply::new(451, "4.3.0 Local error in processing"),
        }
    }
}

/// One message to hand to one destination domain, taken with
/// [`DeliveryQueue::take_due`]; report it with [`DeliveryQueue::record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The queued message.
    pub id: String,
    /// The destination domain (lower-cased).
    pub domain: String,
    /// The envelope sender, `""` for `<>`.
    pub mail_from: String,
    /// The pending recipients at `domain`, in the message's order.
    pub recipients: Vec<String>,
}

/// What [`DeliveryQueue::record`] decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recorded {
    /// Recipients given up in this attempt (refused, or past the lifetime), with the
    /// reply to report to the sender.
    pub failed: Vec<(String, Reply)>,
    /// Every recipient of the message is done: it left the queue.
    pub finished: bool,
}

/// A message in memory: its envelope, and a lock that orders the rewrites of its
/// envelope file when two destinations finish at once.
struct Queued {
    envelope: Envelope,
    writes: Arc<futures::lock::Mutex<()>>,
}

#[derive(Default)]
struct State {
    messages: HashMap<String, Queued>,
    /// `(due unix ms, id, domain)`: one entry per message and destination with
    /// pending recipients and no attempt in flight.
    due: BTreeSet<(u64, String, String)>,
    /// Attempts in flight per destination domain.
    in_flight: HashMap<String, usize>,
    /// Message bytes held, reservations of unfinished enqueues included.
    bytes: u64,
    /// Messages held, reservations included.
    count: u64,
}

/// The durable delivery queue; see the module docs.
pub struct DeliveryQueue {
    spool: Arc<Spool>,
    settings: QueueSettings,
    executor: Arc<dyn BlockingExecutor>,
    state: Mutex<State>,
    changed: Signal,
}

impl DeliveryQueue {
    /// Opens the queue in `dir` (created if missing) and loads what it holds: after a
    /// restart, every pending recipient is due again at its recorded time.
    pub fn open(
        dir: &Path,
        settings: QueueSettings,
        executor: Arc<dyn BlockingExecutor>,
    ) -> Result<DeliveryQueue, std::io::Error> {
        let spool = Spool::open(dir)?;
        let mut state = State::default();
        for (id, envelope) in spool.load()? {
            state.count += 1;
            state.bytes += envelope.size;
            for (domain, due) in due_destinations(&envelope) {
                state.due.insert((due, id.clone(), domain));
            }
            state.messages.insert(
                id,
                Queued {
                    envelope,
                    writes: Default::default(),
                },
            );
        }
        if state.count > 0 {
            tracing::info!(messages = state.count, "delivery queue loaded");
        }
        Ok(DeliveryQueue {
            spool: Arc::new(spool),
            settings,
            executor,
            state: Mutex::new(state),
            changed: Signal::default(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent maps (every update is a
        // few inserts); keep serving rather than poison every later delivery.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Messages held.
    pub fn len(&self) -> u64 {
        self.state().messages.len() as u64
    }

    /// Whether the queue holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Message bytes held.
    pub fn bytes(&self) -> u64 {
        self.state().bytes
    }

    /// Puts `message` from `mail_from` for `recipients` in the queue, durably, first
    /// attempted at `first_attempt_ms` (unix ms; `now_ms` for at once). Returns once
    /// the message and its envelope are fsynced.
    pub async fn enqueue(
        &self,
        mail_from: &str,
        recipients: &[String],
        message: Bytes,
        now_ms: u64,
        first_attempt_ms: u64,
    ) -> Result<String, QueueError> {
        let size = message.len() as u64;
        {
            let mut state = self.state();
            if state.count >= self.settings.max_messages
                || state.bytes.saturating_add(size) > self.settings.max_bytes
            {
                return Err(QueueError::Full);
            }
            state.count += 1;
            state.bytes += size;
        }
        let id = format!("{now_ms:013}-{:016x}", rand::random::<u64>());
        let envelope = Envelope {
            version: 1,
            mail_from: mail_from.to_string(),
            created_ms: now_ms,
            size,
            recipients: recipients
                .iter()
                .map(|address| QueuedRecipient {
                    address: address.clone(),
                    status: Status::Pending,
                    attempts: 0,
                    next_attempt_ms: first_attempt_ms,
                    last_reply: None,
                })
                .collect(),
        };
        let written = {
            let (spool, id, envelope) = (self.spool.clone(), id.clone(), envelope.clone());
            chatmail_core::run_blocking(&*self.executor, move || {
                spool.create(&id, &message, &envelope)
            })
            .await
        };
        let mut state = self.state();
        match written {
            Ok(Ok(())) => {
                for (domain, due) in due_destinations(&envelope) {
                    state.due.insert((due, id.clone(), domain));
                }
                state.messages.insert(
                    id.clone(),
                    Queued {
                        envelope,
                        writes: Default::default(),
                    },
                );
                drop(state);
                self.changed.raise();
                Ok(id)
            }
            Ok(Err(e)) => {
                state.count -= 1;
                state.bytes -= size;
                Err(e.into())
            }
            Err(e) => {
                state.count -= 1;
                state.bytes -= size;
                Err(e.into())
            }
        }
    }

    /// Takes up to `max` attempts due at `now_ms`, oldest first, within the bounds of
    /// attempts in flight (per destination and destinations at once). Each must be
    /// reported with [`DeliveryQueue::record`].
    pub fn take_due(&self, now_ms: u64, max: usize) -> Vec<Attempt> {
        let mut state = self.state();
        let State {
            messages,
            due,
            in_flight,
            ..
        } = &mut *state;
        let mut taken = Vec::new();
        let mut chosen = Vec::new();
        for key in due.iter().take(MAX_SCAN) {
            let (at, id, domain) = key;
            if *at > now_ms || taken.len() >= max {
                break;
            }
            let busy = in_flight.get(domain).copied().unwrap_or(0);
            if busy >= PER_DESTINATION
                || (busy == 0 && in_flight.len() >= self.settings.max_destinations)
            {
                continue;
            }
            let Some(queued) = messages.get(id) else {
                chosen.push(key.clone());
                continue;
            };
            let recipients: Vec<String> = queued
                .envelope
                .recipients
                .iter()
                .filter(|r| r.status == Status::Pending && r.domain() == *domain)
                .map(|r| r.address.clone())
                .collect();
            chosen.push(key.clone());
            if recipients.is_empty() {
                continue;
            }
            *in_flight.entry(domain.clone()).or_default() += 1;
            taken.push(Attempt {
                id: id.clone(),
                domain: domain.clone(),
                mail_from: queued.envelope.mail_from.clone(),
                recipients,
            });
        }
        for key in chosen {
            due.remove(&key);
        }
        taken
    }

    /// When the earliest waiting entry is due (unix ms), if any: the caller sleeps until
    /// then or until [`DeliveryQueue::changed`].
    pub fn next_due(&self) -> Option<u64> {
        self.state().due.first().map(|(at, _, _)| *at)
    }

    /// Completes when something was queued or an attempt was recorded since the last
    /// time it completed (one waiter: the task that runs the queue).
    pub async fn changed(&self) {
        self.changed.wait().await
    }

    /// The message bytes of a queued message.
    pub async fn message(&self, id: &str) -> Result<Bytes, QueueError> {
        let (spool, id) = (self.spool.clone(), id.to_string());
        let bytes =
            chatmail_core::run_blocking(&*self.executor, move || spool.message(&id)).await??;
        Ok(Bytes::from(bytes))
    }

    /// Records what became of `attempt`'s recipients (`outcomes` in its order; a
    /// missing outcome is a deferral) at `now_ms`: delivered and refused recipients are
    /// done, deferred ones wait for their backoff or, past the lifetime, are given up.
    /// The envelope file is rewritten (or the message removed when all are done)
    /// before this returns.
    pub async fn record(
        &self,
        attempt: &Attempt,
        outcomes: &[RecipientOutcome],
        now_ms: u64,
    ) -> Result<Recorded, QueueError> {
        let writes = {
            let mut state = self.state();
            if let Some(n) = state.in_flight.get_mut(&attempt.domain) {
                *n -= 1;
                if *n == 0 {
                    state.in_flight.remove(&attempt.domain);
                }
            }
            match state.messages.get(&attempt.id) {
                Some(q) => q.writes.clone(),
                None => return Ok(Recorded::default()),
            }
        };
        let _ordered = writes.lock().await;
        let (recorded, envelope) = {
            let mut state = self.state();
            let Some(queued) = state.messages.get_mut(&attempt.id) else {
                return Ok(Recorded::default());
            };
            let recorded = self.apply(&mut queued.envelope, attempt, outcomes, now_ms);
            let envelope = queued.envelope.clone();
            if recorded.finished {
                state.messages.remove(&attempt.id);
                state.count -= 1;
                state.bytes -= envelope.size;
            } else if let Some(due) = due_destinations(&envelope)
                .into_iter()
                .find(|(d, _)| *d == attempt.domain)
                .map(|(_, due)| due)
            {
                state
                    .due
                    .insert((due, attempt.id.clone(), attempt.domain.clone()));
            }
            (recorded, envelope)
        };
        let (spool, id, finished) = (self.spool.clone(), attempt.id.clone(), recorded.finished);
        let written = chatmail_core::run_blocking(&*self.executor, move || {
            if finished {
                spool.remove(&id)
            } else {
                spool.update(&id, &envelope)
            }
        })
        .await;
        self.changed.raise();
        written??;
        Ok(recorded)
    }

    /// Applies `outcomes` to the recipients of `attempt` in `envelope`.
    fn apply(
        &self,
        envelope: &mut Envelope,
        attempt: &Attempt,
        outcomes: &[RecipientOutcome],
        now_ms: u64,
    ) -> Recorded {
        let mut recorded = Recorded::default();
        let expired =
            now_ms.saturating_sub(envelope.created_ms) >= self.settings.lifetime.as_millis() as u64;
        for (k, address) in attempt.recipients.iter().enumerate() {
            let Some(r) = envelope
                .recipients
                .iter_mut()
                .find(|r| r.status == Status::Pending && r.address == *address)
            else {
                continue;
            };
            let outcome = outcomes.get(k).cloned().unwrap_or_else(|| {
                RecipientOutcome::Deferred(Reply::new(451, "4.3.0 Delivery attempt was cut short"))
            });
            let reply = outcome.reply().clone();
            r.last_reply = Some((reply.code, reply.text.clone()));
            match outcome {
                RecipientOutcome::Delivered(_) => r.status = Status::Delivered,
                RecipientOutcome::Failed(reply) => {
                    r.status = Status::Failed;
                    recorded.failed.push((r.address.clone(), reply));
                }
                RecipientOutcome::Deferred(reply) if expired => {
                    r.status = Status::Failed;
                    recorded.failed.push((
                        r.address.clone(),
                        Reply::new(
                            554,
                            format!(
                                "5.4.7 Delivery time expired; last attempt: {} {}",
                                reply.code, reply.text
                            ),
                        ),
                    ));
                }
                RecipientOutcome::Deferred(_) => {
                    r.attempts = r.attempts.saturating_add(1);
                    r.next_attempt_ms =
                        now_ms.saturating_add(self.settings.backoff(r.attempts).as_millis() as u64);
                }
            }
        }
        recorded.finished = envelope
            .recipients
            .iter()
            .all(|r| r.status != Status::Pending);
        recorded
    }
}

/// The destinations of `envelope` with pending recipients, and when each is due (its
/// earliest pending recipient).
fn due_destinations(envelope: &Envelope) -> Vec<(String, u64)> {
    let mut due: Vec<(String, u64)> = Vec::new();
    for r in envelope
        .recipients
        .iter()
        .filter(|r| r.status == Status::Pending)
    {
        let domain = domain_of(&r.address);
        match due.iter_mut().find(|(d, _)| *d == domain) {
            Some((_, at)) => *at = (*at).min(r.next_attempt_ms),
            None => due.push((domain, r.next_attempt_ms)),
        }
    }
    due
}

#[cfg(test)]
mod tests;
