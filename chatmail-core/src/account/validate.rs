//! Which login names are looked up ([`parse_login`]), and which new accounts may be
//! created ([`check_new_account`]); the rules are in the [account module docs](super).

use crate::config::Config;
use crate::types::{Address, AddressError};

use super::limits::LimitRefusal;

/// Longest password an account can have, in bytes: longer ones never create an account,
/// and every login with a longer one fails at once, before any lookup or hash.
///
/// Why a bound at all: SHA-crypt (spec 2.1, `{SHA512-CRYPT}`) hashes the password once per
/// byte of it before its 5000 rounds, so its cost grows with the square of the length: a
/// 64 KB password costs 15 to 20 s of CPU, a 256-byte one a few milliseconds (about four
/// times a 12-byte one; see BENCHMARKS.md, "Password hashing: a 64 KB password").
///
/// Why 256: `/new` hands out `password_min_length + 3` (12) characters (spec 2.6), and
/// Delta Chat uses those; a person types far fewer than 256; password managers generate at
/// most 128 characters (ASCII), so 256 bytes is twice the longest password a client is
/// known to produce. The reference relay has no bound, so an account it created with a
/// longer password cannot log in here: none is known, and the alternative is a CPU bound
/// that an attacker chooses.
pub const MAX_PASSWORD_LEN: usize = 256;

/// Why a login name is not looked up at all (login fails with "not found").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginNameError {
    /// Not a usable address: empty, no or several `@`, `/`, NUL, `..`, over-long.
    #[error("invalid login name: {0}")]
    Address(#[from] AddressError),
    /// The address belongs to another domain than this relay's.
    #[error("login name domain {domain:?} is not this relay's domain {expected:?}")]
    ForeignDomain {
        /// The domain given.
        domain: String,
        /// This relay's address domain.
        expected: String,
    },
}

/// Why an unknown address is not created on first login.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CreationRefusal {
    /// The operator's kill switch file exists (spec 2.5).
    #[error("account creation is disabled by the operator (nocreate file present)")]
    NoCreate,
    /// The password is shorter than `password_min_length` characters.
    #[error("password has {length} characters, at least {min} are required")]
    PasswordTooShort {
        /// Characters given.
        length: usize,
        /// `password_min_length`.
        min: usize,
    },
    /// The password is longer than [`MAX_PASSWORD_LEN`] bytes.
    #[error("password has {length} bytes, at most {max} are allowed")]
    PasswordTooLong {
        /// Bytes given.
        length: usize,
        /// [`MAX_PASSWORD_LEN`].
        max: usize,
    },
    /// The local part is outside `username_min_length..=username_max_length`.
    #[error("local part has {length} characters, {min} to {max} are required")]
    LocalPartLength {
        /// Characters given.
        length: usize,
        /// `username_min_length`.
        min: usize,
        /// `username_max_length`.
        max: usize,
    },
    /// The local part has a character outside `[a-z0-9._-]`.
    #[error("local part {0:?} may only contain a-z, 0-9, '.', '_' and '-'")]
    LocalPartCharacters(String),
    /// The login name as given contains an upper-case letter.
    #[error("login name {0:?} contains upper-case letters; new accounts must be lower-case")]
    UpperCase(String),
    /// The machine is short of a resource (spec 1.2 system limits).
    #[error("{0}")]
    SystemLimit(#[from] LimitRefusal),
}

/// Turns a login name into the address of the account to look up: lower-cased, of this
/// relay's domain, and safe to use as a directory name.
pub fn parse_login(config: &Config, login: &str) -> Result<Address, LoginNameError> {
    let address = Address::parse(login)?;
    let expected = config.address_domain().to_ascii_lowercase();
    if address.domain() != expected {
        return Err(LoginNameError::ForeignDomain {
            domain: address.domain().to_string(),
            expected,
        });
    }
    Ok(address)
}

