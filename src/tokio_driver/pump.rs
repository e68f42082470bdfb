//! The one tokio pump that drives any engine of the workspace (SMTP, IMAP, the engines to
//! come) over one connection: the drive loop of [`chatmail_core::engine`], with socket
//! reads, the account's change feed, the engine's timer and the process's shutdown as
//! its four wake-ups. It writes only what the engine gives it: the goodbye on shutdown
//! is the engine's own (`421`, `* BYE`).

use super::deflated::Deflated;
use super::shutdown::ShutdownSignal;
use super::stream::Connection;
use crate::relay::{Relay, RequestHandler};
use chatmail_core::engine::{Engine, Output};
use chatmail_core::store::{ChangeSubscription, Lagged};
use chatmail_core::Change;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncRead;
use tokio_rustls::TlsAcceptor;

/// Whether an engine's session waits in IMAP IDLE (the metrics' gauge); the pump asks
/// after every round of outputs.
pub(crate) trait Idling {
    /// In IDLE now.
    fn idling(&self) -> bool;
}

impl Idling for chatmail_smtp::server::ServerSession {
    fn idling(&self) -> bool {
        false
    }
}

impl Idling for chatmail_imap::Session {
    fn idling(&self) -> bool {
        self.is_idle()
    }
}

/// Most bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    /// Where a connection's read lands, one per runtime thread (see [`read`]).
    static READ_SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_CHUNK]);
}

/// Guard for an engine without a deadline of its own (waiting for nothing at all).
const MAX_WAIT: Duration = Duration::from_secs(600);

/// Serves one connection from `peer` with `engine` until the engine closes, the peer
/// goes away or its writes time out. Requests are answered by the [`Relay`] in place
/// (the engine reads nothing that depends on them meanwhile). The driver bounds what
/// the engine does not see: the STARTTLS handshake and each write (by the engine's
/// [`Engine::send_deadline`] and the minimum transfer rate). The IP only feeds the
/// failed-login limits.
pub(crate) async fn serve<E>(
    relay: Arc<Relay>,
    peer: IpAddr,
    mut engine: E,
    mut conn: Connection,
    acceptor: Option<TlsAcceptor>,
    mut shutdown: ShutdownSignal,
) where
    E: Engine + Idling + Send,
    E::Request: Send,
    E::Event: std::fmt::Debug,
    Relay: RequestHandler<E>,
{
    let timeouts = &relay.config().timeouts;
    let mut feed: Option<ChangeSubscription> = None;
    let mut shutting_down = false;
    // Counts this session in the IDLE gauge while it idles (dropped on any return).
    let mut idle: Option<crate::metrics::GaugeGuard> = None;
    // After IMAP COMPRESS: everything read and written goes through it.
    let mut deflated: Option<Box<Deflated>> = None;
    loop {
        while let Some(output) = engine.poll() {
            match output {
                Output::Send(bytes) => {
                    let deadline = engine.send_deadline();
                    let sent = match deflated.as_deref_mut() {
                        Some(d) => d.send(&mut conn, &bytes, timeouts, deadline).await,
                        None => conn.send(&bytes, timeouts, deadline).await,
                    };
                    if sent.is_err() {
                        return;
                    }
                }
                Output::Request(id, request) => {
                    let answer = relay.handle(request, Some(peer)).await;
                    // Changes published before the answer (the session's own APPEND,
                    // COPY, EXPUNGE) reach the engine before it: its responses then
                    // announce them in order.
                    drain_changes(&mut engine, &mut feed);
                    if let Err(e) = engine.answer(id, answer, Instant::now()) {
                        // A mismatch between the relay and the engine: a bug, not the peer's.
                        tracing::error!(error = %e, "answer rejected by the engine");
                    }
                }
                Output::StartTls => {
                    let Some(acceptor) = &acceptor else { return };
                    // Boxed: the handshake's state (over a kilobyte) would otherwise stay
                    // reserved in every connection's task for its whole life.
                    if Box::pin(conn.upgrade(acceptor, timeouts)).await.is_err() {
                        return;
                    }
                    engine.tls_started(Instant::now());
                }
                // The tagged OK is out, uncompressed (sent and flushed above).
                Output::StartDeflate => {
                    if deflated.is_none() {
                        deflated = Some(Box::new(Deflated::new()));
                        relay.metrics().imap_compress_started();
                    }
                }
                // From the login on, before any mailbox is listed: no change falls
                // between listing and listening.
                Output::Subscribe(account) => feed = Some(relay.subscribe(&account)),
                Output::Event(event) => relay.event(event),
                Output::Close => {
                    if let Some(d) = deflated.as_deref_mut() {
                        let _ = d.flush(&mut conn, timeouts, None).await;
                    }
                    conn.close(&[], timeouts).await;
                    return;
                }
            }
        }
        // The batch is complete: the client gets all of it now (an IDLE update at once).
        if let Some(d) = deflated.as_deref_mut() {
            let deadline = engine.send_deadline();
            if d.flush(&mut conn, timeouts, deadline).await.is_err() {
                return;
            }
        }
        match (engine.idling(), idle.is_some()) {
            (true, false) => idle = Some(relay.metrics().idle_started()),
            (false, true) => idle = None,
            _ => {}
        }
        let deadline = engine
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + MAX_WAIT);
        let wants_input = engine.wants_input();
        tokio::select! {
            read = read(&mut conn, deflated.as_deref_mut()), if wants_input => match read {
                Ok(bytes) if bytes.is_empty() => return,
                Err(_) => return,
                Ok(bytes) => {
                    // What other sessions changed before these bytes were sent is seen
                    // by the command they carry (a NOOP after another client's APPEND
                    // reports it: RFC 3501 6.1.2, imaptest's `append`).
                    drain_changes(&mut engine, &mut feed);
                    engine.feed(&bytes, Instant::now());
                }
            },
            change = next_change(&mut feed) => engine.handle_change(change, Instant::now()),
            _ = tokio::time::sleep_until(deadline.into()) => engine.handle_timeout(Instant::now()),
            _ = shutdown.wait(), if !shutting_down => {
                shutting_down = true;
                engine.shutdown(Instant::now());
            }
        }
    }
}

