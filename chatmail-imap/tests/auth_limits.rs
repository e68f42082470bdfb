//! Issue 9, hole 2 through the IMAP engine: a 64 KB password is refused before a byte of
//! it is read (it never reaches the embedder), and the embedder's failed-login penalty
//! holds the tagged NO back on the session's own timer, without blocking anything.

mod common;

use std::time::{Duration, Instant};

use chatmail_imap::{Answer, Refusal};
use common::*;

#[test]
fn a_64_kb_password_never_reaches_the_embedder() {
    // Just under the 64 KiB command bound, so that only the login bound refuses it.
    let big = "p".repeat(64 * 1024 - 100);
    // A synchronizing literal: refused before the client sends it.
    let mut c = Client::new();
    let out = c.send(&format!("a LOGIN {USER} {{{}}}\r\n", big.len()));
    assert!(out.contains("a BAD [TOOBIG] Literal too large."), "{out}");
    assert!(!out.contains("+ Ready"), "{out}");
    assert!(c.send("b NOOP\r\n").contains("b OK"));
    // The same password quoted on the line.
    let out = c.send(&format!("c LOGIN {USER} \"{big}\"\r\n"));
    assert!(
        out.contains("c BAD [TOOBIG] Command line too long."),
        "{out}"
    );
    // AUTHENTICATE PLAIN, initial response and continuation line.
    // (Its base64 form: the length is what matters, the line is never decoded.)
    let plain = "A".repeat(60 * 1024);
    let out = c.send(&format!("d AUTHENTICATE PLAIN {plain}\r\n"));
    assert!(
        out.contains("d BAD [TOOBIG] Command line too long."),
        "{out}"
    );
    let out = c.send("e AUTHENTICATE PLAIN\r\n");
    assert!(out.contains("+ "), "{out}");
    let out = c.send(&format!("{plain}\r\n"));
    assert!(
        out.contains("e BAD [TOOBIG] Command line too long."),
        "{out}"
    );
    assert!(c.send("f NOOP\r\n").contains("f OK"));
    assert_eq!(c.fake.requests, 0, "no login request reached the embedder");
    // A non-synchronizing literal is already on its way: the session closes.
    let mut c = Client::new();
    let out = c.send(&format!("a LOGIN {USER} {{{}+}}\r\n{big}\r\n", big.len()));
    assert!(out.contains("* BYE [TOOBIG] Literal too large."), "{out}");
    assert!(c.closed);
    assert_eq!(c.fake.requests, 0);
}

#[test]
fn the_full_command_bound_applies_after_login() {
    // Past the pre-login bound (40 KiB: an ID at RFC 2971's limits fits).
    let value = "v".repeat(48 * 1024);
    let id = format!("{{{}}}\r\n{value}", value.len());
    let mut c = Client::new();
    let out = c.send(&format!("a ID (\"x\" {id})\r\n"));
    assert!(out.contains("a BAD [TOOBIG] Literal too large."), "{out}");
    // RFC 2971's largest ID: 30 fields with 1024-byte values, before login.
    let fields: Vec<String> = (0..30)
        .map(|i| format!("\"field{i:024}\" \"{}\"", "1".repeat(1024)))
        .collect();
    let out = c.send(&format!("z ID ({})\r\n", fields.join(" ")));
    assert!(out.contains("z OK"), "{out}");
    assert!(c.login().contains("L1 OK"));
    let out = c.send(&format!("b ID (\"x\" {id})\r\n"));
    assert!(out.contains("+ Ready") && out.contains("b OK"), "{out}");
    // A password up to the pre-login bound does reach the embedder (which refuses what
    // no account can have).
    let mut c = Client::new();
    let out = c.send(&format!("a LOGIN {USER} \"{}\"\r\n", "p".repeat(1000)));
    assert!(out.contains("a NO [AUTHENTICATIONFAILED]"), "{out}");
    assert_eq!(c.fake.requests, 1);
}

#[test]
fn the_embedders_penalty_holds_the_no_on_the_session_timer() {
    let mut c = Client::new();
    let start = Instant::now();
    c.answering = false;
    assert_eq!(c.send(&format!("a LOGIN {USER} wrong-password\r\n")), "");
    let (id, _) = c.held.pop().expect("login request");
    // Longer than the 60 s login timeout: the session waits, the client is not at fault.
    let until = start + Duration::from_secs(90);
    c.session
        .answer(
            id,
            Answer::RefusedUntil {
                refusal: Refusal::AuthenticationFailed,
                until,
            },
            c.now,
        )
        .unwrap();
    c.answering = true;
    c.pump();
    assert_eq!(c.session.poll_timeout(), Some(until));
    // Pipelined commands wait too.
    assert_eq!(c.send("b NOOP\r\n"), "");
    let before = c.received.len();
    c.session.handle_timeout(start + Duration::from_secs(61));
    c.session.handle_timeout(until - Duration::from_millis(1));
    c.pump();
    assert_eq!(c.received.len(), before, "nothing before the penalty ends");
    assert!(!c.closed);
    c.session.handle_timeout(until);
    c.pump();
    let out = String::from_utf8_lossy(&c.received[before..]).into_owned();
    assert_eq!(
        out,
        "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\nb OK NOOP completed.\r\n"
    );
    // Before login the deadline is absolute (from the greeting): this penalty outlasted
    // it, so the next tick of the timer says goodbye.
    let next = c.session.poll_timeout().unwrap();
    assert!(next <= until, "{next:?}");
    c.session.handle_timeout(until);
    c.pump();
    assert!(c.closed);

    // A penalty within the login timeout: the client may try again at once.
    let mut c = Client::new();
    let start = Instant::now();
    c.answering = false;
    c.send(&format!("a LOGIN {USER} wrong-password\r\n"));
    let (id, _) = c.held.pop().expect("login request");
    let until = start + Duration::from_secs(5);
    let answer = Answer::RefusedUntil {
        refusal: Refusal::AuthenticationFailed,
        until,
    };
    c.session.answer(id, answer, c.now).unwrap();
    c.answering = true;
    c.session.handle_timeout(until);
    c.pump();
    assert!(c.login().contains("L1 OK"));
}
