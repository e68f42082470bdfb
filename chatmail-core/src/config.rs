//! The relay's configuration, read from the reference relay's `chatmail.ini`.
//!
//! An operator's existing file works unchanged: the `[params]` section, every key of the
//! reference with the same defaults (spec 1.2), the same size syntax (`500M`, `2G`) and
//! the same boolean rule (only `true`, any case, is true). Keys this project adds
//! (listen address, ports, TLS paths, push endpoint) have defaults too. Unknown keys are
//! collected in [`Config::unknown_keys`], not refused; an invalid value is an error that
//! names the key, the value and what is expected.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What is wrong with a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `key = value`, a comment, or a section header.
    #[error("line {line}: {text:?} is not 'key = value', a [section] or a comment")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// The offending line (truncated).
        text: String,
    },
    /// The `[params]` section is missing.
    #[error("no [params] section found")]
    NoParamsSection,
    /// A required key is missing.
    #[error("required key {0:?} is missing from [params]")]
    Missing(&'static str),
    /// A key has a value of the wrong form.
    #[error("invalid value {value:?} for {key}: expected {expected}")]
    Invalid {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
}

/// How the relay gets its TLS certificate (spec 1.2, derived `tls_cert_mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsCertMode {
    /// Certificate and key files given by the operator.
    External {
        /// PEM certificate chain.
        cert: PathBuf,
        /// PEM private key.
        key: PathBuf,
    },
    /// A self-signed certificate generated and kept in the data directory (domains
    /// starting with `_` and IPv4 relays, or any relay without certificate paths).
    SelfSigned,
    /// Certificates the relay obtains and renews itself over ACME (RFC 8555) from
    /// `acme_directory`, kept in `<data-dir>/acme/`; a self-signed one until then.
    Acme,
}

/// Where DNS answers come from (`resolver = system | static:PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolverSetting {
    /// The system's resolver configuration (`/etc/resolv.conf`).
    System,
    /// A zone file in the RFC 1035 master format subset of
    /// [`StaticZone`](crate::dns::StaticZone): tests and closed networks.
    Static(PathBuf),
}

impl ResolverSetting {
    /// `system` or `static:PATH`.
    pub fn parse(v: &str) -> Option<ResolverSetting> {
        if v.eq_ignore_ascii_case("system") {
            return Some(ResolverSetting::System);
        }
        let path = v.strip_prefix("static:")?.trim();
        (!path.is_empty() && !path.contains('\0'))
            .then(|| ResolverSetting::Static(PathBuf::from(path)))
    }
}

/// Where accounts and mail live (`storage = maildir | postgres://USER@HOST:PORT/DB`,
/// this project).
#[derive(Clone, PartialEq, Eq)]
pub enum Storage {
    /// Files under `mailboxes_dir` in the reference relay's layout: one machine, no
    /// database (the default).
    Maildir,
    /// A PostgreSQL database (a connection URL: `postgres://` or `postgresql://`) that
    /// every relay node of the domain shares; each node keeps its own data directory.
    Postgres(String),
}

impl Storage {
    /// `maildir`, or a PostgreSQL connection URL.
    pub fn parse(v: &str) -> Option<Storage> {
        if v.eq_ignore_ascii_case("maildir") {
            return Some(Storage::Maildir);
        }
        let lower = v.get(..13).unwrap_or(v).to_ascii_lowercase();
        let scheme_len = if lower.starts_with("postgresql://") {
            13
        } else if lower.starts_with("postgres://") {
            11
        } else {
            return None;
        };
        let rest = &v[scheme_len..];
        (!rest.is_empty() && !v.contains(char::is_whitespace))
            .then(|| Storage::Postgres(v.to_string()))
    }

    /// The URL with any password replaced by `***`: what logs and errors may show.
    pub fn redacted(&self) -> String {
        match self {
            Storage::Maildir => "maildir".to_string(),
            Storage::Postgres(url) => redact_url_password(url),
        }
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `Config` is printed in logs and test failures: never the database password.
        f.write_str(&self.redacted())
    }
}

/// `scheme://user:secret@host/...` as `scheme://user:***@host/...`; a `password=`
/// query parameter is hidden too.
fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?'])
        .map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    let mut out = url[..scheme_end].to_string();
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => {
            out.push_str(&authority[..colon]);
            out.push_str(":***");
            out.push_str(&authority[at..]);
        }
        _ => out.push_str(authority),
    }
    let rest = &url[authority_end..];
    match rest.find('?') {
        Some(q) => {
            out.push_str(&rest[..=q]);
            let query: Vec<String> = rest[q + 1..]
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            out.push_str(&query.join("&"));
        }
        None => out.push_str(rest),
    }
    out
}

