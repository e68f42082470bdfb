//! Connection limits per listener and per client IP (`max_imap_connections`,
//! `max_smtp_connections` and a fifth of it per IP, spec 1.2), and the `/new` request
//! rate per IP (2 per second, burst 5, spec 2.6).
//!
//! Client IPs are held in memory only while they have connections or recent requests,
//! and are never logged. An IPv6 client counts by its /64 (one host usually has a whole
//! /64 to pick addresses from), an IPv4-mapped IPv6 address as the IPv4 address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counts open connections of one listener, in total and per client IP.
#[derive(Debug)]
pub struct ConnectionLimit {
    total_max: u32,
    per_ip_max: u32,
    state: Mutex<LimitState>,
}

#[derive(Debug, Default)]
struct LimitState {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
}

/// Held while a connection is open; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    limit: Arc<ConnectionLimit>,
    ip: IpAddr,
}

impl ConnectionLimit {
    /// A limit of `total_max` connections, `per_ip_max` of them from one IP.
    pub fn new(total_max: u32, per_ip_max: u32) -> Arc<ConnectionLimit> {
        Arc::new(ConnectionLimit {
            total_max,
            per_ip_max,
            state: Mutex::default(),
        })
    }

    /// Takes a slot for a connection from `ip`, or `None` if a limit is reached.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionSlot> {
        let ip = client(ip);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let from_ip = s.per_ip.get(&ip).copied().unwrap_or(0);
        if s.total >= self.total_max || from_ip >= self.per_ip_max {
            return None;
        }
        s.total += 1;
        s.per_ip.insert(ip, from_ip + 1);
        Some(ConnectionSlot {
            limit: self.clone(),
            ip,
        })
    }

    /// Open connections now.
    pub fn open(&self) -> u32 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut s = self.limit.state.lock().unwrap_or_else(|e| e.into_inner());
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                s.per_ip.remove(&self.ip);
            }
        }
    }
}

/// A per-IP request rate (GCRA): `per_second` sustained, `burst` at once.
#[derive(Debug)]
pub struct RequestRate {
    interval: Duration,
    tolerance: Duration,
    /// Theoretical arrival time per IP; bounded by `MAX_TRACKED`.
    tat: Mutex<HashMap<IpAddr, Instant>>,
}

/// More distinct IPs than this and stale entries are dropped first, then all.
const MAX_TRACKED: usize = 100_000;

impl RequestRate {
    /// A limit of `per_second` requests per second with bursts of `burst`.
    pub fn new(per_second: u32, burst: u32) -> RequestRate {
        let interval = Duration::from_secs(1) / per_second.max(1);
        RequestRate {
            interval,
            tolerance: interval * burst.saturating_sub(1),
            tat: Mutex::default(),
        }
    }

    /// Whether a request from `ip` at `now` is allowed; counts it if so.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = client(ip);
        let mut tat = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        if tat.len() >= MAX_TRACKED {
            tat.retain(|_, t| *t > now);
            if tat.len() >= MAX_TRACKED {
                tat.clear();
            }
        }
        let current = tat.get(&ip).copied().unwrap_or(now).max(now);
        if current > now + self.tolerance {
            return false;
        }
        tat.insert(ip, current + self.interval);
        true
    }
}

/// The key a client is counted under: IPv4 as it is, IPv6 by its /64.
fn client(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limits_total_and_per_ip() {
        let limit = ConnectionLimit::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = limit.try_acquire(a).unwrap();
        let _s2 = limit.try_acquire(a).unwrap();
        assert!(limit.try_acquire(a).is_none(), "per-IP limit");
        let _s3 = limit.try_acquire(b).unwrap();
        assert!(limit.try_acquire(b).is_none(), "total limit");
        drop(s1);
        let s4 = limit.try_acquire(b);
        assert!(s4.is_some());
        assert_eq!(limit.open(), 3);
        drop(s4);
        assert_eq!(limit.open(), 2);
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let limit = ConnectionLimit::new(10, 1);
        let _a = limit
            .try_acquire("2001:db8:1:2::1".parse().unwrap())
            .unwrap();
        assert!(
            limit
                .try_acquire("2001:db8:1:2:ffff::7".parse().unwrap())
                .is_none(),
            "same /64"
        );
        assert!(limit
            .try_acquire("2001:db8:1:3::1".parse().unwrap())
            .is_some());
        let _b = limit.try_acquire("192.0.2.1".parse().unwrap()).unwrap();
        assert!(limit
            .try_acquire("::ffff:192.0.2.1".parse().unwrap())
            .is_none());
    }

    #[test]
    fn request_rate_allows_burst_then_refills() {
        let rate = RequestRate::new(2, 5);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!((0..10).filter(|_| rate.allow(ip, t0)).count(), 5);
        assert!(!rate.allow(ip, t0 + Duration::from_millis(100)));
        assert!(rate.allow(ip, t0 + Duration::from_millis(600)));
    }
}
