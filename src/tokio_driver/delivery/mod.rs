//! Delivery to other servers over the network (spec 3.4): [`NetworkTransport`], the
//! tokio implementation of [`Transport`].
//!
//! One attempt resolves the destination's mail exchangers through the relay's
//! [`Resolver`] (their addresses too: no other DNS is used, so a static zone works end
//! to end), then tries each exchanger in preference order: HTTPS `POST /mxdeliv` first,
//! then SMTP with mandatory STARTTLS. A reply from a peer is final for the attempt; a
//! connection, TLS or protocol error moves on to the next exchanger.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use chatmail::outbound::{Handover, Transport};
//! use chatmail::tokio_driver::delivery::{NetworkTransport, TransportSettings};
//! use chatmail::tokio_driver::resolver::SystemResolver;
//! use std::sync::Arc;
//!
//! let config = chatmail::core::config::Config::with_domain("chat.example.org");
//! let resolver = Arc::new(SystemResolver::from_system_conf()?);
//! let transport = NetworkTransport::new(TransportSettings::from_config(&config), resolver);
//! let message = bytes::Bytes::from_static(b"Subject: hi\r\n\r\nencrypted...\r\n");
//! let recipients = vec!["bob@example.net".to_string()];
//! let outcomes = transport
//!     .hand_over(Handover {
//!         domain: "example.net",
//!         mail_from: "alice@chat.example.org",
//!         recipients: &recipients,
//!         message: &message,
//!     })
//!     .await;
//! println!("{outcomes:?}");
//! # Ok(()) }
//! ```

mod attempt;
mod cache;
mod https;
mod settings;
mod smtp;
// The push driver builds its client TLS the same way.
pub(super) mod tls;

pub use settings::TransportSettings;

use crate::outbound::{Handover, RecipientOutcome, Transport};
use attempt::{connect_any, sanitize, Attempt};
use cache::{IdleKey, IdlePool, SmtpOnlyMemo};
use chatmail_core::dns::{Answer, MailExchangers, Record, RecordType, Resolver};
use chatmail_policy::Reply;
use chatmail_smtp::client::{OutgoingEnvelope, TransactionOutcome};
use https::HttpsOutcome;
use smtp::{SendFailure, SmtpConnection};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls::{ClientTls, Protocol};
use tokio_rustls::TlsConnector;

/// Most exchangers tried in one attempt (the most preferred ones).
pub const MAX_EXCHANGERS: usize = 10;

/// Most addresses tried per exchanger.
pub const MAX_ADDRESSES_PER_HOST: usize = 4;

/// How long a host that took mail over SMTP (after HTTPS failed) is sent SMTP only.
pub const SMTP_ONLY_FOR: Duration = Duration::from_secs(30 * 60);

/// How long an idle SMTP connection is kept for the next message to its host.
pub const IDLE_CONNECTION_FOR: Duration = Duration::from_secs(100);

/// Most hosts remembered as SMTP-only.
pub const MAX_SMTP_ONLY_HOSTS: usize = 10_000;

/// Most idle SMTP connections kept (one per host and port).
pub const MAX_IDLE_CONNECTIONS: usize = 64;

/// Delivery to other servers over the network (spec 3.4): see the [module docs](self).
///
/// Keeps, in memory only: the hosts to send SMTP only (for [`SMTP_ONLY_FOR`] after a
/// delivery over SMTP), and one idle SMTP connection per host and port (for
/// [`IDLE_CONNECTION_FOR`], reused with `RSET`). Call it inside a tokio runtime.
pub struct NetworkTransport {
    settings: TransportSettings,
    resolver: Arc<dyn Resolver>,
    tls: ClientTls,
    smtp_only: SmtpOnlyMemo,
    idle: IdlePool,
}

/// An exchanger to try.
struct Exchanger {
    /// Its name (absolute, trailing dot) or, for an address literal, the address.
    host: String,
    /// Known already for an address literal; resolved when its turn comes otherwise.
    address: Option<IpAddr>,
}

