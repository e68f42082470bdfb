//! The tokio + rustls driver (feature `tokio`): listeners for every configured port,
//! STARTTLS and implicit TLS, timeouts from the engines, connection limits, graceful
//! shutdown. It only pumps bytes between sockets and the sans-IO engines; every decision
//! is the engines' and [`Relay`]'s.
//!
//! Deadlines ([`Timeouts`](chatmail_core::config::Timeouts), in `config.timeouts`): the
//! engines time the dialogue (login, command, transfer, inactivity, MX session) and say
//! goodbye themselves (`421 4.4.2`, `* BYE`); the driver bounds what they do not see,
//! the TLS handshake (implicit and STARTTLS) and each write. Connections are limited per
//! listener and per client IP (IMAP: 143 and 993 together), and the message bytes all
//! sessions hold come from the relay's one [`Relay::message_budget`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use chatmail::tokio_driver::Server;
//! use chatmail::Relay;
//! use std::sync::Arc;
//!
//! let config = chatmail::core::config::Config::from_file("chatmail.ini".as_ref())?;
//! let relay = Arc::new(Relay::builder(config).maildir(chatmail::tokio_driver::blocking_executor()).build()?);
//! let server = Server::bind(relay, "/var/lib/chatmail".as_ref()).await?;
//! println!("listening on {:?}", server.ports());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```
//!
//! Logs (`tracing`) never contain client IP addresses or message contents.

pub mod acme;
mod deflated;
pub mod delivery;
pub mod descriptors;
mod https;
pub mod limits;
mod metrics_http;
mod mxdeliv;
mod pump;
pub mod push;
pub mod resolver;
mod shutdown;
mod stream;
pub mod tls;
pub mod tls_session;

use crate::credentials::Endpoints;
use crate::outbound::Transport;
use crate::push::{NewMailReceiver, PushSettings};
use crate::relay::Relay;
use crate::web::Site;
use chatmail_core::BlockingExecutor;
use chatmail_imap::Session;
use chatmail_smtp::server::{Role, ServerSession, Transport as SmtpTransport};
use limits::ConnectionLimit;
use shutdown::ShutdownSignal;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stream::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// How long shutdown waits for open connections (and their in-flight deliveries).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A [`BlockingExecutor`] that runs jobs with `tokio::task::spawn_blocking`, so fsyncs
/// never block the runtime's workers (password hashes run on the relay's own hashing
/// pool). Call it inside a runtime.
pub fn blocking_executor() -> Arc<dyn BlockingExecutor> {
    Arc::new(TokioBlocking)
}

struct TokioBlocking;

impl BlockingExecutor for TokioBlocking {
    fn spawn_blocking(&self, job: Box<dyn FnOnce() + Send + 'static>) {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(job);
            }
            // Outside a runtime (a test's block_on, say): a plain thread does the job.
            Err(_) => {
                std::thread::spawn(job);
            }
        }
    }
}

/// The local addresses the server listens on; a listener that is off (configured port
/// 0 with [`Server::bind`]) has port 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// MX (port 25).
    pub smtp: SocketAddr,
    /// Submission with STARTTLS (587).
    pub submission: SocketAddr,
    /// Submission with implicit TLS (465).
    pub submissions: SocketAddr,
    /// IMAP with STARTTLS (143).
    pub imap: SocketAddr,
    /// IMAP with implicit TLS (993).
    pub imaps: SocketAddr,
    /// HTTPS (443).
    pub https: SocketAddr,
    /// The Prometheus endpoint (`metrics_listen`; port 0 when it is not set).
    pub metrics: SocketAddr,
}

/// Counts open connections so that shutdown can wait for them.
#[derive(Default)]
struct Inflight {
    open: AtomicUsize,
    idle: tokio::sync::Notify,
}

struct InflightGuard(Arc<Inflight>);

impl Inflight {
    fn enter(self: &Arc<Self>) -> InflightGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        InflightGuard(self.clone())
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A bound relay server: every listener is accepting once [`Server::bind`] returns.
pub struct Server {
    relay: Arc<Relay>,
    /// How the delivery queue reaches other servers (default: [`delivery::NetworkTransport`]).
    transport: Option<Arc<dyn Transport>>,
    tls: tls::TlsConfigs,
    /// How ACME certificates are obtained (ACME mode only).
    acme: acme::AcmeOptions,
    listeners: Vec<(Service, TcpListener)>,
    /// The Prometheus endpoint, if `metrics_listen` is set.
    metrics_listener: Option<TcpListener>,
    ports: Ports,
    /// The push notifications to send ([`Server::with_push`]).
    push: Option<(NewMailReceiver, PushSettings)>,
    /// Where the pending notifications live (`None`: files under `mailboxes_dir`).
    push_pending: Option<crate::push::storage::PendingStorage>,
    /// A cap on all connections together below the descriptor budget
    /// ([`Server::with_max_connections`]).
    max_connections: Option<u32>,
}

/// Which ports [`Server::bind_ports`] binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortChoice {
    /// The configuration's; 0 is off.
    Configured,
    /// Free ones the system picks, for every listener.
    Free,
}

