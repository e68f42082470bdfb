//! The notification queue as a sans-IO state machine: [`PushQueue`].

use chatmail_core::Address;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// Base of the exponential back-off: level `n` waits `8^n` seconds (spec 5.4).
const BASE_DELAY_SECS: u64 = 8;
/// Retry levels 0 to 4: `floor(log8(18000)) + 1` (spec 5.4).
pub const LEVELS: u8 = 5;
/// An item is given up when its next attempt would be later than this after the
/// delivery that caused it (spec 5.4: 5 hours).
pub const DROP_DEADLINE: Duration = Duration::from_secs(5 * 60 * 60);

/// Identifies one queued notification (one token of one delivery) for its whole life,
/// across restarts: its pending file is named by [`ItemId`]'s `Display`, 32 lowercase
/// hex digits like the reference's `uuid4().hex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemId(pub u128);

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl ItemId {
    /// Parses a pending file's name: exactly 32 hex digits (either case, as a uuid hex).
    pub fn parse(name: &str) -> Option<ItemId> {
        if name.len() != 32 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(name, 16).ok().map(ItemId)
    }
}

/// What became of one [`PushOutput::Post`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpOutcome {
    /// The endpoint answered with this status code.
    Status(u16),
    /// No answer: connection, TLS, the timeout ([`PushSettings::post_timeout`]).
    NetworkError,
}

/// One notification as the pending file keeps it (spec 5.4: `addr`, `start_ts`, `token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingItem {
    /// Its id, the file's name.
    pub id: ItemId,
    /// The account the new message is for.
    pub account: Address,
    /// When the delivery happened, Unix seconds: the 5-hour deadline counts from it.
    pub start_ts: u64,
    /// The device token, sent as the POST body.
    pub token: String,
}

/// What the queue wants done; drained with [`PushQueue::poll`] after every input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutput {
    /// Write the pending file of this new item (durable, `.tmp` + rename). Comes before
    /// the item's first [`PushOutput::Post`]; the driver must apply `Persist` and
    /// [`PushOutput::Forget`] of one item in this order.
    Persist(PendingItem),
    /// `POST` the token as raw body to the notification endpoint, bounded by
    /// [`PushSettings::post_timeout`], then call [`PushQueue::on_response`] with `id`
    /// exactly once. The endpoint is the driver's (one per relay, `notify_url`).
    Post {
        /// Answer with this id.
        id: ItemId,
        /// The request body.
        token: String,
    },
    /// The endpoint answered 410 Gone: remove `token` from `account`'s device tokens.
    RemoveToken {
        /// Whose token.
        account: Address,
        /// The token the endpoint no longer knows.
        token: String,
    },
    /// The item is done or given up: delete its pending file.
    Forget(ItemId),
}

/// The bounds and the schedule of a [`PushQueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSettings {
    /// Most items queued or in flight; beyond it the oldest waiting item is dropped
    /// (a warning, [`PushStats::dropped_full`]).
    pub max_pending: usize,
    /// Most POSTs out at once.
    pub max_in_flight: usize,
    /// How long the driver waits for one POST (spec 5.4: 60 s).
    pub post_timeout: Duration,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            max_pending: 100_000,
            max_in_flight: 32,
            post_timeout: Duration::from_secs(60),
        }
    }
}

/// Counters since the queue was made, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushStats {
    /// Answered 200.
    pub sent: u64,
    /// Answered 410 (token removed).
    pub gone: u64,
    /// Attempts that failed (another status, a network error) and were rescheduled or
    /// given up.
    pub failed_attempts: u64,
    /// Given up: beyond level 4 or the 5-hour deadline.
    pub dropped_deadline: u64,
    /// Dropped because [`PushSettings::max_pending`] items were queued.
    pub dropped_full: u64,
}

#[derive(Debug)]
struct Item {
    account: Address,
    token: String,
    /// The delivery's time on the engine's clock (the deadline counts from it).
    start: Instant,
    level: u8,
    /// `Some(due)` while waiting, `None` while its POST is out.
    due: Option<Instant>,
}