impl NetworkTransport {
    /// A transport with `settings`, resolving through `resolver`. Reads the system's
    /// trusted certificates once, here.
    pub fn new(settings: TransportSettings, resolver: Arc<dyn Resolver>) -> NetworkTransport {
        NetworkTransport {
            tls: ClientTls::new(&settings.extra_roots),
            settings,
            resolver,
            smtp_only: SmtpOnlyMemo::new(MAX_SMTP_ONLY_HOSTS, SMTP_ONLY_FOR),
            idle: IdlePool::new(MAX_IDLE_CONNECTIONS, IDLE_CONNECTION_FOR),
        }
    }

    /// The settings this transport connects with.
    pub fn settings(&self) -> &TransportSettings {
        &self.settings
    }

    /// The whole attempt, unbounded in time (the caller bounds it).
    async fn attempt(&self, handover: Handover<'_>) -> Vec<RecipientOutcome> {
        let count = handover.recipients.len();
        let all = |outcome: RecipientOutcome| vec![outcome; count];
        let domain = handover.domain;
        let exchangers = match self.exchangers(domain).await {
            Ok(exchangers) => exchangers,
            Err(outcome) => return all(outcome),
        };
        let attempt = Attempt {
            handover,
            settings: &self.settings,
        };
        let mut last: Option<(String, String)> = None;
        for exchanger in exchangers.iter().take(MAX_EXCHANGERS) {
            let host = exchanger.host.trim_end_matches('.');
            let addresses = match exchanger.address {
                Some(ip) => vec![ip],
                None => match self.addresses(&exchanger.host).await {
                    Ok(addresses) => addresses,
                    Err(e) => {
                        last = Some((host.to_string(), e));
                        continue;
                    }
                },
            };
            match self.exchange(&attempt, host, &addresses).await {
                Ok(outcomes) => return outcomes,
                Err(e) => {
                    tracing::debug!(host, error = %e, "exchanger failed");
                    last = Some((host.to_string(), e));
                }
            }
        }
        let (host, error) = last.unwrap_or_else(|| (domain.to_string(), "no mail server".into()));
        all(RecipientOutcome::Deferred(Reply::new(
            421,
            format!(
                "Failed to connect to any mail server; last attempt to {host}: {}",
                sanitize(error.as_bytes())
            ),
        )))
    }

    /// The exchangers of `domain` in order, or the outcome for every recipient when
    /// there are none to try.
    async fn exchangers(&self, domain: &str) -> Result<Vec<Exchanger>, RecipientOutcome> {
        if let Some(literal) = domain.strip_prefix('[') {
            let ip = parse_literal(literal).ok_or_else(|| {
                RecipientOutcome::Failed(Reply::new(
                    501,
                    format!(
                        "5.1.2 Bad destination address literal {}",
                        sanitize(domain.as_bytes())
                    ),
                ))
            })?;
            return Ok(vec![Exchanger {
                host: ip.to_string(),
                address: Some(ip),
            }]);
        }
        let named = |hosts: Vec<String>| {
            hosts
                .into_iter()
                .map(|host| Exchanger {
                    host,
                    address: None,
                })
                .collect()
        };
        match self.resolver.mail_exchangers(domain).await {
            Ok(MailExchangers::Hosts(hosts)) => Ok(named(hosts)),
            Ok(MailExchangers::Implicit(host)) => Ok(named(vec![host])),
            Ok(MailExchangers::NullMx) => Err(RecipientOutcome::Failed(Reply::new(
                556,
                "5.1.10 Permanent failure: Recipient address has null MX",
            ))),
            Ok(MailExchangers::NxDomain) => Err(RecipientOutcome::Failed(Reply::new(
                512,
                format!("Domain {domain} does not exist"),
            ))),
            Err(e) => {
                tracing::debug!(domain, error = %e, "MX lookup failed");
                Err(RecipientOutcome::Deferred(Reply::new(
                    421,
                    format!("DNS resolution failed for {domain}"),
                )))
            }
        }
    }

