//! Push notifications end to end on loopback (spec 5.3, 5.4): a relay on free ports with
//! the push driver, a fake notification endpoint (hyper on 127.0.0.1, http://) that
//! records every POST body and answers with a status the test chooses.
#![cfg(feature = "tokio")]

mod support;

use bytes::Bytes;
use chatmail::core::account::FixedSystemLimits;
use chatmail::core::Address;
use chatmail::push::{self, PushSettings};
use chatmail::Relay;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{encrypted_data, plain, start_with, Peer, Running, DOMAIN};
use tokio::net::{TcpListener, TcpStream};

const PASSWORD: &str = "a-long-enough-password";

/// Decides the status of the `n`th POST (from 0) of `token`.
type Answer = dyn Fn(&str, usize) -> u16 + Send + Sync;

/// The fake notification service: every POST's body and arrival, in order.
struct FakeEndpoint {
    url: String,
    posts: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl FakeEndpoint {
    async fn start(answer: Box<Answer>) -> FakeEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/notify", listener.local_addr().expect("addr"));
        let posts: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let answer: Arc<Answer> = Arc::from(answer);
        let log = posts.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (log, answer) = (log.clone(), answer.clone());
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (log, answer) = (log.clone(), answer.clone());
                    async move {
                        let right_place =
                            request.method() == hyper::Method::POST && request.uri() == "/notify";
                        let body = request.into_body().collect().await?.to_bytes();
                        let token = String::from_utf8_lossy(&body).into_owned();
                        let status = {
                            let mut log = log.lock().unwrap();
                            let n = log.iter().filter(|(t, _)| *t == token).count();
                            log.push((token.clone(), Instant::now()));
                            if right_place {
                                answer(&token, n)
                            } else {
                                404
                            }
                        };
                        let mut response = hyper::Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                        Ok::<_, hyper::Error>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
                );
            }
        });
        FakeEndpoint { url, posts }
    }

    /// The POSTs of `token` so far.
    fn count(&self, token: &str) -> usize {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == token)
            .count()
    }

    fn tokens(&self) -> Vec<String> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }

    fn arrivals(&self, token: &str) -> Vec<Instant> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == token)
            .map(|(_, at)| *at)
            .collect()
    }
}

/// Waits until `done` holds, failing after `limit` (a hang, not a speed measurement).
async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A memory relay whose deliveries notify `endpoint`, pending files in `mail_dir`.
async fn start(endpoint: &FakeEndpoint, mail_dir: &Path) -> Running {
    let mut config = support::config();
    config.notify_url = endpoint.url.clone();
    config.mailboxes_dir = mail_dir.to_path_buf();
    let (notifier, new_mail) = push::channel(push::DEFAULT_CHANNEL_CAPACITY);
    let relay = Arc::new(
        Relay::builder(config)
            .memory()
            .system_limits(Arc::new(FixedSystemLimits::plenty()))
            .skip_dkim_verification()
            .notifier(Arc::new(notifier))
            .build()
            .expect("relay"),
    );
    start_with(relay, |server| {
        server.with_push(new_mail, PushSettings::default())
    })
    .await
}

/// Creates the account `user` with one device token.
async fn account_with_token(relay: &Running, user: &str, token: &str) -> Address {
    relay
        .relay
        .accounts()
        .login(user, PASSWORD, unix_now())
        .await
        .expect("login");
    let address = Address::parse(user).unwrap();
    relay
        .relay
        .device_tokens()
        .add_token(&address, token, unix_now())
        .await
        .expect("token");
    address
}

/// `from` submits an encrypted message to `to` over implicit TLS; returns at the 250.
async fn submit(relay: &Running, from: &str, to: &str) {
    let tcp = TcpStream::connect(relay.ports.submissions)
        .await
        .expect("connect");
    let mut smtp = relay.tls_over(tcp).await;
    smtp.until("220 ").await;
    let auth = format!("AUTH PLAIN {}\r\n", plain(from, PASSWORD));
    transaction(&mut smtp, Some(&auth), from, to).await;
}

/// Mail from another server (port 25, STARTTLS) to `to`; returns at the 250.
async fn receive(relay: &Running, to: &str) {
    let tcp = TcpStream::connect(relay.ports.smtp).await.expect("connect");
    let mut smtp = Peer::new(tcp);
    smtp.until("220 ").await;
    smtp.send(b"EHLO mx.example.org\r\nSTARTTLS\r\n").await;
    smtp.until("250 ").await;
    smtp.until("220 ").await;
    let mut smtp = relay.tls_over(smtp.io.into_inner()).await;
    transaction(&mut smtp, None, "alice@example.org", to).await;
}

/// Bob, with the one device token `token`, receives a message from another server.
async fn bob_receives(relay: &Running, token: &str) {
    let bob = format!("bob123456@{DOMAIN}");
    account_with_token(relay, &bob, token).await;
    receive(relay, &bob).await;
}

