//! Delivery to other servers over the network (spec 3.4) on loopback: a static zone maps
//! the test domains to 127.0.0.1 (and 127.0.0.2 for a dead exchanger); an in-test
//! HTTPS `/mxdeliv` server and a real relay (port 25) are the peers.
#![cfg(feature = "tokio")]

mod support;

use bytes::Bytes;
use chatmail::core::dns::{Answer, RecordType, Resolver, StaticZone, TemporaryFailure};
use chatmail::core::{Address, INBOX};
use chatmail::outbound::{Handover, RecipientOutcome, Transport};
use chatmail::policy::Reply;
use chatmail::tokio_driver::delivery::{NetworkTransport, TransportSettings};
use http_body_util::{BodyExt, Full};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::within;
use tokio::net::TcpListener;

const SENDER: &str = "sender001@_origin.localhost";
const PASSWORD: &str = "password123";

/// The test domains: `_https.test` and `verified.test` on 127.0.0.1, the relay's
/// `_chat.localhost` too; `mx.test` has a dead first exchanger (127.0.0.2) and a live
/// second; `nullmx.test` a null MX; `nx.test` does not exist.
const ZONE: &str = "\
$ORIGIN test.
_https          A   127.0.0.1
verified        A   127.0.0.1
_dead           A   127.0.0.2
mx              MX  20 _https
                MX  10 _dead
nullmx          MX  0 .
_chat.localhost. A  127.0.0.1
";

fn zone() -> Arc<dyn Resolver> {
    Arc::new(StaticZone::parse(ZONE).expect("zone"))
}

/// The message every test sends: the encrypted fixture (a real PGP/MIME message the
/// relay's policy accepts), CRLF, not dot-stuffed. One place, so that it can be signed
/// once the receiving relay verifies DKIM.
fn message(from: &str, to: &str) -> Bytes {
    Bytes::from(support::encrypted_message(from, to))
}

/// Settings for tests: both ports given, short timeouts (a failure case must end well
/// within the tests' 10 s bound, a success never comes near them).
fn settings(https_port: u16, smtp_port: u16) -> TransportSettings {
    let mut settings = TransportSettings::new("_origin.localhost");
    settings.https_port = https_port;
    settings.smtp_port = smtp_port;
    settings.connect_timeout = Duration::from_secs(2);
    settings.io_timeout = Duration::from_secs(2);
    settings
}

/// A port on 127.0.0.1 nobody listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

async fn deliver(
    transport: &NetworkTransport,
    domain: &str,
    mail_from: &str,
    recipients: &[&str],
    message: &Bytes,
) -> Vec<RecipientOutcome> {
    let recipients: Vec<String> = recipients.iter().map(|r| r.to_string()).collect();
    within(transport.hand_over(Handover {
        domain,
        mail_from,
        recipients: &recipients,
        message,
    }))
    .await
}

fn delivered(text: &str) -> RecipientOutcome {
    RecipientOutcome::Delivered(Reply::new(250, text))
}

/// One `/mxdeliv` request as the test server saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path: String,
    host: Option<String>,
    from: Vec<String>,
    to: Vec<String>,
    body: Vec<u8>,
}

/// An HTTPS server on 127.0.0.1 with a self-signed certificate for `name`, answering
/// every request with `status` and `body`; it records requests and counts connections.
struct MxDeliv {
    port: u16,
    cert: CertificateDer<'static>,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

async fn mxdeliv_server(name: &str, status: u16, body: &'static str) -> MxDeliv {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert = cert.der().clone();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (count, record) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        async move {
                            let values = |name: &str| -> Vec<String> {
                                req.headers()
                                    .get_all(name)
                                    .iter()
                                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                                    .collect()
                            };
                            let mut recorded = Recorded {
                                method: req.method().to_string(),
                                path: req.uri().path().to_string(),
                                host: values("host").into_iter().next(),
                                from: values("x-mail-from"),
                                to: values("x-mail-to"),
                                body: Vec::new(),
                            };
                            recorded.body = req.into_body().collect().await?.to_bytes().to_vec();
                            record.lock().unwrap().push(recorded);
                            let response = hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(body.as_bytes())))
                                .unwrap();
                            Ok::<_, hyper::Error>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    MxDeliv {
        port,
        cert,
        connections,
        requests,
    }
}