    /// The addresses of exchanger `host`: IPv4 first (a broken IPv6 route costs a
    /// connect timeout per address), then IPv6; at most [`MAX_ADDRESSES_PER_HOST`].
    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        let v4 = self.resolver.lookup(host, RecordType::A);
        let v6 = async {
            if self.settings.ipv6 {
                self.resolver.lookup(host, RecordType::Aaaa).await
            } else {
                Ok(Answer::NoData)
            }
        };
        let (v4, v6) = tokio::join!(v4, v6);
        let mut addresses = Vec::new();
        let mut problem = None;
        for answer in [v4, v6] {
            match answer {
                Ok(Answer::Records(records)) => {
                    addresses.extend(records.into_iter().filter_map(|r| match r {
                        Record::A(ip) => Some(IpAddr::V4(ip)),
                        Record::Aaaa(ip) => Some(IpAddr::V6(ip)),
                        _ => None,
                    }))
                }
                Ok(Answer::NoData) => {}
                Ok(Answer::NxDomain) => {
                    problem.get_or_insert_with(|| "host does not exist".to_string());
                }
                Err(e) => problem = Some(format!("DNS resolution failed: {}", e.0)),
            }
        }
        addresses.truncate(MAX_ADDRESSES_PER_HOST);
        if addresses.is_empty() {
            return Err(problem.unwrap_or_else(|| "host has no address".into()));
        }
        Ok(addresses)
    }

    /// HTTPS, then SMTP, to one exchanger: outcomes when the peer answered, the error
    /// when it could not be reached.
    async fn exchange(
        &self,
        attempt: &Attempt<'_>,
        host: &str,
        addresses: &[IpAddr],
    ) -> Result<Vec<RecipientOutcome>, String> {
        let count = attempt.handover.recipients.len();
        let any_certificate = tls::accepts_any_certificate(attempt.handover.domain, host);
        let server_name = tls::server_name(host)?;
        if !self.smtp_only.contains(host, Instant::now()) {
            let connector = TlsConnector::from(self.tls.config(Protocol::Https, any_certificate));
            let port = self.settings.https_port;
            match https::post(
                attempt,
                host,
                addresses,
                port,
                connector,
                server_name.clone(),
            )
            .await
            {
                HttpsOutcome::Delivered => {
                    return Ok(vec![
                        RecipientOutcome::Delivered(Reply::new(
                            250,
                            "OK (HTTPS)"
                        ));
                        count
                    ])
                }
                HttpsOutcome::Refused(reply) => {
                    return Ok(vec![RecipientOutcome::from_reply(reply); count])
                }
                HttpsOutcome::Unavailable(e) => {
                    tracing::debug!(host, error = %e, "HTTPS delivery unavailable, trying SMTP")
                }
            }
        }
        let key = IdleKey {
            host: host.to_ascii_lowercase(),
            port: self.settings.smtp_port,
            any_certificate,
        };
        let outcomes = self
            .smtp(attempt, key, addresses, server_name, any_certificate)
            .await?;
        if outcomes
            .iter()
            .any(|o| matches!(o, RecipientOutcome::Delivered(_)))
        {
            self.smtp_only.insert(host, Instant::now());
        }
        Ok(outcomes)
    }

    /// The message over SMTP: on the idle connection to this host if there is one
    /// (a fresh one if it turns out dead), else on a new one; kept for the next message.
    async fn smtp(
        &self,
        attempt: &Attempt<'_>,
        key: IdleKey,
        addresses: &[IpAddr],
        server_name: rustls::pki_types::ServerName<'static>,
        any_certificate: bool,
    ) -> Result<Vec<RecipientOutcome>, String> {
        let handover = &attempt.handover;
        let envelope = OutgoingEnvelope {
            mail_from: handover.mail_from.to_string(),
            recipients: handover.recipients.to_vec(),
        };
        let count = handover.recipients.len();
        if let Some(mut connection) = self.idle.take(&key) {
            match connection.send(&envelope, handover.message).await {
                Ok(outcome) => {
                    self.idle.put(key, connection);
                    return Ok(outcomes(&outcome, count));
                }
                Err(SendFailure::Envelope) => return Ok(bad_envelope(count)),
                // The server closed the idle connection meanwhile: a new one.
                Err(SendFailure::Connection(e)) => {
                    tracing::debug!(host = %key.host, error = %e, "idle SMTP connection unusable")
                }
            }
        }
        let settings = &self.settings;
        let tcp = connect_any(addresses, settings.smtp_port, settings.connect_timeout).await?;
        let connector = TlsConnector::from(self.tls.config(Protocol::Smtp, any_certificate));
        let mut connection = SmtpConnection::open(
            tcp,
            &settings.hello_name,
            connector,
            server_name,
            settings.io_timeout,
        )
        .await?;
        match connection.send(&envelope, handover.message).await {
            Ok(outcome) => {
                self.idle.put(key, connection);
                Ok(outcomes(&outcome, count))
            }
            Err(SendFailure::Envelope) => {
                self.idle.put(key, connection);
                Ok(bad_envelope(count))
            }
            Err(SendFailure::Connection(e)) => Err(e),
        }
    }
}

