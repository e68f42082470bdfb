//! The SMTP client engine against scripted server replies, and against the server
//! engine for AUTH.

mod common;

use chatmail_smtp::server::Engine as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatmail_smtp::client::{
    ClientConfig, ClientError, ClientEvent, ClientOutput, ClientSession, Credentials,
    OutgoingEnvelope, TlsMode,
};
use chatmail_smtp::server::{AuthAnswer, DeliveryAnswer, Output, Request, Transport};
use common::*;

/// Drains the client: the bytes it sent (as text), its events, whether it closed.
fn drain(client: &mut ClientSession, now: Instant) -> (String, Vec<ClientEvent>, bool) {
    let (mut sent, mut events, mut closed) = (Vec::new(), Vec::new(), false);
    while let Some(output) = client.poll() {
        match output {
            ClientOutput::Send(bytes) => sent.extend_from_slice(&bytes),
            ClientOutput::StartTls => client.tls_started(now),
            ClientOutput::Event(event) => events.push(event),
            ClientOutput::Close => closed = true,
            ClientOutput::Subscribe(_) | ClientOutput::StartDeflate => {
                unreachable!("a client subscribes to nothing, compresses nothing")
            }
        }
    }
    (String::from_utf8(sent).unwrap(), events, closed)
}

fn envelope(recipients: &[&str]) -> OutgoingEnvelope {
    OutgoingEnvelope {
        mail_from: "a@relay.org".into(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
    }
}

fn plain_client(now: Instant) -> ClientSession {
    let mut config = ClientConfig::new("relay.org");
    config.tls = TlsMode::Never;
    ClientSession::new(config, now)
}

#[test]
fn helo_fallback_and_one_command_per_round_trip() {
    let now = Instant::now();
    let mut c = plain_client(now);
    c.feed(b"220 old.example\r\n", now);
    assert_eq!(drain(&mut c, now).0, "EHLO relay.org\r\n");
    c.feed(b"502 5.5.1 what?\r\n", now);
    assert_eq!(drain(&mut c, now).0, "HELO relay.org\r\n");
    c.feed(b"250 old.example\r\n", now);
    assert_eq!(drain(&mut c, now).1, [ClientEvent::Ready]);
    c.send_message(&envelope(&["b@x.org", "c@x.org"]), b".hi\r\n", now)
        .unwrap();
    // No PIPELINING: one command, then wait.
    assert_eq!(drain(&mut c, now).0, "MAIL FROM:<a@relay.org>\r\n");
    c.feed(b"250 ok\r\n", now);
    assert_eq!(drain(&mut c, now).0, "RCPT TO:<b@x.org>\r\n");
    c.feed(b"550 no such user\r\n", now);
    assert_eq!(drain(&mut c, now).0, "RCPT TO:<c@x.org>\r\n");
    c.feed(b"250 ok\r\n", now);
    assert_eq!(drain(&mut c, now).0, "DATA\r\n");
    c.feed(b"354 go\r\n", now);
    assert_eq!(drain(&mut c, now).0, "..hi\r\n.\r\n");
    c.feed(b"250 queued\r\n", now);
    let (_, events, _) = drain(&mut c, now);
    let ClientEvent::Sent(outcome) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(outcome.recipient_result(0).unwrap_err().code, 550);
    assert_eq!(outcome.recipient_result(1), Ok(()));
    // Reuse: RSET first.
    c.send_message(&envelope(&["d@x.org"]), b"x\r\n", now)
        .unwrap();
    assert_eq!(drain(&mut c, now).0, "RSET\r\n");
    c.feed(b"250 ok\r\n", now);
    assert_eq!(drain(&mut c, now).0, "MAIL FROM:<a@relay.org>\r\n");
    c.feed(b"451 try later\r\n", now);
    let (_, events, _) = drain(&mut c, now);
    let ClientEvent::Sent(outcome) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(outcome.recipient_result(0).unwrap_err().code, 451);
    assert_eq!(outcome.data, None);
    c.quit(now);
    assert_eq!(drain(&mut c, now).0, "QUIT\r\n");
    c.feed(b"221 bye\r\n", now);
    assert!(drain(&mut c, now).2);
}

#[test]
fn pipelined_transaction_with_all_recipients_refused() {
    let now = Instant::now();
    let mut c = plain_client(now);
    c.feed(
        b"220 mx\r\n250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
        now,
    );
    let (sent, events, _) = drain(&mut c, now);
    assert_eq!(sent, "EHLO relay.org\r\n");
    assert_eq!(events, [ClientEvent::Ready]);
    c.send_message(&envelope(&["b@x.org"]), b"caf\xc3\xa9\r\n", now)
        .unwrap();
    assert_eq!(
        drain(&mut c, now).0,
        "MAIL FROM:<a@relay.org> BODY=8BITMIME\r\nRCPT TO:<b@x.org>\r\nDATA\r\n"
    );
    // A server that says 354 although no recipient was accepted gets an empty message.
    c.feed(b"250 ok\r\n550 no\r\n354 go\r\n", now);
    assert_eq!(drain(&mut c, now).0, ".\r\n");
    c.feed(b"554 no valid recipients\r\n", now);
    let (_, events, _) = drain(&mut c, now);
    let ClientEvent::Sent(outcome) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(outcome.recipient_result(0).unwrap_err().code, 550);
    assert!(c.is_ready());
}

#[test]
fn starttls_required_but_not_offered() {
    let now = Instant::now();
    let mut c = ClientSession::new(ClientConfig::new("relay.org"), now);
    c.feed(b"220 mx\r\n250 mx\r\n", now);
    let (sent, events, closed) = drain(&mut c, now);
    assert_eq!(sent, "EHLO relay.org\r\nQUIT\r\n");
    assert_eq!(events, [ClientEvent::Failed(ClientError::TlsNotOffered)]);
    assert!(closed);
}

#[test]
fn starttls_then_ehlo_again_and_injection_ignored() {
    let now = Instant::now();
    let mut c = ClientSession::new(ClientConfig::new("relay.org"), now);
    c.feed(b"220 mx\r\n250-mx\r\n250 STARTTLS\r\n", now);
    assert_eq!(drain(&mut c, now).0, "EHLO relay.org\r\nSTARTTLS\r\n");
    // A reply injected after the 220 in cleartext must not be read after the upgrade.
    let mut outputs = Vec::new();
    c.feed(b"220 go ahead\r\n250 injected\r\n", now);
    while let Some(output) = c.poll() {
        outputs.push(output);
    }
    assert!(matches!(outputs[..], [ClientOutput::StartTls]));
    c.tls_started(now);
    assert_eq!(drain(&mut c, now).0, "EHLO relay.org\r\n");
    c.feed(b"250 mx\r\n", now);
    assert_eq!(drain(&mut c, now).1, [ClientEvent::Ready]);
}

#[test]
fn malformed_replies_timeouts_and_goodbyes() {
    let now = Instant::now();
    let mut c = plain_client(now);
    c.feed(b"hello there\r\n", now);
    let (_, events, closed) = drain(&mut c, now);
    assert!(matches!(
        events[..],
        [ClientEvent::Failed(ClientError::MalformedReply(_))]
    ));
    assert!(closed);

    let mut c = plain_client(now);
    c.feed(b"554 go away\r\n", now);
    let (sent, events, _) = drain(&mut c, now);
    assert_eq!(sent, "QUIT\r\n");
    assert!(matches!(
        events[..],
        [ClientEvent::Failed(ClientError::Greeting(_))]
    ));

    let mut c = plain_client(now);
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(300)));
    c.handle_timeout(now + Duration::from_secs(299));
    assert!(c.poll().is_none());
    c.handle_timeout(now + Duration::from_secs(300));
    assert_eq!(
        drain(&mut c, now).1,
        [ClientEvent::Failed(ClientError::Timeout)]
    );

    let mut c = plain_client(now);
    c.feed(b"220 mx\r\n250 mx\r\n", now);
    drain(&mut c, now);
    assert_eq!(c.poll_timeout(), None, "idle: the pool decides");
    c.feed(b"421 4.4.2 idle too long\r\n", now);
    let (_, events, closed) = drain(&mut c, now);
    assert!(matches!(
        events[..],
        [ClientEvent::Failed(ClientError::ServerClosed(_))]
    ));
    assert!(closed);
    assert_eq!(
        c.send_message(&envelope(&["b@x.org"]), b"x\r\n", now),
        Err(chatmail_smtp::client::SendError::NotReady)
    );
}