/// The parsed `[params]` section. Field names are the ini keys.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// `mail_domain`: FQDN of the relay or a bare IPv4 address.
    pub mail_domain: String,
    /// `max_user_send_per_minute` (60).
    pub max_user_send_per_minute: u32,
    /// `max_user_send_burst_size` (10).
    pub max_user_send_burst_size: u32,
    /// `max_mailbox_size` in MB (500).
    pub max_mailbox_size_mb: u64,
    /// `max_message_size` in bytes (31457280).
    pub max_message_size: u64,
    /// `delete_mails_after` in days (20).
    pub delete_mails_after: u32,
    /// `delete_large_after` in days (7).
    pub delete_large_after: u32,
    /// `delete_inactive_users_after` in days (90).
    pub delete_inactive_users_after: u32,
    /// `username_min_length` (9).
    pub username_min_length: usize,
    /// `username_max_length` (9).
    pub username_max_length: usize,
    /// `password_min_length` (9).
    pub password_min_length: usize,
    /// `login_free_failures_per_ip` (10; this project's key): wrong passwords for
    /// existing accounts (IMAP LOGIN and AUTHENTICATE, SMTP AUTH) a client IP (an IPv6
    /// /64) may give before each further one earns it a doubling penalty. Unknown names
    /// and refused creations cost no hash and do not count. Kept in memory only.
    pub login_free_failures_per_ip: u32,
    /// `login_free_failures_per_account` (10; this project's key): wrong passwords for one
    /// existing account before each further one earns the account a doubling penalty. A
    /// successful login clears the account's count.
    pub login_free_failures_per_account: u32,
    /// `login_max_delay_per_ip` in seconds (60; this project's key): the longest penalty
    /// of a client IP. During its penalty an IP's logins are refused without a password
    /// check, and a failure is answered only when the penalty ends.
    pub login_max_delay_per_ip_secs: u64,
    /// `login_max_delay_per_account` in seconds (30; this project's key): the longest
    /// penalty of an account. It only holds back clients whose IP has failed before: the
    /// owner on a device without failures logs in at once, however hard the account is
    /// attacked.
    pub login_max_delay_per_account_secs: u64,
    /// `login_failures_forget_after` in seconds (600; this project's key): failures older
    /// than this are forgotten, for IPs and accounts alike.
    pub login_failures_forget_after_secs: u64,
    /// `password_hash_threads` (0 = one per CPU core; this project's key): threads of the
    /// pool of their own that password hashes run on, apart from the file-system work of
    /// deliveries.
    pub password_hash_threads: usize,
    /// `password_hash_queue` (1024; this project's key): logins that may wait for a hash
    /// thread; past that a login gets a temporary failure (SMTP 454, IMAP `NO
    /// [UNAVAILABLE]`) instead of queueing without bound.
    pub password_hash_queue: usize,
    /// `max_load_1m` (5.0).
    pub max_load_1m: f64,
    /// `min_available_memory` in MB (200).
    pub min_available_memory_mb: u64,
    /// `min_free_disk_space` in MB (1024).
    pub min_free_disk_space_mb: u64,
    /// `min_free_inodes` (10000): below it no new accounts are created, as for
    /// `min_free_disk_space`. This relay's key; the reference does not check inodes.
    pub min_free_inodes: u64,
    /// `max_imap_connections` (10000).
    pub max_imap_connections: u32,
    /// `max_smtp_connections` per port (1000); per client IP a fifth of it.
    pub max_smtp_connections: u32,
    /// `max_imap_connections_per_ip` (this project; unset: a fiftieth of
    /// `max_imap_connections`, 200 by default): IMAP connections (143 and 993 together)
    /// from one client IP, so one host cannot take every slot. See
    /// [`Config::imap_connection_limit_per_ip`].
    pub max_imap_connections_per_ip: Option<u32>,
    /// `max_smtp_connections_per_ip` (this project; unset: a fifth of
    /// `max_smtp_connections` as the reference, 200 by default), per SMTP port. See
    /// [`Config::smtp_connection_limit_per_ip`].
    pub max_smtp_connections_per_ip: Option<u32>,
    /// `max_message_memory` in MB (this project; `256M`): message bytes all connections
    /// together may hold in memory while receiving (SMTP DATA/BDAT, IMAP APPEND). Past
    /// it a sender gets a temporary failure (`452 4.3.1`, `NO [LIMIT]`) and retries.
    pub max_message_memory_mb: u64,
    /// Deadlines of every connection phase (not read from the ini file; embedders and
    /// tests set them here).
    pub timeouts: Timeouts,
    /// `tls_external_cert_and_key`: two paths, or none.
    pub tls_external_cert_and_key: Option<(PathBuf, PathBuf)>,
    /// `www_folder` ("" = built-in pages).
    pub www_folder: String,
    /// `disable_ipv6` (false).
    pub disable_ipv6: bool,
    /// `acme_email` ("").
    pub acme_email: String,
    /// `acme_directory` ([`DEFAULT_ACME_DIRECTORY`], this project): the ACME (RFC 8555)
    /// directory the relay gets its certificates from when it has a public domain and
    /// no certificate files; tests point it at a local test CA.
    pub acme_directory: String,
    /// `iroh_relay`: `None` = unset (advertise `https://<mail_domain>`), `Some("")` =
    /// advertise nothing, else the URL to advertise.
    pub iroh_relay: Option<String>,
    /// `mtail_address`.
    pub mtail_address: Option<String>,
    /// `imap_rawlog` (false).
    pub imap_rawlog: bool,
    /// `imap_compress` (false): offer COMPRESS=DEFLATE.
    pub imap_compress: bool,
    /// `mailbox_group_commit` (true, this project): concurrent deliveries to the maildir
    /// store share their syncs (one `syncfs` of the file system of `mailboxes_dir`);
    /// false syncs each file, for a `mailboxes_dir` on a file system shared with heavy
    /// writers whose dirty data a shared sync would flush too
    /// ([`MaildirStore::with_group_commit`](crate::store::MaildirStore::with_group_commit)).
    pub mailbox_group_commit: bool,
    /// `storage` (`maildir`, this project): where accounts and mail live; see [`Storage`].
    pub storage: Storage,
    /// `nodes` (1, this project): how many relay nodes serve the domain from one shared
    /// `storage`. Each node enforces its share of the per-sender limits
    /// (`max_user_send_per_minute` and `max_user_send_burst_size` divided by `nodes`,
    /// rounded up), so a sender spread over every node stays within them, give or take
    /// the rounding.
    pub nodes: u32,
    /// `postgres_pool_size` (16, this project): database connections per node, with
    /// `storage = postgres://...`.
    pub postgres_pool_size: usize,
    /// `postgres_listen` (true, this project): learn of other nodes' changes by
    /// `LISTEN/NOTIFY`. False for an engine without `NOTIFY` (CockroachDB); then set
    /// `postgres_poll_interval`.
    pub postgres_listen: bool,
    /// `postgres_poll_interval` (unset, this project): also read other nodes' changes
    /// this often (a duration such as `2s`; whole seconds), whatever the
    /// notifications say: the bound on a wake-up across nodes without `NOTIFY`.
    pub postgres_poll_interval: Option<Duration>,
    /// `turn_socket_path`.
    pub turn_socket_path: PathBuf,
    /// `filtermail_smtp_port` (10080).
    pub filtermail_smtp_port: u16,
    /// `filtermail_smtp_port_incoming` (10081).
    pub filtermail_smtp_port_incoming: u16,
    /// `filtermail_http_port_incoming` (10082).
    pub filtermail_http_port_incoming: u16,
    /// `filtermail_lmtp_port_transport` (10083).
    pub filtermail_lmtp_port_transport: u16,
    /// `postfix_reinject_port` (10025).
    pub postfix_reinject_port: u16,
    /// `postfix_reinject_port_incoming` (10026).
    pub postfix_reinject_port_incoming: u16,
    /// `privacy_postal`.
    pub privacy_postal: String,
    /// `privacy_mail`: also served as METADATA `/shared/admin`.
    pub privacy_mail: String,
    /// `privacy_pdo`.
    pub privacy_pdo: String,
    /// `privacy_supervisor`.
    pub privacy_supervisor: String,
    /// `mailboxes_dir` (`/home/vmail/mail/<mail_domain>`).
    pub mailboxes_dir: PathBuf,
    /// `passdb_path` (`/home/vmail/passdb.sqlite`), legacy.
    pub passdb_path: PathBuf,
    /// `listen_address` (127.0.0.1): where every listener binds.
    pub listen_address: IpAddr,
    /// `smtp_port` (25): MX.
    pub smtp_port: u16,
    /// `submission_port` (587): STARTTLS submission.
    pub submission_port: u16,
    /// `submissions_port` (465): implicit-TLS submission.
    pub submissions_port: u16,
    /// `imap_port` (143).
    pub imap_port: u16,
    /// `imaps_port` (993).
    pub imaps_port: u16,
    /// `https_port` (443).
    pub https_port: u16,
    /// `metrics_listen` (absent: off): `HOST:PORT` of the plain-HTTP Prometheus endpoint
    /// `GET /metrics`, for the operator's scraper (keep it on loopback or a private net).
    pub metrics_listen: Option<SocketAddr>,
    /// `tls_cert_path` (absent: self-signed certificate in the data directory).
    pub tls_cert_path: Option<PathBuf>,
    /// `tls_key_path`.
    pub tls_key_path: Option<PathBuf>,
    /// `notify_url`: push notification endpoint ([`DEFAULT_NOTIFY_URL`]).
    pub notify_url: String,
    /// `resolver` (`system`): where DNS answers come from for delivery and DKIM keys.
    pub resolver: ResolverSetting,
    /// `dkim_selector` (`opendkim`, as the reference, spec 4.5): the selector of the
    /// relay's DKIM key, published at `<selector>._domainkey.<domain>`.
    pub dkim_selector: String,
    /// `outbound_retry_min` (60 s): wait before the first retry of a deferred delivery;
    /// each further retry waits twice as long, up to `outbound_retry_max`.
    pub outbound_retry_min: Duration,
    /// `outbound_retry_max` (4000 s, Postfix's `maximal_backoff_time`): the longest wait
    /// between two attempts.
    pub outbound_retry_max: Duration,
    /// `outbound_queue_lifetime` (2 days, Postfix's `maximal_queue_lifetime`, spec 4.1):
    /// after it, a recipient not yet delivered is given up and the sender gets a DSN.
    pub outbound_queue_lifetime: Duration,
    /// `outbound_queue_max_messages` (100000): most messages the delivery queue holds;
    /// past it, new mail for recipients not delivered at once gets `452 4.3.1`.
    pub outbound_queue_max_messages: u64,
    /// `outbound_queue_max_size` (`2G`): most message bytes the delivery queue holds.
    pub outbound_queue_max_size_mb: u64,
    /// `outbound_max_destinations` (500, as the reference's transport, spec 3.4):
    /// destination domains delivered to at the same time.
    pub outbound_max_destinations: usize,
    /// Keys present in `[params]` that this relay does not know (reported, not fatal).
    pub unknown_keys: Vec<String>,
}

