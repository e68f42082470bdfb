//! The delivery queue inside the relay: submission to other domains answers `250` once
//! the message is queued, the queue hands it to the transport, retries what was
//! deferred, tells the sender (a DSN in the INBOX) what was refused, holds local
//! recipients whose delivery failed for the moment until their mailbox takes them, and
//! says `452 4.3.1` when full.
#![cfg(feature = "tokio")]

use chatmail::core::account::FixedSystemLimits;
use chatmail::core::config::Config;
use chatmail::core::{Address, InlineExecutor, INBOX};
use chatmail::outbound::{Handover, RecipientOutcome, Transport};
use chatmail::policy::Reply;
use chatmail::smtp::server::{Engine as _, Output, Role, ServerConfig, ServerSession};
use chatmail::Relay;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DOMAIN: &str = "chat.example.org";
const PASSWORD: &str = "password123";

fn addr(local: &str) -> String {
    format!("{local}@{DOMAIN}")
}

/// A maildir relay in `dir` with its queue in `dir/queue`, retrying after 1 s.
fn relay(dir: &Path, tune: impl FnOnce(&mut Config)) -> Arc<Relay> {
    let mut config = Config::with_domain(DOMAIN);
    config.mailboxes_dir = dir.join("mailboxes");
    config.outbound_retry_min = Duration::from_secs(1);
    config.outbound_retry_max = Duration::from_secs(1);
    tune(&mut config);
    let relay = Relay::builder(config)
        .maildir(Arc::new(InlineExecutor))
        .system_limits(Arc::new(FixedSystemLimits::plenty()))
        .nocreate_path("/nonexistent/chatmail-nocreate")
        .delivery_queue(dir.join("queue"))
        .build()
        .unwrap();
    for user in ["alice0001", "bob000001"] {
        futures::executor::block_on(relay.login(&addr(user), PASSWORD, true))
            .unwrap()
            .expect("first login creates the account");
    }
    Arc::new(relay)
}

/// What a transport was handed: domain, envelope sender, recipients, message.
type Handed = (String, String, Vec<String>, Vec<u8>);

/// A transport that records every handover and answers from a script (then delivers).
#[derive(Default)]
struct Scripted {
    script: Mutex<VecDeque<RecipientOutcome>>,
    handovers: Mutex<Vec<Handed>>,
}

#[async_trait::async_trait]
impl Transport for Scripted {
    async fn hand_over(&self, h: Handover<'_>) -> Vec<RecipientOutcome> {
        self.handovers.lock().unwrap().push((
            h.domain.to_string(),
            h.mail_from.to_string(),
            h.recipients.to_vec(),
            h.message.to_vec(),
        ));
        let next = self.script.lock().unwrap().pop_front();
        let outcome = next.unwrap_or(RecipientOutcome::Delivered(Reply::new(250, "OK")));
        h.recipients.iter().map(|_| outcome.clone()).collect()
    }
}

/// One submission session of `from` sending the encrypted fixture to `to`; the replies.
async fn submit(relay: &Relay, from: &str, to: &[&str]) -> String {
    use base64::Engine as _;
    let now = Instant::now();
    let mut session = ServerSession::new(
        Arc::new(ServerConfig::new(Role::Submission, DOMAIN)),
        relay.policy().clone(),
        chatmail::smtp::server::Transport::Tls,
        now,
    );
    let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0{from}\0{PASSWORD}"));
    let mut input = format!("EHLO client\r\nAUTH PLAIN {plain}\r\nMAIL FROM:<{from}>\r\n");
    for rcpt in to {
        input.push_str(&format!("RCPT TO:<{rcpt}>\r\n"));
    }
    input.push_str("DATA\r\n");
    let fixture = include_str!("../testdata/fixtures/encrypted.eml")
        .replace("{from_addr}", from)
        .replace("{to_addr}", to[0])
        .replace("{subject}", "[...]")
        .replace("\r\n", "\n");
    for line in fixture.trim_end().split('\n') {
        if line.starts_with('.') {
            input.push('.');
        }
        input.push_str(line);
        input.push_str("\r\n");
    }
    input.push_str(".\r\n");
    session.feed(input.as_bytes(), now);
    let mut replies = String::new();
    while let Some(out) = session.poll() {
        match out {
            Output::Send(bytes) => replies.push_str(&String::from_utf8_lossy(&bytes)),
            Output::Request(id, request) => {
                let answer = relay.answer_smtp(request, None).await;
                session.answer(id, answer, Instant::now()).unwrap();
            }
            _ => {}
        }
    }
    replies
}

