//! A stored message of arbitrary bytes, fetched the ways that parse it (issue 13: the
//! MIME tree now comes from mail-parser): BODYSTRUCTURE, BODY, ENVELOPE, nested section
//! paths, MIME/HEADER/TEXT parts, HEADER.FIELDS, partial fetches, and a SEARCH on its
//! addresses and text. The session must never panic, every response it writes must stay
//! bounded by the message, and a section is always a slice of the stored bytes.
#![no_main]

use std::sync::Arc;
use std::time::Instant;

use chatmail_core::{config::Config, Flags, MessageMeta, ModSeq, Uid};
use chatmail_imap::{Answer, Bytes, Engine, Output, Session, SessionConfig};
use libfuzzer_sys::fuzz_target;

#[path = "imap_answers.rs"]
mod imap_answers;

const COMMANDS: &[u8] = b"a LOGIN abcdefghi@example.org pw\r\nb SELECT INBOX\r\n\
c FETCH 1 (BODYSTRUCTURE BODY ENVELOPE RFC822.SIZE)\r\n\
d FETCH 1 (BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2.1.HEADER] BODY.PEEK[1.2.TEXT] BODY.PEEK[3.1.2])\r\n\
e FETCH 1 (BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT)] BODY.PEEK[TEXT]<3.20> BODY.PEEK[2]<0.10>)\r\n\
f SEARCH FROM \"a@b\" TO \"group\" TEXT \"x\"\r\ng LOGOUT\r\n";

fuzz_target!(|data: &[u8]| {
    let message = Bytes::copy_from_slice(data);
    let meta = MessageMeta {
        uid: Uid(1),
        size: data.len() as u64,
        internal_date: 1_700_000_000,
        flags: Flags::new(),
        modseq: ModSeq(1),
    };
    let config = SessionConfig::from_config(&Config::with_domain("example.org"), true);
    let now = Instant::now();
    let mut session = Session::new(Arc::new(config), now);
    session.feed(COMMANDS, now);
    let mut written = 0usize;
    while let Some(out) = session.poll() {
        match out {
            Output::Request(id, req) => {
                let answer =
                    imap_answers::answer(req, &[meta.clone()], &message).unwrap_or(Answer::Done);
                let _ = session.answer(id, answer, now);
            }
            Output::Send(bytes) => written += bytes.len(),
            _ => {}
        }
    }
    // Sections are slices of the message (each at most its size, eight of them), the
    // structures and envelopes a bounded multiple of it plus fixed text per part.
    assert!(
        written < 64 * 1024 + 40 * data.len(),
        "{written} for {}",
        data.len()
    );
});
