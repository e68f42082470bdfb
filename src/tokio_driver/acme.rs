//! ACME (RFC 8555) certificates for a relay with a public domain and no certificate
//! files (issue 12): obtained for the mail domain and `mta-sts.<domain>` at start and
//! renewed before expiry, without a restart, through the [`CertResolver`] every listener
//! resolves with.
//!
//! The challenge is TLS-ALPN-01 (RFC 8737), answered by the HTTPS listener itself: the
//! CA's validator connects to port 443 offering `acme-tls/1`, and the resolver hands it
//! the challenge certificate. So no port 80 is needed.
//!
//! `<data-dir>/acme/` keeps the account (`account.json`) and the issued certificate
//! (`cert.pem`, `key.pem`), so a restart serves a valid certificate at once and orders
//! nothing. Private files are 0600 and every file is written aside and renamed. A
//! certificate is renewed when less than a third of its lifetime remains; a failed
//! order is retried with exponential backoff; every request to the CA is bounded by a
//! timeout. Until a certificate is issued the relay serves its self-signed one.
//!
//! Several nodes of one domain ([`AcmeOptions::shared`]: the nodes' shared database)
//! keep the account, the certificate and its key there instead, as the DKIM key is
//! kept: one node at a time orders (a lease in the database), it publishes its
//! challenges there, and every node reads them (every [`SHARED_POLL`]) and answers the
//! CA's validator, which may connect to any of them. The leader waits
//! [`CHALLENGE_SPREAD`] after publishing before telling the CA to validate; every node
//! serves the certificate the leader stored within one poll.

use super::tls::{self, CertResolver, CertSource, TlsConfigs, TlsError};
use bytes::Bytes;
use chatmail_core::config::{Config, TlsCertMode};
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, HOST};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::CertifiedKey;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_rustls::TlsConnector;

/// Most bytes of one answer of the CA read (a certificate chain is a few KB).
const MAX_RESPONSE: usize = 1024 * 1024;

/// How the relay talks to the CA and when it renews; [`AcmeOptions::default`] is what a
/// production relay uses. Tests trust a local CA and renew early.
#[derive(Debug, Clone)]
pub struct AcmeOptions {
    /// Roots trusted for the CA's API besides the system's (a test CA's).
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Renew when less than this part of the certificate's lifetime remains (1/3).
    pub renew_remaining: f64,
    /// The longest any one request to the CA may take (30 s).
    pub request_timeout: Duration,
    /// The longest a whole order may take, validation included (5 min).
    pub order_timeout: Duration,
    /// The wait after the first failed order, doubled after each further one (1 min),
    /// and the least time between two orders.
    pub retry_min: Duration,
    /// The longest wait between two failed orders (6 h).
    pub retry_max: Duration,
    /// Several nodes of one domain: the state lives in their shared database (`None`:
    /// in `<data-dir>/acme/`).
    pub shared: Option<SharedAcme>,
}

/// How often a node of a shared domain reads the challenges and the certificate.
pub const SHARED_POLL: Duration = Duration::from_secs(2);

/// How long the ordering node waits after publishing a challenge before the CA may
/// validate: more than one [`SHARED_POLL`], so that every node answers it.
pub const CHALLENGE_SPREAD: Duration = Duration::from_secs(5);

/// The names under which the shared state is kept.
const ACCOUNT: &str = "acme:account";
const CERTIFICATE: &str = "acme:certificate";
const CHALLENGE_PREFIX: &str = "acme:challenge:";
const LEASE: &str = "acme:lease";

/// The domain-wide secrets of the nodes of one domain, where they keep the ACME state
/// ([`AcmeOptions::shared`]); the PostgreSQL store is one (feature `postgres`).
#[async_trait::async_trait]
pub trait DomainSecrets: Send + Sync {
    /// The secret `name`, if set.
    async fn secret(&self, name: &str) -> Result<Option<String>, String>;
    /// Sets (or replaces) the secret `name`.
    async fn set_secret(&self, name: &str, value: &str) -> Result<(), String>;
    /// Removes the secret `name`.
    async fn remove_secret(&self, name: &str) -> Result<(), String>;
    /// The secrets whose names start with `prefix`.
    async fn secrets_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, String>;
    /// Takes or keeps the lease `name` for `holder` until `until_ms` unless another
    /// holder has it past `now_ms` (unix ms); true when `holder` has it.
    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: u64,
        until_ms: u64,
    ) -> Result<bool, String>;
}