async fn inbox(relay: &Relay, local: &str) -> Vec<String> {
    let account = Address::parse(&addr(local)).unwrap();
    let mut out = Vec::new();
    for m in relay
        .store()
        .list_messages(&account, INBOX, None)
        .await
        .unwrap()
    {
        let bytes = relay
            .store()
            .read_message(&account, INBOX, m.uid)
            .await
            .unwrap();
        out.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    out
}

/// Runs the queue of `relay` with `transport` until `done` holds (fails after 20 s).
async fn run_until(relay: &Arc<Relay>, transport: Arc<Scripted>, done: impl Fn() -> bool) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(relay.clone().run_delivery_queue(
        transport,
        tokio::time::sleep,
        async {
            let _ = stop_rx.await;
        },
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "the queue did not get there within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(());
    runner.await.unwrap();
}

#[tokio::test]
async fn remote_mail_is_queued_then_handed_over_and_deferrals_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path(), |_| {});
    let from = addr("alice0001");
    let replies = submit(
        &relay,
        &from,
        &["x@other.org", "y@other.org", "z@third.org"],
    )
    .await;
    assert!(replies.contains("250 2.0.0"), "{replies}");
    let queue = relay.delivery_queue().unwrap();
    assert_eq!(queue.len(), 1);
    let transport = Arc::new(Scripted::default());
    // The first attempt to other.org is deferred; the retry delivers.
    transport
        .script
        .lock()
        .unwrap()
        .push_back(RecipientOutcome::Deferred(Reply::new(421, "4.4.2 busy")));
    let t = transport.clone();
    run_until(&relay, transport.clone(), move || {
        t.handovers.lock().unwrap().len() >= 3 && queue.is_empty()
    })
    .await;
    let handovers = transport.handovers.lock().unwrap().clone();
    let mut domains: Vec<&str> = handovers.iter().map(|h| h.0.as_str()).collect();
    domains.sort();
    assert_eq!(domains, ["other.org", "other.org", "third.org"]);
    let other = handovers.iter().find(|h| h.0 == "other.org").unwrap();
    assert_eq!(other.1, from);
    assert_eq!(other.2, ["x@other.org", "y@other.org"]);
    assert!(String::from_utf8_lossy(&other.3).contains("-----BEGIN PGP MESSAGE-----"));
    assert!(
        inbox(&relay, "alice0001").await.is_empty(),
        "nothing to report"
    );
}

#[tokio::test]
async fn refused_recipients_are_reported_to_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path(), |_| {});
    let from = addr("alice0001");
    let replies = submit(&relay, &from, &["nobody@other.org"]).await;
    assert!(replies.contains("250 2.0.0"), "{replies}");
    let transport = Arc::new(Scripted::default());
    transport
        .script
        .lock()
        .unwrap()
        .push_back(RecipientOutcome::Failed(Reply::new(
            550,
            "5.1.1 <nobody@other.org>: Recipient address rejected: User unknown",
        )));
    let queue = relay.delivery_queue().unwrap().clone();
    run_until(&relay, transport, move || queue.is_empty()).await;
    let dsn = inbox(&relay, "alice0001").await;
    assert_eq!(dsn.len(), 1);
    assert!(
        dsn[0].contains("Final-Recipient: rfc822; nobody@other.org"),
        "{}",
        dsn[0]
    );
    assert!(dsn[0].contains("Status: 5.1.1"));
}

#[tokio::test]
async fn a_local_mailbox_that_fails_for_the_moment_gets_the_message_later() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path(), |_| {});
    // Bob's INBOX cannot take mail: its `new` directory is a file.
    let new = dir
        .path()
        .join("mailboxes")
        .join(addr("bob000001"))
        .join("new");
    let _ = std::fs::remove_dir_all(&new);
    std::fs::write(&new, b"in the way").unwrap();
    let replies = submit(
        &relay,
        &addr("alice0001"),
        &[&addr("bob000001"), "x@other.org"],
    )
    .await;
    assert!(replies.contains("250 2.0.0"), "{replies}");
    let queue = relay.delivery_queue().unwrap().clone();
    assert_eq!(queue.len(), 2, "the remote copy and the local retry");
    std::fs::remove_file(&new).unwrap();
    std::fs::create_dir(&new).unwrap();
    let transport = Arc::new(Scripted::default());
    run_until(&relay, transport, move || queue.is_empty()).await;
    let bob = inbox(&relay, "bob000001").await;
    assert_eq!(bob.len(), 1);
    assert!(bob[0].contains("-----BEGIN PGP MESSAGE-----"));
    assert!(
        inbox(&relay, "alice0001").await.is_empty(),
        "no failure to report"
    );
}

#[tokio::test]
async fn a_full_queue_says_452_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path(), |c| c.outbound_queue_max_messages = 1);
    let from = addr("alice0001");
    assert!(submit(&relay, &from, &["x@other.org"])
        .await
        .contains("250 2.0.0"));
    let replies = submit(&relay, &from, &["y@other.org"]).await;
    assert!(replies.contains("452 4.3.1"), "{replies}");
    assert_eq!(relay.delivery_queue().unwrap().len(), 1);
}

#[tokio::test]
async fn queued_mail_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let relay = relay(dir.path(), |_| {});
        let replies = submit(&relay, &addr("alice0001"), &["x@other.org"]).await;
        assert!(replies.contains("250 2.0.0"), "{replies}");
    }
    let relay = relay(dir.path(), |_| {});
    let queue = relay.delivery_queue().unwrap().clone();
    assert_eq!(queue.len(), 1);
    let transport = Arc::new(Scripted::default());
    let t = transport.clone();
    run_until(&relay, transport, move || queue.is_empty()).await;
    assert_eq!(t.handovers.lock().unwrap().len(), 1);
}
