//! Issue 9, hole 2 through the SMTP engine: a huge password never reaches the embedder,
//! and the embedder's failed-login penalty holds the `535` back on the session's own
//! timer (virtual clock here), without blocking anything.

mod common;

use chatmail_smtp::server::Engine as _;
use std::time::{Duration, Instant};

use chatmail_smtp::server::{AuthAnswer, Output, Request, RequestId, Transport};
use common::*;

/// Feeds `input` and collects what the session sends and the auth request it makes.
fn feed(d: &mut Driver, input: &[u8]) -> (String, Option<RequestId>) {
    d.session.feed(input, d.now);
    collect(d)
}

fn collect(d: &mut Driver) -> (String, Option<RequestId>) {
    let mut sent = String::new();
    let mut request = None;
    while let Some(output) = d.session.poll() {
        match output {
            Output::Send(bytes) => sent.push_str(&String::from_utf8_lossy(&bytes)),
            Output::Request(id, Request::Authenticate { .. }) => request = Some(id),
            other => panic!("unexpected {other:?}"),
        }
    }
    (sent, request)
}

#[test]
fn a_64_kb_password_never_reaches_the_embedder() {
    let password = "p".repeat(64 * 1024);
    let plain = b64(&format!("\0alice@{DOMAIN}\0{password}"));
    let scripts = [
        // Initial response on the command line.
        format!("{EHLO}AUTH PLAIN {plain}\r\nNOOP\r\n"),
        // PLAIN without initial response: the 334 continuation line.
        format!("{EHLO}AUTH PLAIN\r\n{plain}\r\nNOOP\r\n"),
        // LOGIN: the password prompt's answer.
        format!(
            "{EHLO}AUTH LOGIN\r\n{}\r\n{}\r\nNOOP\r\n",
            b64(&format!("alice@{DOMAIN}")),
            b64(&password)
        ),
    ];
    for script in scripts {
        let t = run_all(&submission(), Transport::Tls, script.as_bytes());
        assert!(
            t.has_line("500 5.5.6 Error: line too long"),
            "{:?}",
            t.lines()
        );
        assert!(
            !t.events.iter().any(|e| e.starts_with("auth")),
            "{:?}",
            t.events
        );
        // The session goes on: the NOOP after the line is answered.
        assert_eq!(t.codes().last(), Some(&250), "{:?}", t.lines());
    }
}

#[test]
fn the_embedders_penalty_holds_the_535_on_the_session_timer() {
    let mut d = Driver::new(submission(), policy(1 << 20), Transport::Tls);
    let start = d.now;
    feed(&mut d, EHLO.as_bytes());
    let wrong = b64(&format!("\0alice@{DOMAIN}\0wrong-password"));
    let (_, id) = feed(&mut d, format!("AUTH PLAIN {wrong}\r\n").as_bytes());
    let id = id.expect("auth request");
    let until = start + Duration::from_secs(30);
    d.session
        .answer(
            id,
            chatmail_smtp::server::Answer::Auth(AuthAnswer::InvalidUntil(until)),
            d.now,
        )
        .unwrap();
    let (sent, _) = collect(&mut d);
    assert_eq!(sent, "", "nothing before the penalty ends");
    assert!(!d.session.wants_input());
    assert_eq!(d.session.poll_timeout(), Some(until));
    // Pipelined input waits too.
    let (sent, _) = feed(&mut d, b"NOOP\r\n");
    assert_eq!(sent, "");
    d.session.handle_timeout(until - Duration::from_millis(1));
    assert_eq!(collect(&mut d).0, "");
    d.session.handle_timeout(until);
    assert_eq!(
        collect(&mut d).0,
        "535 5.7.8 Error: authentication failed\r\n250 2.0.0 Ok\r\n"
    );
}

#[test]
fn the_sessions_own_delay_applies_when_it_is_longer() {
    let mut d = Driver::new(submission(), policy(1 << 20), Transport::Tls);
    feed(&mut d, EHLO.as_bytes());
    let wrong = b64(&format!("\0alice@{DOMAIN}\0wrong-password"));
    let (_, id) = feed(&mut d, format!("AUTH PLAIN {wrong}\r\n").as_bytes());
    // A penalty already over (or none): the session's 1 s for a first failure.
    let past: Instant = d.now;
    d.session
        .answer(
            id.unwrap(),
            chatmail_smtp::server::Answer::Auth(AuthAnswer::InvalidUntil(past)),
            d.now,
        )
        .unwrap();
    assert_eq!(
        d.session.poll_timeout(),
        Some(d.now + Duration::from_secs(1))
    );
    d.session.handle_timeout(d.now + Duration::from_secs(1));
    assert_eq!(
        collect(&mut d).0,
        "535 5.7.8 Error: authentication failed\r\n"
    );
}
