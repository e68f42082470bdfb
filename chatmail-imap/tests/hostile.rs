//! Hostile input: each gets a protocol answer, and the session's memory stays bounded.

mod common;

use std::time::Duration;

use common::*;

/// Upper bound for a session's memory under attack (64 KiB command bound plus slack).
const BOUND: usize = 300 * 1024;

#[test]
fn literal_bomb_is_refused_before_it_is_read() {
    let mut c = Client::new();
    let reply = c.send("a LOGIN {4294967295}\r\n");
    assert_eq!(reply, "a BAD [TOOBIG] Literal too large.\r\n");
    let mut c = Client::new();
    c.login();
    let reply = c.send("b APPEND INBOX {4294967295}\r\n");
    assert_eq!(reply, "b NO [TOOBIG] Message too large.\r\n");
    assert!(c.send("c NOOP\r\n").contains("c OK"));
    // A non-synchronizing bomb is on its way already: BYE instead of reading 4 GB.
    let reply = c.send("d APPEND INBOX {4294967295+}\r\n");
    assert_eq!(reply, "* BYE [TOOBIG] Literal too large.\r\n");
    assert!(c.closed);
    assert!(c.session.memory_footprint() < BOUND);
}

#[test]
fn unterminated_quoted_string_and_long_lines() {
    let mut c = Client::new();
    c.login();
    let mut line = b"a LOGIN \"".to_vec();
    line.extend(std::iter::repeat_n(b'x', 1_000_000));
    let reply = c.send_chunked(&line, Chunks::Whole);
    assert_eq!(reply, "");
    assert!(
        c.session.memory_footprint() < BOUND,
        "{}",
        c.session.memory_footprint()
    );
    let reply = c.send("\r\nb NOOP\r\n");
    assert_eq!(
        reply,
        "a BAD [TOOBIG] Command line too long.\r\nb OK NOOP completed.\r\n"
    );
    // An unterminated quoted string inside a complete line is a syntax error.
    let reply = c.send("c SELECT \"INBOX\r\n");
    assert!(reply.starts_with("c BAD"), "{reply}");
}

#[test]
fn deeply_nested_parentheses() {
    let mut c = Client::new();
    c.login();
    c.send("s SELECT INBOX\r\n");
    let mut cmd = b"a SEARCH ".to_vec();
    cmd.extend(std::iter::repeat_n(b'(', 100_000));
    cmd.extend(std::iter::repeat_n(b')', 100_000));
    cmd.extend_from_slice(b"\r\n");
    let reply = c.send_chunked(&cmd, Chunks::Whole);
    assert_eq!(reply, "a BAD [TOOBIG] Command line too long.\r\n");
    // Within the line bound, recursion is limited by the decoder and the search program.
    let mut cmd = b"b SEARCH ".to_vec();
    cmd.extend(std::iter::repeat_n(b'(', 30_000));
    cmd.extend_from_slice(b"ALL");
    cmd.extend(std::iter::repeat_n(b')', 30_000));
    cmd.extend_from_slice(b"\r\n");
    let reply = c.send_chunked(&cmd, Chunks::Whole);
    assert!(reply.starts_with("b BAD"), "{reply}");
    let mut cmd = b"c FETCH 1 BODY[HEADER.FIELDS (".to_vec();
    cmd.extend(std::iter::repeat_n(b'(', 30_000));
    cmd.extend_from_slice(b"\r\n");
    assert!(c.send_chunked(&cmd, Chunks::Whole).starts_with("c BAD"));
}

#[test]
fn idle_without_done_times_out() {
    let mut c = Client::new();
    c.login();
    c.send("s SELECT INBOX\r\ni IDLE\r\n");
    // RFC 9051 5.4: at least 30 minutes, counted from the IDLE command.
    let deadline = c.session.poll_timeout().unwrap();
    assert_eq!(deadline, c.now + Duration::from_secs(30 * 60));
    c.session.handle_timeout(deadline - Duration::from_secs(1));
    c.pump();
    assert!(!c.closed);
    c.session
        .handle_timeout(deadline + Duration::from_secs(3 * 3600));
    c.pump();
    assert!(c.closed);
    assert!(
        String::from_utf8_lossy(&c.received).ends_with("* BYE Disconnected for inactivity.\r\n")
    );
    assert_eq!(c.session.poll_timeout(), None);
}