#[async_trait::async_trait]
impl Transport for NetworkTransport {
    async fn hand_over(&self, handover: Handover<'_>) -> Vec<RecipientOutcome> {
        if handover.recipients.is_empty() {
            return Vec::new();
        }
        // A little under the queue's own deadline, so that this answer is the one it
        // gets.
        let deadline = self.settings.attempt_deadline;
        let budget = deadline - deadline / 20;
        match tokio::time::timeout(budget, self.attempt(handover)).await {
            Ok(outcomes) => outcomes,
            Err(_) => vec![
                RecipientOutcome::Deferred(Reply::new(
                    421,
                    format!(
                        "4.4.1 Delivery attempt to {} timed out",
                        sanitize(handover.domain.as_bytes())
                    ),
                ));
                handover.recipients.len()
            ],
        }
    }

    fn attempt_deadline(&self) -> Duration {
        self.settings.attempt_deadline
    }
}

/// One outcome per recipient from the server's replies: `250 OK (SMTP)` for each it
/// took, its refusal (made safe) for the others.
fn outcomes(outcome: &TransactionOutcome, count: usize) -> Vec<RecipientOutcome> {
    (0..count)
        .map(|index| match outcome.recipient_result(index) {
            Ok(()) => RecipientOutcome::Delivered(Reply::new(250, "OK (SMTP)")),
            Err(reply) if reply.code >= 400 => RecipientOutcome::from_reply(Reply::new(
                reply.code,
                sanitize(reply.text.as_bytes()),
            )),
            // Not a refusal, not an acceptance: the transaction did not complete.
            Err(reply) => RecipientOutcome::Deferred(Reply::new(
                451,
                format!(
                    "4.3.0 Transaction incomplete: {} {}",
                    reply.code,
                    sanitize(reply.text.as_bytes())
                ),
            )),
        })
        .collect()
}

fn bad_envelope(count: usize) -> Vec<RecipientOutcome> {
    vec![
        RecipientOutcome::Failed(Reply::new(553, "5.1.3 Envelope address not usable in SMTP"));
        count
    ]
}

/// The address inside `[...]` (the `[` already removed): IPv4, or `IPv6:` and IPv6.
fn parse_literal(literal: &str) -> Option<IpAddr> {
    let inner = literal.strip_suffix(']')?;
    if inner.len() > 5 && inner[..5].eq_ignore_ascii_case("ipv6:") {
        return inner[5..]
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(IpAddr::V6);
    }
    inner.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_literals() {
        assert_eq!(
            parse_literal("192.0.2.1]"),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            parse_literal("IPv6:2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            parse_literal("ipv6:2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_literal("2001:db8::1]"), None);
        assert_eq!(parse_literal("192.0.2.1"), None);
        assert_eq!(parse_literal("example.org]"), None);
    }

    #[test]
    fn transaction_replies_become_outcomes() {
        let reply = |code: u16, text: &str| Reply::new(code, text);
        let outcome = TransactionOutcome {
            mail_from: reply(250, "2.1.0 Ok"),
            recipients: vec![
                reply(250, "2.1.5 Ok"),
                reply(550, "5.1.1 \x07unknown"),
                reply(450, "4.2.0 later"),
            ],
            data: Some(reply(250, "2.0.0 queued")),
        };
        let got = outcomes(&outcome, 3);
        assert_eq!(got[0], RecipientOutcome::Delivered(reply(250, "OK (SMTP)")));
        assert_eq!(
            got[1],
            RecipientOutcome::Failed(reply(550, "5.1.1 ?unknown"))
        );
        assert_eq!(
            got[2],
            RecipientOutcome::Deferred(reply(450, "4.2.0 later"))
        );
    }
}
