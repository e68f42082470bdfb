//! Feeds arbitrary bytes, in arbitrary chunks, to an IMAP session whose storage
//! answers every request; the session must never panic and must stay bounded.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatmail_core::{config::Config, Address, MailboxStatus, ModSeq, Uid, UidValidity};
use chatmail_imap::{Answer, Bytes, Output, Refusal, Request, Session, SessionConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut config = SessionConfig::from_config(&Config::with_domain("example.org"), true);
    config.max_message_size = 64 * 1024;
    let now = Instant::now();
    let mut session = Session::new(Arc::new(config), now);
    // The first byte picks the chunk size, so chunk boundaries are fuzzed too.
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    for piece in data.chunks(chunk) {
        session.feed(piece, now);
        while let Some(out) = session.poll() {
            if let Output::Request(id, req) = out {
                let answer = match req {
                    Request::Authenticate { .. } => {
                        Answer::Authenticated(Address::parse("abcdefghi@example.org").unwrap())
                    }
                    Request::Select { .. } => Answer::Selected {
                        status: MailboxStatus {
                            uid_validity: UidValidity(1),
                            uid_next: Uid(3),
                            highest_modseq: ModSeq(2),
                            exists: 2,
                            unseen: 2,
                            size: 20,
                        },
                        messages: Vec::new(),
                    },
                    Request::FetchMessage { .. } => Answer::Message(Bytes::from_static(
                        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nhi\r\n--x--\r\n",
                    )),
                    Request::Messages { .. } => Answer::Messages(Vec::new()),
                    _ => Answer::Refused(Refusal::NonExistent),
                };
                let _ = session.answer(id, answer);
            }
        }
        assert!(session.memory_footprint() < 512 * 1024);
    }
    session.handle_timeout(now + Duration::from_secs(7200));
    session.handle_timeout(now + Duration::from_secs(14400));
    while session.poll().is_some() {}
});
