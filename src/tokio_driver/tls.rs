//! TLS for the listeners: the certificate (operator files or a self-signed one kept in
//! the data directory) and the rustls server configurations.
//!
//! Clients (submission, IMAP, HTTPS) get TLS 1.3 only, as the reference configures
//! Postfix and Dovecot; port 25 accepts TLS 1.2 too, because other mail servers still
//! speak it (spec 4.1).

use chatmail_core::config::{Config, TlsCertMode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

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

/// The ALPN protocol of TLS-ALPN-01 challenges (RFC 8737): a CA's validator offers it,
/// and gets the challenge certificate instead of the relay's.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The relay's certificate, swappable while the listeners run: every rustls server
/// configuration resolves through it, so a renewed or reloaded certificate reaches new
/// handshakes at once while open connections keep the one they started with. It also
/// answers TLS-ALPN-01 challenges (RFC 8737) with the challenge certificates set here.
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
    self_signed: Arc<AtomicBool>,
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertResolver")
            .field("self_signed", &self.self_signed())
            .finish()
    }
}

impl CertResolver {
    /// A resolver serving `key`; `self_signed` says whether clients must be told to
    /// accept it.
    pub fn new(key: Arc<CertifiedKey>, self_signed: bool) -> CertResolver {
        CertResolver {
            current: RwLock::new(key),
            self_signed: Arc::new(AtomicBool::new(self_signed)),
            challenges: Mutex::new(HashMap::new()),
        }
    }

    /// Serves `key` to every handshake from now on.
    pub fn set(&self, key: Arc<CertifiedKey>, self_signed: bool) {
        // A poisoned lock only means a panic elsewhere; the value is still whole.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
        self.self_signed.store(self_signed, Ordering::SeqCst);
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the certificate served now is self-signed.
    pub fn self_signed(&self) -> bool {
        self.self_signed.load(Ordering::SeqCst)
    }

    /// The flag behind [`CertResolver::self_signed`], shared: the web pages read it live.
    pub fn self_signed_flag(&self) -> Arc<AtomicBool> {
        self.self_signed.clone()
    }

    /// Sets (or with `None` removes) the TLS-ALPN-01 certificate for `name`.
    pub(crate) fn set_challenge(&self, name: &str, key: Option<Arc<CertifiedKey>>) {
        let mut challenges = self.challenges.lock().unwrap_or_else(|e| e.into_inner());
        match key {
            Some(key) => challenges.insert(name.to_ascii_lowercase(), key),
            None => challenges.remove(&name.to_ascii_lowercase()),
        };
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            // Only a pending challenge's name gets an answer (RFC 8737 section 3).
            let name = hello.server_name()?.to_ascii_lowercase();
            let challenges = self.challenges.lock().unwrap_or_else(|e| e.into_inner());
            return challenges.get(&name).cloned();
        }
        Some(self.current())
    }
}

/// Where the certificate comes from, and so what keeps it fresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// The operator's files, reloaded when they change.
    Files {
        /// PEM certificate chain.
        cert: PathBuf,
        /// PEM private key.
        key: PathBuf,
    },
    /// ACME, with the account and certificate kept in this directory.
    Acme(PathBuf),
    /// A self-signed certificate, never changed.
    SelfSigned,
}

/// The server configurations the listeners use, all resolving through one
/// [`CertResolver`].
#[derive(Clone)]
pub struct TlsConfigs {
    /// TLS 1.3 only: submission, IMAP, HTTPS.
    pub clients: Arc<rustls::ServerConfig>,
    /// TLS 1.2 and 1.3: port 25, for other mail servers.
    pub mx: Arc<rustls::ServerConfig>,
    /// For handshakes offering `acme-tls/1` on the HTTPS port (TLS-ALPN-01 validation):
    /// negotiates that protocol, which the other configurations must not (rustls refuses
    /// a client whose ALPN list misses all of a server's).
    pub challenge: Arc<rustls::ServerConfig>,
    /// The certificate the three serve.
    pub certs: Arc<CertResolver>,
    /// Where the certificate comes from.
    pub source: CertSource,
}

impl TlsConfigs {
    /// Whether the certificate served now is self-signed (clients must be told to accept
    /// it): always in self-signed mode, and in ACME mode until a certificate is issued.
    pub fn self_signed(&self) -> bool {
        self.certs.self_signed()
    }
}

