//! The session as an engine of the one contract (`chatmail_core::engine`): the change
//! feed asked for at login, lag handled inside, the goodbye on shutdown said by the
//! session itself, the write deadline.

mod common;

use std::time::Duration;

use chatmail_core::store::Lagged;
use chatmail_imap::Output;
use common::*;

#[test]
fn the_feed_is_asked_for_once_right_after_login() {
    let mut c = Client::new();
    c.send(&format!("a LOGIN {USER} wrong-password\r\n"));
    assert!(c.subscribed.is_empty(), "no feed for a failed login");
    c.answering = false;
    c.send(&format!("b LOGIN {USER} {PASSWORD}\r\n"));
    let (id, request) = c.held.pop().expect("login request");
    let answer = c.fake.handle(request);
    c.session.answer(id, answer, c.now).unwrap();
    // The subscription comes before the tagged OK, so before any SELECT can list.
    match c.session.poll() {
        Some(Output::Subscribe(account)) => assert_eq!(account.as_str(), USER),
        other => panic!("expected Subscribe first, got {other:?}"),
    }
    c.answering = true;
    c.pump();
    assert!(String::from_utf8_lossy(&c.received).contains("b OK [CAPABILITY"));
    c.send("s SELECT INBOX\r\nn NOOP\r\n");
    assert!(c.subscribed.is_empty(), "asked for once only");
}

#[test]
fn a_lagged_feed_resets_the_selected_mailbox() {
    let mut c = Client::new();
    c.login();
    // Nothing selected: nothing to resynchronise.
    c.session.handle_change(Err(Lagged { missed: 3 }), c.now);
    c.pump();
    assert!(!c.closed);
    c.send("s SELECT INBOX\r\nI IDLE\r\n");
    c.session.handle_change(Err(Lagged { missed: 3 }), c.now);
    c.pump();
    let text = String::from_utf8_lossy(&c.received).into_owned();
    assert!(text.ends_with("* BYE Mailbox was deleted or renamed, please reconnect.\r\n"));
    assert!(c.closed && c.session.is_closed());
}

#[test]
fn a_lag_while_select_waits_resets_the_mailbox_being_opened() {
    let mut c = Client::new();
    c.login();
    c.answering = false;
    c.send("s SELECT INBOX\r\n");
    let (id, request) = c.held.pop().expect("select request");
    c.session.handle_change(Err(Lagged { missed: 1 }), c.now);
    let answer = c.fake.handle(request);
    c.session.answer(id, answer, c.now).unwrap();
    c.pump();
    let text = String::from_utf8_lossy(&c.received).into_owned();
    // The mailbox is listed, then the client is told to resynchronise; nothing after.
    assert!(text.contains("* OK [UIDVALIDITY"), "{text}");
    assert!(
        text.ends_with("* BYE Mailbox was deleted or renamed, please reconnect.\r\n"),
        "{text}"
    );
    assert!(c.closed);
}

#[test]
fn shutdown_says_bye_and_closes() {
    let mut c = Client::new();
    c.login();
    c.send("s SELECT INBOX\r\ni IDLE\r\n");
    c.session.shutdown(c.now);
    c.pump();
    let text = String::from_utf8_lossy(&c.received).into_owned();
    assert!(
        text.ends_with("+ idling\r\n* BYE Server shutting down\r\n"),
        "{text}"
    );
    assert!(c.closed && c.session.is_closed());
    // Nothing after the goodbye.
    c.session.shutdown(c.now);
    c.session.feed(b"DONE\r\n", c.now);
    assert!(c.session.poll().is_none());
}

#[test]
fn shutdown_waits_for_the_outstanding_answer() {
    let mut c = Client::new();
    c.login();
    c.answering = false;
    c.send("s SELECT INBOX\r\nn NOOP\r\n");
    let (id, request) = c.held.pop().expect("select request");
    c.session.shutdown(c.now);
    c.pump();
    assert!(!c.closed, "the answer is still out");
    let answer = c.fake.handle(request);
    c.session.answer(id, answer, c.now).unwrap();
    c.pump();
    let text = String::from_utf8_lossy(&c.received).into_owned();
    // The SELECT's outcome, then the goodbye; the pipelined NOOP is not read.
    assert!(
        text.ends_with(
            "s OK [READ-WRITE] Select completed (0 msgs).\r\n* BYE Server shutting down\r\n"
        ),
        "{text}"
    );
    assert!(c.closed);
}

#[test]
fn shutdown_releases_an_answer_held_back() {
    let mut c = Client::new();
    c.answering = false;
    c.send(&format!("a LOGIN {USER} wrong-password\r\n"));
    let (id, _) = c.held.pop().expect("login request");
    let until = c.now + Duration::from_secs(30);
    let refused = chatmail_imap::Answer::RefusedUntil {
        refusal: chatmail_imap::Refusal::AuthenticationFailed,
        until,
    };
    c.session.answer(id, refused, c.now).unwrap();
    c.pump();
    c.session.shutdown(c.now);
    c.pump();
    let text = String::from_utf8_lossy(&c.received).into_owned();
    assert!(
        text.ends_with(
            "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n* BYE Server shutting down\r\n"
        ),
        "{text}"
    );
    assert!(c.closed);
}

#[test]
fn writes_are_bounded_by_the_deadline_before_login_only() {
    let mut c = Client::new();
    assert!(c.session.send_deadline().is_some());
    assert_eq!(c.session.send_deadline(), c.session.poll_timeout());
    c.login();
    assert_eq!(c.session.send_deadline(), None);
    assert!(
        c.session.poll_timeout().is_some(),
        "inactivity still counts"
    );
}
