//! Signing what the relay sends (spec 4.5): rsa-sha256, `relaxed/simple`, no `l=`, the
//! header fields OpenDKIM signs by default plus `Autocrypt` and `Content-Type`, most of
//! them over-signed.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use mail_auth::common::crypto::{Algorithm, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::Canonicalization;
use mail_auth::AuthenticatedMessage;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};

use super::error::DkimError;
use super::key;

/// OpenDKIM's default signed header fields: `dkim_should_signhdrs` in libopendkim's
/// `dkim.c`, the set RFC 6376 section 5.4.1 recommends. The reference relay signs these
/// (spec 4.5) and over-signs every one of them.
const OPENDKIM_DEFAULT: [&str; 20] = [
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Resent-Date",
    "Resent-From",
    "Resent-Sender",
    "Resent-To",
    "Resent-Cc",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
];

/// Signed in addition to the default set, over-signed too (spec 4.5): the key a Delta
/// Chat client learns its peer's OpenPGP key from.
const AUTOCRYPT: &str = "Autocrypt";

/// Signed in addition, each instance present, not over-signed (spec 4.5).
const CONTENT_TYPE: &str = "Content-Type";

/// The relay's DKIM signer: its key (RSA 2048, `<data_dir>/dkim/<selector>.private`),
/// selector and domain. Cheap to clone (the key is shared), so a clone can go to a
/// blocking thread for [`DkimSigner::sign`].
#[derive(Clone)]
pub struct DkimSigner {
    inner: Arc<Inner>,
}

struct Inner {
    key: Arc<RsaKey<Sha256>>,
    /// DER SubjectPublicKeyInfo, published as `p=`.
    public_key: Vec<u8>,
    selector: String,
    domain: String,
}

impl std::fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("DkimSigner")
            .field("selector", &self.inner.selector)
            .field("domain", &self.inner.domain)
            .finish_non_exhaustive()
    }
}

impl DkimSigner {
    /// Loads the key of `selector` from `<data_dir>/dkim/<selector>.private`, or
    /// generates it there (mode 0600) if the file does not exist, to sign for `domain`.
    ///
    /// Generating an RSA key takes up to a second or so: call it at start-up, or on a
    /// blocking thread.
    pub fn load_or_create(
        data_dir: &Path,
        selector: &str,
        domain: &str,
    ) -> Result<DkimSigner, DkimError> {
        check_name("selector", selector)?;
        check_name("domain", domain)?;
        let path = key::key_path(data_dir, selector);
        let private = key::load_or_create(&path)?;
        DkimSigner::from_key(private, path, selector, domain)
    }

    /// A signer for `domain` with the key in `pem` (PKCS#1 or PKCS#8 PEM): a key kept
    /// elsewhere than the data directory, such as the database that several relay nodes
    /// share. `origin` names where the key came from in errors.
    pub fn from_pem(
        pem: &str,
        origin: &str,
        selector: &str,
        domain: &str,
    ) -> Result<DkimSigner, DkimError> {
        check_name("selector", selector)?;
        check_name("domain", domain)?;
        let origin = std::path::PathBuf::from(origin);
        let private = key::parse_pem(pem, &origin)?;
        DkimSigner::from_key(private, origin, selector, domain)
    }

    /// A new RSA 2048 key in PKCS#1 PEM, for [`DkimSigner::from_pem`]: what a relay
    /// offers its shared store when the domain has no key yet. Takes up to a second or
    /// so: call it on a blocking thread.
    pub fn generate_pem() -> Result<String, DkimError> {
        key::generate().map(|(_, pem)| pem)
    }

