//! Every deadline of an IMAP session on a virtual clock (none restarts on a byte), and
//! the shared memory budget for APPEND messages (an announcement takes nothing).

mod common;

use std::time::Duration;

use chatmail_core::budget::MemoryBudget;
use common::*;

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

/// Moves the clock on and lets the session look at it.
fn tick(c: &mut Client, by: Duration) {
    c.now += by;
    c.session.handle_timeout(c.now);
    c.pump();
}

fn said_bye(c: &Client) -> bool {
    c.closed
        && String::from_utf8_lossy(&c.received).ends_with("* BYE Disconnected for inactivity.\r\n")
}

/// Feeds `bytes` one a second until the session closes; returns the seconds it took.
fn drip(c: &mut Client, bytes: &[u8]) -> u64 {
    for (i, byte) in bytes.iter().enumerate() {
        c.send_chunked(std::slice::from_ref(byte), Chunks::Whole);
        tick(c, SECOND);
        if c.closed {
            return i as u64 + 1;
        }
    }
    bytes.len() as u64
}

#[test]
fn login_deadline_is_absolute_for_busy_and_dripping_clients() {
    // Whole commands every 14 s, one byte a second: busy, never logged in.
    let mut c = Client::new();
    let secs = drip(&mut c, &b"a CAPABILITY\r\n".repeat(10));
    assert_eq!(secs, 60);
    assert!(said_bye(&c));
    assert!(String::from_utf8_lossy(&c.received).contains("a OK"));

    // A LOGIN line that never ends.
    let mut c = Client::new();
    let secs = drip(&mut c, &[b'x'; 100]);
    assert_eq!(secs, 60);
    assert!(said_bye(&c));

    // Silent: the same 60 s.
    let mut c = Client::new();
    tick(&mut c, 60 * SECOND - Duration::from_millis(1));
    assert!(!c.closed);
    tick(&mut c, Duration::from_millis(1));
    assert!(said_bye(&c));
}

#[test]
fn the_login_deadline_covers_starttls() {
    let mut config = config();
    config.tls_active = false;
    config.starttls = true;
    let mut c = Client::with_config(config);
    c.send("a STARTTLS\r\n");
    assert!(c.starttls);
    tick(&mut c, 30 * SECOND);
    c.session.tls_started(c.now);
    tick(&mut c, 30 * SECOND);
    assert!(said_bye(&c));
}

#[test]
fn a_started_command_must_end_at_the_minimum_rate() {
    let mut config = config();
    config.command_timeout = 10 * SECOND;
    config.min_transfer_rate = 100;
    let mut c = Client::with_config(config);
    assert!(c.login().contains("L1 OK"));
    // 10 s head start, each byte buys 10 ms: one byte a second ends at 11 s.
    let secs = drip(&mut c, &[b'x'; 100]);
    assert_eq!(secs, 11);
    assert!(said_bye(&c));
}

#[test]
fn a_slow_append_literal_is_cut_but_a_steady_one_goes_through() {
    let mut config = config();
    config.command_timeout = 10 * SECOND;
    config.min_transfer_rate = 100;
    let message = SIMPLE.repeat(20);
    let mut c = Client::with_config(config.clone());
    c.login();
    let reply = c.send(&format!("a APPEND INBOX {{{}}}\r\n", message.len()));
    assert!(reply.starts_with('+'), "{reply}");
    // 200 bytes a second for longer than the head start: accepted.
    for chunk in message.chunks(200) {
        tick(&mut c, SECOND);
        c.send_chunked(chunk, Chunks::Whole);
    }
    assert!(c.send("\r\n").contains("a OK [APPENDUID"));

    // 50 bytes a second: the command's time is 10 s + its bytes at 100 a second, the
    // 23-byte command line included: 10.23 s + t/2 ends at t = 21 s.
    let mut c = Client::with_config(config);
    c.login();
    c.send(&format!("a APPEND INBOX {{{}}}\r\n", message.len()));
    let mut secs = 0;
    for chunk in message.chunks(50) {
        c.send_chunked(chunk, Chunks::Whole);
        tick(&mut c, SECOND);
        secs += 1;
        if c.closed {
            break;
        }
    }
    assert_eq!(secs, 21);
    assert!(said_bye(&c));
}