/// The reference relay's push endpoint (spec 5.4).
pub const DEFAULT_NOTIFY_URL: &str = "https://notifications.delta.chat/notify";

/// Let's Encrypt's production directory, the default of `acme_directory`.
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

impl Config {
    /// A configuration with every default for `mail_domain`.
    pub fn with_domain(mail_domain: &str) -> Config {
        Config {
            mail_domain: mail_domain.to_string(),
            max_user_send_per_minute: 60,
            max_user_send_burst_size: 10,
            max_mailbox_size_mb: 500,
            max_message_size: 31_457_280,
            delete_mails_after: 20,
            delete_large_after: 7,
            delete_inactive_users_after: 90,
            username_min_length: 9,
            username_max_length: 9,
            password_min_length: 9,
            login_free_failures_per_ip: 10,
            login_free_failures_per_account: 10,
            login_max_delay_per_ip_secs: 60,
            login_max_delay_per_account_secs: 30,
            login_failures_forget_after_secs: 600,
            password_hash_threads: 0,
            password_hash_queue: 1024,
            max_load_1m: 5.0,
            min_available_memory_mb: 200,
            min_free_disk_space_mb: 1024,
            min_free_inodes: 10_000,
            max_imap_connections: 10_000,
            max_smtp_connections: 1000,
            max_imap_connections_per_ip: None,
            max_smtp_connections_per_ip: None,
            max_message_memory_mb: 256,
            timeouts: Timeouts::default(),
            tls_external_cert_and_key: None,
            www_folder: String::new(),
            disable_ipv6: false,
            acme_email: String::new(),
            acme_directory: DEFAULT_ACME_DIRECTORY.to_string(),
            iroh_relay: None,
            mtail_address: None,
            imap_rawlog: false,
            imap_compress: false,
            mailbox_group_commit: true,
            storage: Storage::Maildir,
            nodes: 1,
            postgres_pool_size: 16,
            postgres_listen: true,
            postgres_poll_interval: None,
            turn_socket_path: PathBuf::from("/run/chatmail-turn/turn.socket"),
            filtermail_smtp_port: 10080,
            filtermail_smtp_port_incoming: 10081,
            filtermail_http_port_incoming: 10082,
            filtermail_lmtp_port_transport: 10083,
            postfix_reinject_port: 10025,
            postfix_reinject_port_incoming: 10026,
            privacy_postal: String::new(),
            privacy_mail: String::new(),
            privacy_pdo: String::new(),
            privacy_supervisor: String::new(),
            mailboxes_dir: PathBuf::from(format!("/home/vmail/mail/{mail_domain}")),
            passdb_path: PathBuf::from("/home/vmail/passdb.sqlite"),
            listen_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            smtp_port: 25,
            submission_port: 587,
            submissions_port: 465,
            imap_port: 143,
            imaps_port: 993,
            https_port: 443,
            metrics_listen: None,
            tls_cert_path: None,
            tls_key_path: None,
            notify_url: DEFAULT_NOTIFY_URL.to_string(),
            resolver: ResolverSetting::System,
            dkim_selector: "opendkim".to_string(),
            outbound_retry_min: Duration::from_secs(60),
            outbound_retry_max: Duration::from_secs(4000),
            outbound_queue_lifetime: Duration::from_secs(2 * 24 * 3600),
            outbound_queue_max_messages: 100_000,
            outbound_queue_max_size_mb: 2048,
            outbound_max_destinations: 500,
            unknown_keys: Vec::new(),
        }
    }