/// The reference relay's rules for creating `address` (already returned by
/// [`parse_login`] for `login_as_given`) with `password`, except the nocreate switch and
/// the system limits, which need the outside world and are checked by
/// [`super::Accounts`].
pub fn check_new_account(
    config: &Config,
    login_as_given: &str,
    address: &Address,
    password: &str,
) -> Result<(), CreationRefusal> {
    let pw_chars = password.chars().count();
    if pw_chars < config.password_min_length {
        return Err(CreationRefusal::PasswordTooShort {
            length: pw_chars,
            min: config.password_min_length,
        });
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(CreationRefusal::PasswordTooLong {
            length: password.len(),
            max: MAX_PASSWORD_LEN,
        });
    }
    if login_as_given.chars().any(char::is_uppercase) {
        return Err(CreationRefusal::UpperCase(login_as_given.to_string()));
    }
    let local = address.local_part();
    let length = local.chars().count();
    if length < config.username_min_length || length > config.username_max_length {
        return Err(CreationRefusal::LocalPartLength {
            length,
            min: config.username_min_length,
            max: config.username_max_length,
        });
    }
    if !local
        .bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
    {
        return Err(CreationRefusal::LocalPartCharacters(local.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::with_domain("chat.example.org")
    }

    #[test]
    fn login_names_are_lower_cased_and_domain_checked() {
        let c = cfg();
        let a = parse_login(&c, "AbcDefGhi@Chat.Example.ORG").unwrap();
        assert_eq!(a.as_str(), "abcdefghi@chat.example.org");
        assert!(matches!(
            parse_login(&c, "abcdefghi@other.org"),
            Err(LoginNameError::ForeignDomain { .. })
        ));
        assert!(matches!(
            parse_login(&c, "abcdefghi@chat.example.org.invalid"),
            Err(LoginNameError::ForeignDomain { .. })
        ));
        assert!(parse_login(&c, "abcdefghi@sub.chat.example.org").is_err());
    }

    #[test]
    fn hostile_login_names_are_errors_not_panics() {
        let c = cfg();
        let long = format!("{}@chat.example.org", "a".repeat(300));
        for bad in [
            "",
            "@",
            "abc",
            "a@b@chat.example.org",
            "../etc@chat.example.org",
            "a..b@chat.example.org",
            "a/b@chat.example.org",
            "a\\b@chat.example.org",
            "a\0b@chat.example.org",
            "a b@chat.example.org",
            "abc@",
            "@chat.example.org",
            long.as_str(),
        ] {
            let err = parse_login(&c, bad).unwrap_err();
            assert!(!err.to_string().is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn ipv4_relays_use_the_domain_literal() {
        let c = Config::with_domain("1.3.3.7");
        assert!(parse_login(&c, "abcdefghi@[1.3.3.7]").is_ok());
        assert!(parse_login(&c, "abcdefghi@1.3.3.7").is_err());
    }

    #[test]
    fn creation_rules_match_the_reference() {
        let c = cfg();
        let check = |login: &str, pw: &str| {
            let a = parse_login(&c, login).unwrap();
            check_new_account(&c, login, &a, pw)
        };
        assert_eq!(check("abcdefghi@chat.example.org", "123456789"), Ok(()));
        assert_eq!(check("a.b_c-d09@chat.example.org", "123456789"), Ok(()));
        assert!(matches!(
            check("abcdefghi@chat.example.org", "admin"),
            Err(CreationRefusal::PasswordTooShort { length: 5, min: 9 })
        ));
        assert!(matches!(
            check(
                "abcdefghi@chat.example.org",
                &"x".repeat(MAX_PASSWORD_LEN + 1)
            ),
            Err(CreationRefusal::PasswordTooLong { .. })
        ));
        assert!(matches!(
            check("abcdefgh@chat.example.org", "123456789"),
            Err(CreationRefusal::LocalPartLength { length: 8, .. })
        ));
        assert!(matches!(
            check("abcdefghij@chat.example.org", "123456789"),
            Err(CreationRefusal::LocalPartLength { length: 10, .. })
        ));
        for bad in ["abcd+efgh", "abcd!efgh", "abcd#efgh", "abcdéfghi"] {
            let login = format!("{bad}@chat.example.org");
            assert!(
                matches!(
                    check(&login, "123456789"),
                    Err(CreationRefusal::LocalPartCharacters(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            check("ABCDEFGHI@chat.example.org", "123456789"),
            Err(CreationRefusal::UpperCase(_))
        ));
        assert!(matches!(
            check("abcdefghi@Chat.example.org", "123456789"),
            Err(CreationRefusal::UpperCase(_))
        ));
    }

    #[test]
    fn lengths_come_from_the_config() {
        let mut c = cfg();
        c.username_min_length = 6;
        c.username_max_length = 10;
        for (local, ok) in [
            ("abcde", false),
            ("abcdef", true),
            ("abcdefghij", true),
            ("abcdefghijk", false),
        ] {
            let login = format!("{local}@chat.example.org");
            let a = parse_login(&c, &login).unwrap();
            assert_eq!(
                check_new_account(&c, &login, &a, "123456789").is_ok(),
                ok,
                "{local}"
            );
        }
    }
}
