//! What a provider plugs into a [`Relay`](super::Relay): the outbound queue, the push
//! notifier and extra server metadata.

use bytes::Bytes;
use chatmail_core::Address;
use chatmail_smtp::server::DeliveryFailure;

/// Where messages for other relays go. The relay hands it every accepted message that
/// has remote recipients; it must make the message durable before it returns `Ok`.
///
/// Delivery to other servers is a later piece of work; until an implementation is
/// plugged in, [`RefuseOutbound`] answers every remote recipient with a temporary
/// failure, so the client keeps the message and retries (never a silent drop).
#[async_trait::async_trait]
pub trait OutboundQueue: Send + Sync {
    /// Queues `message` from `mail_from` (`""` for `<>`) for the remote `recipients`.
    /// Returns one outcome per recipient, in order.
    async fn enqueue(
        &self,
        mail_from: &str,
        recipients: &[String],
        message: Bytes,
    ) -> Vec<Result<(), DeliveryFailure>>;
}

/// The outbound queue of a relay that does not deliver to other servers (yet).
#[derive(Debug, Default, Clone, Copy)]
pub struct RefuseOutbound;

#[async_trait::async_trait]
impl OutboundQueue for RefuseOutbound {
    async fn enqueue(
        &self,
        _: &str,
        recipients: &[String],
        _: Bytes,
    ) -> Vec<Result<(), DeliveryFailure>> {
        recipients
            .iter()
            .map(|_| Err(DeliveryFailure::OutboundDisabled))
            .collect()
    }
}

/// Told about every message appended to a local INBOX that is not the sender's own
/// copy, so that the recipient's devices can be woken by a push notification (spec 5.3).
pub trait NewMailNotifier: Send + Sync {
    /// A new message for `account`, whose valid device tokens are `tokens`.
    fn new_message(&self, account: &Address, tokens: Vec<String>);
}

/// Values of the server metadata entries Delta Chat reads (spec 5.1). The relay answers
/// `irohrelay`, `maxsmtprecipients`, `appversions` and `/shared/admin` from its
/// configuration; a provider can add or override entries (TURN credentials, say).
pub trait ServerMetadata: Send + Sync {
    /// The value of a server entry such as `/shared/vendor/deltachat/turn`, or `None`.
    fn get(&self, entry: &str) -> Option<String>;
}