    /// Reads and parses a `chatmail.ini` file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        // Non-UTF-8 bytes cannot be part of a valid value; keep them visible in errors.
        Config::parse(&String::from_utf8_lossy(&text))
    }

    /// Parses the text of a `chatmail.ini` file.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let params = parse_params_section(text)?;
        let domain = params
            .get("mail_domain")
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::Missing("mail_domain"))?;
        validate_domain(domain)?;
        let mut c = Config::with_domain(domain);
        for (key, value) in &params {
            c.set(key, value)?;
        }
        if c.username_min_length > c.username_max_length {
            return Err(ConfigError::Invalid {
                key: "username_min_length".into(),
                value: c.username_min_length.to_string(),
                expected: "a number not above username_max_length",
            });
        }
        if c.outbound_retry_max < c.outbound_retry_min {
            return Err(ConfigError::Invalid {
                key: "outbound_retry_max".into(),
                value: format!("{}", c.outbound_retry_max.as_secs()),
                expected: "a duration not below outbound_retry_min",
            });
        }
        if c.tls_cert_path.is_some() != c.tls_key_path.is_some() {
            return Err(ConfigError::Invalid {
                key: if c.tls_cert_path.is_some() {
                    "tls_key_path"
                } else {
                    "tls_cert_path"
                }
                .into(),
                value: String::new(),
                expected: "tls_cert_path and tls_key_path to be set together",
            });
        }
        Ok(c)
    }

    /// Applies one `key = value` pair.
    fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let v = value.trim();
        match key {
            "mail_domain" => {} // handled first: other defaults derive from it
            "max_user_send_per_minute" => self.max_user_send_per_minute = positive(key, v)?,
            "max_user_send_burst_size" => self.max_user_send_burst_size = positive(key, v)?,
            "max_mailbox_size" => self.max_mailbox_size_mb = size_mb(key, v)?,
            "max_message_size" => self.max_message_size = positive(key, v)?,
            "delete_mails_after" => self.delete_mails_after = number(key, v)?,
            "delete_large_after" => self.delete_large_after = number(key, v)?,
            "delete_inactive_users_after" => self.delete_inactive_users_after = number(key, v)?,
            "username_min_length" => self.username_min_length = positive(key, v)?,
            "username_max_length" => self.username_max_length = positive(key, v)?,
            "password_min_length" => self.password_min_length = number(key, v)?,
            "login_free_failures_per_ip" => self.login_free_failures_per_ip = number(key, v)?,
            "login_free_failures_per_account" => {
                self.login_free_failures_per_account = number(key, v)?
            }
            "login_max_delay_per_ip" => self.login_max_delay_per_ip_secs = positive(key, v)?,
            "login_max_delay_per_account" => {
                self.login_max_delay_per_account_secs = positive(key, v)?
            }
            "login_failures_forget_after" => {
                self.login_failures_forget_after_secs = positive(key, v)?
            }
            "password_hash_threads" => self.password_hash_threads = number(key, v)?,
            "password_hash_queue" => self.password_hash_queue = positive(key, v)?,
            "max_load_1m" => {
                self.max_load_1m = v
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .ok_or_else(|| invalid(key, v, "a non-negative number such as 5 or 2.5"))?
            }
            "min_available_memory" => self.min_available_memory_mb = size_mb(key, v)?,
            "min_free_disk_space" => self.min_free_disk_space_mb = size_mb(key, v)?,
            "min_free_inodes" => self.min_free_inodes = number(key, v)?,
            "max_imap_connections" => self.max_imap_connections = positive(key, v)?,
            "max_smtp_connections" => self.max_smtp_connections = positive(key, v)?,
            "max_imap_connections_per_ip" => {
                self.max_imap_connections_per_ip = Some(positive(key, v)?)
            }
            "max_smtp_connections_per_ip" => {
                self.max_smtp_connections_per_ip = Some(positive(key, v)?)
            }
            "max_message_memory" => match size_mb(key, v)? {
                0 => return Err(invalid(key, v, "a size above zero such as 256M or 1G")),
                mb => self.max_message_memory_mb = mb,
            },
            "tls_external_cert_and_key" => {
                let parts: Vec<&str> = v.split_whitespace().collect();
                self.tls_external_cert_and_key = match parts.as_slice() {
                    [] => None,
                    [cert, key_path] => Some((PathBuf::from(cert), PathBuf::from(key_path))),
                    _ => {
                        return Err(invalid(
                            key,
                            v,
                            "exactly two space-separated paths: CERT KEY",
                        ))
                    }
                }
            }
            "www_folder" => self.www_folder = v.to_string(),
            "disable_ipv6" => self.disable_ipv6 = boolean(v),
            "acme_email" => self.acme_email = v.to_string(),
            "acme_directory" => {
                if !v.starts_with("https://") {
                    return Err(ConfigError::Invalid {
                        key: key.to_string(),
                        value: v.to_string(),
                        expected: "an https:// URL",
                    });
                }
                self.acme_directory = v.to_string()
            }
            "iroh_relay" => self.iroh_relay = Some(v.to_string()),
            "mtail_address" => self.mtail_address = Some(v.to_string()).filter(|s| !s.is_empty()),
            "imap_rawlog" => self.imap_rawlog = boolean(v),
            "imap_compress" => self.imap_compress = boolean(v),
            "mailbox_group_commit" => self.mailbox_group_commit = boolean(v),
            "storage" => {
                self.storage = Storage::parse(v).ok_or_else(|| {
                    invalid(
                        key,
                        &Storage::Postgres(v.to_string()).redacted(),
                        "maildir or a postgres://USER@HOST:PORT/DB URL",
                    )
                })?
            }
            "nodes" => self.nodes = positive(key, v)?,
            "postgres_pool_size" => self.postgres_pool_size = positive(key, v)?,
            "postgres_listen" => self.postgres_listen = boolean(v),
            "postgres_poll_interval" => self.postgres_poll_interval = Some(duration(key, v)?),
            "turn_socket_path" => self.turn_socket_path = path(key, v)?,
            "filtermail_smtp_port" => self.filtermail_smtp_port = port(key, v)?,
            "filtermail_smtp_port_incoming" => self.filtermail_smtp_port_incoming = port(key, v)?,
            "filtermail_http_port_incoming" => self.filtermail_http_port_incoming = port(key, v)?,
            "filtermail_lmtp_port_transport" => self.filtermail_lmtp_port_transport = port(key, v)?,
            "postfix_reinject_port" => self.postfix_reinject_port = port(key, v)?,
            "postfix_reinject_port_incoming" => self.postfix_reinject_port_incoming = port(key, v)?,
            "privacy_postal" => self.privacy_postal = v.to_string(),
            "privacy_mail" => self.privacy_mail = v.to_string(),
            "privacy_pdo" => self.privacy_pdo = v.to_string(),
            "privacy_supervisor" => self.privacy_supervisor = v.to_string(),
            "mailboxes_dir" => self.mailboxes_dir = path(key, v)?,
            "passdb_path" => self.passdb_path = path(key, v)?,
            "listen_address" => {
                self.listen_address = v
                    .parse()
                    .map_err(|_| invalid(key, v, "an IPv4 or IPv6 address such as 127.0.0.1"))?
            }
            "smtp_port" => self.smtp_port = listener_port(key, v)?,
            "submission_port" => self.submission_port = listener_port(key, v)?,
            "submissions_port" => self.submissions_port = listener_port(key, v)?,
            "imap_port" => self.imap_port = listener_port(key, v)?,
            "imaps_port" => self.imaps_port = listener_port(key, v)?,
            "https_port" => self.https_port = listener_port(key, v)?,
            "metrics_listen" => {
                self.metrics_listen = Some(v.parse().map_err(|_| {
                    invalid(
                        key,
                        v,
                        "HOST:PORT with an IP address such as 127.0.0.1:9100",
                    )
                })?)
            }
            "tls_cert_path" => self.tls_cert_path = Some(path(key, v)?),
            "tls_key_path" => self.tls_key_path = Some(path(key, v)?),
            "notify_url" => {
                if !(v.starts_with("https://") || v.starts_with("http://")) {
                    return Err(invalid(key, v, "an http:// or https:// URL"));
                }
                self.notify_url = v.to_string()
            }
            "resolver" => {
                self.resolver = ResolverSetting::parse(v).ok_or_else(|| {
                    invalid(key, v, "'system' or 'static:' and the path of a zone file")
                })?
            }
            "dkim_selector" => {
                let ok = !v.is_empty()
                    && v.len() <= 63
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok {
                    return Err(invalid(key, v, "a DNS label such as opendkim"));
                }
                self.dkim_selector = v.to_string();
            }
            "outbound_retry_min" => self.outbound_retry_min = duration(key, v)?,
            "outbound_retry_max" => self.outbound_retry_max = duration(key, v)?,
            "outbound_queue_lifetime" => self.outbound_queue_lifetime = duration(key, v)?,
            "outbound_queue_max_messages" => self.outbound_queue_max_messages = positive(key, v)?,
            "outbound_queue_max_size" => match size_mb(key, v)? {
                0 => return Err(invalid(key, v, "a size above zero such as 2G")),
                mb => self.outbound_queue_max_size_mb = mb,
            },
            "outbound_max_destinations" => self.outbound_max_destinations = positive(key, v)?,
            "filtermail_host" | "postfix_host" => {}
            other => self.unknown_keys.push(other.to_string()),
        }
        Ok(())
    }

    /// The domain part of addresses: `mail_domain`, or `[a.b.c.d]` for an IPv4 relay
    /// (spec 1.3).
    pub fn address_domain(&self) -> String {
        match self.mail_domain.parse::<Ipv4Addr>() {
            Ok(ip) => format!("[{ip}]"),
            Err(_) => self.mail_domain.clone(),
        }
    }

    /// Whether `mail_domain` is a bare IPv4 address.
    pub fn is_ipv4_relay(&self) -> bool {
        self.mail_domain.parse::<Ipv4Addr>().is_ok()
    }

    /// Where the certificate comes from (spec 1.2 `tls_cert_mode`, extended with this
    /// project's `tls_cert_path`/`tls_key_path`).
    pub fn tls_cert_mode(&self) -> TlsCertMode {
        if let (Some(cert), Some(key)) = (&self.tls_cert_path, &self.tls_key_path) {
            return TlsCertMode::External {
                cert: cert.clone(),
                key: key.clone(),
            };
        }
        if let Some((cert, key)) = &self.tls_external_cert_and_key {
            return TlsCertMode::External {
                cert: cert.clone(),
                key: key.clone(),
            };
        }
        if self.mail_domain.starts_with('_') || self.is_ipv4_relay() {
            return TlsCertMode::SelfSigned;
        }
        TlsCertMode::Acme
    }

    /// `max_mailbox_size` in bytes.
    pub fn max_mailbox_bytes(&self) -> u64 {
        self.max_mailbox_size_mb.saturating_mul(1024 * 1024)
    }

    /// Connections allowed per client IP on one SMTP port: `max_smtp_connections_per_ip`,
    /// else a fifth of `max_smtp_connections` (reference, spec 1.2); never above the total.
    pub fn smtp_connection_limit_per_ip(&self) -> u32 {
        self.max_smtp_connections_per_ip
            .unwrap_or(self.max_smtp_connections / 5)
            .clamp(1, self.max_smtp_connections)
    }

    /// IMAP connections allowed per client IP (143 and 993 together):
    /// `max_imap_connections_per_ip`, else a fiftieth of `max_imap_connections` (200 of
    /// 10000: room for a large NAT, far from the total); never above the total.
    pub fn imap_connection_limit_per_ip(&self) -> u32 {
        self.max_imap_connections_per_ip
            .unwrap_or(self.max_imap_connections / 50)
            .clamp(1, self.max_imap_connections)
    }

    /// `outbound_queue_max_size` in bytes.
    pub fn outbound_queue_max_bytes(&self) -> u64 {
        self.outbound_queue_max_size_mb.saturating_mul(1024 * 1024)
    }

    /// `max_message_memory` in bytes.
    pub fn max_message_memory_bytes(&self) -> u64 {
        self.max_message_memory_mb.saturating_mul(1024 * 1024)
    }
}