#[test]
fn client_auth_against_the_submission_server() {
    for mechanism in ["PLAIN", "LOGIN"] {
        let now = Instant::now();
        let mut server_config = submission();
        server_config.starttls_available = true;
        let mut server = chatmail_smtp::server::ServerSession::new(
            Arc::new(server_config),
            policy(1 << 20),
            Transport::Cleartext,
            now,
        );
        let mut config = ClientConfig::new("client.example");
        config.credentials = Some(Credentials {
            login: format!("alice@{DOMAIN}"),
            password: PASSWORD.into(),
        });
        let mut client = ClientSession::new(config, now);
        let mut sent = None;
        let message = encrypted_message(&format!("alice@{DOMAIN}"), "bob@x.org");
        for _ in 0..50 {
            while let Some(output) = server.poll() {
                match output {
                    Output::Send(mut bytes) => {
                        if mechanism == "LOGIN" {
                            // Pretend the server only offers LOGIN.
                            let text = String::from_utf8(bytes.to_vec()).unwrap();
                            bytes = text
                                .replace("AUTH PLAIN LOGIN", "AUTH LOGIN")
                                .into_bytes()
                                .into();
                        }
                        client.feed(&bytes, now)
                    }
                    Output::StartTls => server.tls_started(now),
                    Output::Request(id, Request::Authenticate { login, password }) => {
                        assert_eq!(password, PASSWORD);
                        server
                            .answer(
                                id,
                                chatmail_smtp::server::Answer::Auth(AuthAnswer::Success {
                                    user: login,
                                }),
                                now,
                            )
                            .unwrap();
                    }
                    Output::Request(id, Request::Deliver(_)) => {
                        server
                            .answer(
                                id,
                                chatmail_smtp::server::Answer::Delivery(DeliveryAnswer::Durable),
                                now,
                            )
                            .unwrap();
                    }
                    Output::Event(_) => {}
                    other => panic!("{other:?}"),
                }
            }
            while let Some(output) = client.poll() {
                match output {
                    ClientOutput::Send(bytes) => server.feed(&bytes, now),
                    ClientOutput::StartTls => client.tls_started(now),
                    ClientOutput::Event(ClientEvent::Ready) => {
                        let env = OutgoingEnvelope {
                            mail_from: format!("alice@{DOMAIN}"),
                            recipients: vec!["bob@x.org".into()],
                        };
                        client.send_message(&env, &message, now).unwrap();
                    }
                    ClientOutput::Event(ClientEvent::Sent(outcome)) => sent = Some(outcome),
                    other => panic!("{mechanism}: {other:?}"),
                }
            }
        }
        let outcome = sent.expect("message sent");
        assert_eq!(outcome.recipient_result(0), Ok(()), "{mechanism}");
        assert_eq!(server.auth_user(), Some(&*format!("alice@{DOMAIN}")));
    }
}
