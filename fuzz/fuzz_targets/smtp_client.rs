//! The SMTP client engine against arbitrary server replies: never a panic, nothing after
//! Close, a message sent whenever the session says it is ready.
#![no_main]
use std::time::{Duration, Instant};

use chatmail_smtp::client::{
    ClientConfig, ClientOutput, ClientSession, Credentials, OutgoingEnvelope, TlsMode,
};
use chatmail_smtp::server::Engine as _;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [mode, chunk_seed, rest @ ..] = data else {
        return;
    };
    let mut config = ClientConfig::new("relay.example.org");
    config.tls = match mode % 3 {
        0 => TlsMode::Required,
        1 => TlsMode::Implicit,
        _ => TlsMode::Never,
    };
    if mode & 4 != 0 {
        config.credentials = Some(Credentials {
            login: "alice@example.org".into(),
            password: "secret".into(),
        });
    }
    config.max_reply_line = 512;
    config.max_reply_lines = 16;
    let mut now = Instant::now();
    let mut client = ClientSession::new(config, now);
    let envelope = OutgoingEnvelope {
        mail_from: "alice@example.org".into(),
        recipients: vec!["bob@example.net".into(), "carol@example.net".into()],
    };
    let message = b"From: alice@example.org\r\n\r\n.dot line\r\nbody\r\n";
    let mut closed = false;
    let mut step = 0usize;
    let mut input = rest;
    while !input.is_empty() {
        let n = (1 + (usize::from(*chunk_seed) * (step + 3)) % 61).min(input.len());
        client.feed(&input[..n], now);
        input = &input[n..];
        step += 1;
        while let Some(output) = client.poll() {
            assert!(!closed, "output after Close");
            match output {
                ClientOutput::StartTls => client.tls_started(now),
                ClientOutput::Close => closed = true,
                ClientOutput::Send(_) | ClientOutput::Event(_) => {}
                ClientOutput::Subscribe(_) | ClientOutput::StartDeflate => {
                    panic!("a client subscribes to nothing")
                }
            }
        }
        if client.is_ready() {
            if step % 5 == 4 {
                client.quit(now);
            } else {
                client.send_message(&envelope, message, now).unwrap();
            }
        }
        if step % 40 == 39 {
            if let Some(deadline) = client.poll_timeout() {
                now = deadline + Duration::from_secs(1);
                client.handle_timeout(now);
            }
        }
    }
});
