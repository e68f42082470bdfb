//! [`Relay`]: the runtime-agnostic service that answers the engines' requests.
//!
//! The SMTP and IMAP engines never touch storage; each decision that needs the outside
//! world leaves them as a request. `Relay` answers those requests with the account
//! service, the mail store and the device-token store of `chatmail-core`, and carries
//! out accepted deliveries: local recipients get the message appended durably to their
//! INBOX (which wakes their IDLE sessions through the store's change feed) and a push
//! notification enqueued; remote recipients go to the [`OutboundQueue`].
//!
//! Any async runtime can drive it: the methods are `async` and never block, because
//! file-system work goes to the [`BlockingExecutor`](chatmail_core::BlockingExecutor) the stores were built with, and
//! password hashes to a [`HashingPool`](chatmail_core::account::HashingPool) of their own (bounded: when it is full, a login
//! gets a temporary failure instead of waiting ahead of the fsyncs of deliveries).
//!
//! Logins go through one [`LoginThrottle`](chatmail_core::account::LoginThrottle) shared by SMTP and IMAP: failures per client
//! IP and per account earn doubling penalties, and the engines hold the failure answer
//! until the penalty ends (on their own timers). The client IP is only kept in memory
//! for that; it is never logged or written.
//!
//! The files, each depending only on those above it: `plugins` (what a provider plugs
//! in) and `handler` ([`RequestHandler`]); `service` (the [`Relay`] and its accessors);
//! `builder`, `login`, `metadata`, `expiry` and `origin` (the DKIM check of mail from
//! other servers); `duplicates` (second copies of a delivery); `deliver` (local INBOXes, DKIM signing, the delivery queue);
//! `queue_runner` (carries out the queue's attempts); then `mxdeliv` (`POST /mxdeliv`),
//! `smtp_answers` and `imap_answers`, the answers, which nothing depends on.

mod builder;
mod deliver;
mod duplicates;
mod expiry;
mod handler;
mod imap_answers;
mod login;
mod metadata;
mod mxdeliv;
mod origin;
mod plugins;
mod queue_runner;
mod service;
mod smtp_answers;

pub use builder::RelayBuilder;
pub use handler::RequestHandler;
pub use login::LoginVerdict;
pub use mxdeliv::{MxDelivAnswer, MAX_MXDELIV_RECIPIENTS};
pub use plugins::{NewMailNotifier, OutboundQueue, RefuseOutbound, ServerMetadata};
// The tokio driver times the daily expiry with the relay's clock.
#[cfg(feature = "tokio")]
pub(crate) use service::unix_now;
pub use service::Relay;
