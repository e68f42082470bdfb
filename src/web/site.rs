//! [`Site`]: the endpoints' answers, request by request.

use super::www_folder::WwwFolder;
use crate::credentials::{Credentials, Endpoints};
use chatmail_core::config::{Config, TlsCertMode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// An HTTP response, independent of any HTTP library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebResponse {
    /// Status code.
    pub status: u16,
    /// `Content-Type`, if there is a body.
    pub content_type: &'static str,
    /// `Location`, for redirects.
    pub location: Option<String>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl WebResponse {
    fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> WebResponse {
        WebResponse {
            status: 200,
            content_type,
            location: None,
            body: body.into(),
        }
    }

    fn status(status: u16, text: &str) -> WebResponse {
        WebResponse {
            status,
            content_type: "text/plain; charset=utf-8",
            location: None,
            body: format!("{text}\n").into_bytes(),
        }
    }
}

/// What the web endpoints need to know about the relay.
#[derive(Debug, Clone)]
pub struct Site {
    pub(super) config: Config,
    /// Host and ports that clients use, put into `dclogin:` URLs on self-signed relays.
    pub(super) endpoints: Endpoints,
    /// Whether the certificate clients see now is self-signed (they cannot verify it, so
    /// credentials come as `dclogin:` URLs that say so). Shared with whoever changes the
    /// certificate.
    self_signed: Arc<AtomicBool>,
    /// The home, info and privacy pages: built in, the operator's, or none.
    pages: Pages,
}

/// Where the pages come from (`www_folder`).
#[derive(Debug, Clone)]
enum Pages {
    /// `www_folder` empty: this module's pages.
    BuiltIn,
    /// `www_folder` a directory: its files, read once.
    Folder(Arc<WwwFolder>),
    /// `www_folder = disabled`: no pages (another server serves them).
    Disabled,
}

impl Pages {
    /// The pages `www_folder` names; a folder that cannot be read falls back to the
    /// built-in pages with a warning.
    fn from_config(www_folder: &str) -> Pages {
        match www_folder.trim() {
            "" => Pages::BuiltIn,
            "disabled" => Pages::Disabled,
            dir => match WwwFolder::load(std::path::Path::new(dir)) {
                Ok(folder) => Pages::Folder(Arc::new(folder)),
                Err(e) => {
                    tracing::warn!(www_folder = dir, error = %e, "www_folder unreadable; serving the built-in pages");
                    Pages::BuiltIn
                }
            },
        }
    }
}

impl Site {
    /// A site for `config`, reachable by clients at `endpoints`; the certificate counts
    /// as self-signed when the configuration's mode says so.
    pub fn new(config: Config, endpoints: Endpoints) -> Site {
        let self_signed = config.tls_cert_mode() == TlsCertMode::SelfSigned;
        Site {
            pages: Pages::from_config(&config.www_folder),
            config,
            endpoints,
            self_signed: Arc::new(AtomicBool::new(self_signed)),
        }
    }

    /// Take whether the served certificate is self-signed from `flag` (the driver's
    /// knowledge: a relay without a certificate serves a self-signed one whatever its
    /// domain, spec 2.6).
    pub fn with_self_signed(mut self, flag: Arc<AtomicBool>) -> Site {
        self.self_signed = flag;
        self
    }

    pub(super) fn self_signed(&self) -> bool {
        self.self_signed.load(Ordering::Relaxed)
    }

    /// The host name of the relay in URLs and autoconfig.
    pub(super) fn host(&self) -> &str {
        &self.config.mail_domain
    }

    /// Answers one request. `method` is the HTTP method in upper case; `path` is the
    /// request target without the query string.
    pub fn respond(&self, method: &str, path: &str) -> WebResponse {
        match path {
            "/new" | "/cgi-bin/newemail.py" => self.new_account(method),
            "/.well-known/autoconfig/mail/config-v1.1.xml" | "/mail/config-v1.1.xml" => {
                only_get(method).unwrap_or_else(|| {
                    WebResponse::ok("application/xml; charset=utf-8", self.autoconfig())
                })
            }
            "/.well-known/mta-sts.txt" => only_get(method)
                .unwrap_or_else(|| WebResponse::ok("text/plain; charset=utf-8", self.mta_sts())),
            "/robots.txt" => only_get(method).unwrap_or_else(|| {
                WebResponse::ok("text/plain; charset=utf-8", "User-agent: *\nDisallow: /\n")
            }),
            _ => only_get(method).unwrap_or_else(|| self.page_at(path)),
        }
    }

    /// A page or a file of `www_folder` at `path`, or 404.
    fn page_at(&self, path: &str) -> WebResponse {
        let html = |body: String| WebResponse::ok("text/html; charset=utf-8", body);
        match (&self.pages, path) {
            (Pages::Folder(folder), _) => match folder.get(path) {
                Some((content_type, bytes)) => WebResponse::ok(content_type, bytes),
                None => WebResponse::status(404, "Not Found"),
            },
            (Pages::BuiltIn, "/" | "/index.html") => html(self.home_page()),
            (Pages::BuiltIn, "/info.html" | "/info") => html(self.info_page()),
            (Pages::BuiltIn, "/privacy.html" | "/privacy") => html(self.privacy_page()),
            _ => WebResponse::status(404, "Not Found"),
        }
    }

    /// `/new`: JSON credentials on POST; on GET a redirect that opens Delta Chat, except
    /// on self-signed relays where GET gives the JSON too (spec 2.6).
    fn new_account(&self, method: &str) -> WebResponse {
        match method {
            "POST" => {}
            "GET" | "HEAD" if self.self_signed() => {}
            "GET" | "HEAD" => {
                return WebResponse {
                    status: 301,
                    content_type: "text/plain; charset=utf-8",
                    location: Some(format!("dcaccount:https://{}/new", self.host())),
                    body: Vec::new(),
                }
            }
            _ => return WebResponse::status(405, "Method Not Allowed"),
        }
        let creds = Credentials::generate(&self.config);
        let url = self
            .self_signed()
            .then(|| creds.dclogin_url(Some(&self.endpoints)));
        WebResponse::ok("application/json", creds.to_json(url.as_deref()))
    }

    /// Thunderbird-style autoconfig (spec 4.9) listing the ports this relay serves.
    pub fn autoconfig(&self) -> String {
        let d = xml_escape(self.host());
        let c = &self.config;
        let server = |kind: &str, tag: &str, port: u16, socket: &str| {
            format!(
                "    <{tag} type=\"{kind}\">\n      <hostname>{d}</hostname>\n      <port>{port}</port>\n      <socketType>{socket}</socketType>\n      <authentication>password-cleartext</authentication>\n      <username>%EMAILADDRESS%</username>\n    </{tag}>\n"
            )
        };
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n  <emailProvider id=\"{d}\">\n    <domain>{d}</domain>\n    <displayName>{d} chatmail</displayName>\n    <displayShortName>{d}</displayShortName>\n"
        );
        xml += &server("imap", "incomingServer", c.imaps_port, "SSL");
        xml += &server("imap", "incomingServer", c.imap_port, "STARTTLS");
        xml += &server("smtp", "outgoingServer", c.submissions_port, "SSL");
        xml += &server("smtp", "outgoingServer", c.submission_port, "STARTTLS");
        xml += "  </emailProvider>\n</clientConfig>\n";
        xml
    }

    /// The MTA-STS policy (spec 4.8).
    pub fn mta_sts(&self) -> String {
        format!(
            "version: STSv1\nmode: enforce\nmx: {}\nmax_age: 2419200\n",
            self.host()
        )
    }
}