/// Every deadline of a connection, phase by phase. None of them restarts on a byte: a
/// peer that sends one byte a minute is dropped like a silent one. The engines decide
/// (their `handle_timeout(now)`) where they can; the driver bounds the TLS handshake and
/// writes, which the engines do not see.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// A TLS handshake, on an implicit-TLS port or after STARTTLS: [`Timeouts::TLS_HANDSHAKE`].
    pub tls_handshake: Duration,
    /// From the greeting to a successful login (IMAP, submission), absolute:
    /// [`Timeouts::LOGIN`].
    pub login: Duration,
    /// Time for one command: SMTP from the previous reply to the end of the next command
    /// line, IMAP from a command's first byte to its last (literals included), plus
    /// [`Timeouts::min_transfer_rate`] for its length. Also the head start of a DATA,
    /// BDAT or APPEND transfer and of a write: [`Timeouts::COMMAND`].
    pub command: Duration,
    /// Whole SMTP session on port 25, checked between transfers (a message being received
    /// at the minimum rate is finished first): [`Timeouts::SMTP_SESSION`].
    pub smtp_session: Duration,
    /// Minimum average rate of a transfer, in bytes per second: after the head start of
    /// [`Timeouts::command`], each byte of a message, literal or reply buys this much
    /// time and no more: [`Timeouts::MIN_TRANSFER_RATE`].
    pub min_transfer_rate: u32,
    /// IMAP after login without a new command, IDLE included (counted from the IDLE
    /// command): [`Timeouts::IMAP_INACTIVITY`].
    pub imap_inactivity: Duration,
}

impl Timeouts {
    /// 30 s for a TLS handshake (what implicit TLS always had).
    pub const TLS_HANDSHAKE: Duration = Duration::from_secs(30);
    /// 60 s from greeting to login (STARTTLS included): a client logs in within a
    /// second or two, a hashing queue under load adds a few more.
    pub const LOGIN: Duration = Duration::from_secs(60);
    /// 300 s per command: RFC 5321 4.5.3.2.7 asks an SMTP server to wait at least 5
    /// minutes for the next command (Postfix `smtpd_timeout`).
    pub const COMMAND: Duration = Duration::from_secs(300);
    /// 10 minutes per port-25 session: other servers reuse a connection for a few
    /// minutes (Postfix `smtp_connection_reuse_time_limit` is 300 s); a `421` later only
    /// makes them reconnect, nothing is lost.
    pub const SMTP_SESSION: Duration = Duration::from_secs(600);
    /// 500 bytes/s, Postfix's `smtpd_min_data_rate`: any real link is faster, and a
    /// 30 MiB message still gets hours.
    pub const MIN_TRANSFER_RATE: u32 = 500;
    /// 30 minutes of IMAP inactivity: RFC 9051 5.4 asks for at least 30 minutes, and
    /// IDLE clients re-issue IDLE before 29 (Delta Chat every 5 at most).
    pub const IMAP_INACTIVITY: Duration = Duration::from_secs(30 * 60);

