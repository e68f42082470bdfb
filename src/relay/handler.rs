//! [`RequestHandler`]: the one way a driver hands an engine's request to the relay.

use chatmail_core::engine::Engine;
use std::net::IpAddr;

/// Answers the requests of one kind of engine ([`Engine`]): what a driver calls for each
/// [`Output::Request`](chatmail_core::engine::Output::Request), whatever the engine.
/// [`Relay`](super::Relay) answers the SMTP server's and the IMAP server's; one generic pump (the
/// tokio driver's, a test's blocking one) then drives any engine the same way.
#[async_trait::async_trait]
pub trait RequestHandler<E: Engine>: Send + Sync {
    /// Performs `request` of an engine serving a client at `peer` (`None` if unknown;
    /// only the failed-login limits use it) and returns the answer to hand back.
    async fn handle(&self, request: E::Request, peer: Option<IpAddr>) -> E::Answer
    where
        E::Request: 'async_trait;

    /// Takes an [`Output::Event`](chatmail_core::engine::Output::Event) of the engine
    /// (facts for the metrics); nothing goes back to the engine. Default: dropped.
    fn event(&self, event: E::Event) {
        let _ = event;
    }
}
