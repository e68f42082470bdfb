//! A connection that starts in cleartext and may be upgraded to TLS (STARTTLS), or
//! starts in TLS (ports 465, 993); and the driver's own deadlines on it: the TLS
//! handshake and every write (a peer that does not read is dropped).

use super::tls_session::TlsSession;
use chatmail_core::config::Timeouts;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// A client connection, cleartext or TLS.
pub(crate) enum Connection {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: a TLS session is large and most time is spent here).
    Tls(Box<TlsSession>),
    /// Transitional state during an upgrade; never read or written.
    Upgrading,
}

impl Connection {
    /// Starts a connection: cleartext, or TLS right away (implicit-TLS ports) within
    /// [`Timeouts::tls_handshake`]. `None`: the handshake failed or took too long.
    pub(crate) async fn open(
        tcp: TcpStream,
        implicit_tls: Option<&TlsAcceptor>,
        timeouts: &Timeouts,
    ) -> Option<Connection> {
        let Some(acceptor) = implicit_tls else {
            return Some(Connection::Plain(tcp));
        };
        let handshake = TlsSession::accept(tcp, acceptor.config().clone());
        match tokio::time::timeout(timeouts.tls_handshake, handshake).await {
            Ok(Ok(tls)) => Some(Connection::Tls(Box::new(tls))),
            _ => None,
        }
    }

    /// Upgrades a cleartext connection with `acceptor` (STARTTLS) within
    /// [`Timeouts::tls_handshake`]. Fails on a handshake error or timeout, or if the
    /// connection is already TLS.
    pub(crate) async fn upgrade(
        &mut self,
        acceptor: &TlsAcceptor,
        timeouts: &Timeouts,
    ) -> io::Result<()> {
        match std::mem::replace(self, Connection::Upgrading) {
            Connection::Plain(tcp) => {
                let handshake = TlsSession::accept(tcp, acceptor.config().clone());
                let tls = tokio::time::timeout(timeouts.tls_handshake, handshake)
                    .await
                    .map_err(|_| timed_out("TLS handshake"))??;
                *self = Connection::Tls(Box::new(tls));
                Ok(())
            }
            other => {
                *self = other;
                Err(io::Error::other("connection is already TLS"))
            }
        }
    }

    /// Writes `bytes` and flushes at no less than the minimum rate: after the head start
    /// of [`Timeouts::command`], each byte the peer takes buys
    /// 1/[`Timeouts::min_transfer_rate`] s, and waiting buys nothing; and never past
    /// `deadline` (the session's own, before login: a peer that does not read cannot
    /// outlast its login deadline). A peer that does not read fails the write like a
    /// closed one.
    pub(crate) async fn send(
        &mut self,
        bytes: &[u8],
        timeouts: &Timeouts,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        let start = Instant::now();
        let by = |written: usize| {
            let at = start + timeouts.transfer(written as u64);
            deadline.map_or(at, |d| d.min(at))
        };
        let mut written = 0;
        while written < bytes.len() {
            let write = self.write(&bytes[written..]);
            match tokio::time::timeout_at(by(written).into(), write).await {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => written += n,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(timed_out("write to a peer that does not read")),
            }
        }
        tokio::time::timeout_at(by(written).into(), self.flush())
            .await
            .map_err(|_| timed_out("write to a peer that does not read"))?
    }

    /// Sends what is left and closes (TLS `close_notify`, then FIN), bounded like a
    /// handshake: a goodbye never holds the connection.
    pub(crate) async fn close(&mut self, last: &[u8], timeouts: &Timeouts) {
        let bye = async {
            self.send(last, timeouts, None).await?;
            self.shutdown().await
        };
        let _ = tokio::time::timeout(timeouts.tls_handshake, bye).await;
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

fn upgrading() -> io::Error {
    io::Error::other("connection is being upgraded")
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Connection::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Connection::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_flush(cx),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Connection::Upgrading => Poll::Ready(Err(upgrading())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Connection::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Connection::Upgrading => Poll::Ready(Ok(())),
        }
    }
}
