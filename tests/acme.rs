//! ACME certificates against Pebble, the ACME test CA (Debian package `pebble`), on
//! loopback: the relay starts with its self-signed certificate, gets one issued over
//! TLS-ALPN-01 on its HTTPS port, serves it on 465, 993 and 443, renews it while an
//! earlier connection stays up, and reuses it after a restart.
//!
//! With the postgres feature, two nodes of one domain sharing a database: one orders,
//! the CA validates through the other, and both serve the certificate.
//!
//! Pebble resolves the relay's domain through a small DNS responder in this test that
//! answers every A query with 127.0.0.1. Skipped, with a message, when `pebble` is not
//! installed.
#![cfg(feature = "tokio")]

mod support;

#[cfg(feature = "postgres")]
#[path = "../chatmail-core/tests/support/postgres.rs"]
mod pg;

use chatmail::core::config::Config;
use chatmail::tokio_driver::acme::AcmeOptions;
use chatmail::tokio_driver::Server;
use hickory_resolver::proto::op::{Message, MessageType};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use support::Peer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;

const DOMAIN: &str = "chat.example.org";

/// Fails a hang, never measures speed.
const DEADLINE: Duration = Duration::from_secs(120);

fn pebble_binary() -> Option<PathBuf> {
    ["/usr/bin/pebble", "/usr/local/bin/pebble"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A Pebble process, stopped by its PID when dropped.
struct Pebble {
    child: Child,
    /// The directory URL.
    directory: String,
    /// The management interface (roots of the issuing chain).
    management: SocketAddr,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA and, signed by it, the certificate of Pebble's API for 127.0.0.1; the CA is
/// the extra root of the relay's ACME client.
fn api_certificate(dir: &Path) -> CertificateDer<'static> {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "test CA for pebble's API");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("api.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("api.key"), key.serialize_pem()).unwrap();
    ca_cert.der().clone()
}

/// Answers every A query with 127.0.0.1 and every other query with no data, until the
/// task is dropped.
async fn dns_responder(socket: UdpSocket) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
        answer.metadata.recursion_desired = query.metadata.recursion_desired;
        answer.metadata.recursion_available = true;
        answer.metadata.authoritative = true;
        for q in &query.queries {
            answer.add_query(q.clone());
            if q.query_type() == RecordType::A {
                answer.add_answer(Record::from_rdata(
                    q.name().clone(),
                    60,
                    RData::A(A(Ipv4Addr::LOCALHOST)),
                ));
            }
        }
        debug_assert_eq!(answer.metadata.message_type, MessageType::Response);
        if let Ok(bytes) = answer.to_vec() {
            let _ = socket.send_to(&bytes, from).await;
        }
    }
}