#[cfg(feature = "postgres")]
#[async_trait::async_trait]
impl DomainSecrets for chatmail_core::store::PostgresStore {
    async fn secret(&self, name: &str) -> Result<Option<String>, String> {
        self.domain_secret(name).await.map_err(|e| e.to_string())
    }
    async fn set_secret(&self, name: &str, value: &str) -> Result<(), String> {
        self.set_domain_secret(name, value)
            .await
            .map_err(|e| e.to_string())
    }
    async fn remove_secret(&self, name: &str) -> Result<(), String> {
        self.remove_domain_secret(name)
            .await
            .map_err(|e| e.to_string())
    }
    async fn secrets_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, String> {
        self.domain_secrets_with_prefix(prefix)
            .await
            .map_err(|e| e.to_string())
    }
    async fn take_lease(
        &self,
        name: &str,
        holder: &str,
        now_ms: u64,
        until_ms: u64,
    ) -> Result<bool, String> {
        self.take_domain_lease(name, holder, now_ms, until_ms)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The ACME state of a domain served by several nodes: where it is kept, and this
/// node's name (the lease's holder).
#[derive(Clone)]
pub struct SharedAcme {
    /// The nodes' shared secrets.
    pub secrets: Arc<dyn DomainSecrets>,
    /// This node's name, unique among the nodes.
    pub node: String,
}

impl std::fmt::Debug for SharedAcme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedAcme")
            .field("node", &self.node)
            .finish()
    }
}

/// The certificate and key as the shared state keeps them.
#[derive(serde::Serialize, serde::Deserialize)]
struct SharedCertificate {
    cert: String,
    key: String,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Default for AcmeOptions {
    fn default() -> AcmeOptions {
        AcmeOptions {
            extra_roots: Vec::new(),
            renew_remaining: 1.0 / 3.0,
            request_timeout: Duration::from_secs(30),
            order_timeout: Duration::from_secs(300),
            retry_min: Duration::from_secs(60),
            retry_max: Duration::from_secs(6 * 3600),
            shared: None,
        }
    }
}

/// Why an order failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// The CA refused, or could not be reached.
    #[error("ACME: {0}")]
    Protocol(#[from] instant_acme::Error),
    /// The account or certificate could not be stored or loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Making the key, CSR or challenge certificate failed.
    #[error("ACME: {0}")]
    Generate(#[from] rcgen::Error),
    /// The CA's answer does not fit (an order not ready, a chain that does not load).
    #[error("ACME: {0}")]
    Order(String),
}

/// The task that keeps the certificate of `tls` fresh, if it has one to keep: ACME
/// orders and renewals, or reloading the operator's files (checked every 60 s).
pub(crate) fn maintenance(
    tls: &TlsConfigs,
    config: &Config,
    options: &AcmeOptions,
) -> Option<BoxFuture<'static, ()>> {
    match &tls.source {
        CertSource::Files { cert, key } => {
            let watch = tls::FileWatch::new(cert.clone(), key.clone());
            Some(Box::pin(tls::watch_files(
                tls.certs.clone(),
                watch,
                Duration::from_secs(60),
            )))
        }
        CertSource::Acme(dir) if config.tls_cert_mode() == TlsCertMode::Acme => {
            if config.https_port == 0 {
                tracing::warn!(
                    "ACME needs the HTTPS listener for its TLS-ALPN-01 challenge; https_port is 0"
                );
            }
            let manager = Manager::new(config, dir.clone(), options.clone(), tls.certs.clone());
            match options.shared.clone() {
                Some(shared) => Some(Box::pin(manager.run_shared(shared))),
                None => Some(Box::pin(manager.run())),
            }
        }
        _ => None,
    }
}

/// The validity of the certificate in `cert.pem`, if it covers `names`.
fn issued_validity(dir: &Path, names: &[String]) -> Option<(SystemTime, SystemTime)> {
    let pem = std::fs::read(dir.join("cert.pem")).ok()?;
    pem_validity(&pem, names)
}

/// The validity of the first certificate of the PEM chain `pem`, if it covers `names`
/// and has not expired.
fn pem_validity(pem: &[u8], names: &[String]) -> Option<(SystemTime, SystemTime)> {
    let der = rustls_pemfile::certs(&mut &pem[..]).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let covered: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        Some(d.to_ascii_lowercase())
                    }
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if !names
        .iter()
        .all(|n| covered.contains(&n.to_ascii_lowercase()))
    {
        return None;
    }
    let at = |t: i64| {
        u64::try_from(t)
            .ok()
            .map(|s| UNIX_EPOCH + Duration::from_secs(s))
    };
    let validity = cert.validity();
    Some((
        at(validity.not_before.timestamp())?,
        at(validity.not_after.timestamp())?,
    ))
    .filter(|(_, not_after)| *not_after > SystemTime::now())
}