impl std::fmt::Debug for TlsConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfigs")
            .field("source", &self.source)
            .field("self_signed", &self.self_signed())
            .finish()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The crypto provider of every TLS configuration here (ring: DESIGN.md).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate issued before, if it loads and has not expired (whatever names it
/// covers: the manager orders anew if they are not the configured ones).
pub(crate) fn load_issued(dir: &Path) -> Option<Arc<CertifiedKey>> {
    let pem = std::fs::read(dir.join("cert.pem")).ok()?;
    let der = rustls_pemfile::certs(&mut pem.as_slice()).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    if cert.validity().not_after.timestamp()
        <= std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    {
        return None;
    }
    load_pair(&dir.join("cert.pem"), &dir.join("key.pem")).ok()
}

/// Loads the configured certificate, or creates (once) and loads a self-signed one in
/// `data_dir` (`tls/cert.pem`, `tls/key.pem`; the key file is readable by the owner only).
/// In ACME mode a certificate issued before (`acme/cert.pem`) is served if it is still
/// valid, else the self-signed one until the ACME manager (`acme.rs`) obtains one.
pub fn load_or_create(config: &Config, data_dir: &Path) -> Result<TlsConfigs, TlsError> {
    let (key, self_signed, source) = match config.tls_cert_mode() {
        TlsCertMode::External { cert, key } => (
            load_pair(&cert, &key)?,
            false,
            CertSource::Files { cert, key },
        ),
        TlsCertMode::Acme => {
            let dir = data_dir.join("acme");
            match load_issued(&dir) {
                Some(issued) => (issued, false, CertSource::Acme(dir)),
                None => {
                    tracing::info!("no ACME certificate yet: serving a self-signed one");
                    let (c, k) = ensure_self_signed(config, data_dir)?;
                    (load_pair(&c, &k)?, true, CertSource::Acme(dir))
                }
            }
        }
        TlsCertMode::SelfSigned => {
            let (c, k) = ensure_self_signed(config, data_dir)?;
            (load_pair(&c, &k)?, true, CertSource::SelfSigned)
        }
    };
    let certs = Arc::new(CertResolver::new(key, self_signed));
    let provider = provider();
    let build = |versions: &[&'static rustls::SupportedProtocolVersion]| {
        rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map(|b| {
                b.with_no_client_auth()
                    .with_cert_resolver(certs.clone() as Arc<dyn ResolvesServerCert>)
            })
    };
    // ALPN is not negotiated: IMAP/SMTP clients rarely send it and refusing would break them.
    let clients = build(&[&rustls::version::TLS13])?;
    let mx = build(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let mut challenge = build(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    challenge.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    Ok(TlsConfigs {
        clients: Arc::new(clients),
        mx: Arc::new(mx),
        challenge: Arc::new(challenge),
        certs,
        source,
    })
}

/// Reads a PEM certificate chain and its private key into what rustls serves.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = read_certs(cert)?;
    let key = read_key(key)?;
    Ok(Arc::new(CertifiedKey::from_der(certs, key, &provider())?))
}

/// A PEM certificate chain and its private key from memory (a certificate kept in the
/// database that the nodes of a domain share); `origin` names it in errors.
pub(crate) fn pair_from_pem(
    cert: &[u8],
    key: &[u8],
    origin: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert[..])
        .collect::<Result<_, _>>()
        .map_err(io_err(origin))?;
    if certs.is_empty() {
        return Err(TlsError::NoPem(origin.to_path_buf()));
    }
    let key = rustls_pemfile::private_key(&mut &key[..])
        .map_err(io_err(origin))?
        .ok_or_else(|| TlsError::NoPem(origin.to_path_buf()))?;
    Ok(Arc::new(CertifiedKey::from_der(certs, key, &provider())?))
}

/// The modification times of the operator's certificate files, to tell a change.
#[derive(Debug)]
pub struct FileWatch {
    cert: PathBuf,
    key: PathBuf,
    seen: Option<(SystemTime, SystemTime)>,
}

impl FileWatch {
    /// Watches `cert` and `key` as they are now.
    pub fn new(cert: PathBuf, key: PathBuf) -> FileWatch {
        let mut watch = FileWatch {
            cert,
            key,
            seen: None,
        };
        watch.seen = watch.mtimes();
        watch
    }

    fn mtimes(&self) -> Option<(SystemTime, SystemTime)> {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((mtime(&self.cert)?, mtime(&self.key)?))
    }

    /// If either file changed since last seen, loads both into `certs`. `Ok(true)`: a new
    /// certificate is served. A pair that does not load (an operator halfway through
    /// replacing the files) keeps the old certificate and is tried again next time.
    pub fn reload_if_changed(&mut self, certs: &CertResolver) -> Result<bool, TlsError> {
        let now = self.mtimes();
        if now.is_none() || now == self.seen {
            return Ok(false);
        }
        let key = load_pair(&self.cert, &self.key)?;
        certs.set(key, false);
        self.seen = now;
        Ok(true)
    }
}

/// Reloads the operator's certificate files into `certs` whenever they change, checking
/// every `every`; runs until dropped.
pub async fn watch_files(certs: Arc<CertResolver>, mut watch: FileWatch, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match watch.reload_if_changed(&certs) {
            Ok(true) => tracing::info!(cert = %watch.cert.display(), "certificate reloaded"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "changed certificate files do not load; keeping the old certificate")
            }
        }
    }
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

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
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
        assert!(a.self_signed());
        let first = std::fs::read(dir.join("tls/cert.pem")).unwrap();
        load_or_create(&config, &dir).unwrap();
        assert_eq!(first, std::fs::read(dir.join("tls/cert.pem")).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn changed_certificate_files_are_served_and_broken_ones_are_not() {
        let dir = std::env::temp_dir().join(format!("chatmail-tls-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (c, k) = write_pair(&dir, "one.example.org");
        let certs = CertResolver::new(load_pair(&c, &k).unwrap(), false);
        let first = certs.current().cert[0].clone();
        let mut watch = FileWatch::new(c.clone(), k.clone());
        assert!(!watch.reload_if_changed(&certs).unwrap(), "nothing changed");

        // Files replaced; their mtimes set apart so that a fast test sees the change.
        let later = SystemTime::now() + Duration::from_secs(10);
        write_pair(&dir, "two.example.org");
        for p in [&c, &k] {
            let f = std::fs::File::options().write(true).open(p).unwrap();
            f.set_modified(later).unwrap();
        }
        assert!(watch.reload_if_changed(&certs).unwrap());
        let second = certs.current().cert[0].clone();
        assert_ne!(first, second);
        assert!(!certs.self_signed());

        // A half-written replacement keeps the certificate served.
        std::fs::write(&k, "not a key").unwrap();
        let f = std::fs::File::options().write(true).open(&k).unwrap();
        f.set_modified(later + Duration::from_secs(10)).unwrap();
        assert!(watch.reload_if_changed(&certs).is_err());
        assert_eq!(certs.current().cert[0], second);
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
