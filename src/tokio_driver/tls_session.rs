//! TLS of a client connection (IMAP, SMTP) on rustls' unbuffered API: the session holds
//! buffers only while bytes are in flight.
//!
//! rustls' buffered `ServerConnection` keeps a 4 KiB receive buffer for the connection's
//! whole life (its deframer grows to a 4 KiB read before every socket read), and
//! `tokio-rustls` adds its own state; an idling IMAP client held 17 KiB in all
//! (BENCHMARKS.md, issue 14). Here the received bytes live in a `Vec` allocated when the
//! socket is readable and freed once every record in it is processed, and what is to be
//! sent lives in a `Vec` freed once written: an idle session keeps only the TLS keys and
//! state.
//!
//! The drive loop follows rustls' `unbuffered` module docs: call
//! `process_tls_records` on the received bytes, act on the state it returns (records to
//! encode, plaintext to take, more input needed), discard what it consumed, repeat.
//! Errors are sticky, as in rustls' buffered connection, and the alert rustls queues for
//! the peer is still sent, without waiting for a peer that does not read.

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};
use rustls::ServerConfig;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
#[cfg(test)]
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes read from the socket at a time: a full TLS record with its header and the
/// largest expansion.
const READ_CHUNK: usize = 16 * 1024 + 2048 + 5;

/// Most received bytes held unprocessed: a handshake message may span records up to 64
/// KiB (rustls' own limit in the buffered API); anything more is a peer flooding us.
const MAX_INCOMING: usize = 64 * 1024 + READ_CHUNK;

/// Most plaintext taken per write: one TLS record.
const MAX_RECORD_PLAINTEXT: usize = 16 * 1024;

/// Encoded bytes waiting to be written past which a write first waits for the socket.
const MAX_OUTGOING: usize = 64 * 1024;

/// A TLS server session over TCP, on rustls' unbuffered API: [`TlsSession::accept`] runs
/// the handshake, then it reads and writes plaintext as [`AsyncRead`] and [`AsyncWrite`]
/// (`poll_shutdown` sends `close_notify`). The driver's IMAP and SMTP connections use it;
/// public for the fuzz target `tls_session`.
pub struct TlsSession {
    tcp: TcpStream,
    tls: UnbufferedServerConnection,
    /// Received TLS bytes not yet processed; no allocation while there are none.
    incoming: Vec<u8>,
    /// TLS bytes to send; `outgoing[sent..]` not yet written. Freed once all are.
    outgoing: Vec<u8>,
    sent: usize,
    /// Decrypted bytes not yet read; `plaintext[taken..]` left. Freed once all are.
    plaintext: Vec<u8>,
    taken: usize,
    /// The peer sent `close_notify` or closed its side: reads give end of stream.
    read_closed: bool,
    /// Our `close_notify` is queued: no more writes.
    write_closed: bool,
    /// The first TLS error: every later call fails with it.
    failed: Option<rustls::Error>,
}

/// What one round of the state machine did.
enum Step {
    /// Something changed (records encoded, plaintext taken): go on.
    Progress,
    /// Nothing more can happen without more bytes from the peer.
    NeedInput,
    /// The peer closed the TLS session.
    PeerClosed,
}

