//! Dovecot-compatible password hashes ([`PasswordHash`]).

use std::fmt;

use sha_crypt::{CustomizedPasswordHasher, Params, PasswordVerifier, ShaCrypt};

/// Most SHA-crypt rounds a stored hash may ask for. Dovecot accepts up to 999999999,
/// which would pin a CPU for minutes per login; one million (~0.5 s) is far above any
/// deployed setting (the reference uses the default 5000).
pub const MAX_VERIFY_ROUNDS: u32 = 1_000_000;

/// The hashing scheme of a stored password, from its `{SCHEME}` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordScheme {
    /// `{SHA512-CRYPT}` (`$6$`), what this relay and the reference write.
    Sha512Crypt,
    /// `{SHA256-CRYPT}` (`$5$`).
    Sha256Crypt,
    /// `{CRYPT}` or no prefix: crypt(3) with a `$6$` or `$5$` body.
    Crypt,
    /// `{PLAIN}` / `{CLEAR}`: the password itself.
    Plain,
}

/// Why a stored password cannot be used or a new one cannot be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The `{SCHEME}` prefix names a scheme this relay does not implement.
    #[error("unsupported password scheme {0:?} (supported: SHA512-CRYPT, SHA256-CRYPT, CRYPT with $5$/$6$, PLAIN)")]
    UnsupportedScheme(String),
    /// The hash text after the prefix is not a valid crypt string.
    #[error("malformed password hash: {0}")]
    Malformed(&'static str),
    /// The stored hash asks for more rounds than [`MAX_VERIFY_ROUNDS`].
    #[error("password hash asks for {0} rounds, at most {MAX_VERIFY_ROUNDS} are verified")]
    TooManyRounds(u32),
    /// The operating system's random source failed.
    #[error("no random salt available: {0}")]
    Random(String),
}

/// A stored password hash, as the `password` file holds it (with the `{SCHEME}` prefix):
/// Dovecot-compatible, so an existing relay's accounts keep their passwords (spec
/// 2.1/2.2).
///
/// New hashes are what the reference writes: `{SHA512-CRYPT}$6$<16-char salt>$<hash>`,
/// 5000 rounds. Verification also understands what Dovecot itself accepts for such
/// accounts: `{SHA512-CRYPT}`, `{SHA256-CRYPT}` and `{CRYPT}` with a `$6$`/`$5$` body
/// (optionally `rounds=N`), a bare `$6$…`/`$5$…` (Dovecot's default scheme is `CRYPT`),
/// and `{PLAIN}`/`{CLEAR}`. Other schemes are refused with
/// [`PasswordError::UnsupportedScheme`], never treated as a mismatch silently.
///
/// Hashing and verifying take milliseconds of CPU: call them from a blocking context
/// (see [`crate::BlockingExecutor`]).
///
/// `Debug` shows only the scheme, so hashes do not end up in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps stored text (surrounding whitespace, e.g. a trailing newline some tools add,
    /// is dropped). Any text is kept; problems surface in [`PasswordHash::verify`].
    pub fn from_stored(text: &str) -> PasswordHash {
        PasswordHash(text.trim().to_string())
    }

    /// Hashes `password` the way the reference relay does: `{SHA512-CRYPT}$6$<salt>$<hash>`
    /// with a random 16-character salt and the default 5000 rounds.
    pub fn sha512_crypt(password: &str) -> Result<PasswordHash, PasswordError> {
        // 12 random bytes encode to the 16 salt characters the reference uses.
        let mut salt = [0u8; 12];
        getrandom::fill(&mut salt).map_err(|e| PasswordError::Random(e.to_string()))?;
        let mcf = ShaCrypt::SHA512
            .hash_password_customized(password.as_bytes(), &salt, None, None, Params::RECOMMENDED)
            .map_err(|_| PasswordError::Malformed("sha-crypt refused the salt"))?;
        // The library always writes `rounds=5000`; glibc and the reference omit the
        // default, which yields the same hash. Rebuild `$6$<salt>$<hash>`.
        let mut fields = mcf
            .fields()
            .map(|f| f.as_str())
            .filter(|f| !f.starts_with("rounds="));
        let (Some(salt), Some(hash), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(PasswordError::Malformed("unexpected sha-crypt output"));
        };
        Ok(PasswordHash(format!("{{SHA512-CRYPT}}$6${salt}${hash}")))
    }

    /// The stored text, with its `{SCHEME}` prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The scheme named by the prefix, and the text after it.
    fn split(&self) -> Result<(PasswordScheme, &str), PasswordError> {
        let (name, body) = match self.0.strip_prefix('{').and_then(|r| r.split_once('}')) {
            Some((name, body)) => (name, body),
            None => ("CRYPT", self.0.as_str()),
        };
        let scheme = match name.to_ascii_uppercase().as_str() {
            "SHA512-CRYPT" => PasswordScheme::Sha512Crypt,
            "SHA256-CRYPT" => PasswordScheme::Sha256Crypt,
            "CRYPT" => PasswordScheme::Crypt,
            "PLAIN" | "CLEAR" => PasswordScheme::Plain,
            _ => {
                return Err(PasswordError::UnsupportedScheme(
                    name.chars().take(32).collect(),
                ))
            }
        };
        Ok((scheme, body))
    }

    /// The hashing scheme of this stored password.
    pub fn scheme(&self) -> Result<PasswordScheme, PasswordError> {
        self.split().map(|(s, _)| s)
    }

    /// Whether `password` matches, compared in constant time. Costs milliseconds for the
    /// crypt schemes: run it in a blocking context.
    pub fn verify(&self, password: &str) -> Result<bool, PasswordError> {
        let (scheme, body) = self.split()?;
        if scheme == PasswordScheme::Plain {
            return Ok(constant_time_eq(body.as_bytes(), password.as_bytes()));
        }
        if !(body.starts_with("$6$") || body.starts_with("$5$")) {
            return Err(PasswordError::Malformed(
                "crypt hash must start with $6$ or $5$",
            ));
        }
        if let Some(rounds) = body
            .split('$')
            .nth(2)
            .and_then(|f| f.strip_prefix("rounds="))
        {
            match rounds.parse::<u32>() {
                Ok(n) if n > MAX_VERIFY_ROUNDS => return Err(PasswordError::TooManyRounds(n)),
                Ok(_) => {}
                Err(_) => return Err(PasswordError::Malformed("rounds= is not a number")),
            }
        }
        match ShaCrypt::default().verify_password(password.as_bytes(), body) {
            Ok(()) => Ok(true),
            Err(sha_crypt::password_hash::Error::PasswordInvalid) => Ok(false),
            Err(_) => Err(PasswordError::Malformed("not a valid SHA-crypt string")),
        }
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.scheme() {
            Ok(s) => write!(f, "PasswordHash({s:?}, ..)"),
            Err(_) => f.write_str("PasswordHash(unsupported, ..)"),
        }
    }
}

