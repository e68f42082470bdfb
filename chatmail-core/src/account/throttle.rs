//! Failed-login limits per client IP and per account ([`LoginThrottle`]).

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::config::Config;
use crate::types::Address;

/// The limits of a [`LoginThrottle`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThrottleSettings {
    /// Failures of one IP before penalties start.
    pub free_failures_per_ip: u32,
    /// Failures of one account before penalties start.
    pub free_failures_per_account: u32,
    /// The first penalty; each further failure doubles it.
    pub first_delay: Duration,
    /// The longest penalty of an IP.
    pub max_delay_per_ip: Duration,
    /// The longest penalty of an account.
    pub max_delay_per_account: Duration,
    /// Failures older than this are forgotten.
    pub forget_after: Duration,
    /// Entries per map (IPs, accounts); the least recently failed goes first.
    pub max_tracked: usize,
}

impl ThrottleSettings {
    /// The settings of `config` (`login_*` keys), first penalty 1 s, 65536 entries per map
    /// (the IP map stays under 10 MB; the account map holds only accounts that exist).
    pub fn from_config(config: &Config) -> Self {
        ThrottleSettings {
            free_failures_per_ip: config.login_free_failures_per_ip,
            free_failures_per_account: config.login_free_failures_per_account,
            first_delay: Duration::from_secs(1),
            max_delay_per_ip: Duration::from_secs(config.login_max_delay_per_ip_secs),
            max_delay_per_account: Duration::from_secs(config.login_max_delay_per_account_secs),
            forget_after: Duration::from_secs(config.login_failures_forget_after_secs),
            max_tracked: 65_536,
        }
    }
}

/// May a password be checked now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Check it.
    Check,
    /// Do not check it: answer "authentication failed", not before `until`.
    Refuse {
        /// The end of the penalty that refused the attempt.
        until: Instant,
    },
}

/// What is known of one IP or account.
#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    /// The end of the current penalty, if one was ever given.
    penalty_until: Option<Instant>,
}

impl Entry {
    fn penalized_at(&self, now: Instant) -> Option<Instant> {
        self.penalty_until.filter(|&until| until > now)
    }
}

/// A client IP as counted: IPv4 whole, IPv6 by its /64 (IPv4-mapped ones as IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum IpKey {
    V4(u32),
    V6(u64),
}

impl From<IpAddr> for IpKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(v4.into()),
                None => IpKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// One bounded map of failures with the penalty rule of its kind.
struct Tracker<K: std::hash::Hash + Eq> {
    entries: LruCache<K, Entry>,
    free: u32,
    max_delay: Duration,
}

impl<K: std::hash::Hash + Eq> Tracker<K> {
    fn new(capacity: NonZeroUsize, free: u32, max_delay: Duration) -> Self {
        Tracker {
            entries: LruCache::new(capacity),
            free,
            max_delay,
        }
    }

    /// The live entry of `key` (a forgotten one is dropped on the way).
    fn live(&mut self, key: &K, now: Instant, forget_after: Duration) -> Option<&mut Entry> {
        let stale = self
            .entries
            .peek(key)
            .is_some_and(|e| now.saturating_duration_since(e.last_failure) >= forget_after);
        if stale {
            self.entries.pop(key);
            return None;
        }
        self.entries.peek_mut(key)
    }

    /// The penalty after `failures` failures, if past the free ones.
    fn delay(&self, failures: u32, first: Duration) -> Option<Duration> {
        let past = failures.checked_sub(self.free).filter(|&p| p > 0)?;
        // 2^(past-1) seconds, without overflow for any count.
        let factor = 1u32.checked_shl(past - 1).unwrap_or(u32::MAX);
        Some(first.saturating_mul(factor).min(self.max_delay))
    }

    /// Starts the next penalty now if `key` is past its free failures: the attempt being
    /// let through takes the one check of this penalty.
    fn reserve(&mut self, key: &K, now: Instant, s: &ThrottleSettings) {
        let Some(failures) = self.live(key, now, s.forget_after).map(|e| e.failures) else {
            return;
        };
        if let Some(delay) = self.delay(failures.saturating_add(1), s.first_delay) {
            if let Some(e) = self.entries.peek_mut(key) {
                e.penalty_until = Some(now + delay);
            }
        }
    }

