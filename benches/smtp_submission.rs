//! chatmail-smtp engine: a full submission session (EHLO, AUTH PLAIN, MAIL, RCPT, DATA of
//! the 3 KB `encrypted.eml` fixture, QUIT) through the server engine in memory, with the
//! real policy check (outgoing direction) and header rewrite. Sessions per second.
//!
//! The policy's rate limit is turned off (the same sender submits millions of messages
//! here); everything else is the production path.

use std::sync::Arc;
use std::time::Instant;

use chatmail_smtp::policy::{Policy, PolicyConfig};
use chatmail_smtp::server::{
    Answer, AuthAnswer, DeliveryAnswer, Engine as _, Output, Request, Role, ServerConfig,
    ServerSession, Transport,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// base64 of `\0alice@example.org\0secret-password`.
const AUTH_PLAIN: &str = "AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldC1wYXNzd29yZA==";

/// The client side of the session as one pipelined byte script.
fn script() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/fixtures/encrypted.eml"
    );
    let message = std::fs::read_to_string(path)
        .expect("fixture")
        .replace("{from_addr}", "alice@example.org")
        .replace("{to_addr}", "bob@example.net")
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    let mut script = format!(
        "EHLO client.example\r\nAUTH PLAIN {AUTH_PLAIN}\r\nMAIL FROM:<alice@example.org>\r\n\
         RCPT TO:<bob@example.net>\r\nDATA\r\n"
    )
    .into_bytes();
    for line in message.as_bytes().split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            script.push(b'.');
        }
        script.extend_from_slice(line);
    }
    script.extend_from_slice(b".\r\nQUIT\r\n");
    script
}

/// Runs one session over `chunks`; returns the bytes the server wrote.
fn session(config: &Arc<ServerConfig>, policy: &Arc<Policy>, chunks: &[&[u8]]) -> usize {
    let now = Instant::now();
    let mut server = ServerSession::new(config.clone(), policy.clone(), Transport::Tls, now);
    let mut written = 0;
    let mut delivered = 0;
    for chunk in chunks {
        server.feed(chunk, now);
        while let Some(output) = server.poll() {
            match output {
                Output::Send(bytes) => written += bytes.len(),
                Output::Request(id, Request::Authenticate { login, .. }) => {
                    let answer = Answer::Auth(AuthAnswer::Success { user: login });
                    server.answer(id, answer, now).expect("auth");
                }
                Output::Request(id, Request::Deliver(delivery)) => {
                    delivered += delivery.message.len();
                    let answer = Answer::Delivery(DeliveryAnswer::Durable);
                    server.answer(id, answer, now).expect("deliver");
                }
                Output::Event(_) => {}
                Output::Request(_, Request::Recipient { .. })
                | Output::StartTls
                | Output::StartDeflate
                | Output::Subscribe(_) => unreachable!("not on submission over TLS"),
                Output::Close => {}
            }
        }
    }
    assert!(
        delivered > 0 && server.is_closed(),
        "the message went through"
    );
    written
}

fn bench(c: &mut Criterion) {
    let core = chatmail_core::config::Config::with_domain("example.org");
    let mut policy_config = PolicyConfig::from(&core);
    policy_config.max_user_send_per_minute = 0; // 0: rate limit off

    let policy = Arc::new(Policy::new(policy_config));
    let config = Arc::new(ServerConfig::new(Role::Submission, "mail.example.org"));
    let script = script();

    let mut group = c.benchmark_group("smtp_submission");
    group.throughput(Throughput::Elements(1));
    // The whole pipelined script in one read.
    group.bench_function("session_one_read", |b| {
        b.iter(|| session(&config, &policy, &[&script]))
    });
    // A read per command line and 1400-byte reads (one TCP segment) for the message.
    let mut chunks: Vec<&[u8]> = Vec::new();
    let data_start = script
        .windows(6)
        .position(|w| w == b"DATA\r\n")
        .expect("DATA")
        + 6;
    chunks.extend(script[..data_start].split_inclusive(|&b| b == b'\n'));
    chunks.extend(script[data_start..].chunks(1400));
    group.bench_function("session_segmented", |b| {
        b.iter(|| session(&config, &policy, &chunks))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
