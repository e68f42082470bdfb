//! Push notifications (spec 5.3, 5.4): every message delivered to a local INBOX that is
//! not the sender's own copy wakes the recipient's devices through the notification
//! service, `POST notify_url` with each device token as body.
//!
//! Runtime-agnostic pieces, driven by `tokio_driver` (feature `tokio`) or yours:
//!
//! * [`PushQueue`]: the sans-IO queue: items, retry levels, deadline, bounds.
//! * [`pending`]: the items on disk in the reference's layout, so that a restart (or a
//!   switch from the reference relay) loses none; [`storage`]: there, or in the
//!   database that the nodes of a domain share.
//! * [`PushNotifier`] / [`channel`]: the relay's
//!   [`NewMailNotifier`](crate::relay::NewMailNotifier), a bounded channel that never
//!   delays a delivery.
//!
//! It lives in the facade crate rather than `chatmail-core` because it is a relay
//! service on top of the core's traits (as the outbound queue is), and it implements
//! the facade's `NewMailNotifier`.
//!
//! # Guarantees
//!
//! * **Not on the delivery path.** The SMTP `250` waits for neither the POST nor the
//!   pending file: the notifier only `try_send`s. A crash after the `250` and before the
//!   file is written (a batch on the blocking pool, typically within milliseconds)
//!   loses that notification; the message itself is durable, and clients fetch it at
//!   their next connection. Notifications are a wake-up, not a delivery.
//! * **At least once across restarts.** A file is deleted only after its POST was
//!   answered (200, 410) or given up, and the deletion is fsynced. A crash between the
//!   endpoint's 200 and that deletion resends the notification once after the restart;
//!   after a clean shutdown nothing answered is sent again (POSTs still out are
//!   abandoned and their items sent after the restart).
//! * **Bounded.** [`PushSettings::max_pending`] items (the oldest waiting one is
//!   dropped beyond it), [`PushSettings::max_in_flight`] POSTs, a POST timeout, and a
//!   bounded channel in front.

mod engine;
mod handle;
pub mod pending;
pub mod storage;
#[cfg(test)]
mod tests;

pub use engine::{
    HttpOutcome, ItemId, PendingItem, PushOutput, PushQueue, PushSettings, PushStats,
    DROP_DEADLINE, LEVELS,
};
pub use handle::{channel, NewMail, NewMailReceiver, PushNotifier, DEFAULT_CHANNEL_CAPACITY};
