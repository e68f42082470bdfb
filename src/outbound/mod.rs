//! Mail for other servers: the [`Transport`] contract that hands a message over to a
//! destination domain (spec 3.4), and the durable [`DeliveryQueue`] that holds every
//! recipient not delivered at once and retries it.

mod queue;
mod signal;
mod transport;

pub use queue::{
    Attempt, DeliveryQueue, QueueError, QueueSettings, Recorded, NODE_HEARTBEAT, NODE_STALE_AFTER,
};
pub use transport::{Handover, RecipientOutcome, Transport};