/// Hands the engine every change already waiting in the feed.
fn drain_changes<E: Engine>(engine: &mut E, feed: &mut Option<ChangeSubscription>) {
    let Some(subscription) = feed else {
        return;
    };
    while let Some(change) = subscription.try_next() {
        engine.handle_change(change, Instant::now());
    }
}

/// The peer's next bytes (at most [`READ_CHUNK`]), decompressed after COMPRESS; empty at
/// the end of the connection. Cancel-safe as both reads are.
///
/// They land in this thread's scratch buffer and are copied out as they came: the
/// connection holds no read buffer across the wait (an idling IMAP client waits for
/// hours; issue 14 counts every byte it holds). A poll that pends wrote nothing
/// (AsyncRead's contract), so each poll may lend another thread's scratch.
async fn read(conn: &mut Connection, deflated: Option<&mut Deflated>) -> std::io::Result<Vec<u8>> {
    let Some(d) = deflated else {
        return std::future::poll_fn(|cx| {
            READ_SCRATCH.with_borrow_mut(|scratch| {
                let mut read = tokio::io::ReadBuf::new(scratch);
                std::pin::Pin::new(&mut *conn)
                    .poll_read(cx, &mut read)
                    .map_ok(|()| read.filled().to_vec())
            })
        })
        .await;
    };
    loop {
        let held = READ_SCRATCH
            .with_borrow_mut(|scratch| d.decompress(scratch).map(|n| scratch[..n].to_vec()))?;
        if !held.is_empty() || !d.receive(conn).await? {
            return Ok(held);
        }
    }
}

/// The next item of the subscribed change feed; pends forever without a subscription.
async fn next_change(feed: &mut Option<ChangeSubscription>) -> Result<Change, Lagged> {
    match feed {
        Some(subscription) => subscription.next().await,
        None => std::future::pending().await,
    }
}
