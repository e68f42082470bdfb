//! The push driver (spec 5.4): pumps the sans-IO [`PushQueue`] with tokio. Deliveries
//! arrive through the [`PushNotifier`](crate::push::PushNotifier)'s channel; POSTs go
//! to `notify_url` over keep-alive HTTP/1.1 connections (https with the system's roots,
//! or http for an endpoint on loopback in tests); pending files are written and deleted
//! on the blocking pool by one writer, in the order the queue asked.

use super::delivery::tls::{server_name, ClientTls, Protocol};
use super::shutdown::ShutdownSignal;
use crate::push::pending::{self, FileOp};
use crate::push::storage::PendingStorage;
use crate::push::{HttpOutcome, ItemId, NewMailReceiver, PushOutput, PushQueue, PushSettings};
use crate::relay::{unix_now, Relay};
use bytes::Bytes;
use chatmail_core::BlockingExecutor;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_LENGTH, HOST};
use hyper::{Request, Uri};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};
use tokio_rustls::TlsConnector;

/// Most bytes of a response body read (to keep the connection alive); the status is
/// all that counts.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Most file operations written in one blocking job (one directory fsync each).
const MAX_FILE_BATCH: usize = 1024;

/// Why `notify_url` cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// Not an absolute `http://` or `https://` URL with a host.
    #[error("notify_url {0:?} is not an http:// or https:// URL with a host")]
    Url(String),
}

/// Where notifications go: `notify_url`, parsed once.
struct Endpoint {
    uri: Uri,
    /// Host to connect to (without the brackets of an IPv6 literal) and port.
    host: String,
    port: u16,
    /// `Some` for https.
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, EndpointError> {
        let bad = || EndpointError::Url(url.to_string());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let host = uri.host().ok_or_else(bad)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let config = ClientTls::new(&[]).config(Protocol::Https, false);
            let name = server_name(&host).map_err(|_| bad())?;
            Some((TlsConnector::from(config), name))
        } else {
            None
        };
        Ok(Endpoint {
            uri,
            host,
            port,
            tls,
        })
    }

    /// A new HTTP/1.1 connection; its I/O runs in a task of its own that ends when the
    /// returned sender is dropped.
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                handshake(stream).await
            }
            None => handshake(tcp).await,
        }
    }

    fn request(&self, token: &str) -> Result<Request<Full<Bytes>>, String> {
        let authority = self.uri.authority().map(|a| a.as_str()).unwrap_or_default();
        // Origin form (`/notify`), as servers expect from a client that is no proxy.
        let path = self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        Request::post(path)
            .header(HOST, authority)
            .header(CONTENT_LENGTH, token.len())
            .body(Full::new(Bytes::copy_from_slice(token.as_bytes())))
            .map_err(|e| format!("HTTP request: {e}"))
    }

    /// One POST of `token` on `conn` (kept for the next one when the exchange completes
    /// cleanly). A kept connection the endpoint closed meanwhile is replaced once.
    async fn post(&self, conn: &mut Option<SendRequest<Full<Bytes>>>, token: &str) -> HttpOutcome {
        let mut may_retry = conn.is_some();
        loop {
            let mut sender = match conn.take() {
                Some(sender) => sender,
                None => match self.connect().await {
                    Ok(sender) => sender,
                    Err(error) => {
                        tracing::debug!(%error, "push endpoint unreachable");
                        return HttpOutcome::NetworkError;
                    }
                },
            };
            let exchange = async {
                sender.ready().await.map_err(|e| format!("HTTP: {e}"))?;
                let request = self.request(token)?;
                sender
                    .send_request(request)
                    .await
                    .map_err(|e| format!("HTTP: {e}"))
            };
            match exchange.await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    // Read the (small) body so the connection can carry the next POST.
                    if Limited::new(response.into_body(), MAX_RESPONSE_BODY)
                        .collect()
                        .await
                        .is_ok()
                    {
                        *conn = Some(sender);
                    }
                    return HttpOutcome::Status(status);
                }
                Err(error) if may_retry => {
                    tracing::debug!(%error, "kept push connection failed; reconnecting");
                    may_retry = false;
                }
                Err(error) => {
                    tracing::debug!(%error, "push POST failed");
                    return HttpOutcome::NetworkError;
                }
            }
        }
    }
}

