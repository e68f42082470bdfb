//! loadgen's SMTP side: the tokio pump of the sans-IO
//! [`ClientSession`](chatmail_smtp::client::ClientSession) (as
//! `src/tokio_driver/delivery/smtp.rs` drives it), over implicit TLS with AUTH
//! (submission) or over STARTTLS without AUTH (port 25 style, incoming mail), with the
//! instant the final dot left and the instant the reply to it came in.

use std::time::{Duration, Instant};

use chatmail_core::engine::{Engine, Output};
use chatmail_smtp::client::{
    ClientConfig, ClientEvent, ClientSession, Credentials, OutgoingEnvelope, TlsMode,
    TransactionOutcome,
};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Most bytes read from the socket at a time (replies are short).
const READ_CHUNK: usize = 4096;

/// Most bytes written under one timeout.
const WRITE_CHUNK: usize = 64 * 1024;

/// How the SMTP connections reach the relay.
#[derive(Clone)]
pub enum SmtpMode {
    /// Implicit TLS and AUTH as the sending account (port 465 style).
    Submission,
    /// STARTTLS and no AUTH, as another server would deliver (port 25 style).
    Relay,
}

/// Where and how to connect.
#[derive(Clone)]
pub struct SmtpTarget {
    /// Address to connect to (`host:port`).
    pub addr: String,
    /// Submission or port 25 style.
    pub mode: SmtpMode,
    /// The EHLO name.
    pub hello_name: String,
    /// TLS client configuration.
    pub tls: TlsConnector,
    /// The name the certificate is checked against.
    pub server_name: ServerName<'static>,
    /// Bound on each step: connect, handshake, a write, each reply.
    pub io_timeout: Duration,
}

/// The socket, cleartext until STARTTLS.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Broken,
}

/// What the pump stopped for.
enum Step {
    Ready,
    /// A transaction ended: its replies, when the final dot was written (`None` if the
    /// message text was never sent) and when the last reply was read.
    Sent(TransactionOutcome, Option<Instant>, Instant),
}

/// One message's result as the connection saw it.
pub struct Sent {
    /// The server's replies.
    pub outcome: TransactionOutcome,
    /// When the final dot was written.
    pub data_end: Option<Instant>,
    /// When the reply to it (or the refusal) was read.
    pub replied: Instant,
}

/// One SMTP connection, ready for messages.
pub struct SmtpConnection {
    engine: ClientSession,
    stream: Stream,
    target: SmtpTarget,
}