// The listeners are the metrics' (their open connections are a gauge per listener).
use crate::metrics::Listener as Service;

impl Server {
    /// Loads or creates the TLS certificate (kept in `data_dir` when self-signed) and
    /// binds every port of the relay's configuration on its `listen_address`. A port of
    /// 0 turns that listener off (an operator behind another HTTPS server sets
    /// `https_port = 0`); [`Server::ports`] reports it with port 0.
    pub async fn bind(relay: Arc<Relay>, data_dir: &Path) -> Result<Server, BindError> {
        Server::bind_ports(relay, data_dir, PortChoice::Configured).await
    }

    /// As [`Server::bind`], but every listener, whatever its configured port, on a free
    /// port the system picks: for tests and embedders that run several relays side by
    /// side. [`Server::ports`] tells which.
    pub async fn bind_on_free_ports(
        relay: Arc<Relay>,
        data_dir: &Path,
    ) -> Result<Server, BindError> {
        Server::bind_ports(relay, data_dir, PortChoice::Free).await
    }

    async fn bind_ports(
        relay: Arc<Relay>,
        data_dir: &Path,
        choice: PortChoice,
    ) -> Result<Server, BindError> {
        let config = relay.config().clone();
        let tls = tls::load_or_create(&config, data_dir)?;
        let ip = config.listen_address;
        let mut listeners = Vec::new();
        for (service, port) in [
            (Service::Smtp, config.smtp_port),
            (Service::Submission, config.submission_port),
            (Service::Submissions, config.submissions_port),
            (Service::Imap, config.imap_port),
            (Service::Imaps, config.imaps_port),
            (Service::Https, config.https_port),
        ] {
            let port = match choice {
                PortChoice::Configured if port == 0 => continue,
                PortChoice::Configured => port,
                PortChoice::Free => 0,
            };
            let addr = SocketAddr::new(ip, port);
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| BindError::Listen { addr, source })?;
            listeners.push((service, listener));
        }
        let metrics_listener = match config.metrics_listen {
            None => None,
            Some(configured) => {
                let addr = match choice {
                    PortChoice::Configured => configured,
                    PortChoice::Free => SocketAddr::new(configured.ip(), 0),
                };
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| BindError::Listen { addr, source })?;
                Some(listener)
            }
        };
        let local = |s: Service| {
            listeners
                .iter()
                .find(|(svc, _)| *svc == s)
                .and_then(|(_, l)| l.local_addr().ok())
                .unwrap_or_else(|| SocketAddr::new(ip, 0))
        };
        let ports = Ports {
            smtp: local(Service::Smtp),
            submission: local(Service::Submission),
            submissions: local(Service::Submissions),
            imap: local(Service::Imap),
            imaps: local(Service::Imaps),
            https: local(Service::Https),
            metrics: metrics_listener
                .as_ref()
                .and_then(|l| l.local_addr().ok())
                .unwrap_or_else(|| SocketAddr::new(ip, 0)),
        };
        let transport: Option<Arc<dyn Transport>> = match relay.resolver() {
            Some(resolver) if relay.delivery_queue().is_some() => {
                Some(Arc::new(delivery::NetworkTransport::new(
                    delivery::TransportSettings::from_config(&config),
                    resolver.clone(),
                )))
            }
            _ => None,
        };
        Ok(Server {
            relay,
            transport,
            tls,
            acme: acme::AcmeOptions::default(),
            listeners,
            metrics_listener,
            ports,
            push: None,
            push_pending: None,
            max_connections: None,
        })
    }

    /// Hands the delivery queue's attempts to `transport` instead of the network (tests,
    /// embedders that relay through a smarthost of their own).
    pub fn with_transport(mut self, transport: Arc<dyn Transport>) -> Server {
        self.transport = Some(transport);
        self
    }

    /// Sends push notifications (spec 5.4) to `config.notify_url` for the deliveries
    /// that reach `new_mail`: the receiver of the [`push::channel`](crate::push::channel)
    /// whose notifier the relay was built with. Pending notifications of an earlier run
    /// (`<mailboxes_dir>/pending_notifications`) are sent first.
    pub fn with_push(mut self, new_mail: NewMailReceiver, settings: PushSettings) -> Server {
        self.push = Some((new_mail, settings));
        self
    }

    /// Keeps the pending push notifications in `storage` instead of files under
    /// `mailboxes_dir`: the database that the nodes of a domain share
    /// ([`PendingStorage::Shared`](crate::push::storage::PendingStorage), feature
    /// `postgres`), whose notifications of a node that stopped are taken over by another.
    pub fn with_push_pending(mut self, storage: crate::push::storage::PendingStorage) -> Server {
        self.push_pending = Some(storage);
        self
    }

    /// Admits at most `max` connections on all listeners together, fewer than the
    /// descriptor budget would ([`descriptors`]): for an embedder that needs descriptors
    /// of its own, and for tests of the cap.
    pub fn with_max_connections(mut self, max: u32) -> Server {
        self.max_connections = Some(max);
        self
    }

    /// Changes how ACME certificates are obtained and renewed (tests: a local CA's
    /// root, early renewal).
    pub fn with_acme_options(mut self, options: acme::AcmeOptions) -> Server {
        self.acme = options;
        self
    }

    /// The certificate the listeners serve; it changes on renewal or reload.
    pub fn certificates(&self) -> Arc<tls::CertResolver> {
        self.tls.certs.clone()
    }

    /// Where the server listens.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// Whether the certificate served now is self-signed (clients must be told to
    /// accept it).
    pub fn self_signed(&self) -> bool {
        self.tls.self_signed()
    }

    /// The host and implicit-TLS ports a client uses, for `dclogin:` URLs.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            host: self.ports.imaps.ip().to_string(),
            imaps_port: self.ports.imaps.port(),
            submissions_port: self.ports.submissions.port(),
        }
    }

    /// Serves until `shutdown` completes; then stops accepting, tells idle clients
    /// goodbye, and waits up to 30 s for open connections to finish (in-flight
    /// deliveries complete: a session is only interrupted while it waits for input).
    ///
    /// At start it raises the process's soft descriptor limit to the hard one and admits
    /// connections, all listeners together, only up to that limit minus a reserve for
    /// store files and deliveries ([`descriptors`]); the budget is logged. A connection
    /// beyond any limit is refused at once: on a cleartext port with a one-line goodbye
    /// of its protocol (SMTP `421 4.3.2`, IMAP `* BYE`), on a TLS port by closing.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let budget = descriptors::raise_descriptor_limit();
        tracing::info!(
            soft_limit_before = budget.soft_before,
            soft_limit = budget.soft,
            reserve = budget.reserve,
            max_connections = self
                .max_connections
                .map_or(budget.connections, |m| m.min(budget.connections)),
            "file descriptors: connections on all listeners together capped below the limit"
        );
        let cap = self
            .max_connections
            .map_or(budget.connections, |m| m.min(budget.connections));
        let all = ConnectionLimit::new(cap, cap);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let inflight = Arc::new(Inflight::default());
        let config = self.relay.config().clone();
        let client_acceptor = TlsAcceptor::from(self.tls.clients.clone());
        let mx_acceptor = TlsAcceptor::from(self.tls.mx.clone());
        let smtp_limit = config.max_smtp_connections;
        let smtp_per_ip = config.smtp_connection_limit_per_ip();
        // One IMAP limit for 143 and 993 together, as Dovecot's one `imap` service.
        let imap_limit = ConnectionLimit::new(
            config.max_imap_connections,
            config.imap_connection_limit_per_ip(),
        );
        let endpoints = self.endpoints();
        let mut tasks = Vec::new();
        for (service, listener) in self.listeners {
            let relay = self.relay.clone();
            let stop = ShutdownSignal(stop_rx.clone());
            let stop_rx = stop_rx.clone();
            let inflight = inflight.clone();
            let task = match service {
                Service::Https => {
                    // /new and the home page follow the certificate actually served
                    // (self-signed until ACME has one, spec 2.6).
                    let site = Arc::new(
                        Site::new(config.clone(), endpoints.clone())
                            .with_self_signed(self.tls.certs.self_signed_flag()),
                    );
                    let tls = self.tls.clone();
                    // Self-signed relays let anyone GET /new: limited per IP as nginx does.
                    let new_rate = Arc::new(limits::RequestRate::new(2, 5));
                    let limit = ConnectionLimit::new(smtp_limit, smtp_per_ip);
                    let limit = Admission::counted(limit, &all, &relay, service);
                    tokio::spawn(accept_loop(listener, limit, stop, move |tcp, peer| {
                        let guard = inflight.enter();
                        let fut = https::serve_connection(
                            tcp,
                            peer,
                            tls.clone(),
                            relay.clone(),
                            site.clone(),
                            new_rate.clone(),
                        );
                        async move {
                            let _guard = guard;
                            fut.await
                        }
                    }))
                }
                Service::Smtp | Service::Submission | Service::Submissions => {
                    let (role, acceptor, implicit) = match service {
                        Service::Smtp => (Role::Mx, mx_acceptor.clone(), false),
                        Service::Submission => (Role::Submission, client_acceptor.clone(), false),
                        _ => (Role::Submission, client_acceptor.clone(), true),
                    };
                    let smtp_config = Arc::new(relay.smtp_config(role));
                    let limit = ConnectionLimit::new(smtp_limit, smtp_per_ip);
                    let mut limit = Admission::counted(limit, &all, &relay, service);
                    if !implicit {
                        limit.refusal =
                            Some(b"421 4.3.2 Too many connections, try again later\r\n");
                    }
                    tokio::spawn(accept_loop(listener, limit, stop, move |tcp, peer| {
                        let (relay, smtp_config, acceptor) =
                            (relay.clone(), smtp_config.clone(), acceptor.clone());
                        let (stop, guard) = (ShutdownSignal(stop_rx.clone()), inflight.enter());
                        async move {
                            let _guard = guard;
                            let timeouts = &relay.config().timeouts;
                            let implicit = implicit.then_some(&acceptor);
                            // Boxed, as in the pump's STARTTLS: the handshake's state
                            // is not kept in the task after it.
                            let Some(conn) =
                                Box::pin(Connection::open(tcp, implicit, timeouts)).await
                            else {
                                return;
                            };
                            let transport = match conn {
                                Connection::Tls(_) => SmtpTransport::Tls,
                                _ => SmtpTransport::Cleartext,
                            };
                            let session = ServerSession::new(
                                smtp_config,
                                relay.policy().clone(),
                                transport,
                                Instant::now(),
                            );
                            pump::serve(relay, peer.ip(), session, conn, Some(acceptor), stop).await
                        }
                    }))
                }
                Service::Imap | Service::Imaps => {
                    let implicit = service == Service::Imaps;
                    let acceptor = client_acceptor.clone();
                    let imap_config = Arc::new(relay.imap_config(implicit));
                    let mut limit = Admission::counted(imap_limit.clone(), &all, &relay, service);
                    if !implicit {
                        limit.refusal = Some(b"* BYE Too many connections, try again later.\r\n");
                    }
                    tokio::spawn(accept_loop(listener, limit, stop, move |tcp, peer| {
                        let (relay, acceptor) = (relay.clone(), acceptor.clone());
                        let imap_config = imap_config.clone();
                        let (stop, guard) = (ShutdownSignal(stop_rx.clone()), inflight.enter());
                        async move {
                            let _guard = guard;
                            let timeouts = &relay.config().timeouts;
                            let implicit = implicit.then_some(&acceptor);
                            // Boxed, as in the pump's STARTTLS: the handshake's state
                            // is not kept in the task after it.
                            let Some(conn) =
                                Box::pin(Connection::open(tcp, implicit, timeouts)).await
                            else {
                                return;
                            };
                            let session = Session::new(imap_config, Instant::now());
                            pump::serve(relay, peer.ip(), session, conn, Some(acceptor), stop).await
                        }
                    }))
                }
            };
            tasks.push(task);
        }
        if let Some(listener) = self.metrics_listener {
            let relay = self.relay.clone();
            let limit = Admission {
                limit: ConnectionLimit::new(
                    metrics_http::MAX_CONNECTIONS,
                    metrics_http::MAX_CONNECTIONS_PER_IP,
                ),
                all: all.clone(),
                gauge: None,
                refusal: None,
            };
            let stop = ShutdownSignal(stop_rx.clone());
            // Not among the connections shutdown waits for: a scrape holds nothing.
            let serve = move |tcp, _| metrics_http::serve_connection(tcp, relay.clone());
            tasks.push(tokio::spawn(accept_loop(listener, limit, stop, serve)));
        }
        tasks.push(tokio::spawn(expire_daily(self.relay.clone())));
        if let Some(task) = acme::maintenance(&self.tls, &config, &self.acme) {
            tasks.push(tokio::spawn(task));
        }
        let queue_runner = match (self.relay.delivery_queue(), self.transport) {
            (Some(_), Some(transport)) => {
                let mut stop = ShutdownSignal(stop_rx.clone());
                Some(tokio::spawn(self.relay.clone().run_delivery_queue(
                    transport,
                    tokio::time::sleep,
                    async move { stop.wait().await },
                )))
            }
            (Some(_), None) => {
                tracing::error!("the relay has a delivery queue but no resolver: nothing is delivered to other servers");
                None
            }
            _ => None,
        };
        let push_pending = self.push_pending;
        let pusher = self.push.map(|(new_mail, settings)| {
            tokio::spawn(push::run(
                self.relay.clone(),
                new_mail,
                settings,
                push_pending,
                blocking_executor(),
                ShutdownSignal(stop_rx.clone()),
            ))
        });
        shutdown.await;
        tracing::info!("shutting down: no new connections, finishing open ones");
        let _ = stop_tx.send(true);
        for task in &tasks {
            task.abort();
        }
        // An aborted task is dropped (and its listener closed) on its worker some time
        // later; wait for that, so that no listener accepts once shutdown goes on.
        for task in tasks {
            let _ = task.await;
        }
        // The queue records what is in flight (10 s at most) before the process ends.
        if let Some(runner) = queue_runner {
            let _ = runner.await;
        }
        // The push queue completes its file writes (pending files survive for the next start).
        if let Some(pusher) = pusher {
            let _ = pusher.await;
        }
        let wait_idle = async {
            loop {
                let notified = inflight.idle.notified();
                if inflight.open.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, wait_idle)
            .await
            .is_err()
        {
            tracing::warn!(
                open = inflight.open.load(Ordering::SeqCst),
                "connections still open after the shutdown grace period"
            );
        }
    }
}

