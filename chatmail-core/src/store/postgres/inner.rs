//! [`Inner`]: what every handle of a store and its listener share.

use deadpool_postgres::Pool;

use super::cursors::Feed;
use crate::store::feed::ChangeHub;
use crate::store::limits::StoreLimits;

/// What every handle and the listener task share.
pub(super) struct Inner {
    /// The connections for queries (the listener has its own).
    pub pool: Pool,
    /// The local change feed.
    pub hub: ChangeHub,
    /// The bounds the store keeps.
    pub limits: StoreLimits,
    /// Where queries and the listener run.
    pub runtime: tokio::runtime::Handle,
    /// What was published, per watched account.
    pub feed: Feed,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .field("hub", &self.hub)
            .finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.feed.stop();
    }
}
