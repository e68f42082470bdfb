//! The system resolver: [`chatmail_core::dns::Resolver`] over hickory-resolver with the
//! name servers of `/etc/resolv.conf`, for delivery to other servers (MX, A, AAAA) and
//! DKIM (TXT).
//!
//! A mail server must tell four answers apart (RFC 5321 5.1): records; the name exists
//! without records of that type (no data: implicit MX); the name does not exist
//! (NXDOMAIN: a permanent failure); and no answer now (timeout, SERVFAIL, REFUSED, no
//! server: try again later). Every lookup is bounded by one total deadline besides
//! hickory's own per-query timeout and attempts, so a silent network cannot hold a
//! delivery past it.

use chatmail_core::dns::{absolute, Answer, Record, RecordType, Resolver, TemporaryFailure};
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType as WireType};
use hickory_resolver::TokioResolver;
use std::net::SocketAddr;
use std::time::Duration;

/// The reference's bound on one lookup, all queries and retries included.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Most records taken from one answer: more is no use to a delivery and only costs.
const MAX_RECORDS: usize = 64;

/// A resolver built from a configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("resolver configuration: {0}")]
pub struct ResolverConfigError(String);

/// The resolver `config.resolver` names: the system's ([`SystemResolver`]) or the zone
/// file of `static:PATH` ([`StaticZone`](chatmail_core::dns::StaticZone)). Call it
/// inside a tokio runtime.
pub fn resolver_from_config(
    config: &chatmail_core::config::Config,
) -> Result<std::sync::Arc<dyn Resolver>, ResolverConfigError> {
    use chatmail_core::config::ResolverSetting;
    Ok(match &config.resolver {
        ResolverSetting::System => std::sync::Arc::new(SystemResolver::from_system_conf()?),
        ResolverSetting::Static(path) => std::sync::Arc::new(
            chatmail_core::dns::StaticZone::load(path)
                .map_err(|e| ResolverConfigError(format!("zone file {}: {e}", path.display())))?,
        ),
    })
}

/// The operating system's resolver (the name servers of `/etc/resolv.conf`), as the
/// relay's [`Resolver`]: config `resolver = system`.
#[derive(Clone)]
pub struct SystemResolver {
    inner: TokioResolver,
    total: Duration,
}

impl std::fmt::Debug for SystemResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemResolver")
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl SystemResolver {
    /// The name servers and options of `/etc/resolv.conf`, lookups bounded by
    /// [`DEFAULT_LOOKUP_TIMEOUT`]. Call it inside a tokio runtime.
    pub fn from_system_conf() -> Result<SystemResolver, ResolverConfigError> {
        SystemResolver::from_system_conf_with_timeout(DEFAULT_LOOKUP_TIMEOUT)
    }

    /// [`SystemResolver::from_system_conf`] with lookups bounded by `total`.
    pub fn from_system_conf_with_timeout(
        total: Duration,
    ) -> Result<SystemResolver, ResolverConfigError> {
        let mut builder = TokioResolver::builder_tokio()
            .map_err(|e| ResolverConfigError(format!("/etc/resolv.conf: {e}")))?;
        let options = builder.options_mut();
        *options = builder_options(options.clone(), total);
        let inner = builder
            .build()
            .map_err(|e| ResolverConfigError(e.to_string()))?;
        Ok(SystemResolver { inner, total })
    }

    /// A resolver asking exactly `servers` (UDP, then TCP for truncated answers), each
    /// lookup bounded by `total`: closed networks and tests.
    pub fn from_name_servers(
        servers: &[SocketAddr],
        total: Duration,
    ) -> Result<SystemResolver, ResolverConfigError> {
        if servers.is_empty() {
            return Err(ResolverConfigError("no name server".into()));
        }
        let name_servers = servers
            .iter()
            .map(|addr| {
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut server.connections {
                    connection.port = addr.port();
                }
                server
            })
            .collect();
        let config = ResolverConfig::from_name_servers(name_servers);
        let inner = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(builder_options(ResolverOpts::default(), total))
            .build()
            .map_err(|e| ResolverConfigError(e.to_string()))?;
        Ok(SystemResolver { inner, total })
    }
}

/// Hickory's per-query timeout kept under the total, so that its retries happen
/// within it rather than being cut off by it.
fn builder_options(mut options: ResolverOpts, total: Duration) -> ResolverOpts {
    let attempts = options.attempts.max(1) as u32 + 1;
    options.timeout = options
        .timeout
        .min(total / attempts)
        .max(Duration::from_millis(1));
    options
}

