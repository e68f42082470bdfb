//! TLS to the database, when the connection URL says `sslmode=require`: rustls (ring),
//! the server's certificate checked (chain and host name) against the operator's CA file
//! or the system's roots. Without `require` the connections are plain, as a database on
//! the same machine or a private network is usually reached.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::error::StoreError;

/// How the store's connections are made.
#[derive(Clone)]
pub(super) enum Tls {
    /// Plain TCP (or a Unix socket).
    Off,
    /// TLS with a verified server certificate.
    On(MakeRustlsConnect),
}

fn tls_error(what: impl std::fmt::Display) -> StoreError {
    StoreError::io(
        "postgres: TLS",
        std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string()),
    )
}

/// The connector for `config`: TLS if it requires it, trusting the CA certificates in
/// the PEM file `roots`, or the system's without one.
pub(super) fn connector(
    config: &tokio_postgres::Config,
    roots: Option<&Path>,
) -> Result<Tls, StoreError> {
    if !matches!(config.get_ssl_mode(), SslMode::Require) {
        return Ok(Tls::Off);
    }
    let mut store = RootCertStore::empty();
    match roots {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_error(format_args!("{}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| tls_error(format_args!("{}: {e}", path.display())))?;
                store.add(cert).map_err(tls_error)?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            // Unreadable system certificates are skipped; none at all is an error below.
            store.add_parsable_certificates(found.certs);
        }
    }
    if store.is_empty() {
        return Err(tls_error("sslmode=require but no CA certificate to trust"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Tls::On(MakeRustlsConnect::new(client)))
}
