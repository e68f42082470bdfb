//! The process's file descriptors as a budget for connections (issue 14).
//!
//! Every connection holds one descriptor; store files, deliveries, DNS and the listeners
//! need some too. When the descriptors ran out at ~16,000 idle connections, mailbox
//! reads and logins failed for everyone ("Too many open files"). At start the relay
//! raises its soft `RLIMIT_NOFILE` to the hard limit and admits connections, across all
//! listeners together, only up to that limit minus a reserve. A connection beyond the
//! cap is refused at once, so the clients already connected never notice.

/// Descriptors kept for everything but client connections: store files (a delivery
/// holds a few for its fsyncs, a FETCH one), outbound deliveries, DNS, listeners, logs.
pub const MIN_RESERVE: u64 = 1024;

/// What the descriptor limit allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorBudget {
    /// The soft limit the process started with.
    pub soft_before: u64,
    /// The soft limit now (the hard limit, if raising it worked).
    pub soft: u64,
    /// Descriptors kept back from connections.
    pub reserve: u64,
    /// Connections admitted across all listeners together.
    pub connections: u32,
}

impl DescriptorBudget {
    /// The budget for a soft limit of `soft`: a reserve of [`MIN_RESERVE`] or a tenth,
    /// whichever is more, but never more than half (a small limit still admits
    /// connections).
    pub fn for_limit(soft_before: u64, soft: u64) -> DescriptorBudget {
        let reserve = MIN_RESERVE.max(soft / 10).min(soft / 2);
        let connections = soft.saturating_sub(reserve).clamp(1, u64::from(u32::MAX)) as u32;
        DescriptorBudget {
            soft_before,
            soft,
            reserve,
            connections,
        }
    }
}

/// Raises the soft descriptor limit to the hard one (an unlimited hard limit counts as
/// 1,048,576, the kernel's usual `nr_open`) and returns the budget. Where the limit cannot
/// be read or raised, the budget follows what is in force.
#[cfg(unix)]
pub fn raise_descriptor_limit() -> DescriptorBudget {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    const UNLIMITED: u64 = 1 << 20;
    let limit = getrlimit(Resource::Nofile);
    let soft_before = limit.current.unwrap_or(UNLIMITED);
    let hard = limit.maximum.unwrap_or(UNLIMITED);
    let soft = if hard > soft_before {
        let raised = Rlimit {
            current: Some(hard),
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, "could not raise the descriptor limit");
                soft_before
            }
        }
    } else {
        soft_before
    };
    DescriptorBudget::for_limit(soft_before, soft)
}

/// Without Unix resource limits: a budget for the common default of 1024.
#[cfg(not(unix))]
pub fn raise_descriptor_limit() -> DescriptorBudget {
    DescriptorBudget::for_limit(1024, 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets() {
        // This machine class: 20,000 hard; a tenth is more than the minimum reserve.
        let b = DescriptorBudget::for_limit(1024, 20_000);
        assert_eq!((b.reserve, b.connections), (2_000, 18_000));
        // A small limit keeps half for connections.
        assert_eq!(DescriptorBudget::for_limit(1024, 1024).connections, 512);
        assert_eq!(DescriptorBudget::for_limit(1024, 4096).connections, 3072);
    }
}
