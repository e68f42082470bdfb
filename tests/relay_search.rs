//! SEARCH through the relay: content keys are decided by scanning messages in jobs on
//! the blocking executor, never on the caller's (async worker's) thread.

use chatmail::core::account::FixedSystemLimits;
use chatmail::core::config::Config;
use chatmail::core::BlockingExecutor;
use chatmail::imap::{Engine, Output, Session, SessionConfig};
use chatmail::Relay;
use futures::executor::block_on;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Runs jobs inline and counts them.
#[derive(Default)]
struct CountingExecutor(AtomicUsize);

impl BlockingExecutor for CountingExecutor {
    fn spawn_blocking(&self, job: Box<dyn FnOnce() + Send + 'static>) {
        self.0.fetch_add(1, Ordering::SeqCst);
        job();
    }
}

fn imap(relay: &Relay, session: &mut Session, input: &str) -> String {
    session.feed(input.as_bytes(), Instant::now());
    let mut responses = String::new();
    while let Some(out) = session.poll() {
        match out {
            Output::Send(bytes) => responses.push_str(&String::from_utf8_lossy(&bytes)),
            Output::Request(id, request) => {
                let answer = block_on(relay.answer_imap(request, None));
                session
                    .answer(id, answer, Instant::now())
                    .expect("answers match requests");
            }
            Output::StartTls | Output::StartDeflate | Output::Subscribe(_) | Output::Close => {}
            Output::Event(never) => match never {},
        }
    }
    responses
}

#[test]
fn content_search_runs_on_the_blocking_executor() {
    let tmp = tempfile::tempdir().unwrap();
    let mut config = Config::with_domain("chat.example.org");
    config.mailboxes_dir = tmp.path().to_path_buf();
    let executor = Arc::new(CountingExecutor::default());
    let relay = Relay::builder(config.clone())
        .maildir(executor.clone())
        .system_limits(Arc::new(FixedSystemLimits::plenty()))
        .nocreate_path("/nonexistent/chatmail-nocreate")
        .build()
        .unwrap();
    let user = "searcher1@chat.example.org";
    let mut session = Session::new(
        Arc::new(SessionConfig::from_config(&config, true)),
        Instant::now(),
    );
    let reply = imap(
        &relay,
        &mut session,
        &format!("a LOGIN {user} password123\r\n"),
    );
    assert!(reply.contains("a OK"), "{reply}");
    for body in ["nothing", "the word is NEEDLE", "needle again"] {
        let message = format!("From: x@y.org\r\nSubject: s\r\n\r\n{body}\r\n");
        let outcome = block_on(relay.deliver("x@y.org", &[user.to_string()], &[], message.into()));
        assert!(outcome.iter().all(|o| o.is_ok()), "{outcome:?}");
    }
    assert!(imap(&relay, &mut session, "b SELECT INBOX\r\n").contains("b OK"));

    let jobs = || executor.0.load(Ordering::SeqCst);
    let start = jobs();
    let reply = imap(&relay, &mut session, "c SEARCH BODY needle NOT ALL\r\n");
    assert!(reply.contains("* SEARCH\r\nc OK"), "{reply}");
    let listing = jobs() - start;
    let start = jobs();
    let reply = imap(&relay, &mut session, "d SEARCH BODY needle\r\n");
    assert!(reply.contains("* SEARCH 2 3\r\nd OK"), "{reply}");
    // The same listing, one read per message, and the scan: one more job.
    assert_eq!(jobs() - start, listing + 3 + 1);
}