#[async_trait::async_trait]
impl Resolver for SystemResolver {
    async fn lookup(&self, name: &str, kind: RecordType) -> Result<Answer, TemporaryFailure> {
        // Absolute: the search list of resolv.conf must never turn a recipient's
        // domain into a local one.
        let name = absolute(name);
        let wire = match kind {
            RecordType::A => WireType::A,
            RecordType::Aaaa => WireType::AAAA,
            RecordType::Mx => WireType::MX,
            RecordType::Txt => WireType::TXT,
            RecordType::Cname => WireType::CNAME,
            RecordType::Srv => WireType::SRV,
        };
        let lookup = tokio::time::timeout(self.total, self.inner.lookup(name.as_str(), wire));
        let lookup = match lookup.await {
            Err(_) => return Err(TemporaryFailure(format!("{name}: timed out"))),
            Ok(Err(e)) => return classify(&name, e),
            Ok(Ok(lookup)) => lookup,
        };
        let records: Vec<Record> = lookup
            .answers()
            .iter()
            .filter_map(|r| convert(&r.data, kind))
            .take(MAX_RECORDS)
            .collect();
        if records.is_empty() {
            // Only the CNAME chain came back (or records of other types).
            Ok(Answer::NoData)
        } else {
            Ok(Answer::Records(records))
        }
    }
}

/// A failed lookup as one of the answers: an empty NOERROR is no data, NXDOMAIN is
/// permanent, everything else (timeouts, SERVFAIL, REFUSED, I/O) is temporary.
fn classify(name: &str, error: NetError) -> Result<Answer, TemporaryFailure> {
    if let NetError::Dns(DnsError::NoRecordsFound(no_records)) = &error {
        match no_records.response_code {
            ResponseCode::NXDomain => return Ok(Answer::NxDomain),
            ResponseCode::NoError => return Ok(Answer::NoData),
            _ => {}
        }
    }
    Err(TemporaryFailure(format!("{name}: {error}")))
}