fn only_get(method: &str) -> Option<WebResponse> {
    (method != "GET" && method != "HEAD").then(|| WebResponse::status(405, "Method Not Allowed"))
}

pub(super) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(domain: &str) -> Site {
        let endpoints = Endpoints {
            host: "127.0.0.1".into(),
            imaps_port: 993,
            submissions_port: 465,
        };
        Site::new(Config::with_domain(domain), endpoints)
    }

    #[test]
    fn new_on_acme_relay_redirects_get_and_answers_post() {
        let s = site("chat.example.org");
        let r = s.respond("GET", "/new");
        assert_eq!(r.status, 301);
        assert_eq!(
            r.location.as_deref(),
            Some("dcaccount:https://chat.example.org/new")
        );
        let r = s.respond("POST", "/cgi-bin/newemail.py");
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v["email"].as_str().unwrap().ends_with("@chat.example.org"));
        assert!(v.get("dclogin_url").is_none());
        assert_eq!(s.respond("DELETE", "/new").status, 405);
    }

    #[test]
    fn a_domain_relay_serving_a_self_signed_certificate_gives_dclogin_urls_too() {
        // No `_`, no certificate yet: the driver serves a self-signed one (spec 2.6).
        let flag = Arc::new(AtomicBool::new(true));
        let s = site("chat.example.org").with_self_signed(flag.clone());
        let r = s.respond("POST", "/new");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v["dclogin_url"].as_str().unwrap().starts_with("dclogin:"));
        assert_eq!(s.respond("GET", "/new").status, 200);
        // Once a real certificate is served: DCACCOUNT redirect, no dclogin_url.
        flag.store(false, Ordering::Relaxed);
        let r = s.respond("POST", "/new");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v.get("dclogin_url").is_none_or(|u| u.is_null()), "{v}");
        assert_eq!(s.respond("GET", "/new").status, 301);
    }

    #[test]
    fn new_on_self_signed_relay_gives_dclogin_url_on_get_and_post() {
        let s = site("_chat.localhost");
        for m in ["GET", "POST"] {
            let r = s.respond(m, "/new");
            assert_eq!(r.status, 200);
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let url = v["dclogin_url"].as_str().unwrap();
            assert!(url.starts_with("dclogin:"), "{url}");
            assert!(url.ends_with("&ic=3"), "{url}");
            assert!(v["password"].as_str().unwrap().len() > 9);
        }
    }

    #[test]
    fn static_documents() {
        let s = site("chat.example.org");
        let r = s.respond("GET", "/.well-known/mta-sts.txt");
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "version: STSv1\nmode: enforce\nmx: chat.example.org\nmax_age: 2419200\n"
        );
        let xml = String::from_utf8(
            s.respond("GET", "/.well-known/autoconfig/mail/config-v1.1.xml")
                .body,
        )
        .unwrap();
        assert!(xml.contains("<port>993</port>") && xml.contains("<port>465</port>"));
        assert!(xml.contains("password-cleartext") && xml.contains("%EMAILADDRESS%"));
        let home = String::from_utf8(s.respond("GET", "/").body).unwrap();
        assert!(home.contains("<svg") && home.contains("DCACCOUNT:https://chat.example.org/new"));
        assert_eq!(s.respond("GET", "/nothing").status, 404);
        assert_eq!(s.respond("POST", "/robots.txt").status, 405);
    }

    #[test]
    fn the_three_pages_say_what_the_configuration_says() {
        let mut config = Config::with_domain("chat.example.org");
        config.privacy_postal = "Example e.V., Street 1, Town <b>".into();
        config.privacy_mail = "privacy@example.org".into();
        config.delete_mails_after = 20;
        config.max_user_send_per_minute = 60;
        let s = Site::new(config, site("x").endpoints.clone());
        let page = |p: &str| {
            let r = s.respond("GET", p);
            assert_eq!(r.status, 200, "{p}");
            assert_eq!(r.content_type, "text/html; charset=utf-8");
            String::from_utf8(r.body).unwrap()
        };
        let home = page("/");
        assert!(home.contains("How to use it") && home.contains("name=\"viewport\""));
        let info = page("/info.html");
        assert!(
            info.contains("deleted from the relay 20 days") && info.contains("up to 60 messages")
        );
        let privacy = page("/privacy");
        assert!(
            privacy.contains("Example e.V., Street 1, Town &lt;b&gt;"),
            "escaped"
        );
        assert!(privacy.contains("mailto:privacy@example.org"));
        assert!(!privacy.contains("<b>"));
        assert!(site("y")
            .privacy_page()
            .contains("has not published contact details"));
        assert_eq!(s.respond("POST", "/info.html").status, 405);
    }

    #[test]
    fn www_folder_replaces_the_pages_and_disabled_serves_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "operator home").unwrap();
        let mut config = Config::with_domain("chat.example.org");
        config.www_folder = dir.path().display().to_string();
        let s = Site::new(config.clone(), site("x").endpoints.clone());
        assert_eq!(s.respond("GET", "/").body, b"operator home");
        assert_eq!(
            s.respond("GET", "/info.html").status,
            404,
            "not the built-in one"
        );
        assert_eq!(s.respond("GET", "/.well-known/mta-sts.txt").status, 200);
        config.www_folder = "disabled".into();
        let s = Site::new(config, site("x").endpoints.clone());
        assert_eq!(s.respond("GET", "/").status, 404);
        assert_eq!(s.respond("POST", "/new").status, 200, "/new stays");
    }
}
