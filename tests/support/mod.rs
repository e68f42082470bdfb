//! Shared by the driver tests on loopback: a relay on free ports with the memory
//! backend, a TLS client that trusts exactly the relay's self-signed certificate, line
//! I/O with bounded waits, and one round of a normal client (log in, send an encrypted
//! message to itself, see it arrive in IDLE, fetch it).
#![allow(dead_code)]

use chatmail::core::account::FixedSystemLimits;
use chatmail::core::config::Config;
use chatmail::tokio_driver::{Ports, Server};
use chatmail::Relay;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub const DOMAIN: &str = "_chat.localhost";

/// The relay's defaults; [`start`] binds every listener on a free port.
pub fn config() -> Config {
    config_for(DOMAIN)
}

/// As [`config`], for `domain`.
pub fn config_for(domain: &str) -> Config {
    let mut c = Config::with_domain(domain);
    c.smtp_port = 0;
    c.submission_port = 0;
    c.submissions_port = 0;
    c.imap_port = 0;
    c.imaps_port = 0;
    c.https_port = 0;
    c
}

/// A relay serving on loopback until [`Running::stop`].
pub struct Running {
    pub ports: Ports,
    pub tls: TlsConnector,
    pub relay: Arc<Relay>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _data: tempfile::TempDir,
}

/// A relay with the memory backend and machine readings that always allow creation.
pub fn memory_relay(config: Config) -> Arc<Relay> {
    Arc::new(
        Relay::builder(config)
            .memory()
            .system_limits(Arc::new(FixedSystemLimits::plenty()))
            // Unsigned test mail on port 25; DKIM has tests of its own.
            .skip_dkim_verification()
            .build()
            .expect("relay"),
    )
}

pub async fn start(config: Config) -> Running {
    start_with(memory_relay(config), |server| server).await
}

/// Serves `relay` on free ports, the server first passed through `setup` (to plug in
/// push notifications, a transport ...).
pub async fn start_with(relay: Arc<Relay>, setup: impl FnOnce(Server) -> Server) -> Running {
    let data = tempfile::tempdir().expect("temp dir");
    let server = Server::bind_on_free_ports(relay.clone(), data.path())
        .await
        .expect("bind");
    let server = setup(server);
    let ports = server.ports();
    let cert = relay_certificate(data.path());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));
    Running {
        ports,
        tls: connector(cert),
        relay,
        stop: Some(stop_tx),
        task,
        _data: data,
    }
}

impl Running {
    /// Shuts the relay down and waits for `run` to return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(40), &mut self.task)
            .await
            .expect("run() returns after shutdown")
            .expect("run() does not panic");
    }

    /// A TLS connection to an implicit-TLS port.
    pub async fn tls(&self, addr: SocketAddr) -> Peer<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        self.tls_over(tcp).await
    }

    /// TLS over an established connection (implicit TLS, or after STARTTLS).
    pub async fn tls_over(&self, tcp: TcpStream) -> Peer<TlsStream<TcpStream>> {
        let name = ServerName::IpAddress(tcp.peer_addr().expect("peer").ip().into());
        let tls = within(self.tls.connect(name, tcp))
            .await
            .expect("handshake");
        Peer::new(tls)
    }
}

/// Trusts exactly one certificate (the relay's self-signed one), signatures checked.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("not the relay's certificate".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS 1.3 client configuration that trusts exactly `cert`.
pub fn client_tls_config(cert: CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { cert, provider }))
        .with_no_client_auth();
    Arc::new(config)
}

/// The self-signed certificate the relay created in `data_dir`.
pub fn relay_certificate(data_dir: &std::path::Path) -> CertificateDer<'static> {
    let pem = std::fs::read(data_dir.join("tls/cert.pem")).expect("cert.pem");
    let cert = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .expect("a certificate")
        .expect("PEM");
    cert
}

fn connector(cert: CertificateDer<'static>) -> TlsConnector {
    TlsConnector::from(client_tls_config(cert))
}

/// Connects to `to` from the loopback address `from` (any of 127.0.0.0/8 on Linux), so
/// that per-IP limits see different clients.
pub async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    assert!(from.is_loopback() && to.ip().is_loopback());
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// A connection whose receive buffer is small and fixed, for a client that stops
/// reading: the relay's writes block as soon as its own send buffer is full.
pub async fn connect_small_window(from: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    socket.connect(to).await.expect("connect")
}

/// Waits at most 10 s: a test never hangs on a server that does not answer.
pub async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("an answer within 10 s")
}

/// Lines from `next_line` (`""` at the end of the stream) up to and including the first
/// that starts with `prefix`; the stream must not end before.
pub async fn lines_until(mut next_line: impl AsyncFnMut() -> String, prefix: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let l = next_line().await;
        assert!(!l.is_empty(), "stream ended before {prefix:?}: {lines:?}");
        let done = l.starts_with(prefix);
        lines.push(l);
        if done {
            return lines;
        }
    }
}

