//! The driver's TLS session (`chatmail::tokio_driver::tls_session::TlsSession`, on
//! rustls' unbuffered API) on a loopback socket pair. Input: byte 0 is the mode, byte 1
//! the size of the pieces the client writes (× 7), the rest the client's bytes.
//! Mode bit 0 clear: the rest goes raw on the wire (a ClientHello seed gets the fuzzer
//! into the handshake); the handshake must fail or the peer end, never panic or hang.
//! Bit 0 set: a real rustls client completes the handshake and sends the rest as
//! application data, ending with `close_notify` when bit 1 is set, else with a bare FIN,
//! over TLS 1.2 when bit 2 is set (its handshake ends with the server's flight); the
//! **oracle**: the server reads exactly the bytes sent. Every run is bounded by 5 s,
//! or it is a finding. `keys/tls-localhost.*`: a self-signed P-256 pair for `localhost`,
//! made for this target with `openssl req -x509` (a test key, no secret).
#![no_main]

use chatmail::tokio_driver::tls_session::TlsSession;
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CERT: &[u8] = include_bytes!("../keys/tls-localhost.cert.pem");
const KEY: &[u8] = include_bytes!("../keys/tls-localhost.key.pem");

struct Setup {
    runtime: tokio::runtime::Runtime,
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    client_tls12: Arc<rustls::ClientConfig>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = CertificateDer::from_pem_slice(CERT).expect("certificate");
        let key = PrivateKeyDer::from_pem_slice(KEY).expect("key");
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).expect("root");
        let client = |versions: &[&'static rustls::SupportedProtocolVersion]| {
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)
                .expect("versions")
                .with_root_certificates(roots.clone())
                .with_no_client_auth()
        };
        Setup {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            server: Arc::new(server),
            client: Arc::new(client(rustls::DEFAULT_VERSIONS)),
            client_tls12: Arc::new(client(&[&rustls::version::TLS12])),
        }
    })
}

/// The client: raw bytes, or a real TLS client sending `data` as application data.
/// `Some(())` when the real client got its bytes out.
async fn client(tcp: TcpStream, mode: u8, piece: usize, data: &[u8]) -> Option<()> {
    if mode & 1 == 0 {
        let mut tcp = tcp;
        for chunk in data.chunks(piece) {
            if tcp.write_all(chunk).await.is_err() {
                break;
            }
        }
        let _ = tcp.shutdown().await;
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        return None;
    }
    let name = ServerName::try_from("localhost").ok()?;
    let config = if mode & 4 != 0 {
        &setup().client_tls12
    } else {
        &setup().client
    };
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    let mut tls = connector.connect(name, tcp).await.ok()?;
    for chunk in data.chunks(piece) {
        tls.write_all(chunk).await.ok()?;
        tls.flush().await.ok()?;
    }
    if mode & 2 != 0 {
        tls.shutdown().await.ok()?;
    }
    Some(())
}

/// The server: the handshake, then everything until the end of the stream.
async fn server(listener: TcpListener) -> Option<Vec<u8>> {
    let (tcp, _) = listener.accept().await.ok()?;
    let mut session = TlsSession::accept(tcp, setup().server.clone()).await.ok()?;
    let mut received = Vec::new();
    session.read_to_end(&mut received).await.ok()?;
    let _ = session.shutdown().await;
    Some(received)
}

fuzz_target!(|input: &[u8]| {
    let [mode, split, data @ ..] = input else {
        return;
    };
    let piece = usize::from(*split).max(1) * 7;
    let setup = setup();
    setup.runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let run = async {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            tokio::join!(client(tcp, *mode, piece, data), server(listener))
        };
        let (sent, received) = tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("the session ends within 5 s");
        if sent.is_some() {
            assert_eq!(
                received.as_deref(),
                Some(data),
                "bytes sent are the bytes read"
            );
        }
    });
});