/// EHLO, `auth` if any, one encrypted message from `from` to `to`, QUIT.
async fn transaction<S>(smtp: &mut Peer<S>, auth: Option<&str>, from: &str, to: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    smtp.send(b"EHLO client.example\r\n").await;
    smtp.until("250 ").await;
    if let Some(auth) = auth {
        smtp.send(auth.as_bytes()).await;
        let reply = smtp.line().await;
        assert!(reply.starts_with("235"), "{reply}");
    }
    smtp.send(format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n").as_bytes())
        .await;
    let replies = smtp.until("354").await;
    assert_eq!(replies.len(), 3, "{replies:?}");
    smtp.send(&encrypted_data(from, to)).await;
    let reply = smtp.line().await;
    assert!(reply.starts_with("250"), "{reply}");
    smtp.send(b"QUIT\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_posts_the_token_but_the_own_copy_does_not() {
    let endpoint = FakeEndpoint::start(Box::new(|_, _| 200)).await;
    let mail = tempfile::tempdir().unwrap();
    let relay = start(&endpoint, mail.path()).await;
    let alice = format!("alice1234@{DOMAIN}");
    let bob = format!("bob123456@{DOMAIN}");
    account_with_token(&relay, &alice, "tok-alice").await;
    account_with_token(&relay, &bob, "tok-bob").await;
    // Alice's copy to herself (multi-device bcc-self) first, then a message to Bob.
    submit(&relay, &alice, &alice).await;
    submit(&relay, &alice, &bob).await;
    wait_until(Duration::from_secs(10), "Bob's POST", || {
        endpoint.count("tok-bob") == 1
    })
    .await;
    // From another server as well.
    receive(&relay, &bob).await;
    wait_until(Duration::from_secs(10), "Bob's second POST", || {
        endpoint.count("tok-bob") == 2
    })
    .await;
    assert_eq!(endpoint.tokens(), vec!["tok-bob", "tok-bob"]);
    // Done items leave no file behind.
    let pending = mail.path().join(push::pending::PENDING_DIR);
    wait_until(Duration::from_secs(10), "pending files deleted", || {
        std::fs::read_dir(&pending).map(|d| d.count()).unwrap_or(1) == 0
    })
    .await;
    // The operator sees it on /metrics.
    wait_until(Duration::from_secs(10), "the push metrics", || {
        let text = relay.relay.render_metrics();
        text.contains("chatmail_push_notifications{outcome=\"sent\"} 2\n")
            && text.contains("chatmail_push_pending 0\n")
    })
    .await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_removes_the_token() {
    let endpoint = FakeEndpoint::start(Box::new(
        |token, _| {
            if token == "tok-gone" {
                410
            } else {
                200
            }
        },
    ))
    .await;
    let mail = tempfile::tempdir().unwrap();
    let relay = start(&endpoint, mail.path()).await;
    let bob = format!("bob123456@{DOMAIN}");
    let address = account_with_token(&relay, &bob, "tok-gone").await;
    let tokens = relay.relay.device_tokens().clone();
    tokens
        .add_token(&address, "tok-kept", unix_now())
        .await
        .unwrap();
    receive(&relay, &bob).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = tokens.tokens(&address, unix_now()).await.unwrap();
        if left == ["tok-kept"] {
            break;
        }
        assert!(Instant::now() < deadline, "token not removed: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(endpoint.count("tok-gone"), 1);
    assert_eq!(endpoint.count("tok-kept"), 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_retried_at_the_eight_second_level() {
    let endpoint = FakeEndpoint::start(Box::new(|_, n| if n == 0 { 500 } else { 200 })).await;
    let mail = tempfile::tempdir().unwrap();
    let relay = start(&endpoint, mail.path()).await;
    bob_receives(&relay, "tok-bob").await;
    wait_until(Duration::from_secs(30), "the retry", || {
        endpoint.count("tok-bob") == 2
    })
    .await;
    let at = endpoint.arrivals("tok-bob");
    // The schedule: the retry waits 8 s after the failure was answered.
    assert!(
        at[1] - at[0] >= Duration::from_secs(8),
        "{:?}",
        at[1] - at[0]
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_file_is_sent_once_after_a_restart_and_removed() {
    let endpoint = FakeEndpoint::start(Box::new(|_, _| 200)).await;
    let mail = tempfile::tempdir().unwrap();
    let pending = mail.path().join(push::pending::PENDING_DIR);
    std::fs::create_dir_all(&pending).unwrap();
    let name = "00112233445566778899aabbccddeeff";
    // As the reference writes it (a float timestamp), ten minutes old.
    let start_ts = unix_now() - 600;
    std::fs::write(
        pending.join(name),
        format!("bob123456@{DOMAIN}\n{start_ts}.25\ntok-pending"),
    )
    .unwrap();
    std::fs::write(pending.join(format!("{name}.tmp")), "cut short").unwrap();

    let relay = start(&endpoint, mail.path()).await;
    wait_until(Duration::from_secs(10), "the pending POST", || {
        endpoint.count("tok-pending") == 1
    })
    .await;
    wait_until(Duration::from_secs(10), "the file removed", || {
        std::fs::read_dir(&pending).map(|d| d.count()).unwrap_or(1) == 0
    })
    .await;
    relay.stop().await;

    // A second start finds nothing to resend: a fresh delivery is all that is POSTed.
    let relay = start(&endpoint, mail.path()).await;
    bob_receives(&relay, "tok-fresh").await;
    wait_until(Duration::from_secs(10), "the fresh POST", || {
        endpoint.count("tok-fresh") == 1
    })
    .await;
    assert_eq!(endpoint.tokens(), vec!["tok-pending", "tok-fresh"]);
    relay.stop().await;
}
