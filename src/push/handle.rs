//! How deliveries reach the notification queue: a bounded channel whose sending half is
//! the relay's [`NewMailNotifier`].

use crate::relay::NewMailNotifier;
use chatmail_core::Address;
use futures::channel::mpsc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Deliveries the channel holds before new ones are dropped (each carries the tokens of
/// one account, at most a handful).
pub const DEFAULT_CHANNEL_CAPACITY: usize = 10_000;

/// One delivery that wants push notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMail {
    /// Whose INBOX got the message.
    pub account: Address,
    /// That account's valid device tokens.
    pub tokens: Vec<String>,
}

/// The [`NewMailNotifier`] to give the relay ([`RelayBuilder::notifier`](crate::RelayBuilder::notifier)):
/// hands each delivery to the push driver without waiting. When the channel is full
/// (the driver is far behind or gone) the delivery's notifications are dropped with a
/// warning and counted; the delivery itself is never delayed.
#[derive(Debug)]
pub struct PushNotifier {
    // `try_send` takes `&mut`: a lock held for one non-blocking call.
    tx: Mutex<mpsc::Sender<NewMail>>,
    dropped: AtomicU64,
}

/// The receiving half, for the push driver (`tokio_driver::Server::with_push`).
#[derive(Debug)]
pub struct NewMailReceiver(pub mpsc::Receiver<NewMail>);

/// A notifier and its receiver, holding up to `capacity` deliveries in between.
pub fn channel(capacity: usize) -> (PushNotifier, NewMailReceiver) {
    let (tx, rx) = mpsc::channel(capacity);
    (
        PushNotifier {
            tx: Mutex::new(tx),
            dropped: AtomicU64::new(0),
        },
        NewMailReceiver(rx),
    )
}

impl PushNotifier {
    /// Deliveries whose notifications were dropped because the channel was full or
    /// closed.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl NewMailNotifier for PushNotifier {
    fn new_message(&self, account: &Address, tokens: Vec<String>) {
        let mail = NewMail {
            account: account.clone(),
            tokens,
        };
        let sent = match self.tx.lock() {
            Ok(mut tx) => tx.try_send(mail).map_err(|e| e.is_full()),
            Err(_) => Err(false),
        };
        if let Err(full) = sent {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if full {
                tracing::warn!(dropped, "push channel full: notification dropped");
            } else {
                tracing::warn!(dropped, "push driver not running: notification dropped");
            }
        }
    }
}
