//! The resolver contract: the four answers a mail server must tell apart (records, no
//! records of that type, no such name, try again later) for the record types delivery
//! and DKIM need.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A DNS record type the relay asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Mail exchanger.
    Mx,
    /// Text (SPF, DKIM keys, DMARC, MTA-STS).
    Txt,
    /// Canonical name (zone files only: a lookup follows it).
    Cname,
    /// Service location (RFC 2782): the submission and IMAP records a relay publishes
    /// for clients (spec 4.7).
    Srv,
}

/// One resource record's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A mail exchanger: lower `preference` first; `exchange` is absolute, lower-case,
    /// with the trailing dot (`.` alone is a null MX, RFC 7505).
    Mx {
        /// Lower is tried first.
        preference: u16,
        /// The exchanger's host name.
        exchange: String,
    },
    /// A TXT record's character strings, concatenated.
    Txt(String),
    /// The name this one is an alias of (absolute, lower-case, trailing dot).
    Cname(String),
    /// A service location (RFC 2782).
    Srv {
        /// Lower is tried first.
        priority: u16,
        /// Share among records of the same priority.
        weight: u16,
        /// The service's port.
        port: u16,
        /// The host (absolute, lower-case, trailing dot; `.` alone: no such service).
        target: String,
    },
}

impl Record {
    /// The type of this record.
    pub fn record_type(&self) -> RecordType {
        match self {
            Record::A(_) => RecordType::A,
            Record::Aaaa(_) => RecordType::Aaaa,
            Record::Mx { .. } => RecordType::Mx,
            Record::Txt(_) => RecordType::Txt,
            Record::Cname(_) => RecordType::Cname,
            Record::Srv { .. } => RecordType::Srv,
        }
    }
}

/// What a lookup found: a delivery decides differently for each (RFC 5321 5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The records of the asked type (CNAMEs already followed).
    Records(Vec<Record>),
    /// The name exists but has no record of the asked type.
    NoData,
    /// The name does not exist (NXDOMAIN): a permanent failure.
    NxDomain,
}

/// A lookup that could not be answered now (timeout, SERVFAIL, no server): the caller
/// retries later and never treats it as a permanent failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("temporary DNS failure: {0}")]
pub struct TemporaryFailure(pub String);

/// Where a domain's mail goes, RFC 5321 5.1 and RFC 7505.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailExchangers {
    /// The MX hosts, most preferred first (ties keep the resolver's order).
    Hosts(Vec<String>),
    /// No MX records but the name exists: the domain itself is the mail host
    /// (the "implicit MX").
    Implicit(String),
    /// A null MX (`MX 0 .`): the domain accepts no mail.
    NullMx,
    /// The domain does not exist.
    NxDomain,
}

/// A DNS resolver as the relay uses it: one question, one of the three answers, or a
/// temporary failure. Implemented by the system resolver (the `chatmail` crate, feature
/// `tokio`) and by [`super::StaticZone`] for tests and closed networks.
#[async_trait::async_trait]
pub trait Resolver: Send + Sync {
    /// The records of type `kind` at `name` (absolute or not; case does not matter).
    async fn lookup(&self, name: &str, kind: RecordType) -> Result<Answer, TemporaryFailure>;

    /// The mail exchangers of `domain`, decided once for every resolver.
    async fn mail_exchangers(&self, domain: &str) -> Result<MailExchangers, TemporaryFailure> {
        match self.lookup(domain, RecordType::Mx).await? {
            Answer::NxDomain => Ok(MailExchangers::NxDomain),
            Answer::NoData => Ok(MailExchangers::Implicit(absolute(domain))),
            Answer::Records(records) => Ok(exchangers(records, domain)),
        }
    }
}

/// MX records to the list a delivery tries, or a null MX.
fn exchangers(records: Vec<Record>, domain: &str) -> MailExchangers {
    let mut hosts: Vec<(u16, String)> = records
        .into_iter()
        .filter_map(|r| match r {
            Record::Mx {
                preference,
                exchange,
            } => Some((preference, exchange)),
            _ => None,
        })
        .collect();
    if hosts.is_empty() {
        return MailExchangers::Implicit(absolute(domain));
    }
    // RFC 7505: a single MX with the root as exchanger means "no mail here".
    if hosts.len() == 1 && hosts[0].1 == "." {
        return MailExchangers::NullMx;
    }
    hosts.retain(|(_, host)| host != ".");
    hosts.sort_by_key(|(preference, _)| *preference);
    MailExchangers::Hosts(hosts.into_iter().map(|(_, host)| host).collect())
}

/// `name` lower-case with the trailing dot of an absolute name.
pub fn absolute(name: &str) -> String {
    let mut name = name.to_ascii_lowercase();
    if !name.ends_with('.') {
        name.push('.');
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx(preference: u16, exchange: &str) -> Record {
        Record::Mx {
            preference,
            exchange: exchange.into(),
        }
    }

    #[test]
    fn exchangers_are_sorted_and_null_mx_is_recognised() {
        assert_eq!(
            exchangers(vec![mx(20, "b."), mx(10, "a."), mx(20, "c.")], "x.org"),
            MailExchangers::Hosts(vec!["a.".into(), "b.".into(), "c.".into()])
        );
        assert_eq!(
            exchangers(vec![mx(0, ".")], "x.org"),
            MailExchangers::NullMx
        );
        assert_eq!(
            exchangers(vec![Record::Txt("v=spf1".into())], "X.org"),
            MailExchangers::Implicit("x.org.".into())
        );
    }
}
