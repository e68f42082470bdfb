//! Mail for other servers: the [`Transport`] contract that hands a message over to a
//! destination domain (spec 3.4), and the durable delivery queue that retries it.

mod transport;

pub use transport::{Handover, RecipientOutcome, Transport};