    /// Counts a failure; returns the end of the penalty it earned, if any.
    fn fail(&mut self, key: K, now: Instant, s: &ThrottleSettings) -> Option<Instant> {
        let failures = match self.live(&key, now, s.forget_after) {
            Some(e) => e.failures.saturating_add(1),
            None => 1,
        };
        let penalty = self.delay(failures, s.first_delay).map(|d| now + d);
        let previous = self.entries.peek(&key).and_then(|e| e.penalty_until);
        // `put` makes the entry the most recently failed and evicts the least recent one
        // when the map is full.
        self.entries.put(
            key,
            Entry {
                failures,
                last_failure: now,
                penalty_until: penalty.max(previous),
            },
        );
        penalty.max(previous).filter(|&until| until > now)
    }
}

struct State {
    ips: Tracker<IpKey>,
    accounts: Tracker<String>,
}

/// Failed-login limits per client IP and per account, with doubling penalties, shared
/// by every SMTP and IMAP session.
///
/// A password check costs milliseconds of CPU, and a patient guesser may try forever; so
/// after some free failures (wrong passwords for existing accounts: the caller decides
/// what counts) every further failure earns a penalty that doubles, from
/// [`ThrottleSettings::first_delay`] up to a cap. [`LoginThrottle`] decides, before a
/// password is checked, whether it may be checked at all ([`LoginThrottle::admit`]), and
/// after a failure, when the failure may be answered ([`LoginThrottle::failed`]). It owns
/// no clock and no timer: every method takes `now`, and the caller holds the answer back
/// (the SMTP and IMAP engines have a timer for that).
///
/// # Client IPs
///
/// * Past its free failures, an IP gets **one password check per penalty**: an attempt
///   during the penalty is refused without a check (the answer waits for the penalty's
///   end), and the attempt let through at its end starts the next penalty at once, so
///   parallel connections gain nothing. A failure's answer waits until the penalty ends.
/// * A success does not clear an IP's failures: a guesser owning one account could
///   otherwise clear them between guesses. They fade [`ThrottleSettings::forget_after`]
///   after the IP's last failure.
/// * IPv6 clients are counted per /64, the smallest block a site is given.
/// * IPs live in memory only, in a bounded map; they are never logged or written.
///
/// # Accounts
///
/// Past its free failures an account's penalty holds back only clients whose IP has
/// failed before (or whose IP is unknown), one check per penalty among them. A client
/// whose IP has no failure on record is always checked at once: that is the account's
/// owner on their usual device, so an attacker cannot lock the owner out however often
/// they fail. The trade-off: a botnet gets one guess per fresh IP, and an owner who
/// mistyped while the account is under attack waits until that mistake is forgotten
/// (at most `forget_after`), or for a free check at the end of a penalty (at most
/// [`ThrottleSettings::max_delay_per_account`]). Generated passwords (78 bits) are out of
/// reach of any such guessing; the limits are there for CPU and for weak chosen
/// passwords. A successful login clears the account's failures.
///
/// # Memory
///
/// Each map keeps at most [`ThrottleSettings::max_tracked`] entries; when full, the entry
/// with the oldest failure goes first. An attacker with more addresses than that (more
/// than a /48 of IPv6) can push its own entries out, which only gives it the free
/// failures again: the hashing pool still bounds the CPU.
///
/// `Debug` shows only the settings and how many entries are kept: never an IP.
pub struct LoginThrottle {
    settings: ThrottleSettings,
    state: Mutex<State>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ips, accounts) = self.tracked();
        f.debug_struct("LoginThrottle")
            .field("settings", &self.settings)
            .field("tracked_ips", &ips)
            .field("tracked_accounts", &accounts)
            .finish()
    }
}