/// When a certificate valid from `not_before` to `not_after` is due for renewal.
fn renew_at(not_before: SystemTime, not_after: SystemTime, remaining: f64) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    not_after - lifetime.mul_f64(remaining.clamp(0.0, 1.0))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader (or a
/// restart after a crash) sees the old file or the new one, never half of one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    tls::write_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The account, the orders and the renewal schedule of one relay.
struct Manager {
    directory: String,
    contact: Option<String>,
    names: Vec<String>,
    dir: PathBuf,
    options: AcmeOptions,
    certs: Arc<CertResolver>,
}

impl Manager {
    fn new(
        config: &Config,
        dir: PathBuf,
        options: AcmeOptions,
        certs: Arc<CertResolver>,
    ) -> Manager {
        let d = &config.mail_domain;
        Manager {
            directory: config.acme_directory.clone(),
            contact: Some(config.acme_email.trim())
                .filter(|e| !e.is_empty())
                .map(|e| format!("mailto:{e}")),
            names: vec![d.clone(), format!("mta-sts.{d}")],
            dir,
            options,
            certs,
        }
    }

    /// Orders when no certificate covers the names or the one there is due, forever.
    async fn run(self) {
        let mut failures: u32 = 0;
        let mut last_order: Option<tokio::time::Instant> = None;
        loop {
            let due = match issued_validity(&self.dir, &self.names) {
                Some((from, until)) => renew_at(from, until, self.options.renew_remaining),
                None => SystemTime::now(),
            };
            let mut wait = due
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            // Never two orders closer than retry_min, whatever the schedule says.
            if let Some(last) = last_order {
                wait = wait.max(self.options.retry_min.saturating_sub(last.elapsed()));
            }
            tokio::time::sleep(wait).await;
            last_order = Some(tokio::time::Instant::now());
            if let Some(backoff) = self.order_once(&mut failures).await {
                tokio::time::sleep(backoff).await;
            }
        }
    }

    /// One order within [`AcmeOptions::order_timeout`], logged; on failure the wait
    /// before the next (doubling from `retry_min` up to `retry_max` with `failures`).
    async fn order_once(&self, failures: &mut u32) -> Option<Duration> {
        let order = tokio::time::timeout(self.options.order_timeout, self.order());
        let error = match order.await {
            Ok(Ok(())) => {
                *failures = 0;
                tracing::info!(names = ?self.names, "ACME certificate issued and served");
                return None;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the order timed out".to_string(),
        };
        let backoff = self
            .options
            .retry_min
            .saturating_mul(2u32.saturating_pow((*failures).min(20)))
            .min(self.options.retry_max);
        *failures = failures.saturating_add(1);
        tracing::warn!(%error, retry_in_s = backoff.as_secs(), "ACME order failed; serving the certificate there is");
        Some(backoff)
    }

    /// [`Manager::run`] for a domain served by several nodes: every [`SHARED_POLL`] it
    /// serves the certificate in the shared state and answers the challenges published
    /// there; when the certificate is due, the node that takes the lease orders.
    async fn run_shared(self, shared: SharedAcme) {
        let mut served: Option<String> = None;
        let mut validity: Option<(SystemTime, SystemTime)> = None;
        let mut answering: std::collections::HashMap<String, String> = Default::default();
        let mut failures: u32 = 0;
        let mut not_before = tokio::time::Instant::now();
        loop {
            match shared.secrets.secret(CERTIFICATE).await {
                Ok(Some(json)) if served.as_deref() != Some(json.as_str()) => {
                    match self.load_shared(&json) {
                        Ok((key, valid)) => {
                            self.certs.set(key, false);
                            validity = Some(valid);
                            tracing::info!(
                                "serving the domain's certificate from the shared state"
                            );
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "ACME: the shared certificate does not load")
                        }
                    }
                    served = Some(json);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "ACME: reading the shared certificate failed"),
            }
            match shared.secrets.secrets_with_prefix(CHALLENGE_PREFIX).await {
                Ok(published) => self.answer_published(published, &mut answering),
                Err(e) => tracing::warn!(error = %e, "ACME: reading the shared challenges failed"),
            }
            let due = validity.map_or(SystemTime::now(), |(from, until)| {
                renew_at(from, until, self.options.renew_remaining)
            });
            if SystemTime::now() >= due && tokio::time::Instant::now() >= not_before {
                let now = unix_ms();
                let hold = self.options.order_timeout + Duration::from_secs(60);
                let until = now.saturating_add(hold.as_millis() as u64);
                match shared
                    .secrets
                    .take_lease(LEASE, &shared.node, now, until)
                    .await
                {
                    Ok(true) => {
                        let wait = self
                            .order_once(&mut failures)
                            .await
                            .unwrap_or(self.options.retry_min);
                        not_before = tokio::time::Instant::now() + wait;
                        // Done with the lease: the next order may be any node's.
                        let now = unix_ms();
                        let _ = shared
                            .secrets
                            .take_lease(LEASE, &shared.node, now, now)
                            .await;
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "ACME: the shared lease failed"),
                }
            }
            tokio::time::sleep(SHARED_POLL).await;
        }
    }

    /// The certificate in the shared state, and its validity for the names.
    fn load_shared(
        &self,
        json: &str,
    ) -> Result<(Arc<CertifiedKey>, (SystemTime, SystemTime)), AcmeError> {
        let stored: SharedCertificate =
            serde_json::from_str(json).map_err(|e| AcmeError::Order(e.to_string()))?;
        let key = tls::pair_from_pem(
            stored.cert.as_bytes(),
            stored.key.as_bytes(),
            Path::new(CERTIFICATE),
        )?;
        // Expired or for other names: served until the order replaces it.
        let valid = pem_validity(stored.cert.as_bytes(), &self.names)
            .unwrap_or((SystemTime::now(), SystemTime::now()));
        Ok((key, valid))
    }

    /// Answers the challenges another node published (this domain's names only) and
    /// stops answering those withdrawn.
    fn answer_published(
        &self,
        published: Vec<(String, String)>,
        answering: &mut std::collections::HashMap<String, String>,
    ) {
        use base64::Engine as _;
        let wanted: std::collections::HashMap<String, String> = published
            .into_iter()
            .filter_map(|(key, digest)| {
                let name = key.strip_prefix(CHALLENGE_PREFIX)?;
                self.names
                    .iter()
                    .any(|n| n == name)
                    .then(|| (name.to_string(), digest))
            })
            .collect();
        answering.retain(|name, _| {
            let keep = wanted.contains_key(name);
            if !keep {
                self.certs.set_challenge(name, None);
            }
            keep
        });
        for (name, digest) in wanted {
            if answering.get(&name) == Some(&digest) {
                continue;
            }
            let certificate = base64::engine::general_purpose::STANDARD
                .decode(digest.as_bytes())
                .map_err(|e| AcmeError::Order(e.to_string()))
                .and_then(|bytes| challenge_certificate(&name, &bytes));
            match certificate {
                Ok(certificate) => {
                    self.certs.set_challenge(&name, Some(certificate));
                    answering.insert(name, digest);
                }
                Err(e) => tracing::warn!(error = %e, "ACME: a shared challenge is unusable"),
            }
        }
    }

    /// The account: the stored one for this directory, or a new one (then stored).
    async fn account(&self, http: impl Fn() -> Box<dyn HttpClient>) -> Result<Account, AcmeError> {
        let path = self.dir.join("account.json");
        let stored = match &self.options.shared {
            Some(shared) => shared
                .secrets
                .secret(ACCOUNT)
                .await
                .map_err(AcmeError::Order)?
                .map(String::into_bytes),
            None => std::fs::read(&path).ok(),
        };
        if let Some(bytes) = stored {
            if let Ok(stored) = serde_json::from_slice::<StoredAccount>(&bytes) {
                if stored.directory == self.directory {
                    return Ok(Account::builder_with_http(http())
                        .from_credentials(stored.credentials)
                        .await?);
                }
            }
        }
        let contact: Vec<&str> = self.contact.iter().map(String::as_str).collect();
        let (account, credentials) = Account::builder_with_http(http())
            .create(
                &NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.directory.clone(),
                None,
            )
            .await?;
        let stored = StoredAccount {
            directory: self.directory.clone(),
            credentials,
        };
        let json = serde_json::to_string(&stored).map_err(|e| AcmeError::Order(e.to_string()))?;
        match &self.options.shared {
            Some(shared) => shared
                .secrets
                .set_secret(ACCOUNT, &json)
                .await
                .map_err(AcmeError::Order)?,
            None => write_atomic(&path, json.as_bytes())?,
        }
        Ok(account)
    }

    /// One order: challenges answered on the HTTPS listener, the certificate stored and
    /// served.
    async fn order(&self) -> Result<(), AcmeError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| TlsError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let client = AcmeHttp::new(&self.options);
        let account = self.account(|| Box::new(client.clone())).await?;
        let identifiers: Vec<Identifier> =
            self.names.iter().cloned().map(Identifier::Dns).collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        let mut challenged = Vec::new();
        let result = self.validate(&mut order, &mut challenged).await;
        for name in &challenged {
            self.certs.set_challenge(name, None);
            if let Some(shared) = &self.options.shared {
                let key = format!("{CHALLENGE_PREFIX}{name}");
                if let Err(e) = shared.secrets.remove_secret(&key).await {
                    tracing::warn!(error = %e, "ACME: removing a shared challenge failed");
                }
            }
        }
        result?;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(self.names.clone())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key)?;
        order.finalize_csr(csr.der()).await?;
        let chain = order.poll_certificate(&self.retry_policy()).await?;
        if let Some(shared) = &self.options.shared {
            // Load before storing, as with files: a chain that rustls refuses never
            // replaces a good one for the other nodes either.
            let key_pem = key.serialize_pem();
            let served =
                tls::pair_from_pem(chain.as_bytes(), key_pem.as_bytes(), Path::new(CERTIFICATE))
                    .map_err(|e| {
                        AcmeError::Order(format!("the issued certificate does not load: {e}"))
                    })?;
            let json = serde_json::to_string(&SharedCertificate {
                cert: chain,
                key: key_pem,
            })
            .map_err(|e| AcmeError::Order(e.to_string()))?;
            shared
                .secrets
                .set_secret(CERTIFICATE, &json)
                .await
                .map_err(AcmeError::Order)?;
            self.certs.set(served, false);
            return Ok(());
        }
        // Load before storing: a chain that rustls refuses never replaces a good one.
        let (cert_path, key_path) = (self.dir.join("cert.pem"), self.dir.join("key.pem"));
        write_atomic(
            &key_path.with_extension("new"),
            key.serialize_pem().as_bytes(),
        )?;
        write_atomic(&cert_path.with_extension("new"), chain.as_bytes())?;
        let served = tls::load_pair(
            &cert_path.with_extension("new"),
            &key_path.with_extension("new"),
        )
        .map_err(|e| AcmeError::Order(format!("the issued certificate does not load: {e}")))?;
        for path in [&key_path, &cert_path] {
            std::fs::rename(path.with_extension("new"), path).map_err(|source| TlsError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        self.certs.set(served, false);
        Ok(())
    }

    /// Answers every pending authorization of `order` with TLS-ALPN-01 and waits until
    /// the order is ready; the names given a challenge certificate go to `challenged`.
    async fn validate(
        &self,
        order: &mut instant_acme::Order,
        challenged: &mut Vec<String>,
    ) -> Result<(), AcmeError> {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                // The CA remembers a recent validation of this account.
                AuthorizationStatus::Valid => continue,
                status => {
                    return Err(AcmeError::Order(format!("authorization is {status:?}")));
                }
            }
            let mut challenge = authorization
                .challenge(ChallengeType::TlsAlpn01)
                .ok_or_else(|| AcmeError::Order("the CA offers no tls-alpn-01 challenge".into()))?;
            let name = challenge.identifier().to_string();
            let digest = challenge.key_authorization().digest();
            self.certs
                .set_challenge(&name, Some(challenge_certificate(&name, digest.as_ref())?));
            if let Some(shared) = &self.options.shared {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
                let published = shared
                    .secrets
                    .set_secret(&format!("{CHALLENGE_PREFIX}{name}"), &encoded)
                    .await;
                challenged.push(name);
                published.map_err(AcmeError::Order)?;
                // The validator may connect to any node: let every one read it first.
                tokio::time::sleep(CHALLENGE_SPREAD).await;
            } else {
                challenged.push(name);
            }
            challenge.set_ready().await?;
        }
        match order.poll_ready(&self.retry_policy()).await? {
            OrderStatus::Ready => Ok(()),
            status => Err(AcmeError::Order(format!("order is {status:?}, not ready"))),
        }
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(self.options.order_timeout)
    }
}

