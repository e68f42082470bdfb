//! The change feed: per account, a bounded ring of recent [`Change`]s that any number of
//! subscribers (IMAP IDLE sessions) read at their own pace.
//!
//! Runtime-agnostic: a waiting subscriber leaves its [`Waker`] in a slot of the account's
//! channel and a publisher wakes every slot at once, so there is no polling, no thread
//! and no task per subscriber. An idle subscriber costs its [`ChangeSubscription`] (two
//! pointers, a cursor and a slot number) and one `Option<Waker>` slot. A change is stored
//! once per account, not once per subscriber; the ring only exists while the account has
//! subscribers. A subscriber that falls more than the ring's capacity behind gets
//! [`Lagged`] once and continues with the oldest change still kept: it must resynchronise
//! from the store (what the IMAP session does on a `MailboxReset`).

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures::Stream;

use super::lock::lock;
use crate::types::{Address, Change};

/// Changes kept per account with subscribers, unless [`ChangeHub::with_capacity`] says
/// otherwise.
pub const DEFAULT_FEED_CAPACITY: usize = 256;

/// The subscriber missed `missed` changes because it read too slowly; it must reread
/// the state it cares about from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("change feed lagged: {missed} changes missed, resynchronise")]
pub struct Lagged {
    /// How many changes were dropped before this subscriber read them.
    pub missed: u64,
}

/// The publishing side of the change feed, shared by a store and all its handles.
/// Cloning is cheap and gives another handle to the same feed.
#[derive(Clone)]
pub struct ChangeHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    capacity: usize,
    channels: Mutex<HashMap<Address, Arc<Channel>>>,
}

struct Channel {
    state: Mutex<ChannelState>,
}

struct ChannelState {
    /// The last `capacity` changes; `ring[0]` has sequence number `next_seq - ring.len()`.
    ring: VecDeque<Change>,
    next_seq: u64,
    /// One slot per subscriber; `Some` while that subscriber waits.
    wakers: Vec<Option<Waker>>,
    free_slots: Vec<usize>,
    subscribers: usize,
}

impl Default for ChangeHub {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ChangeHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeHub")
            .field("capacity", &self.inner.capacity)
            .field(
                "accounts_with_subscribers",
                &self.accounts_with_subscribers(),
            )
            .finish()
    }
}

