//! Issue 9, hole 2: CPU exhaustion through the password hash, closed at the relay and
//! through both engines. Hashes are counted on the relay's hashing pool, never timed;
//! time is virtual where penalties are checked.

use chatmail::core::account::{FixedSystemLimits, HashingPool, MAX_PASSWORD_LEN};
use chatmail::core::config::Config;
use chatmail::imap::{Engine, Output as ImapOut, Session, SessionConfig};
use chatmail::smtp::server::{Output, Role, ServerConfig, ServerSession, Transport};
use chatmail::{LoginVerdict, Relay};
use futures::executor::block_on;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USER: &str = "abcdefghi@chat.example.org";
const PASSWORD: &str = "password123";

fn config() -> Config {
    let mut c = Config::with_domain("chat.example.org");
    c.login_free_failures_per_ip = 3;
    c.login_free_failures_per_account = 5;
    c
}

fn relay_with(config: Config, pool: Option<Arc<HashingPool>>) -> Relay {
    let mut builder = Relay::builder(config)
        .memory()
        .system_limits(Arc::new(FixedSystemLimits::plenty()))
        .nocreate_path("/nonexistent/chatmail-nocreate");
    if let Some(pool) = pool {
        builder = builder.hashing_pool(pool);
    }
    builder.build().unwrap()
}

/// A relay with `USER` created.
fn relay() -> Relay {
    let relay = relay_with(config(), None);
    assert!(block_on(relay.login(USER, PASSWORD, true))
        .unwrap()
        .is_some());
    relay
}

fn hashes(relay: &Relay) -> u64 {
    relay.accounts().hashing_pool().unwrap().jobs_accepted()
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// An SMTP submission session (TLS) driven by hand against the relay.
struct Smtp<'a> {
    relay: &'a Relay,
    peer: Option<IpAddr>,
    session: ServerSession,
}

impl<'a> Smtp<'a> {
    fn new(relay: &'a Relay, peer: Option<IpAddr>) -> Self {
        let config = Arc::new(ServerConfig::new(Role::Submission, "chat.example.org"));
        let session = ServerSession::new(
            config,
            relay.policy().clone(),
            Transport::Tls,
            Instant::now(),
        );
        let mut s = Smtp {
            relay,
            peer,
            session,
        };
        s.send("EHLO client.example\r\n");
        s
    }

    /// Feeds `input`, answers requests with the relay, returns the replies.
    fn send(&mut self, input: &str) -> String {
        self.session.feed(input.as_bytes(), Instant::now());
        self.drain()
    }

    fn drain(&mut self) -> String {
        let mut replies = String::new();
        while let Some(out) = self.session.poll() {
            match out {
                Output::Send(bytes) => replies.push_str(&String::from_utf8_lossy(&bytes)),
                Output::Request(id, request) => {
                    let answer = block_on(self.relay.answer_smtp(request, self.peer));
                    self.session.answer(id, answer, Instant::now()).unwrap();
                }
                _ => {}
            }
        }
        replies
    }

    /// Lets the session's timer fire at `at` (virtual: nobody waits).
    fn at(&mut self, at: Instant) -> String {
        self.session.handle_timeout(at);
        self.drain()
    }

    fn auth(&mut self, user: &str, password: &str) -> String {
        self.send(&format!(
            "AUTH PLAIN {}\r\n",
            b64(&format!("\0{user}\0{password}"))
        ))
    }
}

/// An IMAP session (TLS) driven by hand against the relay.
struct Imap<'a> {
    relay: &'a Relay,
    peer: Option<IpAddr>,
    session: Session,
}

impl<'a> Imap<'a> {
    fn new(relay: &'a Relay, peer: Option<IpAddr>) -> Self {
        let config = Arc::new(SessionConfig::from_config(relay.config(), true));
        let mut s = Imap {
            relay,
            peer,
            session: Session::new(config, Instant::now()),
        };
        s.drain();
        s
    }

    fn send(&mut self, input: &str) -> String {
        self.session.feed(input.as_bytes(), Instant::now());
        self.drain()
    }

    fn drain(&mut self) -> String {
        let mut responses = String::new();
        while let Some(out) = self.session.poll() {
            match out {
                ImapOut::Send(bytes) => responses.push_str(&String::from_utf8_lossy(&bytes)),
                ImapOut::Request(id, request) => {
                    let answer = block_on(self.relay.answer_imap(request, self.peer));
                    self.session.answer(id, answer, Instant::now()).unwrap();
                }
                ImapOut::StartTls
                | ImapOut::StartDeflate
                | ImapOut::Subscribe(_)
                | ImapOut::Close => {}
                ImapOut::Event(never) => match never {},
            }
        }
        responses
    }

    fn at(&mut self, at: Instant) -> String {
        self.session.handle_timeout(at);
        self.drain()
    }
}