/// The reference's expiry timer, daily at 00:02 (spec 6.1: systemd's `OnCalendar`, the
/// server's local time; here UTC, what the reference's servers mostly run on), plus once
/// a minute after start so that a relay restarted often still cleans up.
async fn expire_daily(relay: Arc<Relay>) {
    const DAY: u64 = 86_400;
    const AT: u64 = 2 * 60;
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::time::sleep(wait).await;
        if let Err(e) = relay.run_expiry().await {
            tracing::warn!(error = %e, "expiry could not run");
        }
        let now = crate::relay::unix_now();
        let next = (now - now % DAY) + AT;
        let next = if next > now { next } else { next + DAY };
        wait = Duration::from_secs(next - now);
    }
}

/// What a listener admits: connections within `limit`, counted in the metrics' gauge of
/// open connections of that listener.
struct Admission {
    limit: Arc<ConnectionLimit>,
    /// The cap of all listeners together (the descriptor budget).
    all: Arc<ConnectionLimit>,
    gauge: Option<(Arc<crate::metrics::Metrics>, Service)>,
    /// The goodbye a refused connection gets on a cleartext port.
    refusal: Option<&'static [u8]>,
}

impl Admission {
    fn counted(
        limit: Arc<ConnectionLimit>,
        all: &Arc<ConnectionLimit>,
        relay: &Relay,
        service: Service,
    ) -> Admission {
        Admission {
            limit,
            all: all.clone(),
            gauge: Some((relay.metrics().clone(), service)),
            refusal: None,
        }
    }
}

/// Accepts connections within `admission` and starts `handle` for each, until shutdown.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    admission: Admission,
    mut stop: ShutdownSignal,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.wait() => return,
        };
        let slots = admission
            .all
            .try_acquire(peer.ip())
            .and_then(|all| Some((all, admission.limit.try_acquire(peer.ip())?)));
        let Some(slot) = slots else {
            tracing::debug!("connection limit reached");
            if let Some(line) = admission.refusal {
                // Best effort, never waiting: a fresh socket's send buffer takes it.
                let _ = tcp.try_write(line);
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let open = admission
            .gauge
            .as_ref()
            .map(|(m, l)| m.connection_opened(*l));
        // The guards ride along in the closure of `map`, not in an async block: an
        // async block that awaits `fut` keeps room for it twice (as captured and as
        // awaited), which doubled every connection's task (load/idle, BENCHMARKS.md).
        let fut = handle(tcp, peer);
        tokio::spawn(futures::FutureExt::map(fut, move |()| drop((slot, open))));
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The TLS certificate could not be loaded or created.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}