/// Compares without an early exit, so the time does not reveal the matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made once with Python 3.11 `crypt.crypt("password123", crypt.mksalt(METHOD_SHA512))`.
    const PY_HASH: &str = "$6$lfqAF7LI1icSkaJc$RS8LfvzJX8eDBgnKpAVItM8EPfRloWT5d66mhDklp9jUaNIyeWQFXAXbcCFBEFqy3AtRmqX0Mtl.1E38812oA1";

    #[test]
    fn new_hashes_have_the_reference_shape_and_verify() {
        let h = PasswordHash::sha512_crypt("correct horse").unwrap();
        let s = h.as_str();
        let body = s.strip_prefix("{SHA512-CRYPT}$6$").unwrap();
        let (salt, hash) = body.split_once('$').unwrap();
        assert_eq!(salt.len(), 16);
        assert_eq!(hash.len(), 86);
        assert!(!s.contains("rounds="));
        assert_eq!(h.verify("correct horse"), Ok(true));
        assert_eq!(h.verify("correct horsf"), Ok(false));
        assert_ne!(PasswordHash::sha512_crypt("correct horse").unwrap(), h);
    }

    #[test]
    fn verifies_hashes_from_an_independent_implementation() {
        for stored in [
            format!("{{SHA512-CRYPT}}{PY_HASH}"),
            format!("{{sha512-crypt}}{PY_HASH}"),
            format!("{{CRYPT}}{PY_HASH}"),
            PY_HASH.to_string(),
            format!("{{SHA512-CRYPT}}{PY_HASH}\n"),
        ] {
            let h = PasswordHash::from_stored(&stored);
            assert_eq!(h.verify("password123"), Ok(true), "{stored}");
            assert_eq!(h.verify("password124"), Ok(false), "{stored}");
        }
    }

    #[test]
    fn verifies_sha256_and_explicit_rounds() {
        // glibc test vectors (crypt(3) with rounds=N and $5$).
        let h = PasswordHash::from_stored(
            "{SHA512-CRYPT}$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
        );
        assert_eq!(h.verify("Hello world!"), Ok(true));
        let h = PasswordHash::from_stored(
            "{SHA256-CRYPT}$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
        );
        assert_eq!(h.scheme(), Ok(PasswordScheme::Sha256Crypt));
        assert_eq!(h.verify("Hello world!"), Ok(true));
        assert_eq!(h.verify("Hello world?"), Ok(false));
    }

    #[test]
    fn plain_scheme_and_refusals() {
        let h = PasswordHash::from_stored("{PLAIN}s3cret-pass");
        assert_eq!(h.verify("s3cret-pass"), Ok(true));
        assert_eq!(h.verify("s3cret-pas"), Ok(false));
        assert!(matches!(
            PasswordHash::from_stored("{ARGON2ID}$argon2id$v=19$...").verify("x"),
            Err(PasswordError::UnsupportedScheme(s)) if s == "ARGON2ID"
        ));
        assert!(matches!(
            PasswordHash::from_stored("{CRYPT}$1$md5salt$hash").verify("x"),
            Err(PasswordError::Malformed(_))
        ));
        assert!(PasswordHash::from_stored("{SHA512-CRYPT}$6$salt$!!!")
            .verify("x")
            .is_err());
        assert!(matches!(
            PasswordHash::from_stored("{SHA512-CRYPT}$6$rounds=999999999$salt$abc").verify("x"),
            Err(PasswordError::TooManyRounds(999_999_999))
        ));
        assert!(PasswordHash::from_stored("").verify("x").is_err());
        assert!(!format!("{h:?}").contains("s3cret"));
    }
}