#[test]
fn an_overlong_password_against_an_existing_account_is_refused_without_hashing() {
    let relay = relay();
    let before = hashes(&relay);
    let now = Instant::now();
    let peer = ip("192.0.2.1");
    // At the relay: 64 KB (20 s of CPU before the fix), and just over the bound.
    for len in [64 * 1024, 32 * 1024, MAX_PASSWORD_LEN + 1] {
        let verdict = block_on(relay.authenticate(peer, USER, &"p".repeat(len), true, now));
        assert!(
            matches!(verdict, Ok(LoginVerdict::Failed { .. })),
            "{len}: {verdict:?}"
        );
    }
    // Through SMTP: the AUTH line (2048 bytes) carries at most ~1.5 KB of password; a
    // 64 KB one is refused by the engine, a 1 KB one by the relay.
    let mut smtp = Smtp::new(&relay, ip("192.0.2.2"));
    let reply = smtp.auth(USER, &"p".repeat(64 * 1024));
    assert!(reply.starts_with("500 5.5.6"), "{reply}");
    smtp.auth(USER, &"p".repeat(1000));
    let reply = smtp.at(Instant::now() + Duration::from_secs(1));
    assert_eq!(reply, "535 5.7.8 Error: authentication failed\r\n");
    // Through IMAP: a 64 KB literal is refused by the engine, 1 KB by the relay.
    let mut imap = Imap::new(&relay, ip("192.0.2.3"));
    let out = imap.send(&format!("a LOGIN {USER} {{{}}}\r\n", 64 * 1024 - 100));
    assert!(out.contains("a BAD [TOOBIG]"), "{out}");
    let out = imap.send(&format!("b LOGIN {USER} \"{}\"\r\n", "p".repeat(1000)));
    assert!(out.contains("b NO [AUTHENTICATIONFAILED]"), "{out}");
    assert_eq!(hashes(&relay), before, "no password was hashed");
    // The longest password an account can have still creates and logs in.
    let longest = "p".repeat(MAX_PASSWORD_LEN);
    let mut smtp = Smtp::new(&relay, ip("192.0.2.4"));
    let reply = smtp.auth("newuser12@chat.example.org", &longest);
    assert!(reply.starts_with("235 "), "{reply}");
    let out = Imap::new(&relay, ip("192.0.2.5")).send(&format!(
        "a LOGIN newuser12@chat.example.org \"{longest}\"\r\n"
    ));
    assert!(out.contains("a OK"), "{out}");
}

#[test]
fn failed_logins_from_one_ip_get_doubling_penalties_without_hashing() {
    let relay = relay();
    let peer = ip("192.0.2.9");
    let start = Instant::now();
    // What costs no hash and guesses nothing does not count: unknown or invalid names,
    // refused creations, over-long passwords (a shared IP's clients are not punished for
    // each other's typos).
    for i in 0..50 {
        for (user, password) in [
            (
                format!("newuser{i:02}@chat.example.org"),
                "short".to_string(),
            ),
            (format!("user{i}@other.example"), PASSWORD.to_string()),
            (USER.to_string(), "p".repeat(MAX_PASSWORD_LEN + 1)),
        ] {
            let v = block_on(relay.authenticate(peer, &user, &password, false, start));
            assert_eq!(v.unwrap(), LoginVerdict::Failed { not_before: None });
        }
    }
    assert_eq!(relay.login_throttle().tracked(), (0, 0));
    // Wrong passwords do: one hash each, then doubling penalties.
    let mut now = start;
    let mut delays = Vec::new();
    for _ in 0..9 {
        let before = hashes(&relay);
        let verdict = block_on(relay.authenticate(peer, USER, "wrong-password", false, now));
        let Ok(LoginVerdict::Failed { not_before }) = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(hashes(&relay), before + 1);
        let delay = not_before.map_or(Duration::ZERO, |t| t - now);
        delays.push(delay.as_secs());
        // During the penalty even the right password is refused, unchecked.
        if let Some(until) = not_before {
            let before = hashes(&relay);
            let v = block_on(relay.authenticate(peer, USER, PASSWORD, true, now)).unwrap();
            assert_eq!(
                v,
                LoginVerdict::Failed {
                    not_before: Some(until)
                }
            );
            assert_eq!(hashes(&relay), before, "nothing hashed during a penalty");
        }
        now += delay;
    }
    assert_eq!(delays, [0, 0, 0, 1, 2, 4, 8, 16, 32]);
    // Another client logs in as usual meanwhile.
    let v = block_on(relay.authenticate(ip("192.0.2.10"), USER, PASSWORD, true, now)).unwrap();
    assert!(matches!(v, LoginVerdict::LoggedIn(_)), "{v:?}");
}

