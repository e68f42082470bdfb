//! The relay's DKIM key on disk: `<data_dir>/dkim/<selector>.private`, an RSA 2048 key
//! in PEM (spec 4.5: OpenDKIM's `opendkim-genkey` makes the same), created on first use.
//! An operator moving from the reference relay can copy `/etc/dkimkeys/opendkim.private`
//! there (PKCS#1 or PKCS#8 PEM are both read) and keep the published DNS record.

use std::io::Write;
use std::path::{Path, PathBuf};

use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::RsaPrivateKey;

use super::error::DkimError;

/// Bits of a generated key: what `opendkim-genkey` makes in practice (spec 4.5), and what
/// receivers expect today (RFC 8301 requires at least 1024).
pub(super) const KEY_BITS: usize = 2048;

/// Largest key file read: a 4096-bit PEM key is about 3.3 KB.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// Where the key of `selector` lives under `data_dir`.
pub(super) fn key_path(data_dir: &Path, selector: &str) -> PathBuf {
    data_dir.join("dkim").join(format!("{selector}.private"))
}

/// The key at `path`, generated and written there first if the file does not exist.
pub(super) fn load_or_create(path: &Path) -> Result<RsaPrivateKey, DkimError> {
    match std::fs::metadata(path) {
        Ok(_) => load(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(source) => Err(DkimError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Reads a PEM RSA private key, PKCS#1 (`BEGIN RSA PRIVATE KEY`, as opendkim-genkey
/// writes) or PKCS#8 (`BEGIN PRIVATE KEY`).
fn load(path: &Path) -> Result<RsaPrivateKey, DkimError> {
    let io = |source| DkimError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.len() > MAX_KEY_FILE {
        return Err(DkimError::BadKey {
            path: path.to_owned(),
            reason: format!("larger than {MAX_KEY_FILE} bytes"),
        });
    }
    let pem = std::fs::read_to_string(path).map_err(io)?;
    parse_pem(&pem, path)
}

/// An RSA private key from PEM, PKCS#1 or PKCS#8; `origin` names where it came from in
/// the error.
pub(super) fn parse_pem(pem: &str, origin: &Path) -> Result<RsaPrivateKey, DkimError> {
    if pem.len() as u64 > MAX_KEY_FILE {
        return Err(DkimError::BadKey {
            path: origin.to_owned(),
            reason: format!("larger than {MAX_KEY_FILE} bytes"),
        });
    }
    RsaPrivateKey::from_pkcs1_pem(pem)
        .or_else(|pkcs1| {
            RsaPrivateKey::from_pkcs8_pem(pem).map_err(|pkcs8| format!("{pkcs1}; {pkcs8}"))
        })
        .map_err(|reason| DkimError::BadKey {
            path: origin.to_owned(),
            reason,
        })
}

/// A new key and its PKCS#1 PEM.
pub(super) fn generate() -> Result<(RsaPrivateKey, String), DkimError> {
    let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, KEY_BITS)
        .map_err(|e| DkimError::Generate(e.to_string()))?;
    let pem = key
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| DkimError::Generate(e.to_string()))?;
    Ok((key, pem.to_string()))
}

/// Generates a key and writes it durably: a temporary file of mode 0600 in the same
/// directory, fsynced, renamed into place, the directory fsynced. A crash leaves either
/// no key or the whole key, never half a file that a restart would refuse.
fn create(path: &Path) -> Result<RsaPrivateKey, DkimError> {
    let (key, pem) = generate()?;
    write_pem(path, &pem)?;
    Ok(key)
}

/// Writes `pem` to `path` durably, never readable by others: a temporary file of mode
/// 0600 in the same directory, fsynced, renamed into place, the directory fsynced.
pub(super) fn write_pem(path: &Path, pem: &str) -> Result<(), DkimError> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |source| DkimError::Io { path: p, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = path.with_extension(format!("private.tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The key is a secret: never readable by others, not even for a moment.
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(pem.as_bytes())?;
        file.sync_all()
    })();
    if let Err(source) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(DkimError::Io { path: tmp, source });
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    // The rename is durable once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

/// The public half as DER SubjectPublicKeyInfo: the `p=` of the DNS record, as
/// opendkim-genkey publishes it.
pub(super) fn public_key_spki(key: &RsaPrivateKey) -> Result<Vec<u8>, DkimError> {
    key.to_public_key()
        .to_public_key_der()
        .map(|der| der.as_bytes().to_vec())
        .map_err(|e| DkimError::Generate(e.to_string()))
}

/// The private key as PKCS#1 DER, the form mail-auth's signer takes.
pub(super) fn private_key_pkcs1(key: &RsaPrivateKey) -> Result<Vec<u8>, DkimError> {
    key.to_pkcs1_der()
        .map(|der| der.as_bytes().to_vec())
        .map_err(|e| DkimError::Generate(e.to_string()))
}