/// Runs the push queue for `relay` until `stop`: restores the pending files of
/// `<mailboxes_dir>/pending_notifications`, then serves deliveries from `new_mail`.
/// On shutdown, POSTs still out are abandoned (their files stay for the next start) and
/// every file operation asked for so far is completed before it returns.
pub(crate) async fn run(
    relay: Arc<Relay>,
    new_mail: NewMailReceiver,
    settings: PushSettings,
    storage: Option<PendingStorage>,
    executor: Arc<dyn BlockingExecutor>,
    mut stop: ShutdownSignal,
) {
    let endpoint = match Endpoint::parse(&relay.config().notify_url) {
        Ok(endpoint) => Arc::new(endpoint),
        Err(error) => {
            tracing::error!(%error, "push notifications are off");
            return;
        }
    };
    let storage = Arc::new(storage.unwrap_or_else(|| PendingStorage::Files {
        dir: pending::pending_dir(&relay.config().mailboxes_dir),
        executor,
    }));
    let restored = match storage.load().await {
        Ok(items) => items,
        Err(error) => {
            tracing::error!(%error, "cannot read pending push notifications");
            Vec::new()
        }
    };
    let max_in_flight = settings.max_in_flight.max(1);
    let post_timeout = settings.post_timeout;
    let mut queue = PushQueue::new(settings, rand::random(), Instant::now(), unix_now());
    if !restored.is_empty() {
        tracing::info!(
            items = restored.len(),
            "pending push notifications restored"
        );
    }
    for item in restored {
        queue.restore(item, Instant::now());
    }

    let (files_tx, files_rx) = mpsc::unbounded_channel();
    let files = tokio::spawn(write_files(storage.clone(), files_rx));
    // With a shared database: take over the notifications of nodes that stopped.
    let mut adopt_timer = tokio::time::interval(crate::outbound::NODE_HEARTBEAT);
    adopt_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The queue keeps at most `max_in_flight` POSTs out: the jobs channel never fills.
    let (jobs_tx, jobs_rx) = mpsc::channel::<(ItemId, String)>(max_in_flight);
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let (results_tx, mut results_rx) = mpsc::unbounded_channel();
    let workers: Vec<_> = (0..max_in_flight)
        .map(|_| {
            tokio::spawn(post_worker(
                endpoint.clone(),
                jobs_rx.clone(),
                results_tx.clone(),
                post_timeout,
            ))
        })
        .collect();
    let mut new_mail = new_mail.0;
    let mut mail_open = true;
    loop {
        while let Some(output) = queue.poll() {
            match output {
                PushOutput::Persist(item) => {
                    let _ = files_tx.send(FileOp::Write(item));
                }
                PushOutput::Forget(id) => {
                    let _ = files_tx.send(FileOp::Remove(id));
                }
                PushOutput::Post { id, token } => {
                    if jobs_tx.try_send((id, token)).is_err() {
                        queue.on_response(id, HttpOutcome::NetworkError, Instant::now());
                    }
                }
                PushOutput::RemoveToken { account, token } => {
                    let relay = relay.clone();
                    tokio::spawn(async move {
                        let tokens = relay.device_tokens();
                        if let Err(error) = tokens.remove_token(&account, &token, unix_now()).await
                        {
                            tracing::warn!(%error, "removing a device token failed");
                        }
                    });
                }
            }
        }
        let stats = queue.stats();
        relay.metrics().push_state(
            queue.len() as u64,
            stats.sent,
            stats.gone,
            stats.failed_attempts,
            stats.dropped_deadline + stats.dropped_full,
        );
        let wake = queue.poll_timeout();
        tokio::select! {
            mail = new_mail.next(), if mail_open => match mail {
                Some(mail) => queue.new_message(&mail.account, mail.tokens, Instant::now()),
                // The relay (and its notifier) is gone: retries go on until shutdown.
                None => mail_open = false,
            },
            Some((id, outcome)) = results_rx.recv() => queue.on_response(id, outcome, Instant::now()),
            _ = adopt_timer.tick(), if storage.is_shared() => {
                let now_ms = unix_now().saturating_mul(1000);
                let stale = crate::outbound::NODE_STALE_AFTER.as_millis() as u64;
                match storage.adopt(now_ms, now_ms.saturating_sub(stale)).await {
                    Ok(items) => {
                        if !items.is_empty() {
                            tracing::info!(items = items.len(), "took over the push notifications of a node that stopped");
                        }
                        for item in items {
                            queue.restore(item, Instant::now());
                        }
                    }
                    Err(error) => tracing::warn!(%error, "pending push notifications: heartbeat failed"),
                }
            }
            _ = sleep_until(wake), if wake.is_some() => queue.handle_timeout(Instant::now()),
            _ = stop.wait() => break,
        }
    }
    for worker in &workers {
        worker.abort();
    }
    let stats = queue.stats();
    tracing::info!(
        sent = stats.sent,
        gone = stats.gone,
        dropped = stats.dropped_deadline + stats.dropped_full,
        pending = queue.len(),
        "push queue stopped"
    );
    drop(files_tx);
    let _ = files.await;
}

/// HTTP/1.1 over `io`; the connection's I/O runs in a task of its own.
async fn handshake<IO>(io: IO) -> Result<SendRequest<Full<Bytes>>, String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn sleep_until(wake: Option<Instant>) {
    if let Some(wake) = wake {
        tokio::time::sleep_until(wake.into()).await;
    }
}

/// One of `max_in_flight` POST workers, each with its own keep-alive connection (the
/// reference keeps one HTTP session per worker thread). Every job gets exactly one
/// result.
async fn post_worker(
    endpoint: Arc<Endpoint>,
    jobs: Arc<Mutex<mpsc::Receiver<(ItemId, String)>>>,
    results: mpsc::UnboundedSender<(ItemId, HttpOutcome)>,
    timeout: Duration,
) {
    let mut conn = None;
    loop {
        let job = jobs.lock().await.recv().await;
        let Some((id, token)) = job else {
            return;
        };
        let outcome = match tokio::time::timeout(timeout, endpoint.post(&mut conn, &token)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                conn = None;
                HttpOutcome::NetworkError
            }
        };
        if results.send((id, outcome)).is_err() {
            return;
        }
    }
}

/// Applies file operations in the order they come, batched, on the blocking pool; ends
/// when the channel closes and everything is written.
async fn write_files(storage: Arc<PendingStorage>, mut ops: mpsc::UnboundedReceiver<FileOp>) {
    let mut batch = Vec::new();
    while ops.recv_many(&mut batch, MAX_FILE_BATCH).await > 0 {
        let ops = std::mem::take(&mut batch);
        if let Err(error) = storage.apply(ops).await {
            tracing::error!(%error, "writing pending push notifications failed");
        }
    }
}
