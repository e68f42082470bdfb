//! [`StoreLimits`]: the bounds a store enforces whatever its callers do.

use super::error::StoreError;
use super::index::check_keywords;
use crate::types::Flags;

/// Bounds a store enforces whatever its callers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Mailboxes per account besides INBOX.
    pub max_mailboxes: usize,
    /// Keywords (`$MDNSent` ...) per message.
    pub max_keywords: usize,
    /// Size of one message, also after decompressing a stored gzip file.
    pub max_message_bytes: u64,
}

impl StoreLimits {
    /// Refuses a new message (APPEND, delivery) with more than `max_keywords` keywords or
    /// over `max_message_bytes`.
    pub(crate) fn check_new_message(&self, size: u64, flags: &Flags) -> Result<(), StoreError> {
        check_keywords(flags, self.max_keywords)?;
        if size > self.max_message_bytes {
            return Err(StoreError::MessageTooLarge {
                size,
                limit: self.max_message_bytes,
            });
        }
        Ok(())
    }
}

impl Default for StoreLimits {
    /// 256 mailboxes, 32 keywords, 64 MiB per message (the protocol engines apply the
    /// configured, smaller `max_message_size` before a message gets here).
    fn default() -> Self {
        StoreLimits {
            max_mailboxes: 256,
            max_keywords: 32,
            max_message_bytes: 64 << 20,
        }
    }
}
