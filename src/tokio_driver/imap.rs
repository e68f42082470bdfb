//! Pumps one IMAP connection: socket bytes into the [`Session`], its outputs out, its
//! requests to the [`Relay`], and the account's change feed in, so that IDLE hears of a
//! delivery the moment it is stored.

use super::stream::Connection;
use super::ShutdownSignal;
use crate::Relay;
use chatmail_core::store::ChangeSubscription;
use chatmail_core::Change;
use chatmail_imap::{Output, Session, SessionConfig, State};
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
/// shutdown (then the client gets `* BYE`). The engine decides every deadline of the
/// dialogue (and says `* BYE`); the driver bounds the STARTTLS handshake and each write.
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
    // Small to start with: most IDLE connections never read more than a few lines.
    let mut buf = vec![0u8; 1024];
    loop {
        while let Some(output) = session.poll() {
            match output {
                Output::Send(bytes) => {
                    // Before login the session's deadline bounds writes too; after it,
                    // the minimum rate alone (a large FETCH on a slow link is legitimate).
                    let deadline = match session.state() {
                        State::NotAuthenticated => session.poll_timeout(),
                        _ => None,
                    };
                    if conn.send(&bytes, timeouts, deadline).await.is_err() {
                        return;
                    }
                }
                Output::Request(id, request) => {
                    let answer = relay.answer_imap(request, Some(peer)).await;
                    if let Err(e) = session.answer(id, answer) {
                        tracing::error!(error = %e, "IMAP answer rejected by the session");
                    }
                }
                Output::StartTls => {
                    let Some(acceptor) = &acceptor else { return };
                    if conn.upgrade(acceptor, timeouts).await.is_err() {
                        return;
                    }
                    session.tls_started();
                }
                Output::Close => {
                    conn.close(&[], timeouts).await;
                    return;
                }
            }
        }
        // Listen to the account's changes from the moment it is known, before any
        // SELECT lists the mailbox, so no delivery falls between listing and listening.
        if feed.is_none() {
            if let Some(account) = session.account() {
                feed = Some(relay.subscribe(account));
            }
        }
        let deadline = session
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + MAX_WAIT);
        let wants_input = session.wants_input();
        let selected = session.selected_mailbox().map(str::to_string);
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
            change = next_change(&mut feed, selected.as_deref()) => session.handle_change(&change),
            _ = tokio::time::sleep_until(deadline.into()) => session.handle_timeout(Instant::now()),
            _ = shutdown.wait() => {
                conn.close(b"* BYE Server shutting down\r\n", timeouts).await;
                return;
            }
        }
    }
}

/// The next change of the account; pends forever before login. A subscriber that fell
/// behind gets a reset of the selected mailbox, so the session resynchronises.
async fn next_change(feed: &mut Option<ChangeSubscription>, selected: Option<&str>) -> Change {
    match feed {
        Some(sub) => match sub.next().await {
            Ok(change) => change,
            Err(_lagged) => Change::MailboxReset {
                mailbox: selected.unwrap_or(chatmail_core::INBOX).to_string(),
            },
        },
        None => std::future::pending().await,
    }
}