/// The push-notification queue (spec 5.4): one item per device token of each delivered
/// message, POSTed to the notification endpoint and retried on a schedule of levels.
///
/// Sans-IO like every engine of the workspace (`chatmail_core::engine`), in the manner
/// of quinn-proto's `Connection`:
///
/// - **inputs**: [`PushQueue::new_message`] (a delivery, one item per token),
///   [`PushQueue::restore`] (a pending file found at start), [`PushQueue::on_response`]
///   (the outcome of a POST), [`PushQueue::handle_timeout`] (the clock);
/// - **outputs**, drained after every input: [`PushQueue::poll`] until `None`, then
///   [`PushQueue::poll_timeout`] for the next wake-up;
/// - **getters**: [`PushQueue::stats`], [`PushQueue::len`], [`PushQueue::in_flight`].
///
/// Schedule: level `n` is attempted `8^n` s after the previous attempt failed (level 0
/// at once); after a failure at level 4, or when the next attempt would be more than 5
/// hours after the delivery, the item is dropped. 200 is done; 410 is done and the
/// token removed; anything else is a failure. The clock is an `Instant`; Unix seconds
/// (for the files' `start_ts`) are derived from the pair given to [`PushQueue::new`].
///
/// # The drive loop
///
/// ```text
/// let mut queue = PushQueue::new(settings, seed, Instant::now(), unix_now());
/// for item in read pending files { queue.restore(item, Instant::now()) }
/// loop {
///     while let Some(output) = queue.poll() {
///         match output {
///             PushOutput::Persist(item)        => write the file (in order with Forget),
///             PushOutput::Post { id, token }   => start the POST; its outcome later goes to
///                                                 queue.on_response(id, outcome, now),
///             PushOutput::RemoveToken { .. }   => device_tokens.remove_token(..),
///             PushOutput::Forget(id)           => delete the file,
///         }
///     }
///     wait for the first of:
///         a delivery             => queue.new_message(&account, tokens, now)
///         a POST's outcome       => queue.on_response(id, outcome, now)
///         queue.poll_timeout()   => queue.handle_timeout(now)
///         shutdown               => stop (pending files are restored at the next start)
/// }
/// ```
#[derive(Debug)]
pub struct PushQueue {
    settings: PushSettings,
    items: HashMap<ItemId, Item>,
    /// Waiting items by due time.
    due: BTreeSet<(Instant, ItemId)>,
    /// Waiting items by delivery time: the oldest is dropped when full.
    by_start: BTreeSet<(Instant, ItemId)>,
    in_flight: usize,
    outputs: VecDeque<PushOutput>,
    /// Ids are `seed + counter`: unique without a random source inside the engine.
    seed: u128,
    counter: u128,
    /// The engine's clock at `epoch_unix` Unix seconds.
    epoch: Instant,
    epoch_unix: u64,
    stats: PushStats,
}

impl PushQueue {
    /// An empty queue. `seed` makes item ids unique across restarts (pass a random
    /// number); `now` and `unix_now` are the same moment on the monotonic clock and in
    /// Unix seconds.
    pub fn new(settings: PushSettings, seed: u128, now: Instant, unix_now: u64) -> PushQueue {
        PushQueue {
            settings,
            items: HashMap::new(),
            due: BTreeSet::new(),
            by_start: BTreeSet::new(),
            in_flight: 0,
            outputs: VecDeque::new(),
            seed,
            counter: 0,
            epoch: now,
            epoch_unix: unix_now,
            stats: PushStats::default(),
        }
    }

    /// Input: a message was delivered to `account`, whose valid device tokens are
    /// `tokens`: one item per token, attempted at once (after its
    /// [`PushOutput::Persist`]).
    pub fn new_message(&mut self, account: &Address, tokens: Vec<String>, now: Instant) {
        let start_ts = self.unix_at(now);
        for token in tokens {
            let id = self.next_id();
            self.outputs.push_back(PushOutput::Persist(PendingItem {
                id,
                account: account.clone(),
                start_ts,
                token: token.clone(),
            }));
            self.insert(id, account.clone(), token, now, now);
        }
        self.dispatch_at(now);
    }

    /// Input: a pending file found at start. It is queued at level 0 with its original
    /// delivery time (spec 5.4), so an item older than 5 hours is dropped at once.
    pub fn restore(&mut self, item: PendingItem, now: Instant) {
        if self.items.contains_key(&item.id) {
            return;
        }
        let age = Duration::from_secs(self.unix_at(now).saturating_sub(item.start_ts));
        if age > DROP_DEADLINE {
            tracing::error!(id = %item.id, "push notification exceeded deadline");
            self.stats.dropped_deadline += 1;
            self.outputs.push_back(PushOutput::Forget(item.id));
            return;
        }
        // Near the monotonic clock's origin (just after boot) an old start cannot be
        // represented; now is the closest (the age was checked above).
        let start = now.checked_sub(age).unwrap_or(now);
        self.insert(item.id, item.account, item.token, start, now);
        self.dispatch_at(now);
    }

