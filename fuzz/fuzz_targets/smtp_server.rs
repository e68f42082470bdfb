//! The SMTP server session against arbitrary bytes in arbitrary chunking, in every role:
//! never a panic, every buffer bounded, nothing after Close.
#![no_main]
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatmail_smtp::policy::{Policy, PolicyConfig};
use chatmail_smtp::server::{
    Answer, AuthAnswer, DeliveryAnswer, DeliveryFailure, Engine, Output, RecipientAnswer, Request,
    Role, ServerConfig, ServerSession, Transport,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Header: role, transport, embedder mood, chunk sizes; the rest is the peer's bytes.
    let [role, transport, mood, chunk_seed, rest @ ..] = data else {
        return;
    };
    let role = match role % 3 {
        0 => Role::Submission,
        1 => Role::Mx,
        _ => Role::Lmtp,
    };
    let transport = if transport & 1 == 0 {
        Transport::Cleartext
    } else {
        Transport::Tls
    };
    let mut config = ServerConfig::new(role, "mx.example.org");
    config.max_line_length = 256;
    config.max_pending_input = 4096;
    let max_line = config.max_line_length;
    let pending = config.max_pending_input;
    let policy = Arc::new(Policy::new(PolicyConfig {
        mail_domain: "example.org".into(),
        max_message_size: 4096,
        max_user_send_per_minute: 60,
        max_user_send_burst_size: 10,
    }));
    let mut now = Instant::now();
    let mut session = ServerSession::new(Arc::new(config), policy, transport, now);
    let mut closed = false;
    let mut step = 0usize;
    let mut input = rest;
    while !input.is_empty() {
        let n = 1 + (usize::from(*chunk_seed) * (step + 7)) % 97;
        let n = n.min(input.len());
        session.feed(&input[..n], now);
        input = &input[n..];
        step += 1;
        assert!(session.buffered_len() <= max_line.max(pending) + 97);
        while let Some(output) = session.poll() {
            assert!(!closed, "output after Close");
            match output {
                Output::Send(bytes) => assert!(bytes.ends_with(b"\r\n")),
                Output::StartTls => session.tls_started(now),
                Output::Close => closed = true,
                Output::Event(_) => {}
                Output::Subscribe(_) | Output::StartDeflate => panic!("not an SMTP server output"),
                Output::Request(id, Request::Authenticate { .. }) => {
                    let answer = match (mood >> step % 8) & 3 {
                        0 => AuthAnswer::Invalid,
                        1 => AuthAnswer::TemporaryFailure,
                        _ => AuthAnswer::Success {
                            user: "alice@example.org".into(),
                        },
                    };
                    session.answer(id, Answer::Auth(answer), now).unwrap();
                }
                Output::Request(id, Request::Recipient { .. }) => {
                    let answer = if mood & 4 == 0 {
                        RecipientAnswer::Accept {
                            accepts_cleartext: mood & 8 == 0,
                        }
                    } else {
                        RecipientAnswer::Refuse(DeliveryFailure::UnknownRecipient)
                    };
                    session.answer(id, Answer::Recipient(answer), now).unwrap();
                }
                Output::Request(id, Request::Deliver(delivery)) => {
                    assert!(delivery.message.len() <= 4096 + 1024);
                    let answer = if mood & 16 == 0 {
                        DeliveryAnswer::Durable
                    } else {
                        DeliveryAnswer::Failed(DeliveryFailure::LocalError)
                    };
                    session.answer(id, Answer::Delivery(answer), now).unwrap();
                }
            }
        }
        // Let held-back replies go and, now and then, the idle timer fire.
        if let Some(deadline) = session.poll_timeout() {
            if !session.wants_input() || step % 50 == 49 {
                now = now.max(deadline);
                session.handle_timeout(now);
            }
        }
        // Now and then the process stops: the session says its own goodbye.
        if mood & 32 != 0 && step == 64 {
            session.shutdown(now);
        }
        now += Duration::from_millis(1);
    }
});
