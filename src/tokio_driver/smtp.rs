//! Pumps one SMTP connection: socket bytes into the [`ServerSession`], its outputs out,
//! its requests to the [`Relay`], its deadlines to the timer.

use super::stream::Connection;
use super::ShutdownSignal;
use crate::Relay;
use chatmail_core::config::Timeouts;
use chatmail_smtp::server::{Output, Role, ServerConfig, ServerSession, Transport};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio_rustls::TlsAcceptor;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// How long a session may wait in a read before its own deadline is consulted again
/// (the engine always gives one; this only guards against a session that has none).
const MAX_WAIT: Duration = Duration::from_secs(600);

/// Serves one SMTP connection from `peer` until the session closes, the peer goes away,
/// or the relay shuts down (then the peer gets `421`). The engine decides every deadline
/// of the dialogue (and says `421 4.4.2`); the driver bounds the STARTTLS handshake and
/// each write. The IP only feeds the failed-login limits.
pub(crate) async fn serve_connection(
    relay: Arc<Relay>,
    peer: IpAddr,
    config: Arc<ServerConfig>,
    mut conn: Connection,
    acceptor: Option<TlsAcceptor>,
    mut shutdown: ShutdownSignal,
) {
    let transport = match conn {
        Connection::Tls(_) => Transport::Tls,
        _ => Transport::Cleartext,
    };
    let timeouts = &relay.config().timeouts;
    let lmtp = config.role == Role::Lmtp;
    let hostname = config.hostname.clone();
    let mut session = ServerSession::new(config, relay.policy().clone(), transport, Instant::now());
    let mut buf = vec![0u8; READ_CHUNK];
    let mut out = Vec::with_capacity(512);
    loop {
        // Drain every output; requests are answered in place (the session waits for them).
        while let Some(output) = session.poll() {
            match output {
                Output::Send(bytes) => out.extend_from_slice(&bytes),
                Output::Request(request) => {
                    if send(&mut conn, &mut out, timeouts, session.poll_timeout())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if let Err(e) = relay
                        .answer_smtp(&mut session, request, lmtp, Some(peer))
                        .await
                    {
                        // A mismatch between this driver and the engine: a bug, not the peer's.
                        tracing::error!(error = %e, "SMTP answer rejected by the session");
                    }
                }
                Output::StartTls => {
                    if send(&mut conn, &mut out, timeouts, session.poll_timeout())
                        .await
                        .is_err()
                    {
                        return;
                    }
                    let Some(acceptor) = &acceptor else { return };
                    if conn.upgrade(acceptor, timeouts).await.is_err() {
                        return;
                    }
                    session.tls_started(Instant::now());
                }
                Output::Close => {
                    conn.close(&out, timeouts).await;
                    return;
                }
            }
        }
        if send(&mut conn, &mut out, timeouts, session.poll_timeout())
            .await
            .is_err()
            || session.is_closed()
        {
            return;
        }
        let deadline = session
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + MAX_WAIT);
        let wants_input = session.wants_input();
        tokio::select! {
            read = conn.read(&mut buf), if wants_input => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => session.feed(&buf[..n], Instant::now()),
            },
            _ = tokio::time::sleep_until(deadline.into()) => session.handle_timeout(Instant::now()),
            _ = shutdown.wait() => {
                out.extend_from_slice(format!("421 4.3.2 {hostname} Service shutting down\r\n").as_bytes());
                conn.close(&out, timeouts).await;
                return;
            }
        }
    }
}

/// Sends the coalesced replies, if any, within the session's own `deadline` too
/// (replies are small: a peer that does not take them is past its deadline, not slow).
async fn send(
    conn: &mut Connection,
    out: &mut Vec<u8>,
    timeouts: &Timeouts,
    deadline: Option<Instant>,
) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let result = conn.send(out, timeouts, deadline).await;
    out.clear();
    result
}