impl SmtpConnection {
    /// Connects, greets, upgrades (implicit or STARTTLS), authenticates when given
    /// `credentials`, and returns once the session is ready.
    pub async fn open(
        target: &SmtpTarget,
        credentials: Option<Credentials>,
    ) -> Result<SmtpConnection, String> {
        let t = target.io_timeout;
        let tcp = match tokio::time::timeout(t, TcpStream::connect(&target.addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(format!("connect {}: {e}", target.addr)),
            Err(_) => return Err(format!("connect {}: timed out", target.addr)),
        };
        let _ = tcp.set_nodelay(true);
        let mut config = ClientConfig::new(target.hello_name.clone());
        config.command_timeout = t;
        config.data_start_timeout = t;
        config.data_end_timeout = t;
        config.credentials = credentials;
        let stream = match target.mode {
            SmtpMode::Submission => {
                config.tls = TlsMode::Implicit;
                let handshake = target.tls.connect(target.server_name.clone(), tcp);
                match tokio::time::timeout(t, handshake).await {
                    Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
                    Ok(Err(e)) => return Err(format!("TLS: {e}")),
                    Err(_) => return Err("TLS handshake timed out".into()),
                }
            }
            SmtpMode::Relay => {
                config.tls = TlsMode::Required;
                Stream::Plain(tcp)
            }
        };
        let mut connection = SmtpConnection {
            engine: ClientSession::new(config, Instant::now()),
            stream,
            target: target.clone(),
        };
        match connection.drive().await? {
            Step::Ready => Ok(connection),
            Step::Sent(..) => Err("SMTP client out of step".into()),
        }
    }

    /// Sends one message (`MAIL`/`RCPT`/`DATA`, pipelined when offered; `RSET` first
    /// on a reused session); `Err` when the connection failed.
    pub async fn send(
        &mut self,
        envelope: &OutgoingEnvelope,
        message: &[u8],
    ) -> Result<Sent, String> {
        self.engine
            .send_message(envelope, message, Instant::now())
            .map_err(|e| e.to_string())?;
        match self.drive().await? {
            Step::Sent(outcome, data_end, replied) => Ok(Sent {
                outcome,
                data_end,
                replied,
            }),
            Step::Ready => Err("SMTP client out of step".into()),
        }
    }

    /// `QUIT` and close, within [`crate::TEARDOWN`].
    pub async fn quit(mut self) {
        self.engine.quit(Instant::now());
        let t = self.target.io_timeout.min(crate::TEARDOWN);
        let _ = tokio::time::timeout(t, self.drive()).await;
    }

    /// The drive loop: until the session is ready, a transaction ended, or the
    /// connection failed.
    async fn drive(&mut self) -> Result<Step, String> {
        let mut failure: Option<String> = None;
        let mut data_end = None;
        let mut last_read = Instant::now();
        let mut buf = [0u8; READ_CHUNK];
        loop {
            while let Some(output) = self.engine.poll() {
                match output {
                    Output::Send(bytes) => {
                        if let Err(e) = self.write(&bytes).await {
                            return Err(failure.unwrap_or(e));
                        }
                        // Only the message text ends with the final dot: commands are
                        // single lines and never `\r\n.\r\n`.
                        if bytes.ends_with(b"\r\n.\r\n") {
                            data_end = Some(Instant::now());
                        }
                    }
                    Output::StartTls => {
                        self.upgrade().await?;
                        self.engine.tls_started(Instant::now());
                    }
                    Output::Event(ClientEvent::Ready) => return Ok(Step::Ready),
                    Output::Event(ClientEvent::Sent(outcome)) => {
                        return Ok(Step::Sent(outcome, data_end, last_read))
                    }
                    Output::Event(ClientEvent::Failed(e)) => failure = Some(e.to_string()),
                    Output::Close => {
                        self.shutdown().await;
                        return Err(failure.unwrap_or_else(|| "connection closed".into()));
                    }
                    Output::Request(_, never) => match never {},
                    Output::Subscribe(_) | Output::StartDeflate => {}
                }
            }
            let t = self.target.io_timeout;
            let engine_deadline = self.engine.poll_timeout();
            let deadline = engine_deadline.unwrap_or_else(|| Instant::now() + t);
            tokio::select! {
                read = self.read(&mut buf), if self.engine.wants_input() => match read {
                    Ok(0) => return Err(failure.unwrap_or_else(|| "connection closed by the server".into())),
                    Ok(n) => {
                        last_read = Instant::now();
                        self.engine.feed(&buf[..n], last_read);
                    }
                    Err(e) => return Err(failure.unwrap_or_else(|| format!("read: {e}"))),
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if engine_deadline.is_none() {
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

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let t = self.target.io_timeout;
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
            match tokio::time::timeout(t, write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("write: {e}")),
                Err(_) => return Err(format!("write timed out after {} s", t.as_secs())),
            }
        }
        Ok(())
    }

    async fn upgrade(&mut self) -> Result<(), String> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Broken) else {
            return Err("STARTTLS on a TLS connection".into());
        };
        let handshake = self
            .target
            .tls
            .connect(self.target.server_name.clone(), tcp);
        match tokio::time::timeout(self.target.io_timeout, handshake).await {
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                Ok(())
            }
            Ok(Err(e)) => Err(format!("TLS: {e}")),
            Err(_) => Err("TLS handshake timed out".into()),
        }
    }

    async fn shutdown(&mut self) {
        let t = self.target.io_timeout.min(Duration::from_secs(5));
        let close = async {
            match &mut self.stream {
                Stream::Plain(tcp) => tcp.shutdown().await,
                Stream::Tls(tls) => tls.shutdown().await,
                Stream::Broken => Ok(()),
            }
        };
        let _ = tokio::time::timeout(t, close).await;
        self.stream = Stream::Broken;
    }
}