    /// The PEM of the key of `selector` in `<data_dir>/dkim/`, if there is one (what
    /// `relay migrate` moves into a shared database).
    pub fn read_pem(data_dir: &Path, selector: &str) -> Result<Option<String>, DkimError> {
        check_name("selector", selector)?;
        let path = key::key_path(data_dir, selector);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > 64 * 1024 => Err(DkimError::BadKey {
                path,
                reason: "larger than 64 KiB".into(),
            }),
            Ok(_) => {
                let pem = std::fs::read_to_string(&path).map_err(|source| DkimError::Io {
                    path: path.clone(),
                    source,
                })?;
                key::parse_pem(&pem, &path)?;
                Ok(Some(pem))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DkimError::Io { path, source }),
        }
    }

    /// Writes `pem` (checked to be a key) as the key of `selector` in `<data_dir>/dkim/`,
    /// durably and readable by its owner only: `relay migrate` from a shared database
    /// back to one machine.
    pub fn write_pem(data_dir: &Path, selector: &str, pem: &str) -> Result<(), DkimError> {
        check_name("selector", selector)?;
        let path = key::key_path(data_dir, selector);
        key::parse_pem(pem, &path)?;
        key::write_pem(&path, pem)
    }

    fn from_key(
        private: rsa::RsaPrivateKey,
        path: std::path::PathBuf,
        selector: &str,
        domain: &str,
    ) -> Result<DkimSigner, DkimError> {
        let public_key = key::public_key_spki(&private)?;
        let der = key::private_key_pkcs1(&private)?;
        let key =
            RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)))
                .map_err(|e| DkimError::BadKey {
                    path,
                    reason: e.to_string(),
                })?;
        Ok(DkimSigner {
            inner: Arc::new(Inner {
                key: Arc::new(key),
                public_key,
                selector: selector.to_ascii_lowercase(),
                domain: domain.to_ascii_lowercase(),
            }),
        })
    }

    /// The selector: the key is published at `<selector>._domainkey.<domain>`.
    pub fn selector(&self) -> &str {
        &self.inner.selector
    }

    /// The signing domain (`d=`).
    pub fn domain(&self) -> &str {
        &self.inner.domain
    }

    /// The DNS name the key is published under, absolute:
    /// `<selector>._domainkey.<domain>.`.
    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}.", self.inner.selector, self.inner.domain)
    }

    /// The TXT record to publish at [`DkimSigner::dns_name`], as the reference relay
    /// publishes it (spec 4.5, 4.7): `v=DKIM1;k=rsa;p=<key>;s=email;t=s` (`s=email`: for
    /// mail only; `t=s`: no subdomain may use the key through `i=`).
    pub fn dns_txt_value(&self) -> String {
        let p = base64::engine::general_purpose::STANDARD.encode(&self.inner.public_key);
        format!("v=DKIM1;k=rsa;p={p};s=email;t=s")
    }

    /// Signs `message` (header section, blank line, body; CRLF line ends as it goes on
    /// the wire) and returns the `DKIM-Signature: ...\r\n` header field to put in front of
    /// it. The whole body is hashed: for a large message, call this on a blocking thread.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, DkimError> {
        let signer = mail_auth::dkim::DkimSigner::from_key(SharedKey(self.inner.key.clone()))
            .domain(self.inner.domain.clone())
            .selector(self.inner.selector.clone())
            .headers(headers_to_sign(message))
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Simple);
        let signature = signer
            .sign(message)
            .map_err(|e| DkimError::Sign(e.to_string()))?;
        Ok(signature.to_header().into_bytes())
    }
}

/// The `h=` list to ask mail-auth for. mail-auth signs every instance in the message of
/// a listed name, then lists once more each listed entry it found no instance for. So a
/// name listed twice is over-signed when present (all instances plus one empty one: an
/// added instance breaks the signature) and listed once when absent (it cannot be
/// added), as OpenDKIM's `OversignHeaders` does.
fn headers_to_sign(message: &[u8]) -> Vec<&'static str> {
    let present: Vec<&[u8]> = AuthenticatedMessage::parse(message)
        .map(|m| m.headers.iter().map(|(name, _)| *name).collect())
        .unwrap_or_default();
    let is_present = |name: &str| {
        present
            .iter()
            .any(|p| p.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
    };
    let mut list = Vec::with_capacity(2 * OPENDKIM_DEFAULT.len() + 3);
    for name in OPENDKIM_DEFAULT.into_iter().chain([AUTOCRYPT]) {
        list.push(name);
        if is_present(name) {
            list.push(name);
        }
    }
    if is_present(CONTENT_TYPE) {
        list.push(CONTENT_TYPE);
    }
    list
}

/// Only letters, digits, `-`, `_` and dots between non-empty labels: a selector or domain
/// that names a DNS record (and, for the selector, a file name).
fn check_name(what: &'static str, value: &str) -> Result<(), DkimError> {
    let valid = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(())
    } else {
        Err(DkimError::BadName {
            what,
            value: value.to_string(),
        })
    }
}

/// The one key, shared by every per-message mail-auth signer (its signer owns its key).
struct SharedKey(Arc<RsaKey<Sha256>>);

impl SigningKey for SharedKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        Algorithm::RsaSha256
    }
}