    /// The time a transfer of `bytes` may take in all: [`Timeouts::command`] plus
    /// `bytes` at [`Timeouts::min_transfer_rate`].
    pub fn transfer(&self, bytes: u64) -> Duration {
        transfer_time(self.command, self.min_transfer_rate, bytes)
    }
}

/// `head_start` plus `bytes` at `min_rate` bytes per second (a rate of 0 adds nothing).
pub fn transfer_time(head_start: Duration, min_rate: u32, bytes: u64) -> Duration {
    if min_rate == 0 {
        return head_start;
    }
    let millis = bytes.saturating_mul(1000) / u64::from(min_rate);
    head_start.saturating_add(Duration::from_millis(millis))
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tls_handshake: Timeouts::TLS_HANDSHAKE,
            login: Timeouts::LOGIN,
            command: Timeouts::COMMAND,
            smtp_session: Timeouts::SMTP_SESSION,
            min_transfer_rate: Timeouts::MIN_TRANSFER_RATE,
            imap_inactivity: Timeouts::IMAP_INACTIVITY,
        }
    }
}

/// Splits the ini text into the `[params]` key/value pairs. Comments start with `#` or
/// `;`; other sections are ignored; a key given twice keeps its last value.
fn parse_params_section(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut section: Option<String> = None;
    let mut saw_params = false;
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim().to_string();
            saw_params |= name == "params";
            section = Some(name);
            continue;
        }
        let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(':')) else {
            return Err(ConfigError::Syntax {
                line: i + 1,
                text: line.chars().take(80).collect(),
            });
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(ConfigError::Syntax {
                line: i + 1,
                text: line.chars().take(80).collect(),
            });
        }
        if section.as_deref() == Some("params") {
            out.insert(key.to_ascii_lowercase(), value.trim().to_string());
        }
    }
    if !saw_params {
        return Err(ConfigError::NoParamsSection);
    }
    Ok(out)
}

fn validate_domain(domain: &str) -> Result<(), ConfigError> {
    let ok = domain.len() <= 253
        && (domain.parse::<Ipv4Addr>().is_ok()
            || domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "mail_domain",
            domain,
            "a DNS name such as chat.example.org or an IPv4 address",
        ))
    }
}

fn invalid(key: &str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        expected,
    }
}

fn number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError> {
    v.parse()
        .map_err(|_| invalid(key, v, "a non-negative whole number"))
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(
    key: &str,
    v: &str,
) -> Result<T, ConfigError> {
    v.parse::<T>()
        .ok()
        .filter(|n| *n > T::default())
        .ok_or_else(|| invalid(key, v, "a whole number greater than 0"))
}

fn port(key: &str, v: &str) -> Result<u16, ConfigError> {
    v.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid(key, v, "a port number from 1 to 65535"))
}

/// A listener's port: `0` turns the listener off (an operator behind another HTTPS
/// server sets `https_port = 0`).
fn listener_port(key: &str, v: &str) -> Result<u16, ConfigError> {
    v.parse::<u16>()
        .map_err(|_| invalid(key, v, "a port number from 0 (off) to 65535"))
}

/// A duration: whole seconds, or a number with `s`, `m`, `h` or `d` (`60`, `90s`,
/// `30m`, `2d`).
fn duration(key: &str, v: &str) -> Result<Duration, ConfigError> {
    let lower = v.to_ascii_lowercase();
    let (digits, unit) = match lower.as_bytes().last() {
        Some(b's') => (&lower[..lower.len() - 1], 1),
        Some(b'm') => (&lower[..lower.len() - 1], 60),
        Some(b'h') => (&lower[..lower.len() - 1], 3600),
        Some(b'd') => (&lower[..lower.len() - 1], 86_400),
        _ => (lower.as_str(), 1),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(unit))
        .map(Duration::from_secs)
        .ok_or_else(|| {
            invalid(
                key,
                v,
                "a duration above zero: seconds, or a number with s, m, h or d",
            )
        })
}

fn boolean(v: &str) -> bool {
    v.eq_ignore_ascii_case("true")
}

fn path(key: &str, v: &str) -> Result<PathBuf, ConfigError> {
    if v.is_empty() || v.contains('\0') {
        return Err(invalid(key, v, "a non-empty file system path"));
    }
    Ok(PathBuf::from(v))
}

