//! Delivery over SMTP (spec 3.4 step 2): the tokio pump of the sans-IO
//! [`ClientSession`], over TCP upgraded with STARTTLS, and its connection kept for the
//! next message to the same host.
//!
//! The pump is the drive loop of [`chatmail_core::engine`] on the client side: the
//! engine times every reply itself (its deadlines are the configured I/O timeout) and
//! the pump bounds what it does not see: each write and the TLS handshake.

use chatmail_core::engine::{Engine, Output};
use chatmail_smtp::client::{
    ClientConfig, ClientEvent, ClientSession, OutgoingEnvelope, SendError, TlsMode,
    TransactionOutcome,
};
use rustls::pki_types::ServerName;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Most bytes read from the socket at a time (replies are short).
const READ_CHUNK: usize = 4096;

/// Most bytes written under one timeout: a large message on a slow link keeps going as
/// long as each chunk moves.
const WRITE_CHUNK: usize = 64 * 1024;

/// The socket, cleartext until STARTTLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// During the handshake, and after a failed one.
    Broken,
}

/// Why a message did not go out on this connection.
#[derive(Debug)]
pub(super) enum SendFailure {
    /// The envelope cannot be written as SMTP (an address with `<`, `>`, CR or LF):
    /// permanent, whatever the server.
    Envelope,
    /// The connection failed (I/O, TLS, timeout, a refused greeting, EHLO or STARTTLS):
    /// try the next exchanger.
    Connection(String),
}

/// What the pump stopped for.
enum Step {
    Ready,
    Sent(TransactionOutcome),
}

/// One SMTP connection to an exchanger, after EHLO and STARTTLS: ready for messages.
pub(super) struct SmtpConnection {
    engine: ClientSession,
    stream: Stream,
    tls: TlsConnector,
    server_name: ServerName<'static>,
    io_timeout: Duration,
}

impl SmtpConnection {
    /// Greets the server on `tcp` as `hello_name`, upgrades with STARTTLS (mandatory)
    /// and returns once the session is ready for a message.
    pub(super) async fn open(
        tcp: TcpStream,
        hello_name: &str,
        tls: TlsConnector,
        server_name: ServerName<'static>,
        io_timeout: Duration,
    ) -> Result<SmtpConnection, String> {
        let mut config = ClientConfig::new(hello_name);
        config.tls = TlsMode::Required;
        // The reference's 60 s per read (spec 3.4), rather than RFC 5321's minutes.
        config.command_timeout = io_timeout;
        config.data_start_timeout = io_timeout;
        config.data_end_timeout = io_timeout;
        let mut connection = SmtpConnection {
            engine: ClientSession::new(config, Instant::now()),
            stream: Stream::Plain(tcp),
            tls,
            server_name,
            io_timeout,
        };
        match connection.drive().await? {
            Step::Ready => Ok(connection),
            Step::Sent(_) => Err("SMTP client out of step".into()),
        }
    }

    /// Sends one message; the server's replies for it (refusals included), or why the
    /// connection could not carry it.
    pub(super) async fn send(
        &mut self,
        envelope: &OutgoingEnvelope,
        message: &[u8],
    ) -> Result<TransactionOutcome, SendFailure> {
        match self.engine.send_message(envelope, message, Instant::now()) {
            Ok(()) => {}
            Err(SendError::InvalidEnvelope) => return Err(SendFailure::Envelope),
            Err(e) => return Err(SendFailure::Connection(e.to_string())),
        }
        match self.drive().await.map_err(SendFailure::Connection)? {
            Step::Sent(outcome) => Ok(outcome),
            Step::Ready => Err(SendFailure::Connection("SMTP client out of step".into())),
        }
    }

    /// Whether another message can be sent on this connection.
    pub(super) fn is_ready(&self) -> bool {
        self.engine.is_ready()
    }

    /// Says `QUIT` and closes, within the I/O timeout.
    pub(super) async fn quit(mut self) {
        self.engine.quit(Instant::now());
        let timeout = self.io_timeout;
        let _ = tokio::time::timeout(timeout, self.drive()).await;
    }