/// Starts Pebble validating TLS-ALPN-01 on `tls_port`, resolving through `dns`.
async fn start_pebble(binary: &Path, dir: &Path, tls_port: u16, dns: SocketAddr) -> Pebble {
    let (api, management) = (free_port(), free_port());
    let config = serde_json::json!({
        "pebble": {
            "listenAddress": format!("127.0.0.1:{api}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.join("api.pem"),
            "privateKey": dir.join("api.key"),
            "httpPort": free_port(),
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }
    });
    std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
    // Pebble's log, printed when the test fails (see `until`).
    let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
    let child = Command::new(binary)
        .arg("-config")
        .arg(dir.join("pebble.json"))
        .arg("-dnsserver")
        .arg(dns.to_string())
        // No random waits before validation, no random nonce rejections.
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        // Every order validates anew, renewals included.
        .env("PEBBLE_AUTHZREUSE", "0")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start pebble");
    let pebble = Pebble {
        child,
        directory: format!("https://127.0.0.1:{api}/dir"),
        management: SocketAddr::from(([127, 0, 0, 1], management)),
    };
    let up = async {
        while TcpStream::connect(("127.0.0.1", api)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(DEADLINE, up)
        .await
        .expect("pebble listens");
    pebble
}

/// GETs `path` from Pebble's management interface; the body.
async fn management_get(pebble: &Pebble, ca: &CertificateDer<'static>, path: &str) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let connector = TlsConnector::from(Arc::new(client_config(roots)));
    let tcp = TcpStream::connect(pebble.management).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("management TLS");
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP head");
    let head = String::from_utf8_lossy(&response[..split]);
    assert!(
        head.starts_with("HTTP/1.") && head[8..].starts_with(" 200"),
        "{path}: {head}"
    );
    response[split + 4..].to_vec()
}

fn client_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A TLS connection to `addr` for [`DOMAIN`] that only completes if the relay's chain
/// leads to Pebble's root; the certificate the relay showed.
async fn verified(
    root: &CertificateDer<'static>,
    addr: SocketAddr,
) -> (
    tokio_rustls::client::TlsStream<TcpStream>,
    CertificateDer<'static>,
) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).unwrap();
    let connector = TlsConnector::from(Arc::new(client_config(roots)));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from(DOMAIN).unwrap(), tcp)
        .await
        .unwrap_or_else(|e| panic!("{addr}: not a Pebble-issued chain: {e}"));
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    (tls, leaf)
}

fn relay_config(pebble: &Pebble) -> Config {
    let mut c = support::config_for(DOMAIN);
    c.acme_email = "postmaster@chat.example.org".into();
    c.acme_directory = pebble.directory.clone();
    c
}

/// Polls until `done` holds; past the deadline, fails with Pebble's log in `dir`.
async fn until(dir: &Path, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(DEADLINE, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    if waited.await.is_err() {
        let log = std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default();
        panic!("not in time; pebble's log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_gets_renews_and_reuses_a_pebble_certificate() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let Some(binary) = pebble_binary() else {
        println!("skipped: pebble is not installed (apt-get install pebble)");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let api_ca = api_certificate(work.path());
    let dns_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dns = dns_socket.local_addr().unwrap();
    let dns_task = tokio::spawn(dns_responder(dns_socket));

    // The relay binds first: Pebble validates on the relay's HTTPS port. The directory
    // URL is only read when the ACME task starts, in run().
    let https_port = free_port();
    let pebble = start_pebble(&binary, work.path(), https_port, dns).await;
    let mut config = relay_config(&pebble);
    config.https_port = https_port;
    config.submissions_port = free_port();
    config.imaps_port = free_port();
    let relay = support::memory_relay(config);
    // Renew as soon as allowed (every 3 s): the renewal knob of the tests.
    let options = AcmeOptions {
        extra_roots: vec![api_ca.clone()],
        renew_remaining: 1.0,
        retry_min: Duration::from_secs(3),
        ..AcmeOptions::default()
    };
    let server = Server::bind(relay.clone(), data.path())
        .await
        .expect("bind")
        .with_acme_options(options.clone());
    assert!(server.self_signed(), "no certificate before the order");
    assert!(!data.path().join("acme/cert.pem").exists());
    let ports = server.ports();
    let certs = server.certificates();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));

    until(work.path(), || !certs.self_signed()).await;
    let root_pem = management_get(&pebble, &api_ca, "/roots/0").await;
    let root = rustls_pemfile::certs(&mut root_pem.as_slice())
        .next()
        .expect("Pebble's root")
        .unwrap();
    for addr in [ports.submissions, ports.imaps, ports.https] {
        verified(&root, addr).await;
    }
    // The key file is the owner's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.path().join("acme/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    // A connection opened now outlives the renewal.
    let (tls, before) = verified(&root, ports.imaps).await;
    let mut imap = Peer::new(tls);
    imap.until("* OK").await;
    until(work.path(), || certs.current().cert[0] != before).await;
    let (_, after) = verified(&root, ports.imaps).await;
    assert_ne!(before, after, "new connections get the renewed certificate");
    imap.send(b"a1 NOOP\r\n").await;
    imap.until("a1 OK").await;

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(40), run)
        .await
        .expect("run() returns")
        .unwrap();

    // A restart serves the stored certificate at once.
    let server = Server::bind_on_free_ports(relay, data.path())
        .await
        .expect("bind again");
    assert!(!server.self_signed(), "the stored certificate is reused");
    dns_task.abort();
    drop(pebble);
}