/// Parses a size the way the reference does (spec 1.1) into megabytes: `500M`, `2G`,
/// ` 1g `, `100MB`, `256`.
pub(crate) fn parse_size_mb(v: &str) -> Option<u64> {
    let s = v.trim().to_ascii_uppercase();
    let s = s.strip_suffix('B').unwrap_or(&s);
    let (digits, factor) = if let Some(d) = s.strip_suffix('G') {
        (d, 1024)
    } else if let Some(d) = s.strip_suffix('M') {
        (d, 1)
    } else {
        (s, 1)
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(factor)
}

fn size_mb(key: &str, v: &str) -> Result<u64, ConfigError> {
    parse_size_mb(v).ok_or_else(|| invalid(key, v, "a size in megabytes such as 500M, 2G or 256"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ini(extra: &str) -> String {
        format!("[params]\nmail_domain = chat.example.org\n{extra}")
    }

    #[test]
    fn defaults_match_the_reference() {
        let c = Config::parse(&ini("")).unwrap();
        assert_eq!(c.max_user_send_per_minute, 60);
        assert_eq!(c.max_user_send_burst_size, 10);
        assert_eq!(c.max_mailbox_size_mb, 500);
        assert_eq!(c.max_message_size, 31_457_280);
        assert_eq!(
            (
                c.delete_mails_after,
                c.delete_large_after,
                c.delete_inactive_users_after
            ),
            (20, 7, 90)
        );
        assert_eq!(
            (
                c.username_min_length,
                c.username_max_length,
                c.password_min_length
            ),
            (9, 9, 9)
        );
        assert_eq!(
            (c.max_imap_connections, c.max_smtp_connections),
            (10_000, 1000)
        );
        assert_eq!(c.smtp_connection_limit_per_ip(), 200);
        assert_eq!(c.imap_connection_limit_per_ip(), 200);
        assert_eq!(c.max_message_memory_bytes(), 256 << 20);
        assert_eq!(c.timeouts, Timeouts::default());
        assert_eq!(
            (
                c.filtermail_smtp_port,
                c.filtermail_smtp_port_incoming,
                c.postfix_reinject_port
            ),
            (10080, 10081, 10025)
        );
        assert_eq!(
            c.mailboxes_dir,
            PathBuf::from("/home/vmail/mail/chat.example.org")
        );
        assert_eq!(
            (c.smtp_port, c.submission_port, c.submissions_port),
            (25, 587, 465)
        );
        assert_eq!((c.imap_port, c.imaps_port, c.https_port), (143, 993, 443));
        assert_eq!(c.listen_address.to_string(), "127.0.0.1");
        assert_eq!(c.notify_url, DEFAULT_NOTIFY_URL);
        assert_eq!(c.tls_cert_mode(), TlsCertMode::Acme);
        assert!(c.unknown_keys.is_empty());
    }

    #[test]
    fn acme_directory_defaults_to_lets_encrypt_and_takes_https_urls() {
        let c = Config::parse(&ini("")).unwrap();
        assert_eq!(c.acme_directory, DEFAULT_ACME_DIRECTORY);
        let c = Config::parse(&ini("acme_directory = https://127.0.0.1:14000/dir\n")).unwrap();
        assert_eq!(c.acme_directory, "https://127.0.0.1:14000/dir");
        assert!(c.unknown_keys.is_empty());
        let err = Config::parse(&ini("acme_directory = http://ca.example/dir\n")).unwrap_err();
        assert!(err.to_string().contains("acme_directory"), "{err}");
    }

    #[test]
    fn sizes_parse_like_the_reference() {
        for (s, mb) in [
            ("500M", 500),
            ("2G", 2048),
            (" 1g ", 1024),
            ("100MB", 100),
            ("256", 256),
        ] {
            assert_eq!(parse_size_mb(s), Some(mb), "{s}");
        }
        for s in ["", "M", "-1", "1T", "1.5G", "99999999999999999999G"] {
            assert_eq!(parse_size_mb(s), None, "{s}");
        }
    }

    #[test]
    fn ipv4_and_self_signed_modes() {
        let c = Config::parse("[params]\nmail_domain = 1.3.3.7\n").unwrap();
        assert_eq!(c.address_domain(), "[1.3.3.7]");
        assert_eq!(c.tls_cert_mode(), TlsCertMode::SelfSigned);
        let c = Config::parse("[params]\nmail_domain = _chat.localhost\n").unwrap();
        assert_eq!(c.tls_cert_mode(), TlsCertMode::SelfSigned);
        let c = Config::parse(&ini("tls_external_cert_and_key = /a.pem /b.key")).unwrap();
        assert!(matches!(c.tls_cert_mode(), TlsCertMode::External { .. }));
    }

    #[test]
    fn per_ip_limits_and_message_memory() {
        let c = Config::parse(&ini(
            "max_imap_connections = 300\nmax_smtp_connections = 40\nmax_message_memory = 1G",
        ))
        .unwrap();
        assert_eq!(c.imap_connection_limit_per_ip(), 6, "a fiftieth");
        assert_eq!(c.smtp_connection_limit_per_ip(), 8, "a fifth");
        assert_eq!(c.max_message_memory_bytes(), 1 << 30);
        let c = Config::parse(&ini(
            "max_imap_connections = 300\nmax_imap_connections_per_ip = 1000\n\
             max_smtp_connections_per_ip = 3",
        ))
        .unwrap();
        assert_eq!(
            c.imap_connection_limit_per_ip(),
            300,
            "never above the total"
        );
        assert_eq!(c.smtp_connection_limit_per_ip(), 3);
        let c = Config::parse(&ini("max_imap_connections = 10")).unwrap();
        assert_eq!(c.imap_connection_limit_per_ip(), 1, "at least one");
        for bad in [
            "max_imap_connections_per_ip = 0",
            "max_smtp_connections_per_ip = x",
            "max_message_memory = 0",
            "max_message_memory = 1T",
        ] {
            assert!(Config::parse(&ini(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn login_limit_keys_have_defaults_and_parse() {
        let keys = |c: &Config| {
            (
                c.login_free_failures_per_ip,
                c.login_free_failures_per_account,
                c.login_max_delay_per_ip_secs,
                c.login_max_delay_per_account_secs,
                c.login_failures_forget_after_secs,
                c.password_hash_threads,
                c.password_hash_queue,
            )
        };
        let c = Config::parse(&ini("")).unwrap();
        assert_eq!(keys(&c), (10, 10, 60, 30, 600, 0, 1024));
        let c = Config::parse(&ini(
            "login_free_failures_per_ip = 0\nlogin_free_failures_per_account = 3\n\
             login_max_delay_per_ip = 120\nlogin_max_delay_per_account = 5\n\
             login_failures_forget_after = 60\npassword_hash_threads = 2\n\
             password_hash_queue = 16\n",
        ))
        .unwrap();
        assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
        assert_eq!(keys(&c), (0, 3, 120, 5, 60, 2, 16));
        for bad in [
            "login_max_delay_per_ip = 0",
            "password_hash_queue = 0",
            "login_free_failures_per_ip = -1",
        ] {
            assert!(Config::parse(&ini(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn transfer_time_adds_the_bytes_at_the_minimum_rate() {
        let t = Timeouts::default();
        assert_eq!(t.transfer(0), Timeouts::COMMAND);
        assert_eq!(
            t.transfer(5000),
            Timeouts::COMMAND + Duration::from_secs(10)
        );
        assert_eq!(
            transfer_time(Duration::from_secs(1), 0, u64::MAX),
            Duration::from_secs(1)
        );
        assert!(transfer_time(Duration::MAX, 1, u64::MAX) == Duration::MAX);
    }

    #[test]
    fn unknown_keys_are_reported_not_fatal() {
        let c = Config::parse(&ini("passthrough_senders = a@b\nfoo = 1\n# x = 2\n")).unwrap();
        assert_eq!(
            c.unknown_keys,
            vec!["foo".to_string(), "passthrough_senders".to_string()]
        );
    }

    #[test]
    fn storage_is_maildir_or_a_postgres_url_and_never_shows_the_password() {
        assert_eq!(Config::parse(&ini("")).unwrap().storage, Storage::Maildir);
        assert_eq!(Config::parse(&ini("")).unwrap().nodes, 1);
        let c = Config::parse(&ini(
            "storage = postgres://relay:s3cret@10.0.0.5:5432/chatmail?password=x&sslmode=require\nnodes = 2",
        ))
        .unwrap();
        assert!(matches!(&c.storage, Storage::Postgres(url) if url.contains("s3cret")));
        assert_eq!(c.nodes, 2);
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("password=x"),
            "{shown}"
        );
        assert_eq!(
            c.storage.redacted(),
            "postgres://relay:***@10.0.0.5:5432/chatmail?password=***&sslmode=require"
        );
        assert_eq!(
            Storage::parse("POSTGRESQL://u@h/db"),
            Some(Storage::Postgres("POSTGRESQL://u@h/db".into()))
        );
        assert_eq!(Storage::parse("MailDir"), Some(Storage::Maildir));
        // Cut at ASCII delimiters only: other characters around them are kept whole.
        assert_eq!(
            Storage::parse("postgresql://ü:é@h/db?password=é&x")
                .unwrap()
                .redacted(),
            "postgresql://ü:***@h/db?password=***&x"
        );
        assert_eq!(
            Storage::parse("postgres://:@/?=&password")
                .unwrap()
                .redacted(),
            "postgres://:***@/?=&password"
        );
        for bad in [
            "mysql://u@h/db",
            "postgres://",
            "postgres://u@h/d b",
            "",
            "é",
        ] {
            assert_eq!(Storage::parse(bad), None, "{bad:?}");
        }
        let err = Config::parse(&ini("storage = pg://u:pw@h/db")).unwrap_err();
        assert!(!err.to_string().contains("pw@"), "{err}");
        assert!(Config::parse(&ini("nodes = 0")).is_err());
        let c = Config::parse(&ini(
            "postgres_pool_size = 4\npostgres_listen = false\npostgres_poll_interval = 2s",
        ))
        .unwrap();
        assert_eq!(c.postgres_pool_size, 4);
        assert!(!c.postgres_listen);
        assert_eq!(c.postgres_poll_interval, Some(Duration::from_secs(2)));
        assert!(Config::parse(&ini("postgres_pool_size = 0")).is_err());
    }

    #[test]
    fn booleans_only_true_is_true() {
        assert!(
            Config::parse(&ini("imap_compress = TRUE"))
                .unwrap()
                .imap_compress
        );
        assert!(
            !Config::parse(&ini("imap_compress = yes"))
                .unwrap()
                .imap_compress
        );
    }

    #[test]
    fn invalid_values_name_key_value_and_expectation() {
        for (line, key) in [
            (
                "max_user_send_per_minute = lots",
                "max_user_send_per_minute",
            ),
            ("max_user_send_per_minute = 0", "max_user_send_per_minute"),
            ("max_mailbox_size = 5T", "max_mailbox_size"),
            ("imap_port = 70000", "imap_port"),
            ("listen_address = localhost", "listen_address"),
            ("max_load_1m = nan", "max_load_1m"),
            (
                "tls_external_cert_and_key = /only-one",
                "tls_external_cert_and_key",
            ),
            ("username_min_length = 10", "username_min_length"),
            ("notify_url = ftp://x", "notify_url"),
            ("tls_cert_path = /c.pem", "tls_key_path"),
        ] {
            let err = Config::parse(&ini(line)).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(key), "{line}: {msg}");
            assert!(msg.contains("expected"), "{line}: {msg}");
        }
        assert!(matches!(
            Config::parse("[params]\n"),
            Err(ConfigError::Missing("mail_domain"))
        ));
        assert!(matches!(
            Config::parse("mail_domain = x\n"),
            Err(ConfigError::NoParamsSection)
        ));
        assert!(matches!(
            Config::parse("[params]\nnonsense\n"),
            Err(ConfigError::Syntax { line: 2, .. })
        ));
        assert!(Config::parse("[params]\nmail_domain = ../etc\n").is_err());
        assert!(Config::parse("[params]\nmail_domain = a/b\n").is_err());
    }

    #[test]
    fn unreadable_file_is_a_clear_error() {
        let err = Config::from_file(Path::new("/nonexistent/chatmail.ini")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/chatmail.ini"));
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_parses_host_port() {
        assert_eq!(Config::parse(&ini("")).unwrap().metrics_listen, None);
        let c = Config::parse(&ini("metrics_listen = 127.0.0.1:9100")).unwrap();
        assert_eq!(
            c.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9100)))
        );
        let c = Config::parse(&ini("metrics_listen = [::1]:9100")).unwrap();
        assert_eq!(c.metrics_listen.map(|a| a.is_ipv6()), Some(true));
        for bad in ["localhost:9100", "127.0.0.1", "127.0.0.1:70000"] {
            let err = Config::parse(&ini(&format!("metrics_listen = {bad}"))).unwrap_err();
            assert!(err.to_string().contains("metrics_listen"), "{err}");
        }
    }

    #[test]
    fn federation_keys_have_defaults_and_parse() {
        let c = Config::parse(&ini("")).unwrap();
        assert_eq!(c.resolver, ResolverSetting::System);
        assert_eq!(c.dkim_selector, "opendkim");
        assert_eq!(c.outbound_retry_min, Duration::from_secs(60));
        assert_eq!(c.outbound_retry_max, Duration::from_secs(4000));
        assert_eq!(c.outbound_queue_lifetime, Duration::from_secs(2 * 86_400));
        assert_eq!(c.outbound_queue_max_bytes(), 2048 * 1024 * 1024);
        let c = Config::parse(&ini(
            "resolver = static:/etc/chatmail/zone\ndkim_selector = dkim2024\noutbound_retry_min = 30s\noutbound_retry_max = 2h\noutbound_queue_lifetime = 5d\noutbound_queue_max_messages = 10\noutbound_queue_max_size = 1G\noutbound_max_destinations = 7\nhttps_port = 0",
        ))
        .unwrap();
        assert_eq!(
            c.resolver,
            ResolverSetting::Static("/etc/chatmail/zone".into())
        );
        assert_eq!(c.dkim_selector, "dkim2024");
        assert_eq!(c.outbound_retry_min, Duration::from_secs(30));
        assert_eq!(c.outbound_retry_max, Duration::from_secs(7200));
        assert_eq!(c.outbound_queue_lifetime, Duration::from_secs(5 * 86_400));
        assert_eq!(c.outbound_queue_max_messages, 10);
        assert_eq!(c.outbound_queue_max_bytes(), 1024 * 1024 * 1024);
        assert_eq!(c.outbound_max_destinations, 7);
        assert_eq!(c.https_port, 0, "0 turns the listener off");
        for bad in [
            "resolver = dns",
            "resolver = static:",
            "dkim_selector = a.b",
            "dkim_selector = ",
            "outbound_retry_min = 0",
            "outbound_retry_min = 5w",
            "outbound_retry_min = 600\noutbound_retry_max = 60",
            "outbound_queue_max_size = 0",
            "outbound_max_destinations = 0",
            "smtp_port = 65536",
        ] {
            assert!(Config::parse(&ini(bad)).is_err(), "{bad} should be refused");
        }
    }
}