impl TlsSession {
    /// Runs the server side of a TLS handshake on `tcp` with `config`. The caller bounds
    /// it in time (a silent peer waits forever); a peer's bad bytes are an
    /// `InvalidData` error, after the alert rustls has for it went out.
    pub async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let tls = UnbufferedServerConnection::new(config).map_err(invalid)?;
        let mut session = TlsSession {
            tcp,
            tls,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
            plaintext: Vec::new(),
            taken: 0,
            read_closed: false,
            write_closed: false,
            failed: None,
        };
        std::future::poll_fn(|cx| session.poll_handshake(cx)).await?;
        Ok(session)
    }

    /// Done once rustls is through the handshake and everything it has for the peer
    /// went out: in TLS 1.2 the server's last flight (CCS, Finished) is queued only as
    /// the handshake completes, and a client that waits for it must get it now.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_send(cx))?;
            match self.step()? {
                Step::Progress => {}
                Step::NeedInput if !self.tls.is_handshaking() => {
                    ready!(self.poll_send(cx))?;
                    return Poll::Ready(Ok(()));
                }
                Step::NeedInput => {
                    if !ready!(self.poll_receive(cx))? {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                }
                Step::PeerClosed => {
                    return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                }
            }
        }
    }

    /// One call of `process_tls_records` and what its state asks for. Application data
    /// goes to `plaintext`, records to encode to `outgoing`.
    fn step(&mut self) -> io::Result<Step> {
        if let Some(e) = &self.failed {
            return Err(invalid(e.clone()));
        }
        let UnbufferedStatus { discard, state } = self.tls.process_tls_records(&mut self.incoming);
        let step = match state {
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                let mut step = Ok(Step::Progress);
                while let Some(record) = traffic.next_record() {
                    match record {
                        Ok(record) => {
                            if self.taken == self.plaintext.len() {
                                self.plaintext.clear();
                                self.taken = 0;
                            }
                            self.plaintext.extend_from_slice(record.payload);
                        }
                        Err(e) => {
                            step = Err(e);
                            break;
                        }
                    }
                }
                step
            }
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                encode_into(&mut self.outgoing, |out| encode.encode(out)).map(|()| Step::Progress)
            }
            // The encoded records are in `outgoing`, which goes out in order before
            // anything encoded later: handing them over counts as transmitted.
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                transmit.done();
                Ok(Step::Progress)
            }
            Ok(ConnectionState::BlockedHandshake) | Ok(ConnectionState::WriteTraffic(_)) => {
                Ok(Step::NeedInput)
            }
            Ok(ConnectionState::PeerClosed) | Ok(ConnectionState::Closed) => Ok(Step::PeerClosed),
            // Early data is never enabled (max_early_data_size is 0).
            Ok(_) => Err(rustls::Error::General("unexpected TLS state".into())),
            Err(e) => Err(e),
        };
        self.incoming.drain(..discard);
        step.map_err(|e| self.fail(e))
    }

    /// Records the first error and queues rustls' alert for the peer, written at once
    /// if the socket takes it (never waited for).
    fn fail(&mut self, e: rustls::Error) -> io::Error {
        if self.failed.is_none() {
            self.failed = Some(e.clone());
            // rustls offers the alert it queued (`EncodeTlsData`) before it looks at
            // input again: one more call, on the same input (its deframer keeps its
            // place in it), takes the alert. Not a second one: with nothing queued it
            // would read the bad bytes again and raise a second fatal alert.
            let UnbufferedStatus { state, .. } = self.tls.process_tls_records(&mut self.incoming);
            if let Ok(ConnectionState::EncodeTlsData(mut encode)) = state {
                let _ = encode_into(&mut self.outgoing, |out| encode.encode(out));
            }
            self.incoming = Vec::new();
            while self.sent < self.outgoing.len() {
                match self.tcp.try_write(&self.outgoing[self.sent..]) {
                    Ok(n) if n > 0 => self.sent += n,
                    _ => break,
                }
            }
            self.plaintext = Vec::new();
        }
        invalid(e)
    }

    /// Reads what the socket has into `incoming`; `false` at the end of the stream.
    /// The buffer is allocated only now that bytes are there.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            ready!(self.tcp.poll_read_ready(cx))?;
            if self.incoming.len() >= MAX_INCOMING {
                return Poll::Ready(Err(
                    self.fail(rustls::Error::General("TLS message too large".into()))
                ));
            }
            self.incoming.reserve(READ_CHUNK);
            match self.tcp.try_read_buf(&mut self.incoming) {
                Ok(0) => return Poll::Ready(Ok(false)),
                Ok(_) => return Poll::Ready(Ok(true)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.incoming.is_empty() {
                        self.incoming = Vec::new();
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Writes everything in `outgoing`, then frees it.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        if !self.outgoing.is_empty() {
            self.outgoing = Vec::new();
            self.sent = 0;
        }
        Poll::Ready(Ok(()))
    }

    /// Frees the received-bytes buffer when everything in it was processed, before a
    /// wait: an idle session holds none.
    fn release_idle_buffers(&mut self) {
        if self.incoming.is_empty() && self.incoming.capacity() > 0 {
            self.incoming = Vec::new();
        }
        if self.taken == self.plaintext.len() && self.plaintext.capacity() > 0 {
            self.plaintext = Vec::new();
            self.taken = 0;
        }
    }

    /// Encrypts up to one record of `data` into `outgoing`; how much was taken. Records
    /// rustls has to send first (a session ticket, a key update) are encoded before it.
    fn encrypt(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(invalid(e.clone()));
        }
        if data.is_empty() {
            return Ok(0);
        }
        loop {
            let UnbufferedStatus { discard, state } =
                self.tls.process_tls_records(&mut self.incoming);
            let done = match state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    let chunk = &data[..data.len().min(MAX_RECORD_PLAINTEXT)];
                    encrypt_into(&mut self.outgoing, |out| traffic.encrypt(chunk, out))
                        .map(|()| Some(chunk.len()))
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    let mut r = Ok(None);
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(record) => self.plaintext.extend_from_slice(record.payload),
                            Err(e) => {
                                r = Err(e);
                                break;
                            }
                        }
                    }
                    r
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut self.outgoing, |out| encode.encode(out)).map(|()| None)
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    Ok(None)
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.read_closed = true;
                    Ok(None)
                }
                Ok(_) => Err(rustls::Error::General("TLS session cannot send".into())),
                Err(e) => Err(e),
            };
            self.incoming.drain(..discard);
            match done {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => {}
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// Queues `close_notify`.
    fn queue_close_notify(&mut self) -> io::Result<()> {
        loop {
            let UnbufferedStatus { discard, state } =
                self.tls.process_tls_records(&mut self.incoming);
            let done = match state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    encrypt_into(&mut self.outgoing, |out| traffic.queue_close_notify(out))
                        .map(|()| true)
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    // The peer's last bytes: nobody reads them any more.
                    let mut r = Ok(false);
                    while let Some(record) = traffic.next_record() {
                        if let Err(e) = record {
                            r = Err(e);
                            break;
                        }
                    }
                    r
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut self.outgoing, |out| encode.encode(out)).map(|()| false)
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    Ok(false)
                }
                Ok(ConnectionState::PeerClosed) => Ok(false),
                Ok(_) => Ok(true),
                Err(e) => Err(e),
            };
            self.incoming.drain(..discard);
            match done {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => return Err(self.fail(e)),
            }
        }
    }
}

