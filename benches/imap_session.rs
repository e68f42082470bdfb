//! chatmail-imap engine: LOGIN + SELECT + UID FETCH of 1000 messages in memory, and the
//! memory an idling session holds.

use std::sync::Arc;
use std::time::Instant;

use chatmail_core::{
    config::Config, Address, Flags, MailboxStatus, MessageMeta, ModSeq, Uid, UidValidity,
};
use chatmail_imap::{Answer, Bytes, Engine, Output, Request, Session, SessionConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const MESSAGES: u32 = 1000;

fn message() -> Bytes {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/fixtures/encrypted.eml"
    );
    Bytes::from(std::fs::read(path).expect("fixture"))
}

fn metas(size: u64) -> Vec<MessageMeta> {
    (1..=MESSAGES)
        .map(|uid| MessageMeta {
            uid: Uid(uid),
            size,
            internal_date: 1_700_000_000,
            flags: Flags::new(),
            modseq: ModSeq(u64::from(uid)),
        })
        .collect()
}

/// Answers the requests of the scripted conversation from memory; returns bytes sent.
fn drive(session: &mut Session, body: &Bytes, metas: &[MessageMeta]) -> usize {
    let mut sent = 0;
    while let Some(out) = session.poll() {
        match out {
            Output::Send(b) => sent += b.len(),
            Output::Request(id, req) => {
                let answer = match req {
                    Request::Authenticate { login, .. } => {
                        Answer::Authenticated(Address::parse(&login).expect("address"))
                    }
                    Request::Select { .. } => Answer::Selected {
                        status: MailboxStatus {
                            uid_validity: UidValidity(1),
                            uid_next: Uid(MESSAGES + 1),
                            highest_modseq: ModSeq(u64::from(MESSAGES)),
                            exists: MESSAGES,
                            unseen: MESSAGES,
                            recent: 0,
                            size: 0,
                        },
                        messages: metas.to_vec(),
                        recent: Uid(0)..Uid(0),
                    },
                    Request::Messages { uids, .. } => Answer::Messages(
                        uids.iter()
                            .map(|u| metas[(u.0 - 1) as usize].clone())
                            .collect(),
                    ),
                    Request::FetchMessage { .. } => Answer::Message(body.clone()),
                    other => panic!("unexpected {other:?}"),
                };
                session.answer(id, answer, Instant::now()).expect("answer");
            }
            Output::StartTls | Output::StartDeflate | Output::Subscribe(_) | Output::Close => {}
            Output::Event(never) => match never {},
        }
    }
    sent
}

fn conversation(c: &mut Criterion) {
    let config = Arc::new(SessionConfig::from_config(
        &Config::with_domain("example.org"),
        true,
    ));
    let body = message();
    let metas = metas(body.len() as u64);
    let script = b"1 LOGIN abcdefghi@example.org password123\r\n2 SELECT INBOX\r\n\
                   3 UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[])\r\n";
    let mut group = c.benchmark_group("imap_session");
    group.throughput(Throughput::Elements(u64::from(MESSAGES)));
    group.bench_function("login_select_fetch_1000", |b| {
        b.iter(|| {
            let mut session = Session::new(config.clone(), Instant::now());
            session.feed(script, Instant::now());
            let sent = drive(&mut session, &body, &metas);
            assert!(sent > body.len() * MESSAGES as usize);
        })
    });
    group.finish();

    // Memory of an idling session (size_of plus heap), printed for BENCHMARKS.md.
    for inbox in [0u32, 1000] {
        let mut session = Session::new(config.clone(), Instant::now());
        session.feed(
            b"1 LOGIN abcdefghi@example.org password123\r\n2 SELECT INBOX\r\n3 IDLE\r\n",
            Instant::now(),
        );
        let m: Vec<MessageMeta> = metas[..inbox as usize].to_vec();
        drive(&mut session, &body, &m);
        assert!(session.is_idle());
        eprintln!(
            "idle session with {inbox} messages selected: {} bytes (size_of Session = {})",
            session.memory_footprint(),
            std::mem::size_of::<Session>()
        );
    }
}

criterion_group!(benches, conversation);
criterion_main!(benches);
