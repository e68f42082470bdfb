//! Fresh account credentials, as the reference relay's `/new` endpoint hands them out
//! (spec 2.6), and the `dclogin:` URL that lets a Delta Chat app log in with them.
//!
//! Generating credentials creates nothing: the account appears when the client first
//! logs in with them (spec 2.2).

use chatmail_core::config::Config;
use rand::Rng;

/// The alphabet of generated local parts: the reference draws from `a-z0-9`.
const LOCAL_PART_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// The alphabet of generated passwords: ASCII letters, digits and punctuation (94 symbols).
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// An address and password that will create an account on first login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `local@domain`, local part of `username_max_length` characters.
    pub email: String,
    /// `password_min_length + 3` characters.
    pub password: String,
}

/// Where a client reaches this relay, for a `dclogin:` URL that needs no DNS lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Host name or IP literal the client connects to.
    pub host: String,
    /// Implicit-TLS IMAP port (993 on a production relay).
    pub imaps_port: u16,
    /// Implicit-TLS submission port (465 on a production relay).
    pub submissions_port: u16,
}

impl Credentials {
    /// Draws new credentials with a cryptographically secure generator.
    pub fn generate(config: &Config) -> Credentials {
        let mut rng = rand::rng();
        let mut pick = |alphabet: &[u8], n: usize| -> String {
            (0..n)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
                .collect()
        };
        let local = pick(LOCAL_PART_ALPHABET, config.username_max_length);
        let password = pick(PASSWORD_ALPHABET, config.password_min_length + 3);
        Credentials {
            email: format!("{local}@{}", config.address_domain()),
            password,
        }
    }

    /// The `dclogin:` URL of spec 2.6: address (keeping `@`, `[`, `]`), password fully
    /// percent-encoded, `v=1`, `ic=3` (accept the self-signed certificate). With
    /// `endpoints`, explicit hosts, ports and TLS modes are added so that a client can
    /// connect without DNS or standard ports.
    pub fn dclogin_url(&self, endpoints: Option<&Endpoints>) -> String {
        let mut url = format!(
            "dclogin:{}?p={}&v=1",
            encode(&self.email, b"@[]"),
            encode(&self.password, b"")
        );
        if let Some(e) = endpoints {
            let host = encode(&e.host, b"[]:");
            url.push_str(&format!(
                "&ih={host}&ip={}&is=ssl&sh={host}&sp={}&ss=ssl",
                e.imaps_port, e.submissions_port
            ));
        }
        url.push_str("&ic=3");
        url
    }

    /// The JSON body of `/new` (spec 2.6); `dclogin_url` only on self-signed relays.
    pub fn to_json(&self, dclogin_url: Option<&str>) -> String {
        let mut obj = serde_json::json!({ "email": self.email, "password": self.password });
        if let Some(url) = dclogin_url {
            obj["dclogin_url"] = serde_json::Value::String(url.to_string());
        }
        obj.to_string()
    }
}

/// Percent-encodes everything but unreserved characters and `keep`.
fn encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_credentials_have_the_reference_shape() {
        let config = Config::with_domain("chat.example.org");
        let a = Credentials::generate(&config);
        let b = Credentials::generate(&config);
        assert_ne!(a, b);
        let (local, domain) = a.email.split_once('@').unwrap();
        assert_eq!(domain, "chat.example.org");
        assert_eq!(local.len(), 9);
        assert!(local.bytes().all(|c| LOCAL_PART_ALPHABET.contains(&c)));
        assert_eq!(a.password.len(), 12);
        assert!(a.password.bytes().all(|c| c.is_ascii_graphic()));
    }

    #[test]
    fn ipv4_relays_use_a_domain_literal() {
        let config = Config::with_domain("1.3.3.7");
        assert!(Credentials::generate(&config).email.ends_with("@[1.3.3.7]"));
    }

    #[test]
    fn dclogin_url_encoding_matches_the_reference() {
        let c = Credentials {
            email: "a+b@[1.3.3.7]".into(),
            password: "p@ss w+rd".into(),
        };
        assert_eq!(
            c.dclogin_url(None),
            "dclogin:a%2Bb@[1.3.3.7]?p=p%40ss%20w%2Brd&v=1&ic=3"
        );
        let e = Endpoints {
            host: "127.0.0.1".into(),
            imaps_port: 1993,
            submissions_port: 1465,
        };
        assert_eq!(
            c.dclogin_url(Some(&e)),
            "dclogin:a%2Bb@[1.3.3.7]?p=p%40ss%20w%2Brd&v=1&ih=127.0.0.1&ip=1993&is=ssl&sh=127.0.0.1&sp=1465&ss=ssl&ic=3"
        );
    }

    #[test]
    fn json_shape() {
        let c = Credentials {
            email: "x@y".into(),
            password: "p\"w".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&c.to_json(None)).unwrap();
        assert_eq!(v["email"], "x@y");
        assert_eq!(v["password"], "p\"w");
        assert!(v.get("dclogin_url").is_none());
        let v: serde_json::Value = serde_json::from_str(&c.to_json(Some("dclogin:x"))).unwrap();
        assert_eq!(v["dclogin_url"], "dclogin:x");
    }
}