impl AsyncRead for TlsSession {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.taken < this.plaintext.len() {
                let n = buf.remaining().min(this.plaintext.len() - this.taken);
                buf.put_slice(&this.plaintext[this.taken..this.taken + n]);
                this.taken += n;
                if this.taken == this.plaintext.len() {
                    this.plaintext = Vec::new();
                    this.taken = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            // Records rustls wants sent (a session ticket, the answer to a key update)
            // go out before the next wait.
            ready!(this.poll_send(cx))?;
            match this.step()? {
                Step::Progress => {}
                Step::PeerClosed => this.read_closed = true,
                Step::NeedInput => {
                    this.release_idle_buffers();
                    if !ready!(this.poll_receive(cx))? {
                        this.read_closed = true;
                    }
                }
            }
        }
    }
}

impl AsyncWrite for TlsSession {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if this.outgoing.len() - this.sent >= MAX_OUTGOING {
            ready!(this.poll_send(cx))?;
        }
        let n = this.encrypt(data)?;
        // Start writing now; what the socket does not take yet goes with the flush.
        if let Poll::Ready(Err(e)) = this.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        this.release_idle_buffers();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed && this.failed.is_none() {
            this.queue_close_notify()?;
            this.write_closed = true;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// Appends what `encode` writes to `out`, growing it to the size rustls asks for.
fn encode_into(
    out: &mut Vec<u8>,
    encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), rustls::Error> {
    write_into(out, encode, |e| match e {
        EncodeError::InsufficientSize(need) => Some(need.required_size),
        _ => None,
    })
}

/// Appends what `encrypt` writes to `out`, growing it to the size rustls asks for.
fn encrypt_into(
    out: &mut Vec<u8>,
    encrypt: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> Result<(), rustls::Error> {
    write_into(out, encrypt, |e| match e {
        EncryptError::InsufficientSize(need) => Some(need.required_size),
        _ => None,
    })
}

/// Appends what `write` puts in a slice to `out`; `required` reads the size an error
/// asks for (rustls' `InsufficientSize`), tried once more with that much room.
fn write_into<E: std::fmt::Display>(
    out: &mut Vec<u8>,
    mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
    required: impl Fn(&E) -> Option<usize>,
) -> Result<(), rustls::Error> {
    let start = out.len();
    let mut room = 1024;
    loop {
        out.resize(start + room, 0);
        match write(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(e) => match required(&e) {
                Some(need) if need > room => room = need,
                _ => {
                    out.truncate(start);
                    return Err(rustls::Error::General(format!("TLS output failed: {e}")));
                }
            },
        }
    }
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::client::TlsStream;

    /// A server configuration with a fresh self-signed certificate for `localhost`, and
    /// a client configuration that trusts exactly it.
    fn configs() -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        configs_with(rustls::DEFAULT_VERSIONS)
    }

    /// [`configs`] with a client that offers only `versions`.
    fn configs_with(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert = CertificateDer::from(cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = crate::tokio_driver::tls::provider();
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// A server session and a tokio-rustls client connected to it over loopback.
    async fn pair() -> (TlsSession, TlsStream<TcpStream>) {
        let (server, client) = configs();
        pair_with(server, client).await
    }

    async fn pair_with(
        server: Arc<ServerConfig>,
        client: Arc<rustls::ClientConfig>,
    ) -> (TlsSession, TlsStream<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connect = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(client)
                .connect(name, tcp)
                .await
                .unwrap()
        };
        let accept = async {
            let (tcp, _) = listener.accept().await.unwrap();
            TlsSession::accept(tcp, server).await.unwrap()
        };
        tokio::join!(accept, connect)
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_and_an_idle_session_holds_no_buffer() {
        let (mut server, mut client) = pair().await;
        // A megabyte each way, so that records, partial reads and the outgoing bound
        // all come into play.
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let (sent, received) = tokio::join!(
            async {
                client.write_all(&data).await.unwrap();
                client.flush().await.unwrap();
                let mut back = vec![0; data.len()];
                client.read_exact(&mut back).await.unwrap();
                back
            },
            async {
                let mut got = vec![0; data.len()];
                server.read_exact(&mut got).await.unwrap();
                server.write_all(&got).await.unwrap();
                server.flush().await.unwrap();
                got
            }
        );
        assert!(received == data && sent == data);
        // Nothing in flight: the session holds no buffer while it waits for more.
        let mut one = [0u8; 1];
        let wait = tokio::time::timeout(Duration::from_millis(50), server.read(&mut one)).await;
        assert!(wait.is_err(), "nothing was sent");
        assert_eq!(server.incoming.capacity(), 0);
        assert_eq!(server.outgoing.capacity(), 0);
        assert_eq!(server.plaintext.capacity(), 0);
        // The next line still arrives.
        client.write_all(b"a NOOP\r\n").await.unwrap();
        client.flush().await.unwrap();
        let mut line = [0u8; 8];
        server.read_exact(&mut line).await.unwrap();
        assert_eq!(&line, b"a NOOP\r\n");
    }

    /// TLS 1.2 ends the handshake with the server's Finished, which rustls queues after
    /// the handshake is complete on its side: the session sends it before anything else.
    #[tokio::test]
    async fn a_tls12_client_gets_the_servers_finished_and_its_data() {
        let (server, client) = configs_with(&[&rustls::version::TLS12]);
        let (mut server, mut client) = pair_with(server, client).await;
        assert_eq!(
            client.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        // The client speaks first (SMTP's banner order is the other test's).
        client.write_all(b"a CAPABILITY\r\n").await.unwrap();
        client.flush().await.unwrap();
        let mut line = [0u8; 14];
        server.read_exact(&mut line).await.unwrap();
        assert_eq!(&line, b"a CAPABILITY\r\n");
        server.write_all(b"* OK\r\n").await.unwrap();
        server.flush().await.unwrap();
        let mut answer = [0u8; 6];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"* OK\r\n");
    }

    #[tokio::test]
    async fn close_notify_ends_the_stream_both_ways() {
        let (mut server, mut client) = pair().await;
        server.write_all(b"* BYE\r\n").await.unwrap();
        server.shutdown().await.unwrap();
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"* BYE\r\n");

        let (mut server, mut client) = pair().await;
        client.write_all(b"QUIT\r\n").await.unwrap();
        client.shutdown().await.unwrap();
        let mut all = Vec::new();
        server.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"QUIT\r\n");
    }

    #[tokio::test]
    async fn garbage_fails_the_handshake_and_a_silent_peer_is_the_callers_to_time_out() {
        let (server, _) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        peer.write_all(b"EHLO not tls\r\n").await.unwrap();
        let err = TlsSession::accept(tcp, server.clone()).await.err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        // The alert rustls queued went out before the error.
        let mut alert = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), peer.read_to_end(&mut alert)).await;
        assert_eq!(alert.first(), Some(&0x15), "a TLS alert record: {alert:?}");

        let _silent = TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let handshake = TlsSession::accept(tcp, server);
        assert!(tokio::time::timeout(Duration::from_millis(100), handshake)
            .await
            .is_err());
    }