impl ChangeHub {
    /// A hub keeping [`DEFAULT_FEED_CAPACITY`] changes per account.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_FEED_CAPACITY)
    }

    /// A hub keeping `capacity` (at least 1) changes per account with subscribers.
    pub fn with_capacity(capacity: usize) -> Self {
        ChangeHub {
            inner: Arc::new(HubInner {
                capacity: capacity.max(1),
                channels: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Starts a subscription to `account`'s changes published from now on.
    pub fn subscribe(&self, account: &Address) -> ChangeSubscription {
        let mut channels = lock(&self.inner.channels);
        let channel = channels
            .entry(account.clone())
            .or_insert_with(|| {
                Arc::new(Channel {
                    state: Mutex::new(ChannelState {
                        ring: VecDeque::new(),
                        next_seq: 0,
                        wakers: Vec::new(),
                        free_slots: Vec::new(),
                        subscribers: 0,
                    }),
                })
            })
            .clone();
        // The hub lock is held while the count goes up, so a concurrent last
        // unsubscribe cannot remove the channel in between (lock order: hub, channel).
        let mut state = lock(&channel.state);
        state.subscribers += 1;
        let slot = match state.free_slots.pop() {
            Some(slot) => slot,
            None => {
                state.wakers.push(None);
                state.wakers.len() - 1
            }
        };
        let cursor = state.next_seq;
        drop(state);
        drop(channels);
        ChangeSubscription {
            hub: self.inner.clone(),
            account: account.clone(),
            channel,
            cursor,
            slot,
        }
    }

    /// Publishes changes to `account`'s subscribers and wakes those waiting. Costs a
    /// hash lookup when the account has no subscriber.
    pub fn publish(&self, account: &Address, changes: impl IntoIterator<Item = Change>) {
        let channel = match lock(&self.inner.channels).get(account) {
            Some(channel) => channel.clone(),
            None => return,
        };
        let mut woken = Vec::new();
        {
            let mut state = lock(&channel.state);
            let mut any = false;
            for change in changes {
                if state.ring.len() == self.inner.capacity {
                    state.ring.pop_front();
                }
                state.ring.push_back(change);
                state.next_seq += 1;
                any = true;
            }
            if any {
                woken.extend(state.wakers.iter_mut().filter_map(Option::take));
            }
        }
        // Wake outside the lock: a waker may run the woken task inline.
        for waker in woken {
            waker.wake();
        }
    }

    /// Whether `account` has at least one subscriber (a networked store reads other
    /// nodes' changes only for those).
    pub fn has_subscribers(&self, account: &Address) -> bool {
        lock(&self.inner.channels).contains_key(account)
    }

    /// Number of accounts that have at least one subscriber (for metrics and tests).
    pub fn accounts_with_subscribers(&self) -> usize {
        lock(&self.inner.channels).len()
    }
}

/// One subscriber's view of an account's change feed: a [`Stream`] of
/// `Result<Change, Lagged>` that never ends while it lives. Dropping it unsubscribes.
pub struct ChangeSubscription {
    hub: Arc<HubInner>,
    account: Address,
    channel: Arc<Channel>,
    /// Sequence number of the next change this subscriber reads.
    cursor: u64,
    slot: usize,
}

impl std::fmt::Debug for ChangeSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeSubscription")
            .field("account", &self.account)
            .field("cursor", &self.cursor)
            .finish()
    }
}

impl ChangeSubscription {
    /// The account this subscription follows.
    pub fn account(&self) -> &Address {
        &self.account
    }

    /// Waits for the next change (or the news that some were missed).
    pub async fn next(&mut self) -> Result<Change, Lagged> {
        futures::future::poll_fn(|cx| self.poll_change(Some(cx))).await
    }

    /// The next change if one is there already, without waiting.
    pub fn try_next(&mut self) -> Option<Result<Change, Lagged>> {
        match self.poll_change(None) {
            Poll::Ready(item) => Some(item),
            Poll::Pending => None,
        }
    }

    fn poll_change(&mut self, cx: Option<&mut Context<'_>>) -> Poll<Result<Change, Lagged>> {
        let mut state = lock(&self.channel.state);
        let oldest = state.next_seq - state.ring.len() as u64;
        if self.cursor < oldest {
            let missed = oldest - self.cursor;
            self.cursor = oldest;
            return Poll::Ready(Err(Lagged { missed }));
        }
        if self.cursor < state.next_seq {
            let index = (self.cursor - oldest) as usize;
            if let Some(change) = state.ring.get(index) {
                let change = change.clone();
                self.cursor += 1;
                return Poll::Ready(Ok(change));
            }
        }
        if let Some(cx) = cx {
            let slot = &mut state.wakers[self.slot];
            match slot {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        Poll::Pending
    }
}

impl Stream for ChangeSubscription {
    type Item = Result<Change, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_change(Some(cx)).map(Some)
    }
}

impl Drop for ChangeSubscription {
    fn drop(&mut self) {
        let last = {
            let mut state = lock(&self.channel.state);
            state.wakers[self.slot] = None;
            state.free_slots.push(self.slot);
            state.subscribers -= 1;
            state.subscribers == 0
        };
        if last {
            // Recheck under the hub lock (order: hub, channel): a new subscriber may have
            // arrived in between.
            let mut channels = lock(&self.hub.channels);
            let still_unused = lock(&self.channel.state).subscribers == 0;
            if still_unused
                && channels
                    .get(&self.account)
                    .is_some_and(|c| Arc::ptr_eq(c, &self.channel))
            {
                channels.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::MailboxName;

    fn reset(mailbox: &str) -> Change {
        Change::MailboxReset {
            mailbox: MailboxName::from(mailbox),
        }
    }

    #[test]
    fn subscribers_see_changes_after_subscribing_and_lag_when_slow() {
        let hub = ChangeHub::with_capacity(2);
        let a = Address::parse("a@x.org").unwrap();
        hub.publish(&a, [reset("before")]);
        let mut sub = hub.subscribe(&a);
        assert!(sub.try_next().is_none());
        hub.publish(&a, [reset("1")]);
        assert_eq!(sub.try_next(), Some(Ok(reset("1"))));
        hub.publish(&a, [reset("2"), reset("3"), reset("4")]);
        assert_eq!(sub.try_next(), Some(Err(Lagged { missed: 1 })));
        assert_eq!(sub.try_next(), Some(Ok(reset("3"))));
        assert_eq!(sub.try_next(), Some(Ok(reset("4"))));
        assert!(sub.try_next().is_none());
    }

    #[test]
    fn channel_goes_away_with_the_last_subscriber() {
        let hub = ChangeHub::new();
        let a = Address::parse("a@x.org").unwrap();
        let s1 = hub.subscribe(&a);
        let s2 = hub.subscribe(&a);
        assert_eq!(hub.accounts_with_subscribers(), 1);
        drop(s1);
        assert_eq!(hub.accounts_with_subscribers(), 1);
        drop(s2);
        assert_eq!(hub.accounts_with_subscribers(), 0);
        // Publishing without subscribers keeps nothing.
        hub.publish(&a, [reset("x")]);
        assert_eq!(hub.accounts_with_subscribers(), 0);
    }

    #[test]
    fn many_idle_subscribers_are_cheap_and_all_woken() {
        let hub = ChangeHub::new();
        let a = Address::parse("a@x.org").unwrap();
        let mut subs: Vec<_> = (0..10_000).map(|_| hub.subscribe(&a)).collect();
        assert!(std::mem::size_of::<ChangeSubscription>() <= 64);
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        struct Count(Arc<std::sync::atomic::AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let waker = Waker::from(Arc::new(Count(counter.clone())));
        let mut cx = Context::from_waker(&waker);
        for sub in &mut subs {
            assert!(Pin::new(sub).poll_next(&mut cx).is_pending());
        }
        hub.publish(&a, [reset("INBOX")]);
        assert_eq!(counter.load(std::sync::atomic::Ordering::SeqCst), 10_000);
        for sub in &mut subs {
            assert_eq!(sub.try_next(), Some(Ok(reset("INBOX"))));
        }
    }
}
