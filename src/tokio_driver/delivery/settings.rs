//! [`TransportSettings`]: how the network transport connects.

use chatmail_core::config::Config;
use rustls::pki_types::CertificateDer;
use std::time::Duration;

/// How delivery connects; [`TransportSettings::from_config`] gives the relay's.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportSettings {
    /// The name sent in `EHLO`: the relay's mail domain (`[a.b.c.d]` for an IPv4
    /// relay).
    pub hello_name: String,
    /// The SMTP port of exchangers (25; other values for tests only).
    pub smtp_port: u16,
    /// The HTTPS port of exchangers (443; other values for tests only).
    pub https_port: u16,
    /// Longest wait for one TCP connection to be established.
    pub connect_timeout: Duration,
    /// Longest wait for each read, write and TLS handshake, and for the whole HTTPS
    /// exchange (spec 3.4: 60 s).
    pub io_timeout: Duration,
    /// Certificates trusted as roots besides the system's (tests, private CAs).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Whether IPv6 addresses of exchangers are tried (after the IPv4 ones).
    pub ipv6: bool,
    /// Longest one attempt may take, every exchanger included
    /// ([`Transport::attempt_deadline`](crate::outbound::Transport::attempt_deadline)).
    pub attempt_deadline: Duration,
}

impl TransportSettings {
    /// The reference's settings for a relay whose `EHLO` name is `hello_name`.
    pub fn new(hello_name: impl Into<String>) -> TransportSettings {
        TransportSettings {
            hello_name: hello_name.into(),
            smtp_port: 25,
            https_port: 443,
            connect_timeout: Duration::from_secs(60),
            io_timeout: Duration::from_secs(60),
            extra_roots: Vec::new(),
            ipv6: true,
            attempt_deadline: Duration::from_secs(10 * 60),
        }
    }

    /// The settings of the relay configured by `config`: its address domain as `EHLO`
    /// name, IPv6 unless `disable_ipv6`.
    pub fn from_config(config: &Config) -> TransportSettings {
        let mut settings = TransportSettings::new(config.address_domain());
        settings.ipv6 = !config.disable_ipv6;
        settings
    }
}