/// The TLS-ALPN-01 certificate for `name` (RFC 8737 section 3): self-signed, the name
/// as its only SAN, the SHA-256 of the key authorization in the critical
/// `acmeIdentifier` extension.
fn challenge_certificate(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, AcmeError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key)?;
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
    // Not `CertifiedKey::from_der`: its key check parses the certificate with webpki,
    // which refuses the critical extension a validator expects.
    let signing_key = tls::provider()
        .key_provider
        .load_private_key(der.into())
        .map_err(TlsError::from)?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing_key,
    )))
}

/// What `account.json` holds: the account and the directory it belongs to (another
/// `acme_directory` needs another account).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

/// The HTTP client of the ACME account: hyper over tokio-rustls (ring), trusting the
/// system's roots and [`AcmeOptions::extra_roots`]; each exchange bounded in time and
/// size.
#[derive(Clone)]
struct AcmeHttp {
    tls: TlsConnector,
    timeout: Duration,
}

impl AcmeHttp {
    fn new(options: &AcmeOptions) -> AcmeHttp {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        roots.add_parsable_certificates(options.extra_roots.iter().cloned());
        let config = rustls::ClientConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        let config = match config {
            Ok(config) => config,
            // The ring provider has the default versions; this cannot happen.
            Err(_) => rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        AcmeHttp {
            tls: TlsConnector::from(Arc::new(config)),
            timeout: options.request_timeout,
        }
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: hyper::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let (tls, timeout) = (self.tls.clone(), self.timeout);
        Box::pin(async move {
            match tokio::time::timeout(timeout, exchange(tls, req)).await {
                Ok(result) => result.map_err(instant_acme::Error::Str),
                Err(_) => Err(instant_acme::Error::Str("ACME request timed out")),
            }
        })
    }
}

/// One request on a connection of its own (the CA's API is a handful of requests per
/// order: no pool needed).
async fn exchange(
    tls: TlsConnector,
    req: hyper::Request<BodyWrapper<Bytes>>,
) -> Result<BytesResponse, &'static str> {
    let uri = req.uri().clone();
    if uri.scheme_str() != Some("https") {
        return Err("ACME URLs must be https");
    }
    let host = uri.host().ok_or("ACME URL without a host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    let authority = uri
        .authority()
        .ok_or("ACME URL without a host")?
        .to_string();
    let server_name = ServerName::try_from(host.clone()).map_err(|_| "bad ACME host name")?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|_| "cannot connect to the ACME server")?;
    let stream = tls
        .connect(server_name, tcp)
        .await
        .map_err(|_| "TLS with the ACME server failed")?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|_| "HTTP with the ACME server failed")?;
    let (mut parts, body) = req.into_parts();
    parts.uri = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()
        .map_err(|_| "bad ACME URL")?;
    parts.headers.insert(
        HOST,
        HeaderValue::from_str(&authority).map_err(|_| "bad ACME host name")?,
    );
    let send = async {
        let response = sender
            .send_request(hyper::Request::from_parts(parts, body))
            .await
            .map_err(|_| "the ACME server did not answer")?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE)
            .collect()
            .await
            .map_err(|_| "the ACME server's answer is cut off or too large")?
            .to_bytes();
        Ok(BytesResponse::from(hyper::Response::from_parts(
            parts,
            Full::new(body),
        )))
    };
    tokio::select! {
        result = send => result,
        _ = connection => Err("the ACME server closed the connection"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_when_a_third_of_the_lifetime_remains() {
        let from = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let until = from + Duration::from_secs(90 * 86_400);
        let at = renew_at(from, until, 1.0 / 3.0);
        assert_eq!(until.duration_since(at).unwrap().as_secs(), 30 * 86_400);
        assert_eq!(renew_at(from, until, 1.0), from);
    }

    #[test]
    fn challenge_certificate_names_the_domain_and_carries_the_digest() {
        let digest = [7u8; 32];
        let key = challenge_certificate("chat.example.org", &digest).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&key.cert[0]).unwrap();
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        // An OCTET STRING of the 32 digest bytes.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
    }
}
