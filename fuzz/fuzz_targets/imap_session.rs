//! Feeds arbitrary bytes, in arbitrary chunks, to an IMAP session whose storage
//! answers every request (a mailbox of two messages; SEARCH content requests are
//! answered by running the session's own search program on them); the session must
//! never panic and must stay bounded.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatmail_core::store::Lagged;
use chatmail_core::{config::Config, Flags, MessageMeta, ModSeq, Uid};
use chatmail_imap::{Answer, Bytes, Engine, Output, Refusal, Session, SessionConfig};
use libfuzzer_sys::fuzz_target;

#[path = "imap_answers.rs"]
mod imap_answers;

const MESSAGE: &[u8] = b"From: a@example.org\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nhi there\r\n--x--\r\n";

fn meta(uid: u32) -> MessageMeta {
    MessageMeta {
        uid: Uid(uid),
        size: MESSAGE.len() as u64,
        internal_date: 1_700_000_000,
        flags: Flags::new(),
        modseq: ModSeq(u64::from(uid)),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut config = SessionConfig::from_config(&Config::with_domain("example.org"), true);
    config.max_message_size = 64 * 1024;
    let now = Instant::now();
    let mut session = Session::new(Arc::new(config), now);
    // The first byte picks the chunk size, so chunk boundaries are fuzzed too.
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let message = Bytes::from_static(MESSAGE);
    for piece in data.chunks(chunk) {
        session.feed(piece, now);
        while let Some(out) = session.poll() {
            if let Output::Request(id, req) = out {
                let answer = imap_answers::answer(req, &[meta(1), meta(2)], &message)
                    .unwrap_or(Answer::Refused(Refusal::NonExistent));
                let _ = session.answer(id, answer, now);
            }
        }
        assert!(session.memory_footprint() < 512 * 1024);
    }
    // Odd lengths also end with a lagged change feed and a shutdown, the other inputs.
    if data.len() % 2 == 1 {
        session.handle_change(Err(Lagged { missed: 1 }), now);
        session.shutdown(now);
    }
    session.handle_timeout(now + Duration::from_secs(7200));
    session.handle_timeout(now + Duration::from_secs(14400));
    while session.poll().is_some() {}
});
