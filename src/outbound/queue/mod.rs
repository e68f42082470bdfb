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
//! The messages live in a directory of this node (`spool`), or, when the nodes of a
//! domain share a PostgreSQL database, in its rows (`DeliveryQueue::open_shared`):
//! each message is held by one node, and the messages of a node that stopped are taken
//! over by another ([`DeliveryQueue::adopt_orphans`]); see `storage`.
//!
//! Delivery is at least once: a crash after the receiving server said `250` and before
//! the envelope was rewritten sends that recipient again after the restart (as Postfix
//! does); the window is one fsync long.

mod error;
mod spool;
mod storage;

pub use error::QueueError;

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
use storage::{Held, QueueStorage};

/// Attempts in flight to one destination domain at once.
const PER_DESTINATION: usize = 4;

/// How often a node of a shared queue says it is alive and looks for messages of nodes
/// that stopped ([`DeliveryQueue::adopt_orphans`]).
pub const NODE_HEARTBEAT: Duration = Duration::from_secs(10);

/// A node not seen alive for this long is taken for dead, and its queued messages are
/// adopted by the others: six missed heartbeats, so that a node stalled for a moment is
/// not (it would attempt its messages once more; delivery is at least once).
pub const NODE_STALE_AFTER: Duration = Duration::from_secs(60);

/// Most messages one [`DeliveryQueue::adopt_orphans`] takes over.
const MAX_ADOPT: usize = 1000;

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
    storage: QueueStorage,
    settings: QueueSettings,
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
        let loaded = spool.load()?;
        let queue = DeliveryQueue {
            storage: QueueStorage::Files {
                spool: Arc::new(spool),
                executor,
            },
            settings,
            state: Mutex::new(State::default()),
            changed: Signal::default(),
        };
        let count = queue.hold(loaded);
        if count > 0 {
            tracing::info!(messages = count, "delivery queue loaded");
        }
        Ok(queue)
    }

    /// Opens this node's part of the queue that the nodes of a domain share in
    /// `store`'s database: what node `node` holds is loaded, and the node says it is
    /// alive. `node` must stay the same across restarts (the relay example keeps it in
    /// `<data-dir>/node-name`) and differ between nodes. Call
    /// [`DeliveryQueue::adopt_orphans`] every [`NODE_HEARTBEAT`] (the relay's queue
    /// runner does).
    #[cfg(feature = "postgres")]
    pub async fn open_shared(
        store: Arc<chatmail_core::store::PostgresStore>,
        node: &str,
        settings: QueueSettings,
        now_ms: u64,
    ) -> Result<DeliveryQueue, QueueError> {
        let queue = DeliveryQueue {
            storage: QueueStorage::Shared {
                store,
                node: node.to_string(),
            },
            settings,
            state: Mutex::new(State::default()),
            changed: Signal::default(),
        };
        // Alive first: a node that was down long enough to be taken for dead must not
        // load what another node is adopting at this moment.
        queue.adopt_orphans(now_ms).await?;
        let loaded = queue.storage.load_shared().await?;
        let count = queue.hold(loaded);
        if count > 0 {
            tracing::info!(messages = count, node, "delivery queue loaded");
        }
        Ok(queue)
    }

    /// Whether the queue is shared with other nodes (and needs
    /// [`DeliveryQueue::adopt_orphans`] called).
    pub fn is_shared(&self) -> bool {
        !matches!(self.storage, QueueStorage::Files { .. })
    }

    /// For a shared queue: says this node is alive at `now_ms` and takes over the
    /// messages of nodes not seen for [`NODE_STALE_AFTER`] (at most 1,000 a call), which
    /// become due here at their recorded times. Returns how many it took. Nothing for a
    /// queue in a directory.
    pub async fn adopt_orphans(&self, now_ms: u64) -> Result<usize, QueueError> {
        let stale = NODE_STALE_AFTER.as_millis() as u64;
        let adopted = self
            .storage
            .adopt(now_ms, now_ms.saturating_sub(stale), MAX_ADOPT)
            .await?;
        let count = self.hold(adopted);
        if count > 0 {
            tracing::info!(
                messages = count,
                "delivery queue: took over the messages of a node that stopped"
            );
            self.changed.raise();
        }
        Ok(count)
    }

    /// Puts loaded or adopted messages into the schedule; returns how many.
    fn hold(&self, messages: Vec<(String, Envelope)>) -> usize {
        let mut state = self.state();
        let mut count = 0;
        for (id, envelope) in messages {
            if state.messages.contains_key(&id) {
                continue;
            }
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
            count += 1;
        }
        count
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
        let written = self.storage.create(&id, message, &envelope).await;
        let mut state = self.state();
        match written {
            Ok(()) => {
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
            Err(e) => {
                state.count -= 1;
                state.bytes -= size;
                Err(e)
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
        self.storage.message(id).await
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
        let written = self
            .storage
            .record(&attempt.id, &envelope, recorded.finished)
            .await;
        self.changed.raise();
        if written? == Held::ByAnother {
            // This node was taken for dead meanwhile and another adopted the message: it
            // attempts and reports it from now on (this attempt's recipients may get
            // it twice: delivery is at least once).
            tracing::warn!(
                id = attempt.id,
                "queued message taken over by another node; dropped here"
            );
            let mut state = self.state();
            if state.messages.remove(&attempt.id).is_some() && !recorded.finished {
                state.count -= 1;
                state.bytes -= envelope.size;
            }
            state.due.retain(|(_, id, _)| *id != attempt.id);
            return Ok(Recorded::default());
        }
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