impl MxDeliv {
    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// An `/mxdeliv` server for `_https.test` answering `status` and `body`, and a
/// transport that finds it there (and no SMTP server).
async fn https_only(status: u16, body: &'static str) -> (MxDeliv, NetworkTransport) {
    let server = mxdeliv_server("_https.test", status, body).await;
    let transport = NetworkTransport::new(settings(server.port, closed_port().await), zone());
    (server, transport)
}

/// The one reply of a single deferred recipient, which must be a `421`.
fn deferred_421(outcomes: &[RecipientOutcome]) -> &Reply {
    match outcomes {
        [RecipientOutcome::Deferred(reply)] if reply.code == 421 => reply,
        other => panic!("expected one 421 deferral: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_delivery_posts_the_envelope_in_headers_and_the_message_as_body() {
    let (server, transport) = https_only(200, "250 OK").await;
    let rcpts = ["a@_https.test", "b@_https.test"];
    let msg = message(SENDER, rcpts[0]);
    let outcomes = deliver(&transport, "_https.test", SENDER, &rcpts, &msg).await;
    assert_eq!(outcomes, vec![delivered("OK (HTTPS)"); 2]);
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/mxdeliv"));
    assert_eq!(r.host.as_deref(), Some("_https.test"));
    assert_eq!(r.from, vec![SENDER.to_string()]);
    assert_eq!(r.to, rcpts.map(String::from).to_vec());
    assert_eq!(r.body, msg.to_vec());

    // The null sender: no X-MAIL-FROM at all.
    let outcomes = deliver(&transport, "_https.test", "", &rcpts[..1], &msg).await;
    assert_eq!(outcomes, vec![delivered("OK (HTTPS)")]);
    let requests = server.requests();
    assert!(requests[1].from.is_empty(), "{:?}", requests[1]);

    // An address literal is connected to directly.
    let outcomes = deliver(&transport, "[127.0.0.1]", SENDER, &["c@[127.0.0.1]"], &msg).await;
    assert_eq!(outcomes, vec![delivered("OK (HTTPS)")]);
    assert_eq!(server.requests()[2].host.as_deref(), Some("127.0.0.1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_exchanger_is_skipped_for_the_next_one() {
    let (server, transport) = https_only(200, "250 OK").await;
    let msg = message(SENDER, "a@mx.test");
    let outcomes = deliver(&transport, "mx.test", SENDER, &["a@mx.test"], &msg).await;
    assert_eq!(outcomes, vec![delivered("OK (HTTPS)")]);
    assert_eq!(server.requests()[0].host.as_deref(), Some("_https.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_reply_over_https_is_final_for_every_recipient() {
    let (_server, transport) = https_only(400, "554 5.7.1 No DKIM signature found").await;
    let rcpts = ["a@_https.test", "b@_https.test"];
    let msg = message(SENDER, rcpts[0]);
    let outcomes = deliver(&transport, "_https.test", SENDER, &rcpts, &msg).await;
    let refusal = Reply::new(554, "5.7.1 No DKIM signature found");
    assert_eq!(outcomes, vec![RecipientOutcome::Failed(refusal); 2]);
}

/// A relay on free ports with the `_chat.localhost` domain and the account `alice0001`.
async fn receiving_relay() -> support::Running {
    let relay = support::start(support::config()).await;
    relay
        .relay
        .login(&format!("alice0001@{}", support::DOMAIN), PASSWORD, true)
        .await
        .unwrap()
        .expect("first login creates the account");
    relay
}

/// The messages in `alice0001`'s INBOX.
async fn alice_inbox(relay: &support::Running) -> Vec<String> {
    let account = Address::parse(&format!("alice0001@{}", support::DOMAIN)).unwrap();
    let store = relay.relay.store();
    let mut texts = Vec::new();
    for meta in store.list_messages(&account, INBOX, None).await.unwrap() {
        let bytes = store.read_message(&account, INBOX, meta.uid).await.unwrap();
        texts.push(String::from_utf8_lossy(&bytes).into_owned());
    }
    texts
}

/// A TCP proxy to `to` that counts the connections it accepts.
async fn counting_proxy(to: SocketAddr) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (port, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_https_the_message_goes_over_smtp_into_the_inbox() {
    let relay = receiving_relay().await;
    let transport = NetworkTransport::new(
        settings(closed_port().await, relay.ports.smtp.port()),
        zone(),
    );
    let alice = format!("alice0001@{}", support::DOMAIN);
    let msg = message(SENDER, &alice);
    let outcomes = deliver(&transport, support::DOMAIN, SENDER, &[&alice], &msg).await;
    assert_eq!(outcomes, vec![delivered("OK (SMTP)")]);
    let inbox = alice_inbox(&relay).await;
    assert_eq!(inbox.len(), 1);
    assert!(
        inbox[0].contains("-----BEGIN PGP MESSAGE-----"),
        "{}",
        inbox[0]
    );
    drop(transport);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_smtp_delivery_https_is_skipped_and_the_connection_reused() {
    let relay = receiving_relay().await;
    let https = mxdeliv_server("_https.test", 404, "not here").await;
    let (smtp_port, smtp_connections) = counting_proxy(relay.ports.smtp).await;
    let transport = NetworkTransport::new(settings(https.port, smtp_port), zone());
    let alice = format!("alice0001@{}", support::DOMAIN);
    for round in 1..=2 {
        let msg = message(SENDER, &alice);
        let outcomes = deliver(&transport, support::DOMAIN, SENDER, &[&alice], &msg).await;
        assert_eq!(outcomes, vec![delivered("OK (SMTP)")], "round {round}");
        assert_eq!(alice_inbox(&relay).await.len(), round);
        // HTTPS was tried once (the 404), then the host was SMTP-only.
        assert_eq!(https.connections.load(Ordering::SeqCst), 1, "round {round}");
        assert_eq!(https.requests().len(), 1);
        // One SMTP connection carried both messages.
        assert_eq!(smtp_connections.load(Ordering::SeqCst), 1, "round {round}");
    }
    drop(transport);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_recipient_fails_while_the_other_is_delivered() {
    let relay = receiving_relay().await;
    let transport = NetworkTransport::new(
        settings(closed_port().await, relay.ports.smtp.port()),
        zone(),
    );
    let alice = format!("alice0001@{}", support::DOMAIN);
    let nobody = format!("nobody001@{}", support::DOMAIN);
    let msg = message(SENDER, &alice);
    let outcomes = deliver(
        &transport,
        support::DOMAIN,
        SENDER,
        &[&nobody, &alice],
        &msg,
    )
    .await;
    assert_eq!(outcomes.len(), 2);
    match &outcomes[0] {
        RecipientOutcome::Failed(reply) => assert_eq!(reply.code, 550, "{reply:?}"),
        other => panic!("unknown recipient: {other:?}"),
    }
    assert_eq!(outcomes[1], delivered("OK (SMTP)"));
    assert_eq!(alice_inbox(&relay).await.len(), 1);
    drop(transport);
    relay.stop().await;
}

/// A resolver that cannot answer now.
struct Unreachable;

#[async_trait::async_trait]
impl Resolver for Unreachable {
    async fn lookup(&self, name: &str, _: RecordType) -> Result<Answer, TemporaryFailure> {
        Err(TemporaryFailure(format!("{name}: SERVFAIL")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_give_the_reference_replies() {
    let transport =
        NetworkTransport::new(settings(closed_port().await, closed_port().await), zone());
    let msg = message(SENDER, "a@nullmx.test");
    assert_eq!(
        deliver(
            &transport,
            "nullmx.test",
            SENDER,
            &["a@nullmx.test", "b@nullmx.test"],
            &msg
        )
        .await,
        vec![
            RecipientOutcome::Failed(Reply::new(
                556,
                "5.1.10 Permanent failure: Recipient address has null MX"
            ));
            2
        ]
    );
    assert_eq!(
        deliver(&transport, "nx.test", SENDER, &["a@nx.test"], &msg).await,
        vec![RecipientOutcome::Failed(Reply::new(
            512,
            "Domain nx.test does not exist"
        ))]
    );
    let failing = NetworkTransport::new(settings(1, 1), Arc::new(Unreachable));
    assert_eq!(
        deliver(&failing, "example.org", SENDER, &["a@example.org"], &msg).await,
        vec![RecipientOutcome::Deferred(Reply::new(
            421,
            "DNS resolution failed for example.org"
        ))]
    );
    // Nobody listening anywhere: deferred, naming the last exchanger.
    let outcomes = deliver(&transport, "_https.test", SENDER, &["a@_https.test"], &msg).await;
    let reply = deferred_421(&outcomes);
    let expected = "Failed to connect to any mail server; last attempt to _https.test: ";
    assert!(reply.text.starts_with(expected), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_of_named_hosts_are_verified() {
    // The relay's certificate is for `_chat.localhost`: STARTTLS to it as
    // `verified.test` fails verification too, so both ways end in a TLS error.
    let relay = receiving_relay().await;
    let https = mxdeliv_server("verified.test", 200, "250 OK").await;
    let msg = message(SENDER, "a@verified.test");

    let untrusting = NetworkTransport::new(settings(https.port, relay.ports.smtp.port()), zone());
    let outcomes = deliver(
        &untrusting,
        "verified.test",
        SENDER,
        &["a@verified.test"],
        &msg,
    )
    .await;
    let reply = deferred_421(&outcomes);
    assert!(
        reply.text.contains("last attempt to verified.test: TLS"),
        "{reply:?}"
    );
    assert!(reply.text.contains("certificate"), "{reply:?}");
    assert!(https.requests().is_empty());

    let mut trusting = settings(https.port, relay.ports.smtp.port());
    trusting.extra_roots = vec![https.cert.clone()];
    let trusting = NetworkTransport::new(trusting, zone());
    let outcomes = deliver(
        &trusting,
        "verified.test",
        SENDER,
        &["a@verified.test"],
        &msg,
    )
    .await;
    assert_eq!(outcomes, vec![delivered("OK (HTTPS)")]);
    assert_eq!(https.requests().len(), 1);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_is_deferred_within_the_timeouts() {
    // Accepts connections and holds them without a byte.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let mut silent = settings(port, port);
    silent.io_timeout = Duration::from_millis(500);
    let transport = NetworkTransport::new(silent, zone());
    let msg = message(SENDER, "a@_https.test");
    // `deliver` fails the test after 10 s; the timeouts end it after about 1 s.
    let outcomes = deliver(&transport, "_https.test", SENDER, &["a@_https.test"], &msg).await;
    let reply = deferred_421(&outcomes);
    assert!(reply.text.contains("_https.test: timeout"), "{reply:?}");
}