    /// Found by the `tls_session` fuzz target: after an error inside a handshake message
    /// that spans records, taking rustls' alert must not hand it an input other than the
    /// one its deframer is part-way through (rustls panicked on an empty one).
    #[tokio::test]
    async fn an_error_inside_a_message_spanning_records_fails_cleanly() {
        let (server, _) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        // A handshake record of 512 bytes whose ClientHello claims 203,772, then a record
        // of an unknown content type.
        let mut wire = vec![0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x03, 0x1b, 0xfc];
        wire.extend(std::iter::repeat_n(0x41, 508));
        wire.extend(std::iter::repeat_n(0x00, 520));
        peer.write_all(&wire).await.unwrap();
        let err = TlsSession::accept(tcp, server).await.err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[tokio::test]
    async fn a_record_larger_than_the_bound_is_refused() {
        let (server, _) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        // A handshake record header announcing 65,535 bytes, then a flood of them.
        let flood = async move {
            let mut record = vec![0x16, 0x03, 0x01, 0xff, 0xff];
            record.extend(std::iter::repeat_n(0x01, 65_535));
            for _ in 0..4 {
                if peer.write_all(&record).await.is_err() {
                    break;
                }
            }
            peer
        };
        let (outcome, _peer) = tokio::join!(TlsSession::accept(tcp, server), flood);
        assert!(outcome.is_err());
    }
}
