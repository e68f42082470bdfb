//! Every deadline of a server session on a virtual clock: none of them restarts on a
//! byte, and the shared memory budget refuses messages with `452 4.3.1`.

mod common;

use chatmail_smtp::server::Engine as _;
use std::time::Duration;

use chatmail_core::budget::MemoryBudget;
use chatmail_smtp::server::{ServerConfig, Transport};
use common::*;

const SECOND: Duration = Duration::from_secs(1);

fn timed_out(d: &Driver) -> bool {
    d.transcript.closed
        && d.transcript
            .has_line(&format!("421 4.4.2 {HOST} Error: timeout exceeded"))
}

/// Feeds `bytes` one a second; stops early when the session closes. Returns the
/// seconds it took.
fn drip(d: &mut Driver, bytes: &[u8]) -> u64 {
    for (i, byte) in bytes.iter().enumerate() {
        d.feed(std::slice::from_ref(byte));
        if d.transcript.closed {
            return i as u64;
        }
        d.advance(SECOND);
        if d.transcript.closed {
            return i as u64 + 1;
        }
    }
    bytes.len() as u64
}

#[test]
fn a_byte_a_second_does_not_keep_an_mx_session_open() {
    let mut d = Driver::new(mx(), policy(1 << 20), Transport::Tls);
    // A command line that never ends, one byte a second: the line had to be complete
    // 300 s after the greeting.
    let secs = drip(&mut d, &[b'x'; 400]);
    assert_eq!(secs, 300);
    assert!(timed_out(&d), "{:?}", d.transcript.lines());
}

#[test]
fn whole_commands_restart_the_command_clock_but_not_the_mx_session() {
    let mut d = Driver::new(mx(), policy(1 << 20), Transport::Tls);
    d.feed(EHLO.as_bytes());
    // A NOOP every 4 minutes is within the command timeout each time...
    for _ in 0..2 {
        d.advance(4 * 60 * SECOND);
        d.feed(b"NOOP\r\n");
    }
    assert!(!d.transcript.closed);
    // ... but the session as a whole ends 10 minutes after the greeting.
    d.advance(60 * SECOND);
    d.feed(b"NOOP\r\n");
    d.advance(60 * SECOND - Duration::from_millis(1));
    assert!(!d.transcript.closed);
    d.advance(Duration::from_millis(1));
    assert!(timed_out(&d), "{:?}", d.transcript.lines());
    assert_eq!(d.session.poll_timeout(), None);
}

#[test]
fn submission_login_deadline_is_absolute() {
    // Whole commands every 10 s: the session is busy, yet not logged in after 60 s.
    let mut d = Driver::new(submission(), policy(1 << 20), Transport::Tls);
    d.feed(EHLO.as_bytes());
    for _ in 0..5 {
        d.advance(10 * SECOND);
        d.feed(b"NOOP\r\n");
    }
    assert!(!d.transcript.closed);
    d.advance(10 * SECOND);
    assert!(timed_out(&d), "{:?}", d.transcript.lines());

    // A pre-login AUTH dialogue dripped one byte a second is cut at 60 s as well.
    let mut d = Driver::new(submission(), policy(1 << 20), Transport::Tls);
    d.feed(format!("{EHLO}AUTH PLAIN\r\n").as_bytes());
    let secs = drip(&mut d, &[b'A'; 100]);
    assert!(
        timed_out(&d) && secs == 60,
        "{secs} {:?}",
        d.transcript.lines()
    );

    // Once logged in, only the command timeout applies.
    let mut d = Driver::new(submission(), policy(1 << 20), Transport::Tls);
    d.feed(format!("{EHLO}AUTH PLAIN {}\r\n", plain_alice()).as_bytes());
    assert!(d.transcript.has_line("235 "));
    for _ in 0..10 {
        d.advance(4 * 60 * SECOND);
        d.feed(b"NOOP\r\n");
    }
    assert!(!d.transcript.closed);
    d.advance(5 * 60 * SECOND);
    assert!(timed_out(&d));
}

#[test]
fn the_login_deadline_covers_starttls() {
    let mut d = Driver::new(submission(), policy(1 << 20), Transport::Cleartext);
    d.auto_tls = false;
    d.feed(b"EHLO client.example\r\nSTARTTLS\r\n");
    assert_eq!(d.transcript.events, ["starttls"]);
    d.advance(30 * SECOND);
    d.session.tls_started(d.now);
    d.advance(30 * SECOND);
    assert!(timed_out(&d), "{:?}", d.transcript.lines());
}

