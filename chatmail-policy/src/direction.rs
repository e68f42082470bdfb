//! Which way a message travels: what every check depends on first.

/// Which way a message travels through the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Submitted by an authenticated client of this relay (ports 587/465), spec 3.2.
    Outgoing,
    /// Received from another mail server (port 25 or `/mxdeliv`), spec 3.3.
    Incoming,
}