/// Two nodes of one domain share their ACME state in PostgreSQL. Node A holds the lease
/// and orders; Pebble validates on node B's HTTPS port, so the order only succeeds if B
/// answers the challenge A published in the database. Then both serve the issued
/// certificate, and no challenge is left behind.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_certificate_and_either_answers_the_challenge() {
    use chatmail::core::store::{PostgresOptions, PostgresStore};
    use chatmail::tokio_driver::acme::SharedAcme;
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let Some(binary) = pebble_binary() else {
        println!("skipped: pebble is not installed (apt-get install pebble)");
        return;
    };
    let Some(cluster) = pg::Cluster::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let api_ca = api_certificate(work.path());
    let dns_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dns = dns_socket.local_addr().unwrap();
    let dns_task = tokio::spawn(dns_responder(dns_socket));
    let https_b = free_port();
    let pebble = start_pebble(&binary, work.path(), https_b, dns).await;

    let store = |name: &'static str| {
        let url = cluster.url(name);
        async move {
            Arc::new(
                PostgresStore::open(&url, PostgresOptions::default())
                    .await
                    .expect("open the store"),
            )
        }
    };
    let (store_a, store_b) = (store("a").await, store("b").await);
    // A orders: it holds the lease before either node starts.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(store_a
        .take_domain_lease("acme:lease", "node-a", now_ms, now_ms + 600_000)
        .await
        .unwrap());

    let mut nodes = Vec::new();
    for (name, secrets, https_port) in [
        ("node-a", store_a.clone(), free_port()),
        ("node-b", store_b.clone(), https_b),
    ] {
        let data = tempfile::tempdir().unwrap();
        let mut config = relay_config(&pebble);
        config.https_port = https_port;
        config.imaps_port = free_port();
        let options = AcmeOptions {
            extra_roots: vec![api_ca.clone()],
            shared: Some(SharedAcme {
                secrets,
                node: name.to_string(),
            }),
            ..AcmeOptions::default()
        };
        let server = Server::bind(support::memory_relay(config), data.path())
            .await
            .expect("bind")
            .with_acme_options(options);
        let (ports, certs) = (server.ports(), server.certificates());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(server.run(async {
            let _ = stop_rx.await;
        }));
        nodes.push((data, ports, certs, stop_tx, run));
    }
    for (_, _, certs, _, _) in &nodes {
        until(work.path(), || !certs.self_signed()).await;
    }
    let root_pem = management_get(&pebble, &api_ca, "/roots/0").await;
    let root = rustls_pemfile::certs(&mut root_pem.as_slice())
        .next()
        .expect("Pebble's root")
        .unwrap();
    let mut leaves = Vec::new();
    for (_, ports, _, _, _) in &nodes {
        leaves.push(verified(&root, ports.https).await.1);
        verified(&root, ports.imaps).await;
    }
    assert_eq!(leaves[0], leaves[1], "one certificate for the domain");
    assert!(store_b
        .domain_secrets_with_prefix("acme:challenge:")
        .await
        .unwrap()
        .is_empty());
    // Neither node wrote the certificate or the account to its data directory.
    for (data, _, _, _, _) in &nodes {
        assert!(!data.path().join("acme/cert.pem").exists());
    }
    for (_, _, _, stop, run) in nodes {
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(40), run)
            .await
            .expect("run() returns")
            .unwrap();
    }
    dns_task.abort();
    drop(pebble);
}
