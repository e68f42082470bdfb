//! [`QueueError`]: why the delivery queue did not take or could not keep a message.

use chatmail_policy::Reply;

/// Why [`DeliveryQueue::enqueue`](super::DeliveryQueue::enqueue) did not take a message,
/// or its storage failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue holds `outbound_queue_max_messages` or `outbound_queue_max_size`.
    #[error("the delivery queue is full")]
    Full,
    /// Writing the message failed.
    #[error("delivery queue storage failed: {0}")]
    Storage(#[from] std::io::Error),
    /// The blocking executor is gone (shutting down).
    #[error(transparent)]
    ExecutorGone(#[from] chatmail_core::ExecutorGone),
}

impl QueueError {
    /// The SMTP reply for the sender: `452 4.3.1` when the queue or its disk is full
    /// (RFC 3463 4.3.1, "mail system full"), `451 4.3.0` otherwise.
    pub fn reply(&self) -> Reply {
        match self {
            QueueError::Full => Reply::new(
                452,
                "4.3.1 Insufficient system storage: delivery queue full, try again later",
            ),
            QueueError::Storage(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                Reply::new(452, "4.3.1 Insufficient system storage, try again later")
            }
            _ => Reply::new(451, "4.3.0 Local error in processing"),
        }
    }
}
