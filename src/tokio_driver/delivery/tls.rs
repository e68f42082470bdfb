//! TLS for delivery (spec 3.4): certificates verified against the system's roots plus
//! the configured extra ones, except towards `_`-domains and address literals, whose
//! relays have self-signed certificates: there any certificate is accepted, the
//! handshake signature still checked (it proves the peer holds the key it showed).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::net::IpAddr;
use std::sync::Arc;

/// The four client configurations delivery uses: verified or not, HTTPS (ALPN
/// `http/1.1`) or SMTP.
pub(in crate::tokio_driver) struct ClientTls {
    verified_https: Arc<ClientConfig>,
    verified_smtp: Arc<ClientConfig>,
    any_https: Arc<ClientConfig>,
    any_smtp: Arc<ClientConfig>,
}

/// Which protocol a connection speaks over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::tokio_driver) enum Protocol {
    Https,
    Smtp,
}

impl ClientTls {
    /// Configurations trusting the system's roots and `extra_roots`.
    pub(in crate::tokio_driver) fn new(extra_roots: &[CertificateDer<'static>]) -> ClientTls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(%error, "reading the system's trusted certificates");
        }
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        if ignored > 0 {
            tracing::warn!(ignored, "unusable certificates in the system's trust store");
        }
        if added == 0 {
            tracing::warn!("no trusted certificates in the system's store: delivery to verified hosts will fail");
        }
        for cert in extra_roots {
            if let Err(error) = roots.add(cert.clone()) {
                tracing::warn!(%error, "an extra trusted certificate is unusable");
            }
        }
        let roots = Arc::new(roots);
        let verified = || {
            ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.with_root_certificates(roots.clone())
                        .with_no_client_auth()
                })
        };
        let any = || {
            ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.dangerous()
                        .with_custom_certificate_verifier(Arc::new(AnyCertificate {
                            provider: provider.clone(),
                        }))
                        .with_no_client_auth()
                })
        };
        // The ring provider supports the default versions: these cannot fail.
        let build = |config: Result<ClientConfig, rustls::Error>, protocol: Protocol| {
            let mut config = match config {
                Ok(config) => config,
                Err(error) => unreachable!("ring supports TLS 1.2 and 1.3: {error}"),
            };
            if protocol == Protocol::Https {
                config.alpn_protocols = vec![b"http/1.1".to_vec()];
            }
            Arc::new(config)
        };
        ClientTls {
            verified_https: build(verified(), Protocol::Https),
            verified_smtp: build(verified(), Protocol::Smtp),
            any_https: build(any(), Protocol::Https),
            any_smtp: build(any(), Protocol::Smtp),
        }
    }

    /// The configuration for `protocol`, verifying certificates unless `any_certificate`.
    pub(in crate::tokio_driver) fn config(
        &self,
        protocol: Protocol,
        any_certificate: bool,
    ) -> Arc<ClientConfig> {
        match (protocol, any_certificate) {
            (Protocol::Https, false) => self.verified_https.clone(),
            (Protocol::Smtp, false) => self.verified_smtp.clone(),
            (Protocol::Https, true) => self.any_https.clone(),
            (Protocol::Smtp, true) => self.any_smtp.clone(),
        }
    }
}

/// Whether certificates of `domain`'s exchanger `host` go unverified (spec 3.4): either
/// name starts with `_` (a relay without a public name, self-signed by design) or is an
/// address literal.
pub(super) fn accepts_any_certificate(domain: &str, host: &str) -> bool {
    let unverifiable = |name: &str| {
        name.starts_with('_') || name.starts_with('[') || name.parse::<IpAddr>().is_ok()
    };
    unverifiable(domain) || unverifiable(host)
}

/// The name a TLS client presents (SNI) and verifies: the host name without the
/// trailing dot, or the address of a literal (no SNI is sent for it).
pub(in crate::tokio_driver) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.trim_end_matches('.').to_string())
        .map_err(|_| format!("{host} is not a valid server name"))
}

/// Accepts any certificate but still checks the handshake signature with the
/// provider's algorithms.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underscore_domains_and_literals_accept_any_certificate() {
        assert!(accepts_any_certificate(
            "_beta.localhost",
            "mx.example.org."
        ));
        assert!(accepts_any_certificate("example.org", "_mx.example.org."));
        assert!(accepts_any_certificate("[192.0.2.1]", "192.0.2.1"));
        assert!(accepts_any_certificate("example.org", "2001:db8::1"));
        assert!(!accepts_any_certificate("example.org", "mx.example.org."));
        assert!(!accepts_any_certificate("ex_ample.org", "mx.example.org."));
    }

    #[test]
    fn server_names_drop_the_trailing_dot() {
        assert_eq!(
            server_name("mx.example.org.").unwrap(),
            ServerName::try_from("mx.example.org").unwrap()
        );
        assert!(matches!(
            server_name("192.0.2.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(server_name("bad name.").is_err());
    }
}