#[test]
fn inactivity_counts_from_the_last_command_and_idle_reissued_stays() {
    let mut c = Client::new();
    c.login();
    c.send("s SELECT INBOX\r\n");
    tick(&mut c, 29 * MINUTE);
    c.send("n NOOP\r\n");
    tick(&mut c, 29 * MINUTE);
    assert!(!c.closed, "29 minutes after the NOOP");
    tick(&mut c, MINUTE);
    assert!(said_bye(&c));

    // Delta Chat re-issues IDLE every few minutes: open for two hours.
    let mut c = Client::new();
    c.login();
    c.send("s SELECT INBOX\r\ni IDLE\r\n");
    for n in 0..24 {
        tick(&mut c, 5 * MINUTE);
        let reply = c.send(&format!("DONE\r\ni{n} IDLE\r\n"));
        assert!(reply.contains("OK Idle completed"), "{reply}");
    }
    assert!(!c.closed);
    // An IDLE left alone ends 30 minutes after it began.
    tick(&mut c, 30 * MINUTE - SECOND);
    assert!(!c.closed);
    tick(&mut c, SECOND);
    assert!(said_bye(&c));
}

#[test]
fn an_append_announcement_takes_no_memory_and_the_budget_refuses() {
    let budget = MemoryBudget::new(10_000);
    let mut config = config();
    config.message_budget = Some(budget.clone());
    config.max_message_size = 30 << 20;
    let mut a = Client::with_config(config.clone());
    a.login();
    let footprint = a.session.memory_footprint();
    // A 30 MB announcement: a continuation, no memory, nothing from the budget.
    let reply = a.send(&format!("a APPEND INBOX {{{}}}\r\n", 30 << 20));
    assert!(reply.starts_with('+'), "{reply}");
    assert_eq!(budget.used(), 0);
    assert!(
        a.session.memory_footprint() < footprint + 4096,
        "{} after the announcement",
        a.session.memory_footprint()
    );
    // Bytes take their share as they come.
    a.send_chunked(&[b'x'; 6000], Chunks::Whole);
    assert_eq!(budget.used(), 6000);

    // B's message does not fit beside A's: read to its end, dropped, NO [LIMIT].
    let message = SIMPLE.repeat(30);
    assert!(message.len() > 4000);
    let mut b = Client::with_config(config.clone());
    b.login();
    b.send(&format!("b APPEND INBOX {{{}}}\r\n", message.len()));
    b.send_chunked(&message, Chunks::Random(7));
    let reply = b.send("\r\n");
    assert!(reply.starts_with("b NO [LIMIT]"), "{reply}");
    assert_eq!(budget.used(), 6000, "B holds nothing");
    assert_eq!(b.fake.mailboxes["INBOX"].messages.len(), 0);
    // B goes on: the next command is read as a command.
    assert!(b.send("c NOOP\r\n").contains("c OK"));

    // A leaves mid-literal: its share is given back; B's retry fits.
    drop(a);
    assert_eq!(budget.used(), 0);
    b.send(&format!("d APPEND INBOX {{{}}}\r\n", message.len()));
    b.send_chunked(&message, Chunks::Whole);
    assert!(b.send("\r\n").contains("d OK [APPENDUID"));
    assert_eq!(budget.used(), 0, "given back once stored");

    // While the store works on the message, its share stays taken.
    b.answering = false;
    b.send(&format!("e APPEND INBOX {{{}+}}\r\n", message.len()));
    b.send_chunked(&message, Chunks::Whole);
    b.send("\r\n");
    assert_eq!(b.held.len(), 1);
    assert_eq!(budget.used(), message.len() as u64);
    let (id, request) = b.held.remove(0);
    let answer = b.fake.handle(request);
    b.session.answer(id, answer, b.now).unwrap();
    b.pump();
    assert_eq!(budget.used(), 0);
}