impl LoginThrottle {
    /// An empty throttle with `settings`.
    pub fn new(settings: ThrottleSettings) -> Self {
        let capacity = NonZeroUsize::new(settings.max_tracked).unwrap_or(NonZeroUsize::MIN);
        let state = State {
            ips: Tracker::new(
                capacity,
                settings.free_failures_per_ip,
                settings.max_delay_per_ip,
            ),
            accounts: Tracker::new(
                capacity,
                settings.free_failures_per_account,
                settings.max_delay_per_account,
            ),
        };
        LoginThrottle {
            settings,
            state: Mutex::new(state),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &ThrottleSettings {
        &self.settings
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding the lock: each
        // update is a single entry write.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a login for `account` (if the login name is one) from `ip` (if known) may
    /// have its password checked at `now`. An admitted attempt past the free failures
    /// starts the next penalty at once (one check per penalty).
    pub fn admit(&self, ip: Option<IpAddr>, account: Option<&Address>, now: Instant) -> Admission {
        let s = &self.settings;
        let mut state = self.state();
        let ip_key = ip.map(IpKey::from);
        let mut suspect = true;
        if let Some(key) = &ip_key {
            match state.ips.live(key, now, s.forget_after) {
                Some(e) => {
                    if let Some(until) = e.penalized_at(now) {
                        return Admission::Refuse { until };
                    }
                    suspect = e.failures > 0;
                }
                None => suspect = false,
            }
        }
        if let Some(account) = account {
            let key = account.as_str().to_string();
            if suspect {
                if let Some(until) = state
                    .accounts
                    .live(&key, now, s.forget_after)
                    .and_then(|e| e.penalized_at(now))
                {
                    return Admission::Refuse { until };
                }
                state.accounts.reserve(&key, now, s);
            }
        }
        if let Some(key) = &ip_key {
            state.ips.reserve(key, now, s);
        }
        Admission::Check
    }

    /// Counts a failed login from `ip` at `now`, and against `account` if the account
    /// exists (failures for unknown names guess nothing). Returns when the failure may be
    /// answered: the end of the longest penalty in force, or `None` for at once.
    pub fn failed(
        &self,
        ip: Option<IpAddr>,
        account: Option<&Address>,
        now: Instant,
    ) -> Option<Instant> {
        let s = &self.settings;
        let mut state = self.state();
        let by_ip = ip.and_then(|ip| state.ips.fail(IpKey::from(ip), now, s));
        let by_account = account.and_then(|a| state.accounts.fail(a.as_str().to_string(), now, s));
        by_ip.max(by_account)
    }

    /// A successful login of `account`: its failures are forgotten (the IP's are not).
    pub fn succeeded(&self, account: &Address) {
        self.state().accounts.pop(account.as_str());
    }

    /// How many IPs and accounts have failures on record (for tests and metrics).
    pub fn tracked(&self) -> (usize, usize) {
        let state = self.state();
        (state.ips.entries.len(), state.accounts.entries.len())
    }
}

impl<K: std::hash::Hash + Eq> Tracker<K> {
    fn pop<Q>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.entries.pop(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ThrottleSettings {
        ThrottleSettings {
            free_failures_per_ip: 3,
            free_failures_per_account: 5,
            first_delay: Duration::from_secs(1),
            max_delay_per_ip: Duration::from_secs(60),
            max_delay_per_account: Duration::from_secs(30),
            forget_after: Duration::from_secs(600),
            max_tracked: 1000,
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn ip_penalties_double_up_to_the_cap_after_the_free_failures() {
        let t = LoginThrottle::new(settings());
        let start = Instant::now();
        let mut now = start;
        let peer = ip("192.0.2.7");
        let mut delays = Vec::new();
        for _ in 0..12 {
            assert_eq!(t.admit(peer, None, now), Admission::Check);
            let until = t.failed(peer, None, now);
            let delay = until.map_or(Duration::ZERO, |u| u - now);
            delays.push(delay.as_secs());
            // A patient client retries when the answer comes.
            now += delay;
        }
        assert_eq!(delays, [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn attempts_during_an_ip_penalty_are_refused_without_a_check() {
        let t = LoginThrottle::new(settings());
        let now = Instant::now();
        let peer = ip("192.0.2.7");
        for _ in 0..4 {
            assert_eq!(t.admit(peer, None, now), Admission::Check);
            t.failed(peer, None, now);
        }
        // 4 failures, 3 free: a 1 s penalty.
        let refused = Admission::Refuse {
            until: now + secs(1),
        };
        assert_eq!(t.admit(peer, None, now), refused);
        assert_eq!(
            t.admit(peer, None, now + Duration::from_millis(999)),
            refused
        );
        // At its end one attempt is let through, and it takes the next penalty at once:
        // a second connection waiting for the same moment is refused.
        let later = now + secs(1);
        assert_eq!(t.admit(peer, None, later), Admission::Check);
        assert_eq!(
            t.admit(peer, None, later),
            Admission::Refuse {
                until: later + secs(2)
            }
        );
        // Another IP is not affected; an IPv6 neighbour in the same /64 is.
        assert_eq!(t.admit(ip("192.0.2.8"), None, later), Admission::Check);
        let v6 = ip("2001:db8:1:2::1");
        for _ in 0..4 {
            t.failed(v6, None, now);
        }
        assert!(matches!(
            t.admit(ip("2001:db8:1:2:ffff::9"), None, now),
            Admission::Refuse { .. }
        ));
        assert_eq!(t.admit(ip("2001:db8:1:3::1"), None, now), Admission::Check);
    }

    #[test]
    fn failures_fade_and_success_clears_only_the_account() {
        let t = LoginThrottle::new(settings());
        let now = Instant::now();
        let peer = ip("192.0.2.7");
        let account = Address::parse("abcdefghi@example.org").unwrap();
        for _ in 0..6 {
            t.failed(peer, Some(&account), now);
        }
        t.succeeded(&account);
        assert_eq!(t.tracked(), (1, 0));
        // The IP keeps its penalty (a guesser owning one account cannot clear it).
        assert!(matches!(t.admit(peer, None, now), Admission::Refuse { .. }));
        // Ten minutes after the last failure, it is forgotten.
        assert_eq!(t.admit(peer, None, now + secs(600)), Admission::Check);
        assert_eq!(t.failed(peer, None, now + secs(600)), None);
    }

    #[test]
    fn account_penalties_double_and_hold_back_only_ips_that_failed() {
        let t = LoginThrottle::new(settings());
        let start = Instant::now();
        let account = Address::parse("abcdefghi@example.org").unwrap();
        let mut now = start;
        let mut delays: Vec<u64> = Vec::new();
        // Each guess from a different IP: the per-IP limit never starts. The next guess
        // comes when the previous answer does.
        for i in 0..12 {
            now += secs(delays.last().copied().unwrap_or(0));
            let attacker = ip(&format!("198.51.100.{i}"));
            assert_eq!(t.admit(attacker, Some(&account), now), Admission::Check);
            let until = t.failed(attacker, Some(&account), now);
            delays.push(until.map_or(Duration::ZERO, |u| u - now).as_secs());
        }
        assert_eq!(delays, [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 30, 30]);
        // A penalty is in force now: IPs that failed are refused without a check ...
        assert_eq!(
            t.admit(ip("198.51.100.3"), Some(&account), now),
            Admission::Refuse {
                until: now + secs(30)
            }
        );
        // ... and so are clients whose IP is unknown ...
        assert!(matches!(
            t.admit(None, Some(&account), now),
            Admission::Refuse { .. }
        ));
        // ... but the owner, on an IP without failures, is checked at once, and other
        // accounts are not affected.
        assert_eq!(
            t.admit(ip("203.0.113.1"), Some(&account), now),
            Admission::Check
        );
        let other = Address::parse("otheruser@example.org").unwrap();
        assert_eq!(
            t.admit(ip("198.51.100.3"), Some(&other), now),
            Admission::Check
        );
        // The owner logs in: the account's failures are gone.
        t.succeeded(&account);
        assert_eq!(
            t.admit(ip("198.51.100.3"), Some(&account), now),
            Admission::Check
        );
    }

    #[test]
    fn the_maps_stay_bounded() {
        let mut s = settings();
        s.max_tracked = 100;
        let t = LoginThrottle::new(s);
        let now = Instant::now();
        for i in 0..10_000u32 {
            let peer = Some(IpAddr::from(i.to_be_bytes()));
            let account = Address::parse(&format!("user{i}@example.org")).unwrap();
            t.failed(peer, Some(&account), now);
        }
        assert_eq!(t.tracked(), (100, 100));
        let debug = format!("{t:?}");
        assert!(!debug.contains("0.0.39.15"), "{debug}");
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let t = LoginThrottle::new(settings());
        let now = Instant::now();
        let peer = ip("192.0.2.7");
        for _ in 0..100 {
            t.failed(peer, None, now);
        }
        assert_eq!(t.failed(peer, None, now), Some(now + secs(60)));
    }
}