/// A line-oriented client over any stream.
pub struct Peer<S> {
    pub io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Peer<S> {
    pub fn new(stream: S) -> Peer<S> {
        Peer {
            io: BufReader::new(stream),
        }
    }

    /// The next line, `""` at the end of the stream.
    pub async fn line(&mut self) -> String {
        let mut l = String::new();
        let _ = within(self.io.read_line(&mut l)).await;
        l
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        let w = self.io.get_mut();
        within(async {
            w.write_all(bytes).await.expect("write");
            w.flush().await.expect("flush");
        })
        .await
    }

    /// Reads lines up to and including the first that starts with `prefix`.
    pub async fn until(&mut self, prefix: &str) -> Vec<String> {
        lines_until(async || self.line().await, prefix).await
    }

    /// Reads until the peer closes; returns what came. Bounded by 10 s.
    pub async fn rest(&mut self) -> String {
        let mut rest = Vec::new();
        let _ = within(self.io.read_to_end(&mut rest)).await;
        String::from_utf8_lossy(&rest).into_owned()
    }
}

/// The `encrypted.eml` fixture from `from` to `to`, CRLF, as a message: the policy
/// accepts it (a real PGP/MIME message). Each call gives it a `Message-ID` of its own,
/// as a client does: the relay stores a recent message's second copy to a recipient
/// only once (`src/relay/duplicates.rs`).
pub fn encrypted_message(from: &str, to: &str) -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/fixtures/encrypted.eml"
    );
    let text = std::fs::read_to_string(path).expect("fixture");
    let text = with_own_message_id(&text)
        .replace("{from_addr}", from)
        .replace("{to_addr}", to)
        .replace("{subject}", "[...]")
        .replace("\r\n", "\n");
    let mut out = String::new();
    for line in text.trim_end().lines() {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// `message` with the fixtures' `Message-ID` replaced by one no other call gives.
pub fn with_own_message_id(message: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("<Mr.test{}.{n}@c2.testrun.org>", std::process::id());
    let replaced = message.replace("<Mr.UVyJWZmkCKM.hGzNc6glBE_@c2.testrun.org>", &id);
    assert_ne!(replaced, message, "the fixture's Message-ID is gone");
    replaced
}

/// [`encrypted_message`] as DATA: dot-stuffed, with the terminating `.` line.
pub fn encrypted_data(from: &str, to: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in encrypted_message(from, to).lines() {
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// `AUTH PLAIN` initial response.
pub fn plain(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// One round of a normal client on the implicit-TLS ports: IMAP log in, SELECT, IDLE;
/// submission log in and send an encrypted message to itself; IDLE hears of it; FETCH
/// it; both log out. Returns how long the round took.
pub async fn normal_round(relay: &Running, user: &str, password: &str) -> Duration {
    let start = Instant::now();
    let mut imap = relay.tls(relay.ports.imaps).await;
    assert!(imap.line().await.starts_with("* OK"));
    imap.send(format!("a LOGIN {user} {password}\r\n").as_bytes())
        .await;
    imap.until("a OK").await;
    imap.send(b"b SELECT INBOX\r\n").await;
    let select = imap.until("b OK").await;
    let exists = select
        .iter()
        .find_map(|l| {
            l.strip_prefix("* ")?
                .strip_suffix(" EXISTS\r\n")?
                .parse::<u32>()
                .ok()
        })
        .expect("EXISTS in SELECT");
    imap.send(b"c IDLE\r\n").await;
    imap.until("+ ").await;

    submit_to_self(relay, user, password).await;

    let announced = format!("* {} EXISTS", exists + 1);
    imap.until(&announced).await;
    imap.send(b"DONE\r\n").await;
    imap.until("c OK").await;
    imap.send(format!("d FETCH {} BODY.PEEK[]\r\n", exists + 1).as_bytes())
        .await;
    let fetched = imap.until("d OK").await.concat();
    assert!(fetched.contains("-----BEGIN PGP MESSAGE-----"), "{fetched}");
    imap.send(b"e LOGOUT\r\n").await;
    imap.until("e OK").await;
    start.elapsed()
}

/// Submits the encrypted fixture from `user` to `user` on the submissions port (465).
pub async fn submit_to_self(relay: &Running, user: &str, password: &str) {
    let mut smtp = relay.tls(relay.ports.submissions).await;
    smtp.until("220 ").await;
    smtp.send(b"EHLO client.example\r\n").await;
    smtp.until("250 ").await;
    smtp.send(format!("AUTH PLAIN {}\r\n", plain(user, password)).as_bytes())
        .await;
    assert!(smtp.line().await.starts_with("235 "));
    smtp.send(format!("MAIL FROM:<{user}>\r\nRCPT TO:<{user}>\r\nDATA\r\n").as_bytes())
        .await;
    assert!(smtp.line().await.starts_with("250 "));
    assert!(smtp.line().await.starts_with("250 "));
    assert!(smtp.line().await.starts_with("354 "));
    smtp.send(&encrypted_data(user, user)).await;
    let accepted = smtp.line().await;
    assert!(accepted.starts_with("250 "), "{accepted}");
    smtp.send(b"QUIT\r\n").await;
}
