//! The one contract every sans-IO protocol engine keeps: the SMTP server and client
//! (`chatmail-smtp`), the IMAP server (`chatmail-imap`), and the engines still to come
//! (outbound delivery, push notifier).
//!
//! An engine is a state machine without sockets, files, clocks or a runtime. The time
//! comes in with every input; everything the engine wants done leaves it as an
//! [`Output`]. The method kinds follow quinn-proto's `Connection`
//! (<https://docs.rs/quinn-proto/latest/quinn_proto/struct.Connection.html>):
//!
//! - **inputs** change the state: [`Engine::feed`] (bytes from the peer),
//!   [`Engine::answer`] (the embedder's answer to a request), [`Engine::handle_change`]
//!   (the change feed of the account the engine subscribed to), [`Engine::tls_started`],
//!   [`Engine::handle_timeout`], [`Engine::shutdown`];
//! - **outputs** are drained after every input: [`Engine::poll`] until `None`, then
//!   [`Engine::poll_timeout`] for the next wake-up;
//! - **getters** never change anything: [`Engine::wants_input`], [`Engine::is_closed`],
//!   [`Engine::send_deadline`].
//!
//! # The drive loop
//!
//! Every driver (the tokio one in the `chatmail` crate, a blocking `std::net` one in its
//! tests, yours) is the same loop, in the manner of str0m's
//! (<https://docs.rs/str0m/latest/str0m/#run-loop>):
//!
//! ```text
//! loop {
//!     while let Some(output) = engine.poll() {
//!         match output {
//!             Output::Send(bytes)          => write bytes (by engine.send_deadline()),
//!             Output::Request(id, request) => engine.answer(id, answer(request), now),
//!             Output::StartTls             => handshake, then engine.tls_started(now),
//!             Output::StartDeflate         => (de)compress the transport from now on,
//!             Output::Subscribe(account)   => keep that account's change feed,
//!             Output::Close                => close the connection; done,
//!             Output::Event(event)         => act on it (clients: an outcome),
//!         }
//!     }
//!     wait for the first of:
//!         bytes from the peer, if engine.wants_input() => engine.feed(bytes, now)
//!         a change on the subscribed feed               => engine.handle_change(change, now)
//!         engine.poll_timeout()                         => engine.handle_timeout(now)
//!         the process shutting down                     => engine.shutdown(now)
//! }
//! ```
//!
//! A driver never writes protocol text of its own: the goodbye on shutdown (`421`,
//! `* BYE`) and on every deadline comes out of the engine as [`Output::Send`] followed
//! by [`Output::Close`]. Errors are sticky as in rustls: once an engine decided to
//! close, later inputs are ignored, but what it queued before is still flushed.

use std::convert::Infallible;
use std::time::Instant;

use bytes::Bytes;

use crate::store::Lagged;
use crate::types::{Address, Change};

/// Identifies one [`Output::Request`]; hand it back with the answer. Unique within one
/// engine for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// What an engine wants done next; drained with [`Engine::poll`] after every input.
///
/// `R` is the engine's request type; `E` its event type (only clients have events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<R, E = Infallible> {
    /// Write these bytes to the peer, in order.
    Send(Bytes),
    /// A decision or an operation the engine needs from the embedder (a login, a
    /// recipient, a delivery, a mailbox read). Answer it with [`Engine::answer`] and this
    /// id; the engine processes no input that depends on it until then.
    Request(RequestId, R),
    /// Upgrade the transport to TLS now (everything before was sent in cleartext), then
    /// call [`Engine::tls_started`]. Input buffered from before the upgrade is dropped.
    StartTls,
    /// Compress the transport with raw DEFLATE (RFC 1951, no zlib header) both ways from
    /// now on (IMAP COMPRESS, RFC 4978): everything sent before this output goes out
    /// uncompressed, everything after it compressed; input read from now on is
    /// decompressed before [`Engine::feed`]. Input buffered from before is dropped. No
    /// input confirms it: the engine already counts compression as active.
    StartDeflate,
    /// From now on, pass the change feed of this account to [`Engine::handle_change`]
    /// (an IMAP session after login, so IDLE hears of deliveries at once).
    Subscribe(Address),
    /// Something happened the embedder wants to know (an SMTP client's transaction
    /// outcome); nothing to answer.
    Event(E),
    /// Close the connection after writing everything sent before.
    Close,
}

/// A misused input: a programming error of the driver or the embedder, never the peer's
/// doing. The engine's state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// The engine is not waiting for an answer to this request.
    #[error("no outstanding request {0:?}")]
    NotWaiting(RequestId),
    /// The answer is not of the kind the request asks for.
    #[error("the answer does not fit request {0:?}")]
    WrongKind(RequestId),
    /// The answer is of the right kind but malformed (say, one outcome per recipient
    /// expected and another number given).
    #[error("malformed answer to request {id:?}: {reason}")]
    Malformed {
        /// The request answered.
        id: RequestId,
        /// What is wrong with it.
        reason: String,
    },
}

/// One sans-IO protocol engine: see the [module docs](self) for the method kinds and the
/// drive loop every driver runs.
pub trait Engine {
    /// What the engine asks of the embedder ([`Output::Request`]).
    type Request;
    /// The embedder's answer to a request ([`Engine::answer`]).
    type Answer;
    /// What the engine reports without waiting ([`Output::Event`]): a client's outcomes,
    /// a server's facts for the embedder's metrics (IMAP has none).
    type Event;

    /// Input: bytes received from the peer at `now`, in any chunking.
    fn feed(&mut self, bytes: &[u8], now: Instant);

    /// Input: the answer to request `id`. `Err` leaves the engine unchanged.
    fn answer(
        &mut self,
        id: RequestId,
        answer: Self::Answer,
        now: Instant,
    ) -> Result<(), AnswerError>;

    /// Input: the next item of the change feed asked for by [`Output::Subscribe`].
    /// A [`Lagged`] subscription means changes were missed: the engine resynchronises
    /// by itself. Engines that never subscribe ignore it.
    fn handle_change(&mut self, change: Result<Change, Lagged>, now: Instant) {
        let _ = (change, now);
    }

    /// Input: the TLS handshake asked for by [`Output::StartTls`] completed.
    fn tls_started(&mut self, now: Instant);

    /// Input: the clock reached [`Engine::poll_timeout`] (calling it early is harmless).
    fn handle_timeout(&mut self, now: Instant);

    /// Input: the process is shutting down. The engine queues its goodbye (`421`,
    /// `* BYE`) and [`Output::Close`]; a request already out is still answered by the
    /// driver and its outcome still reported before the goodbye.
    fn shutdown(&mut self, now: Instant);

    /// Output: the next thing to do, `None` when there is nothing now.
    fn poll(&mut self) -> Option<Output<Self::Request, Self::Event>>;

    /// Output: when [`Engine::handle_timeout`] must be called next; `None` while only the
    /// embedder (an outstanding request) or nothing at all is awaited.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Whether the driver should read from the peer now. False while enough input is
    /// buffered, during a TLS upgrade, or after close: reading on would only buffer.
    fn wants_input(&self) -> bool;

    /// Whether the engine emitted [`Output::Close`] (or will on the next poll).
    fn is_closed(&self) -> bool;

    /// The instant by which pending [`Output::Send`] bytes must be written, `None` when
    /// only the driver's minimum transfer rate applies (a large FETCH on a slow link).
    fn send_deadline(&self) -> Option<Instant>;
}
