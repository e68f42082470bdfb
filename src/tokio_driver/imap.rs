//! Pumps one IMAP connection: socket bytes into the [`Session`], its outputs out, its
//! requests to the [`Relay`], and the account's change feed in, so that IDLE hears of a
//! delivery the moment it is stored.

use super::stream::Connection;
use super::ShutdownSignal;
use crate::Relay;
use chatmail_core::store::{ChangeSubscription, Lagged};
use chatmail_core::Change;
use chatmail_imap::{Engine, Output, Session, SessionConfig};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio_rustls::TlsAcceptor;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// Guard for a session without a deadline of its own.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// Serves one IMAP connection from `peer` until LOGOUT, BYE, the peer leaving, or
/// shutdown (then the session says `* BYE`). The engine decides every deadline of the
/// dialogue and writes every byte of it; the driver bounds the STARTTLS handshake and
/// each write.
/// The IP only feeds the failed-login limits.
pub(crate) async fn serve_connection(
    relay: Arc<Relay>,
    peer: IpAddr,
    config: Arc<SessionConfig>,
    mut conn: Connection,
    acceptor: Option<TlsAcceptor>,
    mut shutdown: ShutdownSignal,
) {
    let timeouts = &relay.config().timeouts;
    let mut session = Session::new(config, Instant::now());
    let mut feed: Option<ChangeSubscription> = None;
    let mut shutting_down = false;
    // Small to start with: most IDLE connections never read more than a few lines.
    let mut buf = vec![0u8; 1024];
    loop {
        while let Some(output) = session.poll() {
            match output {
                Output::Send(bytes) => {
                    let deadline = session.send_deadline();
                    if conn.send(&bytes, timeouts, deadline).await.is_err() {
                        return;
                    }
                }
                Output::Request(id, request) => {
                    let answer = relay.answer_imap(request, Some(peer)).await;
                    if let Err(e) = session.answer(id, answer, Instant::now()) {
                        tracing::error!(error = %e, "IMAP answer rejected by the session");
                    }
                }
                Output::StartTls => {
                    let Some(acceptor) = &acceptor else { return };
                    if conn.upgrade(acceptor, timeouts).await.is_err() {
                        return;
                    }
                    session.tls_started(Instant::now());
                }
                // Listen from login on, before any SELECT lists a mailbox, so that no
                // delivery falls between listing and listening.
                Output::Subscribe(account) => feed = Some(relay.subscribe(&account)),
                Output::Event(never) => match never {},
                Output::Close => {
                    conn.close(&[], timeouts).await;
                    return;
                }
            }
        }
        let deadline = session
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + MAX_WAIT);
        let wants_input = session.wants_input();
        tokio::select! {
            read = conn.read(&mut buf), if wants_input => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    session.feed(&buf[..n], Instant::now());
                    if n == buf.len() && buf.len() < READ_CHUNK {
                        buf.resize(READ_CHUNK, 0);
                    }
                }
            },
            change = next_change(&mut feed) => session.handle_change(change, Instant::now()),
            _ = tokio::time::sleep_until(deadline.into()) => session.handle_timeout(Instant::now()),
            // The session says its goodbye; the loop drains it and closes.
            _ = shutdown.wait(), if !shutting_down => {
                shutting_down = true;
                session.shutdown(Instant::now());
            }
        }
    }
}

/// The next change of the account (or the news that some were missed: the session
/// resynchronises); pends forever before login.
async fn next_change(feed: &mut Option<ChangeSubscription>) -> Result<Change, Lagged> {
    match feed {
        Some(sub) => sub.next().await,
        None => std::future::pending().await,
    }
}
