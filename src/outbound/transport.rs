//! The [`Transport`] contract: one attempt to hand a message to a destination domain.

use bytes::Bytes;
use chatmail_policy::Reply;
use std::time::Duration;

/// One attempt to hand `message` over to the mail servers of `domain` for
/// `recipients` (all of that domain, in the queue's order).
#[derive(Debug, Clone, Copy)]
pub struct Handover<'a> {
    /// The destination: a DNS name (`example.org`, `_beta.localhost`) or an address
    /// literal (`[192.0.2.1]`), as it stands after the `@` of every recipient.
    pub domain: &'a str,
    /// The envelope sender; `""` for `<>` (DSNs, spec 3.3 step 4).
    pub mail_from: &'a str,
    /// The recipients, all at `domain`.
    pub recipients: &'a [String],
    /// The message as it leaves this relay (DKIM-signed where it must be).
    pub message: &'a Bytes,
}

/// What became of one recipient of a [`Handover`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientOutcome {
    /// The receiving server took responsibility (`250`); the reply says how
    /// (`250 OK (HTTPS)`, `250 OK (SMTP)`).
    Delivered(Reply),
    /// Not now, maybe later: DNS failure, no server reachable, a `4xx` reply. The
    /// queue retries until `outbound_queue_lifetime`.
    Deferred(Reply),
    /// Never: a `5xx` reply, null MX, NXDOMAIN. The queue gives up and reports to the
    /// sender.
    Failed(Reply),
}

impl RecipientOutcome {
    /// The outcome a reply from the receiving side means: 2xx delivered, 5xx failed,
    /// anything else deferred.
    pub fn from_reply(reply: Reply) -> RecipientOutcome {
        match reply.code {
            200..=299 => RecipientOutcome::Delivered(reply),
            500..=599 => RecipientOutcome::Failed(reply),
            _ => RecipientOutcome::Deferred(reply),
        }
    }

    /// The reply behind the outcome.
    pub fn reply(&self) -> &Reply {
        match self {
            RecipientOutcome::Delivered(r)
            | RecipientOutcome::Deferred(r)
            | RecipientOutcome::Failed(r) => r,
        }
    }
}

/// How messages reach other servers (spec 3.4): resolve the destination's mail
/// exchangers, try each (HTTPS `/mxdeliv` first, then SMTP with STARTTLS) and say what
/// became of every recipient. The delivery queue calls it; it keeps nothing durable
/// and never retries by itself beyond the exchangers of one attempt.
///
/// The tokio driver has the network implementation; tests plug in their own.
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    /// Hands `handover` over; one outcome per recipient, in order. Must finish within
    /// [`Transport::attempt_deadline`] (the queue gives up waiting after it and defers).
    async fn hand_over(&self, handover: Handover<'_>) -> Vec<RecipientOutcome>;

    /// The longest one attempt may take, every exchanger included.
    fn attempt_deadline(&self) -> Duration {
        Duration::from_secs(10 * 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_to_outcomes_by_class() {
        let o = |code| RecipientOutcome::from_reply(Reply::new(code, "x"));
        assert!(matches!(o(250), RecipientOutcome::Delivered(_)));
        assert!(matches!(o(421), RecipientOutcome::Deferred(_)));
        assert!(matches!(o(554), RecipientOutcome::Failed(_)));
        assert!(matches!(o(512), RecipientOutcome::Failed(_)));
        assert!(matches!(o(0), RecipientOutcome::Deferred(_)));
        assert_eq!(o(556).reply().code, 556);
    }
}
