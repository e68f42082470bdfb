//! TLS for the listeners: the certificate (operator files or a self-signed one kept in
//! the data directory) and the rustls server configurations.
//!
//! Clients (submission, IMAP, HTTPS) get TLS 1.3 only, as the reference configures
//! Postfix and Dovecot; port 25 accepts TLS 1.2 too, because other mail servers still
//! speak it (spec 4.1).

use chatmail_core::config::{Config, TlsCertMode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the TLS setup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The PEM file holds no certificate or no private key.
    #[error("{0}: no usable PEM certificate or private key found")]
    NoPem(PathBuf),
    /// Generating the self-signed certificate failed.
    #[error("generating the self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The two server configurations the listeners use.
#[derive(Clone)]
pub struct TlsConfigs {
    /// TLS 1.3 only: submission, IMAP, HTTPS.
    pub clients: Arc<rustls::ServerConfig>,
    /// TLS 1.2 and 1.3: port 25, for other mail servers.
    pub mx: Arc<rustls::ServerConfig>,
    /// Whether the certificate is self-signed (clients must be told to accept it).
    pub self_signed: bool,
}

impl std::fmt::Debug for TlsConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfigs")
            .field("self_signed", &self.self_signed)
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads the configured certificate, or creates (once) and loads a self-signed one in
/// `data_dir` (`tls/cert.pem`, `tls/key.pem`; the key file is readable by the owner only).
pub fn load_or_create(config: &Config, data_dir: &Path) -> Result<TlsConfigs, TlsError> {
    let (cert_path, key_path, self_signed) = match config.tls_cert_mode() {
        TlsCertMode::External { cert, key } => (cert, key, false),
        TlsCertMode::Acme => {
            let live = PathBuf::from("/var/lib/acme/live").join(&config.mail_domain);
            if live.join("fullchain").exists() {
                (live.join("fullchain"), live.join("privkey"), false)
            } else {
                // No ACME client here: serve a self-signed certificate rather than nothing.
                tracing::warn!("no ACME certificate found; using a self-signed certificate");
                let (c, k) = ensure_self_signed(config, data_dir)?;
                (c, k, true)
            }
        }
        TlsCertMode::SelfSigned => {
            let (c, k) = ensure_self_signed(config, data_dir)?;
            (c, k, true)
        }
    };
    let certs = read_certs(&cert_path)?;
    let key = read_key(&key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let build = |versions: &[&'static rustls::SupportedProtocolVersion]| {
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map(|b| b.with_no_client_auth())
    };
    let mut clients =
        build(&[&rustls::version::TLS13])?.with_single_cert(certs.clone(), key.clone_key())?;
    let mut mx =
        build(&[&rustls::version::TLS13, &rustls::version::TLS12])?.with_single_cert(certs, key)?;
    // ALPN is not negotiated: IMAP/SMTP clients rarely send it and refusing would break them.
    clients.alpn_protocols.clear();
    mx.alpn_protocols.clear();
    Ok(TlsConfigs {
        clients: Arc::new(clients),
        mx: Arc::new(mx),
        self_signed,
    })
}

/// Creates the self-signed certificate if it is not there yet, and returns its paths.
/// Names: the mail domain, `www.` and `mta-sts.` of it (as the reference), or the IP.
fn ensure_self_signed(config: &Config, data_dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let dir = data_dir.join("tls");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let d = &config.mail_domain;
    let names = if config.is_ipv4_relay() {
        vec![d.clone()]
    } else {
        vec![d.clone(), format!("www.{d}"), format!("mta-sts.{d}")]
    };
    let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, d.as_str());
    // The reference's self-signed certificate lives 36500 days; rcgen's default is far
    // shorter, so set the span explicitly.
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let cert = params.self_signed(&key_pair)?;
    write_private(&key_path, key_pair.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, cert.pem()).map_err(io_err(&cert_path))?;
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(io_err(path))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(io_err(path))?;
    if certs.is_empty() {
        return Err(TlsError::NoPem(path.to_path_buf()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(io_err(path))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(io_err(path))?
        .ok_or_else(|| TlsError::NoPem(path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_is_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("chatmail-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = Config::with_domain("_chat.localhost");
        let a = load_or_create(&config, &dir).unwrap();
        assert!(a.self_signed);
        let first = std::fs::read(dir.join("tls/cert.pem")).unwrap();
        load_or_create(&config, &dir).unwrap();
        assert_eq!(first, std::fs::read(dir.join("tls/cert.pem")).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_external_files_name_the_path() {
        let mut config = Config::with_domain("chat.example.org");
        config.tls_cert_path = Some("/nonexistent/cert.pem".into());
        config.tls_key_path = Some("/nonexistent/key.pem".into());
        let err = load_or_create(&config, Path::new("/tmp")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}
