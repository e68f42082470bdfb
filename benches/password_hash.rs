//! The CPU cost of a login with a 64 KB password, before and after issue 9 (hole 2).
//!
//! `cargo bench --no-default-features --bench password_hash`
//!
//! "Before" is what every login against an existing account did: a SHA512-crypt verify
//! of whatever password the client sent. SHA-crypt hashes the password once per byte of
//! it before its 5000 rounds, so the cost grows with the square of the length; the long
//! ones are measured once each (a 64 KB one takes many seconds). "After" is the relay's
//! login check (`Relay::authenticate`, memory backend, hashing pool, throttle) for the
//! same passwords against the same kind of account. A plain `std::time` measurement, not
//! criterion: a 64 KB hash cannot be sampled a hundred times.

use chatmail::core::account::{FixedSystemLimits, PasswordHash, MAX_PASSWORD_LEN};
use chatmail::core::config::Config;
use chatmail::{LoginVerdict, Relay};
use futures::executor::block_on;
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USER: &str = "abcdefghi@chat.example.org";
/// What `/new` hands out: `password_min_length + 3` characters.
const PASSWORD: &str = "Xy7!kQ2#pL9m";

/// Runs `f` at least once and until `budget` is spent (at most `max` times); returns the
/// mean time per run and the number of runs.
fn time(budget: Duration, max: u32, mut f: impl FnMut()) -> (Duration, u32) {
    let start = Instant::now();
    let mut runs = 0;
    while runs == 0 || (start.elapsed() < budget && runs < max) {
        f();
        runs += 1;
    }
    (start.elapsed() / runs, runs)
}

fn show(what: &str, (per_run, runs): (Duration, u32)) {
    println!("{what:<62} {:>12.3?}  ({runs} runs)", per_run);
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported here.
    let stored = PasswordHash::sha512_crypt(PASSWORD).expect("hash");
    println!("before: SHA512-crypt verify of the password as sent (the old login path)");
    for len in [
        PASSWORD.len(),
        MAX_PASSWORD_LEN,
        1024,
        16 * 1024,
        32 * 1024,
        64 * 1024,
    ] {
        let password = "p".repeat(len);
        let budget = if len <= 1024 {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        };
        show(
            &format!("  verify, {len}-byte password"),
            time(budget, 1000, || {
                black_box(stored.verify(black_box(&password)).expect("verify"));
            }),
        );
    }

    let mut config = Config::with_domain("chat.example.org");
    // Measure the check itself, not penalties: no failure limit is reached here.
    config.login_free_failures_per_ip = u32::MAX;
    config.login_free_failures_per_account = u32::MAX;
    let relay = Relay::builder(config)
        .memory()
        .system_limits(Arc::new(FixedSystemLimits::plenty()))
        .nocreate_path("/nonexistent/chatmail-nocreate")
        .build()
        .expect("relay");
    let peer: Option<IpAddr> = Some("192.0.2.1".parse().expect("ip"));
    let login = |password: &str| {
        block_on(relay.authenticate(peer, USER, password, false, Instant::now())).expect("login")
    };
    assert!(matches!(login(PASSWORD), LoginVerdict::LoggedIn(_)));
    let pool = relay.accounts().hashing_pool().expect("pool").clone();
    println!("after: Relay::authenticate against an existing account");
    for (what, password, expect_login) in [
        ("right 12-byte password", PASSWORD.to_string(), true),
        ("wrong 12-byte password", "p".repeat(12), false),
        (
            "wrong 256-byte password (longest allowed)",
            "p".repeat(256),
            false,
        ),
        ("wrong 16 KB password", "p".repeat(16 * 1024), false),
        ("wrong 64 KB password", "p".repeat(64 * 1024), false),
    ] {
        let hashes = pool.jobs_accepted();
        let measured = time(Duration::from_secs(1), 10_000, || {
            let verdict = login(&password);
            assert_eq!(matches!(verdict, LoginVerdict::LoggedIn(_)), expect_login);
        });
        show(&format!("  {what}"), measured);
        println!(
            "{:<62} {:>12}",
            "    hashes per login",
            (pool.jobs_accepted() - hashes) / u64::from(measured.1)
        );
    }
}