/// A submission session with a short command timeout and a minimum rate of 100 bytes/s,
/// logged in and past `DATA`.
fn in_data(config: ServerConfig) -> Driver {
    let mut d = Driver::new(config, policy(1 << 20), Transport::Tls);
    d.feed(
        format!(
            "{EHLO}AUTH PLAIN {}\r\nMAIL FROM:<alice@{DOMAIN}>\r\nRCPT TO:<bob@{DOMAIN}>\r\nDATA\r\n",
            plain_alice()
        )
        .as_bytes(),
    );
    assert_eq!(d.transcript.codes(), [220, 250, 235, 250, 250, 354]);
    d
}

fn slow_config() -> ServerConfig {
    let mut config = submission();
    config.command_timeout = 10 * SECOND;
    config.min_transfer_rate = 100;
    config
}

#[test]
fn data_needs_the_minimum_average_rate() {
    let alice = format!("alice@{DOMAIN}");
    let message = stuffed(&encrypted_message(&alice, &format!("bob@{DOMAIN}")));
    // 200 bytes a second for 15 s, longer than the head start: accepted.
    let mut d = in_data(slow_config());
    for chunk in message.chunks(200) {
        d.advance(SECOND);
        d.feed(chunk);
    }
    d.transcript.assert_accepted();
    assert!(!d.transcript.closed);

    // 50 bytes a second: each byte buys 10 ms, each second costs 1000: the transfer
    // ends at 10 s + t/2, t = 20 s.
    let mut d = in_data(slow_config());
    let mut secs = 0;
    for chunk in message.chunks(50) {
        d.feed(chunk);
        d.advance(SECOND);
        secs += 1;
        if d.transcript.closed {
            break;
        }
    }
    assert_eq!(secs, 20);
    assert!(timed_out(&d), "{:?}", d.transcript.lines());
}

#[test]
fn bdat_chunks_need_the_minimum_average_rate() {
    let mut d = Driver::new(slow_config(), policy(1 << 20), Transport::Tls);
    d.feed(
        format!(
            "{EHLO}AUTH PLAIN {}\r\nMAIL FROM:<alice@{DOMAIN}>\r\nRCPT TO:<bob@{DOMAIN}>\r\nBDAT 100000 LAST\r\n",
            plain_alice()
        )
        .as_bytes(),
    );
    let secs = drip(&mut d, &[b'x'; 100]);
    assert_eq!(secs, 11, "10 s head start, 11 bytes buy 110 ms");
    assert!(timed_out(&d), "{:?}", d.transcript.lines());
}

#[test]
fn the_shared_budget_refuses_with_452_and_is_given_back() {
    let budget = MemoryBudget::new(4000);
    let mut config = submission();
    config.message_budget = Some(budget.clone());
    let alice = format!("alice@{DOMAIN}");
    let raw = encrypted_message(&alice, &format!("bob@{DOMAIN}"));
    let message = stuffed(&raw);
    assert!(raw.len() > 2000 && message.len() < 4000);

    // A holds 2000 bytes of an unfinished message.
    let mut a = in_data(config.clone());
    a.feed(&message[..2000]);
    assert_eq!(budget.used(), 2000);
    // B's whole message does not fit beside it: refused after its end, nothing kept.
    let mut b = in_data(config.clone());
    b.feed(&message);
    assert!(
        b.transcript
            .has_line("452 4.3.1 Insufficient system resources"),
        "{:?}",
        b.transcript.lines()
    );
    assert_eq!(budget.used(), 2000, "B holds nothing");
    // BDAT too: the chunk is refused, the transaction is over.
    b.feed(format!("MAIL FROM:<{alice}>\r\nRCPT TO:<bob@{DOMAIN}>\r\n").as_bytes());
    b.feed(format!("BDAT {} LAST\r\n", raw.len()).as_bytes());
    assert_eq!(budget.used(), 2000, "an announced size takes nothing");
    b.feed(&raw);
    assert_eq!(b.transcript.codes().last(), Some(&452));
    // A finishes and is delivered: its bytes are given back, and B's retry fits.
    a.feed(&message[2000..]);
    a.transcript.assert_accepted();
    assert_eq!(budget.used(), 0);
    b.feed(format!("MAIL FROM:<{alice}>\r\nRCPT TO:<bob@{DOMAIN}>\r\nDATA\r\n").as_bytes());
    b.feed(&message);
    b.transcript.assert_accepted();
    assert_eq!(budget.used(), 0);
    assert!(!b.transcript.closed);

    // A session that goes away mid-message gives its bytes back too.
    let mut c = in_data(config);
    c.feed(&message[..1000]);
    assert_eq!(budget.used(), 1000);
    drop(c);
    assert_eq!(budget.used(), 0);
}
