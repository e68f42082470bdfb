//! Client engine against server engine in memory (no sockets): 10,000 random envelopes
//! and bodies round-trip byte-exact.
//!
//! What makes them pass the policy: the server runs as MX (incoming direction) and the
//! test embedder answers that every recipient accepts cleartext (no
//! `enforceE2EEincoming`), so the incoming rules accept these cleartext messages (spec
//! 3.3 rule 5) and copy them unchanged; MAIL FROM equals the From header, so the
//! envelope sender is kept. The bodies are random: lines starting with `.` (and lone
//! dots), 8-bit and non-UTF-8 bytes, 998-byte lines, empty lines. Both sides also do
//! STARTTLS (the handshake is instantaneous here), PIPELINING and, on reused
//! connections, RSET; bytes travel in random chunks.

mod common;

use chatmail_smtp::server::Engine as _;
use std::sync::Arc;
use std::time::Instant;

use chatmail_smtp::client::{
    ClientConfig, ClientEvent, ClientOutput, ClientSession, OutgoingEnvelope, TlsMode,
};
use chatmail_smtp::server::{
    Delivery, DeliveryAnswer, Output, RecipientAnswer, Request, ServerSession, Transport,
};
use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random_line(rng: &mut StdRng) -> Vec<u8> {
    let ascii = |rng: &mut StdRng, n: usize| -> Vec<u8> {
        (0..n).map(|_| rng.gen_range(0x20u8..0x7f)).collect()
    };
    match rng.gen_range(0..10) {
        0 => Vec::new(),
        1 => b".".to_vec(),
        2 => {
            let mut line = b".".repeat(rng.gen_range(1..4));
            let n = rng.gen_range(0..40);
            line.extend(ascii(rng, n));
            line
        }
        3 => (0..rng.gen_range(1..60))
            .map(|_| rng.gen_range(0x80u8..=0xff))
            .collect(),
        4 => ascii(rng, 998),
        _ => {
            let n = rng.gen_range(1..100);
            ascii(rng, n)
        }
    }
}

fn random_message(rng: &mut StdRng, from: &str, to: &[String]) -> Vec<u8> {
    let mut message = format!(
        "From: <{from}>\r\nTo: {}\r\nSubject: test {}\r\nDate: Sun, 15 Oct 2023 16:43:21 +0000\r\n\
         Message-ID: <{}@other.net>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n",
        to.join(", "),
        rng.gen::<u32>(),
        rng.gen::<u64>()
    )
    .into_bytes();
    for i in 0..rng.gen_range(0..4) {
        message.extend_from_slice(format!("X-Extra-{i}: {}\r\n", rng.gen::<u64>()).as_bytes());
    }
    message.extend_from_slice(b"\r\n");
    for _ in 0..rng.gen_range(0..12) {
        message.extend(random_line(rng));
        message.extend_from_slice(b"\r\n");
    }
    message
}

/// Moves bytes from one side to the other in random chunks.
fn chunks(rng: &mut StdRng, bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = rng.gen_range(1..=rest.len().min(4096));
        out.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    out
}

#[test]
fn ten_thousand_messages_round_trip_byte_exact() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let policy = policy(1 << 20);
    let server_config = Arc::new(mx());
    let now = Instant::now();
    let total = 10_000;
    let mut sent = 0;
    let mut connections = 0;

    while sent < total {
        connections += 1;
        let mut server = ServerSession::new(
            server_config.clone(),
            policy.clone(),
            Transport::Cleartext,
            now,
        );
        let mut client_config = ClientConfig::new("other.net");
        client_config.tls = TlsMode::Required;
        let mut client = ClientSession::new(client_config, now);
        let mut per_connection = rng.gen_range(1..=40).min(total - sent);
        let mut expected: Option<(OutgoingEnvelope, Vec<u8>)> = None;
        let mut delivered: Vec<Delivery> = Vec::new();
        let mut quitting = false;

        loop {
            let mut progress = false;
            while let Some(output) = server.poll() {
                progress = true;
                match output {
                    Output::Send(bytes) => {
                        for chunk in chunks(&mut rng, &bytes) {
                            client.feed(&chunk, now);
                        }
                    }
                    Output::StartTls => server.tls_started(now),
                    Output::Request(id, Request::Recipient { .. }) => server
                        .answer(
                            id,
                            chatmail_smtp::server::Answer::Recipient(RecipientAnswer::Accept {
                                accepts_cleartext: true,
                            }),
                            now,
                        )
                        .unwrap(),
                    Output::Request(id, Request::Deliver(delivery)) => {
                        delivered.push(delivery);
                        server
                            .answer(
                                id,
                                chatmail_smtp::server::Answer::Delivery(DeliveryAnswer::Durable),
                                now,
                            )
                            .unwrap();
                    }
                    Output::Request(_, Request::Authenticate { .. }) => panic!("no AUTH on MX"),
                    Output::Close => {}
                    Output::Event(_) => {}
                    Output::Subscribe(_) | Output::StartDeflate => unreachable!(),
                }
            }
            while let Some(output) = client.poll() {
                progress = true;
                match output {
                    ClientOutput::Send(bytes) => {
                        for chunk in chunks(&mut rng, &bytes) {
                            server.feed(&chunk, now);
                        }
                    }
                    ClientOutput::StartTls => client.tls_started(now),
                    ClientOutput::Subscribe(_) | ClientOutput::StartDeflate => unreachable!(),
                    ClientOutput::Event(ClientEvent::Failed(error)) => {
                        panic!("client failed: {error}")
                    }
                    ClientOutput::Event(ClientEvent::Sent(outcome)) => {
                        let (envelope, message) = expected.take().expect("a message in flight");
                        for i in 0..envelope.recipients.len() {
                            assert_eq!(outcome.recipient_result(i), Ok(()), "{outcome:?}");
                        }
                        let delivery = delivered.pop().expect("delivered");
                        assert!(delivered.is_empty());
                        assert_eq!(delivery.mail_from, envelope.mail_from);
                        // A recipient drawn twice is delivered to once.
                        let mut distinct = envelope.recipients.clone();
                        let mut seen = std::collections::HashSet::new();
                        distinct.retain(|r| seen.insert(r.clone()));
                        assert_eq!(delivery.recipients, distinct);
                        assert!(delivery.message == message, "message {sent} differs");
                        sent += 1;
                        per_connection -= 1;
                    }
                    ClientOutput::Event(ClientEvent::Ready) => {}
                    ClientOutput::Close => {}
                }
            }
            if client.is_ready() && expected.is_none() {
                if per_connection == 0 {
                    if !quitting {
                        quitting = true;
                        client.quit(now);
                        continue;
                    }
                } else {
                    let from = format!("sender{}@other.net", rng.gen_range(0..100));
                    let recipients: Vec<String> = (0..rng.gen_range(1..5))
                        .map(|_| format!("user{}@{DOMAIN}", rng.gen_range(0..1000)))
                        .collect();
                    let message = random_message(&mut rng, &from, &recipients);
                    let envelope = OutgoingEnvelope {
                        mail_from: from,
                        recipients,
                    };
                    client.send_message(&envelope, &message, now).unwrap();
                    expected = Some((envelope, message));
                    continue;
                }
            }
            if !progress {
                break;
            }
        }
        assert!(
            client.is_closed() && server.is_closed(),
            "both sides said goodbye"
        );
    }
    assert_eq!(sent, total);
    assert!(
        connections > 100,
        "connections were reused and renewed: {connections}"
    );
}
