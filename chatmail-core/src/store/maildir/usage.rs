//! Quota usage: the bytes of an account's messages across its mailboxes, kept as one
//! figure per account so that the quota check of a delivery costs the same whatever the
//! mailboxes hold.
//!
//! The figure is the sum of the index sizes of the account's mailbox states that are
//! loaded (each state's [`UsageShare`]): a state adds its size when it is loaded, every
//! commit of a change to its index (append, copy, expunge, a rescan, expiry) moves the
//! figure by the difference, and a state dropped from the cache (mailbox deleted or
//! renamed, index to be reloaded, account removed) takes its part back out. The figure
//! is the account's usage once every mailbox of the account is loaded: the first
//! `Inner::quota_usage` (in `quota`) after start loads (and rescans) them all, which also takes in
//! messages left by Dovecot, and marks the figure complete; dropping a state that is not
//! gone for good marks it incomplete again, so the next call loads what is missing.

use std::sync::{Arc, Mutex};

use crate::store::lock::lock;

/// One account's usage figure.
#[derive(Debug, Default)]
pub(super) struct Usage {
    /// The sum of the sizes of the loaded mailbox states.
    pub(super) bytes: u64,
    /// Whether every mailbox of the account is loaded, so that `bytes` is its usage.
    pub(super) complete: bool,
    /// Counts the times `complete` was cleared: a computation that began before one
    /// does not mark the figure complete.
    pub(super) generation: u64,
}

impl Usage {
    /// A figure for an account of which nothing is loaded yet.
    pub(super) fn new() -> Arc<Mutex<Usage>> {
        Arc::new(Mutex::new(Usage::default()))
    }
}

/// The part of its account's [`Usage`] one mailbox state accounts for.
#[derive(Debug)]
pub(super) struct UsageShare {
    usage: Arc<Mutex<Usage>>,
    /// What this state has added to `usage.bytes`.
    counted: u64,
    /// Whether the state is in its account's cache (only then does it count).
    attached: bool,
}

impl UsageShare {
    /// A share of `usage` that counts nothing until [`UsageShare::attach`].
    pub(super) fn new(usage: Arc<Mutex<Usage>>) -> Self {
        UsageShare {
            usage,
            counted: 0,
            attached: false,
        }
    }

    /// The state joins its account's cache with an index of `size` bytes.
    pub(super) fn attach(&mut self, size: u64) {
        let mut usage = lock(&self.usage);
        usage.bytes = usage.bytes.saturating_add(size);
        self.counted = size;
        self.attached = true;
    }

    /// The state's index now holds `size` bytes.
    pub(super) fn update(&mut self, size: u64) {
        if !self.attached || size == self.counted {
            return;
        }
        let mut usage = lock(&self.usage);
        usage.bytes = usage
            .bytes
            .saturating_sub(self.counted)
            .saturating_add(size);
        self.counted = size;
    }

    /// The state leaves its account's cache. With `reload`, the mailbox is still there
    /// (its state will be loaded again), so the figure is no longer the account's usage
    /// until it is.
    pub(super) fn detach(&mut self, reload: bool) {
        if !self.attached {
            return;
        }
        let mut usage = lock(&self.usage);
        usage.bytes = usage.bytes.saturating_sub(self.counted);
        if reload {
            usage.complete = false;
            usage.generation += 1;
        }
        self.counted = 0;
        self.attached = false;
    }
}