/// One answer record as the contract's, if it is of the asked type.
fn convert(data: &RData, kind: RecordType) -> Option<Record> {
    let name = |n: &hickory_resolver::proto::rr::Name| absolute(&n.to_ascii());
    match (data, kind) {
        (RData::A(a), RecordType::A) => Some(Record::A(a.0)),
        (RData::AAAA(a), RecordType::Aaaa) => Some(Record::Aaaa(a.0)),
        (RData::MX(mx), RecordType::Mx) => Some(Record::Mx {
            preference: mx.preference,
            exchange: if mx.exchange.is_root() {
                ".".to_string()
            } else {
                name(&mx.exchange)
            },
        }),
        (RData::TXT(txt), RecordType::Txt) => {
            // The character strings of one record are one text (RFC 7208 3.3, RFC 6376
            // 3.6.2.2); bytes that are not UTF-8 cannot be part of a key or policy.
            let mut text = Vec::new();
            for part in txt.txt_data.iter() {
                text.extend_from_slice(part);
            }
            Some(Record::Txt(String::from_utf8_lossy(&text).into_owned()))
        }
        (RData::CNAME(cname), RecordType::Cname) => Some(Record::Cname(name(&cname.0))),
        (RData::SRV(srv), RecordType::Srv) => Some(Record::Srv {
            priority: srv.priority,
            weight: srv.weight,
            port: srv.port,
            target: name(&srv.target),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A name server that never answers (a closed UDP port answers with ICMP, a bound
    /// silent socket with nothing): both are temporary failures within the bound.
    #[tokio::test]
    async fn an_unreachable_name_server_is_a_temporary_failure_within_the_bound() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let closed = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        for server in [silent.local_addr().unwrap(), closed] {
            let resolver =
                SystemResolver::from_name_servers(&[server], Duration::from_millis(500)).unwrap();
            let start = Instant::now();
            let answer = resolver.lookup("example.org", RecordType::Mx).await;
            assert!(matches!(answer, Err(TemporaryFailure(_))), "{answer:?}");
            // Not a speed measurement: a hang would be minutes (hickory's defaults).
            assert!(start.elapsed() < Duration::from_secs(30));
            let mx = resolver.mail_exchangers("example.org").await;
            assert!(mx.is_err(), "{mx:?}");
        }
    }

    /// A name server on loopback answering from a fixed table, messages encoded by
    /// hickory itself: `nx.test.` NXDOMAIN, `fail.test.` SERVFAIL, `refused.test.`
    /// REFUSED, `mx.test.` two MX records, `txt.test.` one TXT of two strings, anything
    /// else an empty NOERROR.
    async fn table_name_server() -> SocketAddr {
        use hickory_resolver::proto::op::{Message, OpCode};
        use hickory_resolver::proto::rr::rdata::{MX, TXT};
        use hickory_resolver::proto::rr::{Name, Record as WireRecord};
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(question) = query.queries.first().cloned() else {
                    continue;
                };
                let mut response = Message::response(query.metadata.id, OpCode::Query);
                response.metadata.recursion_available = true;
                response.add_query(question.clone());
                let qname = question.name().to_ascii().to_ascii_lowercase();
                let owner = question.name().clone();
                match qname.as_str() {
                    "nx.test." => response.metadata.response_code = ResponseCode::NXDomain,
                    "fail.test." => response.metadata.response_code = ResponseCode::ServFail,
                    "refused.test." => response.metadata.response_code = ResponseCode::Refused,
                    "mx.test." if question.query_type() == WireType::MX => {
                        for (preference, host) in [(20, "b.mx.test."), (10, "a.mx.test.")] {
                            let exchange = Name::from_ascii(host).unwrap();
                            let data = RData::MX(MX::new(preference, exchange));
                            response.add_answer(WireRecord::from_rdata(owner.clone(), 60, data));
                        }
                    }
                    "txt.test." if question.query_type() == WireType::TXT => {
                        let data = RData::TXT(TXT::new(vec!["v=spf1 ".into(), "-all".into()]));
                        response.add_answer(WireRecord::from_rdata(owner, 60, data));
                    }
                    _ => {}
                }
                let _ = socket.send_to(&response.to_vec().unwrap(), from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn answers_nxdomain_no_data_and_failures_are_told_apart() {
        use chatmail_core::dns::MailExchangers;
        let server = table_name_server().await;
        let resolver =
            SystemResolver::from_name_servers(&[server], Duration::from_secs(20)).unwrap();
        assert_eq!(
            resolver.lookup("nx.test", RecordType::Mx).await,
            Ok(Answer::NxDomain)
        );
        assert_eq!(
            resolver.lookup("empty.test", RecordType::A).await,
            Ok(Answer::NoData)
        );
        for failing in ["fail.test", "refused.test"] {
            let answer = resolver.lookup(failing, RecordType::Mx).await;
            assert!(
                matches!(answer, Err(TemporaryFailure(_))),
                "{failing}: {answer:?}"
            );
        }
        assert_eq!(
            resolver.lookup("TXT.test.", RecordType::Txt).await,
            Ok(Answer::Records(vec![Record::Txt("v=spf1 -all".into())]))
        );
        assert_eq!(
            resolver.mail_exchangers("mx.test").await,
            Ok(MailExchangers::Hosts(vec![
                "a.mx.test.".into(),
                "b.mx.test.".into()
            ]))
        );
        assert_eq!(
            resolver.mail_exchangers("empty.test").await,
            Ok(MailExchangers::Implicit("empty.test.".into()))
        );
        assert_eq!(
            resolver.mail_exchangers("nx.test").await,
            Ok(MailExchangers::NxDomain)
        );
    }

    #[test]
    fn records_convert_by_type_and_txt_strings_concatenate() {
        use hickory_resolver::proto::rr::rdata::{A, MX, TXT};
        use hickory_resolver::proto::rr::Name;
        let a = RData::A(A::new(192, 0, 2, 1));
        assert_eq!(
            convert(&a, RecordType::A),
            Some(Record::A("192.0.2.1".parse().unwrap()))
        );
        assert_eq!(convert(&a, RecordType::Aaaa), None);
        let txt = RData::TXT(TXT::new(vec!["v=DKIM1; k=rsa; ".into(), "p=AB".into()]));
        assert_eq!(
            convert(&txt, RecordType::Txt),
            Some(Record::Txt("v=DKIM1; k=rsa; p=AB".into()))
        );
        let mx = RData::MX(MX::new(10, Name::from_ascii("MX.Example.org.").unwrap()));
        assert_eq!(
            convert(&mx, RecordType::Mx),
            Some(Record::Mx {
                preference: 10,
                exchange: "mx.example.org.".into()
            })
        );
        let null = RData::MX(MX::new(0, Name::root()));
        assert_eq!(
            convert(&null, RecordType::Mx),
            Some(Record::Mx {
                preference: 0,
                exchange: ".".into()
            })
        );
    }
}