#[test]
fn login_timeout() {
    let mut c = Client::new();
    let deadline = c.session.poll_timeout().unwrap();
    c.session.handle_timeout(deadline);
    c.pump();
    assert!(c.closed);
}

#[test]
fn commands_in_the_wrong_state() {
    let mut c = Client::new();
    let reply = c.send(
        "a SELECT INBOX\r\nb FETCH 1 FLAGS\r\nc IDLE\r\nd GETMETADATA \"\" /shared/admin\r\n",
    );
    assert_eq!(reply.matches("BAD Not logged in.").count(), 4, "{reply}");
    c.login();
    let reply = c.send("e FETCH 1 FLAGS\r\nf EXPUNGE\r\ng LOGIN a b\r\nh STARTTLS\r\n");
    assert!(reply.contains("e BAD No mailbox selected."));
    assert!(reply.contains("f BAD No mailbox selected."));
    assert!(reply.contains("g BAD Command not allowed"));
    assert!(reply.contains("h BAD Command not allowed"));
}

#[test]
fn flood_of_bad_commands_ends_with_bye() {
    let mut c = Client::new();
    let mut input = String::new();
    for i in 0..50 {
        input.push_str(&format!("x{i} BOGUS\r\n"));
    }
    let reply = c.send(&input);
    assert_eq!(reply.matches(" BAD ").count(), 10);
    assert!(reply.ends_with("* BYE Too many invalid IMAP commands.\r\n"));
    assert!(c.closed);
    // Nothing more is processed after BYE.
    assert_eq!(c.send("y NOOP\r\n"), "");
}

#[test]
fn a_million_ranges() {
    let mut c = Client::new();
    c.login();
    for _ in 0..5 {
        c.fake.deliver("INBOX", SIMPLE);
    }
    c.fake.take_changes();
    c.send("s SELECT INBOX\r\n");
    // A million ranges do not fit the command bound: refused, memory bounded.
    let mut cmd = b"a UID FETCH ".to_vec();
    for i in 0..1_000_000u32 {
        if i > 0 {
            cmd.push(b',');
        }
        cmd.extend_from_slice(format!("{}:{}", i * 3 + 1, i * 3 + 2).as_bytes());
    }
    cmd.extend_from_slice(b" FLAGS\r\n");
    let reply = c.send_chunked(&cmd, Chunks::Whole);
    assert_eq!(reply, "a BAD [TOOBIG] Command line too long.\r\n");
    assert!(c.session.memory_footprint() < BOUND);
    // As many ranges as fit, and huge numbers, resolve against the mailbox, not the set.
    let mut cmd = b"b UID FETCH ".to_vec();
    for i in 0..5000u32 {
        cmd.extend_from_slice(format!("{}:{},", i * 3 + 1, i * 3 + 2).as_bytes());
    }
    cmd.extend_from_slice(b"1:4294967295 (UID)\r\n");
    let reply = c.send_chunked(&cmd, Chunks::Whole);
    assert_eq!(reply.matches("FETCH (UID").count(), 5, "{reply}");
    assert!(reply.ends_with("b OK Fetch completed.\r\n"));
    let reply = c.send("c FETCH 4294967295:1 (UID)\r\nd UID SEARCH UID 4000000000:*\r\n");
    assert!(
        reply.contains("c OK") && reply.contains("* SEARCH 5\r\n"),
        "{reply}"
    );
}

#[test]
fn pipelined_input_while_a_request_is_outstanding() {
    let mut c = Client::new();
    c.answering = false;
    c.send(&format!("a LOGIN {USER} {PASSWORD}\r\n"));
    assert_eq!(c.held.len(), 1);
    // The driver is told to stop reading; a driver that ignores it is cut off.
    let chunk = vec![b'x'; 64 * 1024];
    let mut fed = 0;
    while c.session.wants_input() {
        c.session.feed(&chunk, c.now);
        fed += chunk.len();
    }
    assert!(fed <= 512 * 1024);
    while !c.closed {
        c.session.feed(&chunk, c.now);
        c.pump();
    }
    assert!(String::from_utf8_lossy(&c.received).contains("* BYE Too much pipelined input."));
    assert!(c.session.memory_footprint() < 2 * 1024 * 1024);
}

#[test]
fn answers_to_unknown_requests_are_rejected() {
    let mut c = Client::new();
    let r = c
        .session
        .answer(chatmail_imap::RequestId(77), chatmail_imap::Answer::Done);
    assert!(r.is_err());
}