    /// Input: the outcome of the [`PushOutput::Post`] of `id`. An id that is not in
    /// flight (dropped meanwhile, answered twice) is ignored.
    pub fn on_response(&mut self, id: ItemId, outcome: HttpOutcome, now: Instant) {
        // Only waiting items are ever dropped, so an item in flight is still here.
        match self.items.get(&id) {
            Some(item) if item.due.is_none() => {}
            _ => return,
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        match outcome {
            HttpOutcome::Status(200) => {
                self.stats.sent += 1;
                self.forget(id);
            }
            HttpOutcome::Status(410) => {
                self.stats.gone += 1;
                if let Some(item) = self.forget(id) {
                    self.outputs.push_back(PushOutput::RemoveToken {
                        account: item.account,
                        token: item.token,
                    });
                }
            }
            _ => {
                self.stats.failed_attempts += 1;
                self.retry(id, now);
            }
        }
        self.dispatch_at(now);
    }

    /// Input: the clock reached [`PushQueue::poll_timeout`] (earlier is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.dispatch_at(now);
    }

    /// Output: the next thing to do, `None` when there is nothing now.
    pub fn poll(&mut self) -> Option<PushOutput> {
        self.outputs.pop_front()
    }

    /// Output: when [`PushQueue::handle_timeout`] must be called next: the first due
    /// item, while a POST slot is free; `None` when only responses are awaited.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.in_flight >= self.settings.max_in_flight {
            return None;
        }
        self.due.first().map(|(due, _)| *due)
    }

    /// Counters since the queue was made.
    pub fn stats(&self) -> PushStats {
        self.stats
    }

    /// Items queued or in flight.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no item is queued or in flight.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// POSTs out now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn next_id(&mut self) -> ItemId {
        loop {
            self.counter = self.counter.wrapping_add(1);
            let id = ItemId(self.seed.wrapping_add(self.counter));
            if !self.items.contains_key(&id) {
                return id;
            }
        }
    }

    fn unix_at(&self, now: Instant) -> u64 {
        if now >= self.epoch {
            self.epoch_unix.saturating_add((now - self.epoch).as_secs())
        } else {
            self.epoch_unix.saturating_sub((self.epoch - now).as_secs())
        }
    }

    /// Queues a new waiting item at level 0, making room first if full.
    fn insert(
        &mut self,
        id: ItemId,
        account: Address,
        token: String,
        start: Instant,
        now: Instant,
    ) {
        if self.items.len() >= self.settings.max_pending.max(1) {
            let oldest = self.by_start.first().map(|(_, id)| *id);
            match oldest {
                Some(old) => {
                    self.forget(old);
                }
                // Everything is in flight: the new item is the one that goes.
                None => {
                    tracing::warn!("push queue full: new notification dropped");
                    self.stats.dropped_full += 1;
                    self.outputs.push_back(PushOutput::Forget(id));
                    return;
                }
            }
            tracing::warn!(
                max = self.settings.max_pending,
                "push queue full: oldest notification dropped"
            );
            self.stats.dropped_full += 1;
        }
        self.due.insert((now, id));
        self.by_start.insert((start, id));
        self.items.insert(
            id,
            Item {
                account,
                token,
                start,
                level: 0,
                due: Some(now),
            },
        );
    }

    /// Removes `id` and asks for its file to be deleted.
    fn forget(&mut self, id: ItemId) -> Option<Item> {
        let item = self.items.remove(&id)?;
        if let Some(due) = item.due {
            self.due.remove(&(due, id));
            self.by_start.remove(&(item.start, id));
        }
        self.outputs.push_back(PushOutput::Forget(id));
        Some(item)
    }

    /// After a failed attempt: the next level `8^n` s from now, or dropped.
    fn retry(&mut self, id: ItemId, now: Instant) {
        let Some(item) = self.items.get_mut(&id) else {
            return;
        };
        let level = item.level + 1;
        let when = now + Duration::from_secs(BASE_DELAY_SECS.pow(u32::from(level)));
        if level >= LEVELS || when > item.start + DROP_DEADLINE {
            tracing::error!(%id, "push notification exceeded deadline");
            self.stats.dropped_deadline += 1;
            self.forget(id);
            return;
        }
        item.level = level;
        item.due = Some(when);
        self.due.insert((when, id));
        self.by_start.insert((item.start, id));
    }

    /// Starts POSTs for every item due at `now`, within the in-flight bound.
    fn dispatch_at(&mut self, now: Instant) {
        while self.in_flight < self.settings.max_in_flight {
            let Some(&(due, id)) = self.due.first() else {
                return;
            };
            if due > now {
                return;
            }
            self.due.remove(&(due, id));
            let Some(item) = self.items.get_mut(&id) else {
                continue;
            };
            self.by_start.remove(&(item.start, id));
            item.due = None;
            self.in_flight += 1;
            self.outputs.push_back(PushOutput::Post {
                id,
                token: item.token.clone(),
            });
        }
    }
}