#[test]
fn failed_logins_of_one_account_get_doubling_penalties_but_not_its_owner() {
    let relay = relay();
    let start = Instant::now();
    let mut now = start;
    let mut delays: Vec<u64> = Vec::new();
    for i in 0..9 {
        now += Duration::from_secs(delays.last().copied().unwrap_or(0));
        let attacker = ip(&format!("198.51.100.{i}"));
        let v = block_on(relay.authenticate(attacker, USER, "wrong-password", true, now));
        let Ok(LoginVerdict::Failed { not_before }) = v else {
            panic!("{v:?}")
        };
        delays.push(not_before.map_or(0, |t| (t - now).as_secs()));
    }
    assert_eq!(delays, [0, 0, 0, 0, 0, 1, 2, 4, 8]);
    // An attacker IP that failed before is refused unchecked during the penalty ...
    let before = hashes(&relay);
    let v = block_on(relay.authenticate(ip("198.51.100.1"), USER, PASSWORD, true, now));
    assert!(
        matches!(
            v,
            Ok(LoginVerdict::Failed {
                not_before: Some(_)
            })
        ),
        "{v:?}"
    );
    assert_eq!(hashes(&relay), before);
    // ... while the owner, on a device without failures, logs in at once, which clears
    // the account's failures.
    let v = block_on(relay.authenticate(ip("203.0.113.5"), USER, PASSWORD, true, now));
    assert!(matches!(v, Ok(LoginVerdict::LoggedIn(_))), "{v:?}");
    let v = block_on(relay.authenticate(ip("198.51.100.1"), USER, PASSWORD, true, now));
    assert!(matches!(v, Ok(LoginVerdict::LoggedIn(_))), "{v:?}");
}

#[test]
fn the_engines_hold_the_failure_answer_until_the_penalty_ends() {
    let relay = relay();
    let peer = ip("192.0.2.20");
    // Three free failures for this IP, through IMAP ...
    let mut imap = Imap::new(&relay, peer);
    for tag in ["a", "b", "c"] {
        let out = imap.send(&format!("{tag} LOGIN {USER} wrong-password\r\n"));
        assert!(
            out.contains(&format!("{tag} NO [AUTHENTICATIONFAILED]")),
            "{out}"
        );
    }
    // ... the fourth earns a 1 s penalty: the NO waits for the session's timer.
    let asked = Instant::now();
    assert_eq!(imap.send(&format!("d LOGIN {USER} wrong-password\r\n")), "");
    let until = imap.session.poll_timeout().unwrap();
    assert!(until >= asked + Duration::from_secs(1), "{until:?}");
    assert!(until <= Instant::now() + Duration::from_secs(1));
    assert_eq!(imap.at(until - Duration::from_millis(1)), "");
    assert!(imap.at(until).starts_with("d NO [AUTHENTICATIONFAILED]"));
    // Four more failures on record (8 in all) put the IP in a 16 s penalty: long enough
    // that a slow machine does not see it end during the test.
    for _ in 0..4 {
        relay.login_throttle().failed(peer, None, Instant::now());
    }
    // The same IP over SMTP: even the right password is refused without a check, and the
    // 535 waits for the penalty's end on the session's timer.
    let mut smtp = Smtp::new(&relay, peer);
    let before = hashes(&relay);
    let asked = Instant::now();
    assert_eq!(smtp.auth(USER, PASSWORD), "");
    let until = smtp.session.poll_timeout().unwrap();
    assert!(until > asked + Duration::from_secs(10), "{until:?}");
    assert_eq!(smtp.at(until - Duration::from_millis(1)), "");
    assert_eq!(smtp.at(until), "535 5.7.8 Error: authentication failed\r\n");
    // And over IMAP.
    let mut imap = Imap::new(&relay, peer);
    assert_eq!(imap.send(&format!("a LOGIN {USER} {PASSWORD}\r\n")), "");
    let until = imap.session.poll_timeout().unwrap();
    assert!(until > asked + Duration::from_secs(10), "{until:?}");
    assert!(imap.at(until).starts_with("a NO [AUTHENTICATIONFAILED]"));
    assert_eq!(
        hashes(&relay),
        before,
        "nothing was checked during the penalty"
    );
}

#[test]
fn a_saturated_hashing_pool_is_a_temporary_failure() {
    let pool = Arc::new(HashingPool::new(1, 1));
    let relay = relay_with(config(), Some(pool.clone()));
    assert!(block_on(relay.login(USER, PASSWORD, true))
        .unwrap()
        .is_some());
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    pool.try_spawn(Box::new(move || {
        started_tx.send(()).unwrap();
        let _ = release_rx.recv();
    }))
    .unwrap();
    started_rx.recv().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    pool.try_spawn(Box::new(move || done_tx.send(()).unwrap()))
        .unwrap();
    // Thread busy, queue full: the right password gets a temporary failure at once.
    let mut smtp = Smtp::new(&relay, ip("192.0.2.30"));
    assert_eq!(
        smtp.auth(USER, PASSWORD),
        "454 4.7.0 Temporary authentication failure\r\n"
    );
    let out = Imap::new(&relay, ip("192.0.2.31")).send(&format!("a LOGIN {USER} {PASSWORD}\r\n"));
    assert!(out.contains("a NO [UNAVAILABLE]"), "{out}");
    // A temporary failure is not a failed login: no penalty grows from it.
    assert_eq!(relay.login_throttle().tracked(), (0, 0));
    release_tx.send(()).unwrap();
    done_rx.recv().unwrap();
    let reply = smtp.auth(USER, PASSWORD);
    assert!(reply.starts_with("235 "), "{reply}");
}
