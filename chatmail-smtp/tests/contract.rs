//! The engine contract's shutdown input (`chatmail_core::engine::Engine::shutdown`): the
//! session says its own `421`, never cutting off a delivery being made durable.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatmail_smtp::server::{
    Answer, AuthAnswer, DeliveryAnswer, Engine, Output, Request, ServerSession, Transport,
};
use common::*;

const GOODBYE: &str = "421 4.3.2 mail.example.org Service shutting down\r\n";

/// Everything the session wants done now: the bytes it sends, the request it makes (at
/// most one), whether it closes.
fn drain(
    session: &mut ServerSession,
) -> (
    String,
    Option<(chatmail_smtp::server::RequestId, Request)>,
    bool,
) {
    let (mut sent, mut request, mut closed) = (String::new(), None, false);
    while let Some(output) = session.poll() {
        match output {
            Output::Send(bytes) => sent.push_str(&String::from_utf8_lossy(&bytes)),
            Output::Request(id, r) => request = Some((id, r)),
            Output::Close => closed = true,
            Output::Event(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    (sent, request, closed)
}

/// The session has nothing to do.
fn assert_nothing(session: &mut ServerSession) {
    let (sent, request, closed) = drain(session);
    assert!(sent.is_empty() && request.is_none() && !closed, "{sent}");
}

fn session(config: chatmail_smtp::server::ServerConfig) -> (ServerSession, Instant) {
    let now = Instant::now();
    let mut session = ServerSession::new(Arc::new(config), policy(1 << 20), Transport::Tls, now);
    let (greeting, _, _) = drain(&mut session);
    assert!(greeting.starts_with("220 "));
    (session, now)
}

#[test]
fn an_idle_session_says_421_and_closes() {
    let (mut s, now) = session(mx());
    s.feed(EHLO.as_bytes(), now);
    drain(&mut s);
    s.shutdown(now);
    let (sent, request, closed) = drain(&mut s);
    assert!(sent == GOODBYE && request.is_none() && closed, "{sent}");
    assert!(s.is_closed() && !s.wants_input());
    // Sticky: nothing is read or said after the goodbye.
    s.feed(b"NOOP\r\n", now);
    s.shutdown(now);
    assert_nothing(&mut s);
}

#[test]
fn a_delivery_under_way_is_answered_before_the_goodbye() {
    let (mut s, now) = session(mx());
    let mut script = data_script(
        "carol@other.net",
        &format!("bob@{DOMAIN}"),
        &encrypted_message("carol@other.net", &format!("bob@{DOMAIN}")),
    );
    script.extend_from_slice(b"NOOP\r\n");
    s.feed(&script, now);
    let (_, request, _) = drain(&mut s);
    let (id, Request::Recipient { .. }) = request.expect("RCPT asks") else {
        panic!("a recipient request first");
    };
    let accept = chatmail_smtp::server::RecipientAnswer::Accept {
        accepts_cleartext: false,
    };
    s.answer(id, Answer::Recipient(accept), now)
        .expect("answer");
    let (_, request, _) = drain(&mut s);
    let (id, Request::Deliver(_)) = request.expect("the message is handed over") else {
        panic!("a delivery request");
    };
    // The process stops while the delivery is being made durable: nothing yet.
    s.shutdown(now);
    assert_nothing(&mut s);
    s.answer(id, Answer::Delivery(DeliveryAnswer::Durable), now)
        .expect("answer");
    let (sent, request, closed) = drain(&mut s);
    assert_eq!(
        sent,
        format!("250 2.0.0 Ok: message accepted for delivery\r\n{GOODBYE}")
    );
    // The pipelined NOOP is not read any more.
    assert!(request.is_none() && closed);
}

#[test]
fn a_held_back_refusal_goes_out_with_the_goodbye() {
    let (mut s, now) = session(submission());
    s.feed(
        format!("{EHLO}AUTH PLAIN {}\r\n", b64("\0alice@example.org\0wrong")).as_bytes(),
        now,
    );
    let (_, request, _) = drain(&mut s);
    let (id, Request::Authenticate { .. }) = request.expect("AUTH asks") else {
        panic!("an authentication request");
    };
    let until = now + Duration::from_secs(30);
    s.answer(id, Answer::Auth(AuthAnswer::InvalidUntil(until)), now)
        .expect("answer");
    assert_eq!(drain(&mut s).0, "", "the 535 waits for its time");
    s.shutdown(now);
    let (sent, _, closed) = drain(&mut s);
    assert_eq!(
        sent,
        format!("535 5.7.8 Error: authentication failed\r\n{GOODBYE}")
    );
    assert!(closed);
}