    /// Runs the drive loop until the engine reports the session ready or a message
    /// sent; an error once the connection failed (after flushing the engine's goodbye).
    async fn drive(&mut self) -> Result<Step, String> {
        let mut failure: Option<String> = None;
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            while let Some(output) = self.engine.poll() {
                match output {
                    Output::Send(bytes) => {
                        if let Err(e) = self.write(&bytes).await {
                            return Err(failure.unwrap_or(e));
                        }
                    }
                    Output::StartTls => {
                        // After a failed handshake nothing more can be said.
                        self.upgrade().await?;
                        self.engine.tls_started(Instant::now());
                    }
                    Output::Event(ClientEvent::Ready) => return Ok(Step::Ready),
                    Output::Event(ClientEvent::Sent(outcome)) => return Ok(Step::Sent(outcome)),
                    // The engine queues its QUIT and Close next: flush them first.
                    Output::Event(ClientEvent::Failed(e)) => failure = Some(e.to_string()),
                    Output::Close => {
                        self.shutdown().await;
                        return Err(failure.unwrap_or_else(|| "connection closed".into()));
                    }
                    Output::Request(_, never) => match never {},
                    Output::Subscribe(_) | Output::StartDeflate => {}
                }
            }
            let engine_deadline = self.engine.poll_timeout();
            let deadline = engine_deadline.unwrap_or_else(|| Instant::now() + self.io_timeout);
            tokio::select! {
                read = self.read(&mut buf), if self.engine.wants_input() => match read {
                    Ok(0) => return Err(failure.unwrap_or_else(|| "connection closed by the server".into())),
                    Ok(n) => self.engine.feed(&buf[..n], Instant::now()),
                    Err(e) => return Err(failure.unwrap_or_else(|| format!("read: {e}"))),
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if engine_deadline.is_none() {
                        // The engine waits for nothing, yet has not finished: never hang.
                        return Err(failure.unwrap_or_else(|| "SMTP client stalled".into()));
                    }
                    self.engine.handle_timeout(Instant::now());
                }
            }
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &mut self.stream {
            Stream::Plain(tcp) => tcp.read(buf).await,
            Stream::Tls(tls) => tls.read(buf).await,
            Stream::Broken => Err(std::io::Error::other("connection broken")),
        }
    }

    /// Writes `bytes` chunk by chunk, each within the I/O timeout.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let timeout = self.io_timeout;
        for chunk in bytes.chunks(WRITE_CHUNK) {
            let write = async {
                match &mut self.stream {
                    Stream::Plain(tcp) => tcp.write_all(chunk).await,
                    Stream::Tls(tls) => {
                        tls.write_all(chunk).await?;
                        tls.flush().await
                    }
                    Stream::Broken => Err(std::io::Error::other("connection broken")),
                }
            };
            match tokio::time::timeout(timeout, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("write: {e}")),
                Err(_) => return Err(format!("write timed out after {} s", timeout.as_secs())),
            }
        }
        Ok(())
    }

    /// The STARTTLS handshake, within the I/O timeout.
    async fn upgrade(&mut self) -> Result<(), String> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Broken) else {
            return Err("STARTTLS on a TLS connection".into());
        };
        let handshake = self.tls.connect(self.server_name.clone(), tcp);
        match tokio::time::timeout(self.io_timeout, handshake).await {
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                Ok(())
            }
            Ok(Err(e)) => Err(format!("TLS: {e}")),
            Err(_) => Err(format!(
                "TLS handshake timed out after {} s",
                self.io_timeout.as_secs()
            )),
        }
    }

    /// TLS `close_notify` and FIN, bounded: a goodbye never holds the caller.
    async fn shutdown(&mut self) {
        let timeout = self.io_timeout.min(Duration::from_secs(5));
        let close = async {
            match &mut self.stream {
                Stream::Plain(tcp) => tcp.shutdown().await,
                Stream::Tls(tls) => tls.shutdown().await,
                Stream::Broken => Ok(()),
            }
        };
        let _ = tokio::time::timeout(timeout, close).await;
        self.stream = Stream::Broken;
    }
}
